#!/usr/bin/env bash
# Checks the CUDA path in one command, on a machine with one or more CUDA GPUs and no internet:
#
#   bash scripts/gpu_check.sh             # sized to finish within 8 minutes on one data-centre GPU
#   bash scripts/gpu_check.sh --dry-run   # or GPU_CHECK_DRY_RUN=1: what needs no GPU, on the CPU
#
# 1. checks the Python packages of requirements.txt (torch with CUDA, resnest, pydensecrf2, opencv,
#    scikit-image, ...) and names the missing ones with how to bring them without internet;
# 2. generates a small toy dataset (wsss.data.toy_voc);
# 3. runs the CUDA half of the device tests (tests/test_devices.py -k cuda);
# 4. runs the stages in order on the toy data, each trainer for a few iterations with DataParallel
#    over all visible GPUs and under torchrun (nccl, one process per GPU), each with --amp off, bf16
#    and fp16; CAM inference, affinity labels, random walk and pseudo labels in between;
# 5. benchmarks (bench/bench_gpu.py) and writes bench/results/gpu.md, with the table of the checks.
#
# The dry run forces the CPU (CUDA_VISIBLE_DEVICES=), runs steps 1, 2, the stage chain with --amp off
# and the benchmarks with tiny sizes, prints a line for each step it skips, and writes its report to
# the working folder instead of bench/results/gpu.md. A missing package stops the script at step 1;
# after that every step runs even when an earlier one failed (its log is printed), and the exit
# status is 1 when any step failed.
# Environment: PYTHON (default .venv/bin/python when present, else python3); GPU_CHECK_WORK (the
# working folder: toy data, experiments/, logs; default a new temporary folder, kept afterwards).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}  # the steps run in the working folder

DRY_RUN=${GPU_CHECK_DRY_RUN:-0}
for argument in "$@"; do
  case $argument in
    --dry-run) DRY_RUN=1 ;;
    *) echo "usage: bash scripts/gpu_check.sh [--dry-run]" >&2; exit 2 ;;
  esac
done
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
fi
WORK=${GPU_CHECK_WORK:-$(mktemp -d -t gpu_check.XXXXXX)}
mkdir -p "$WORK/logs" "$WORK/run"
WORK=$(cd "$WORK" && pwd)
RUN=$WORK/run
CHECKS=$WORK/checks.tsv
: > "$CHECKS"
FAILED=0
STARTED=$(date +%s)
if [ "$DRY_RUN" = 1 ]; then
  export CUDA_VISIBLE_DEVICES=
  REPORT=$WORK/gpu.md
else
  REPORT=$REPO/bench/results/gpu.md
fi
echo "gpu check$([ "$DRY_RUN" = 1 ] && echo ' (dry run, CPU)'): python $PYTHON, working folder $WORK"

# step NAME COMMAND...: run COMMAND in $RUN (10 minutes at most), its output in $WORK/logs/NAME.log;
# record the result and the seconds in $CHECKS; on failure print the end of the log.
step() {
  local name=$1 status start end
  shift
  echo "== $name: $*"
  start=$(date +%s.%N)
  if (cd "$RUN" && timeout 600 "$@") > "$WORK/logs/$name.log" 2>&1; then
    status=passed
  else
    status="FAILED (log: $WORK/logs/$name.log)"
    FAILED=1
    tail -n 30 "$WORK/logs/$name.log" | sed 's/^/   | /'
  fi
  end=$(date +%s.%N)
  printf '%s\t%s\t%s\n' "$name" "$status" "$(awk "BEGIN { print $end - $start }")" >> "$CHECKS"
  echo "   $status ($(awk "BEGIN { printf \"%.0f\", $end - $start }") s)"
}

# skip NAME REASON: a step the dry run leaves out, printed and recorded.
skip() {
  echo "== $1: skipped ($2)"
  printf '%s\tskipped: %s\t0\n' "$1" "$2" >> "$CHECKS"
}

# --- 1. packages ---------------------------------------------------------------------------------
echo "== packages"
if ! GPUS=$("$PYTHON" - "$DRY_RUN" "$REPO/requirements.txt" <<'EOF'
"""Import every package of requirements.txt; name the missing ones and how to bring them offline.
Prints the number of visible GPUs on its last line."""
import importlib
import importlib.metadata
import sys

dry_run, requirements = sys.argv[1] == "1", sys.argv[2]
IMPORT_NAMES = {"opencv-python-headless": "cv2", "pillow": "PIL", "pydensecrf2": "pydensecrf.densecrf",
                "resnest": "resnest.torch", "scikit-image": "skimage"}
missing, notes = [], []
for line in open(requirements):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, _, pinned = line.partition("==")
    try:
        importlib.import_module(IMPORT_NAMES.get(name, name))
    except Exception as error:
        missing.append(f"{line} ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})")
        continue
    try:
        installed = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        installed = "?"
    if pinned and installed.split("+")[0] != pinned:
        notes.append(f"{name} {installed} (requirements.txt pins {pinned})")
gpus = 0
if not any(entry.startswith("torch==") for entry in missing):
    import torch
    import torch.distributed

    print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, {torch.cuda.device_count()} visible GPU(s)",
          file=sys.stderr)
    if not dry_run:
        if torch.version.cuda is None:
            missing.append(f"torch with CUDA (this torch, {torch.__version__}, is a CPU build)")
        elif not torch.cuda.is_available():
            sys.exit("error: torch sees no CUDA device: check the driver (nvidia-smi) and CUDA_VISIBLE_DEVICES; "
                     "or run the CPU-only check: bash scripts/gpu_check.sh --dry-run")
        elif not torch.distributed.is_nccl_available():
            missing.append("torch with NCCL (torch.distributed.is_nccl_available() is False)")
        else:
            gpus = torch.cuda.device_count()
for note in notes:
    print(f"note: version differs: {note}", file=sys.stderr)
if missing:
    print("missing packages:\n  " + "\n  ".join(missing), file=sys.stderr)
    print(f"""
This machine has no internet: build the wheels on a connected machine of the same operating system,
processor type and Python version ({sys.version_info.major}.{sys.version_info.minor}), in a copy of this repository:
    python -m pip wheel -w wheels -r requirements.txt
(pip wheel also builds the packages published as source only, such as pydensecrf2, so no compiler
is needed here; `pip download -d wheels -r requirements.txt` is enough when every package has a
binary wheel. torch from PyPI on Linux x86_64 is a CUDA build; for another CUDA version add
--extra-index-url https://download.pytorch.org/whl/cuXYZ.) Copy wheels/ here, then:
    {sys.executable} -m pip install --no-index --find-links wheels -r requirements.txt""", file=sys.stderr)
    sys.exit(1)
print(gpus)
EOF
); then
  echo "   FAILED: install the packages named above, then run this script again"
  exit 1
fi
if [ "$DRY_RUN" = 1 ]; then GPUS=1; fi
echo "   passed; GPUs used: $([ "$DRY_RUN" = 1 ] && echo 'none (CPU)' || echo "$GPUS")"

# --- 2. toy dataset ------------------------------------------------------------------------------
BATCH=$((2 * GPUS))            # global batch: 2 images per GPU (DataParallel) or per process (torchrun)
IMAGES=$((4 * GPUS))           # train_aug images: 2 iterations per epoch
if [ "$DRY_RUN" = 1 ]; then WORKERS=0; else WORKERS=2; fi
TOY=$WORK/toy
step toy_dataset "$PYTHON" -m wsss.data.toy_voc --out_dir "$TOY" --num_train 4 --num_train_aug "$IMAGES" \
  --num_val 2 --num_test 0 --min_size 64 --max_size 96 --show_progress False

# --- 3. device tests -----------------------------------------------------------------------------
if [ "$DRY_RUN" = 1 ]; then
  step device_tests_selected "$PYTHON" -m pytest -q -p no:cacheprovider --collect-only "$REPO/tests/test_devices.py" -k cuda
  skip device_tests_cuda "needs CUDA; the CPU half runs in the test suite"
else
  step device_tests_cuda "$PYTHON" -m pytest -q -p no:cacheprovider -rs "$REPO/tests/test_devices.py" -k cuda
fi

# --- 4. the stages, each trainer with DataParallel and torchrun, with and without --amp ------------
COMMON=(--pretrained none --data_dir "$TOY" --batch_size "$BATCH" --max_epoch 1 --num_workers "$WORKERS"
        --print_ratio 0.5)
SMALL_CROP=(--image_size 64 --min_image_size 48 --max_image_size 80)
CAMS="cls@train@scale=0.5,1.0,1.5,2.0"
AFFINITY_LABELS="$CAMS@aff_fg=0.30_bg=0.05"
RW="aff@train@beta=10@exp_times=8@rw"
PSEUDO_LABELS="$RW@crf=1"

# trainer TAG SCRIPT FLAGS...: the run TAG (the one later stages read) with DataParallel in float32,
# then the same with bf16 and fp16, and all three under torchrun (the classifier with SyncBatchNorm).
trainer() {
  local tag=$1 script=$2 amp sync
  shift 2
  step "$tag" "$PYTHON" "$REPO/$script" --tag "$tag" "$@" "${COMMON[@]}"
  if [ "$DRY_RUN" = 1 ]; then
    skip "$tag-torchrun" "needs CUDA: torchrun with nccl"
    skip "$tag-amp" "--amp bf16/fp16 runs: the fp16 scaler needs CUDA; both precisions are in the CPU device tests"
    return
  fi
  for amp in bf16 fp16; do
    step "$tag-$amp" "$PYTHON" "$REPO/$script" --tag "$tag-$amp" --amp "$amp" "$@" "${COMMON[@]}"
  done
  sync=()
  if [ "$tag" = cls ]; then sync=(--sync_bn True); fi
  for amp in off bf16 fp16; do
    step "$tag-torchrun-$amp" "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$GPUS" \
      "$REPO/$script" --tag "$tag-torchrun-$amp" --amp "$amp" ${sync[@]+"${sync[@]}"} "$@" "${COMMON[@]}"
  done
}

if [ "$DRY_RUN" != 1 ] && [ "$GPUS" -lt 2 ]; then
  echo "note: one GPU visible: DataParallel wraps nothing (the device tests' DataParallel test is skipped too)"
fi
trainer cls train_classification_with_puzzle.py --architecture resnet_mini "${SMALL_CROP[@]}"
step cam_inference "$PYTHON" "$REPO/inference_classification.py" --architecture resnet_mini --tag cls \
  --domain train_aug --data_dir "$TOY" --num_workers "$WORKERS"
step affinity_labels "$PYTHON" "$REPO/make_affinity_labels.py" --experiment_name "$CAMS" --domain train_aug \
  --data_dir "$TOY" --num_workers "$WORKERS"
trainer aff train_affinitynet.py --architecture resnet_mini --label_name "$AFFINITY_LABELS" \
  --image_size 96 --min_image_size 64 --max_image_size 96
step random_walk "$PYTHON" "$REPO/inference_rw.py" --architecture resnet_mini --model_name aff --cam_dir "$CAMS" \
  --domain train_aug --data_dir "$TOY" --num_workers "$WORKERS"
step pseudo_labels "$PYTHON" "$REPO/make_pseudo_labels.py" --experiment_name "$RW" --domain train_aug \
  --crf_iteration 1 --data_dir "$TOY" --num_workers "$WORKERS"
trainer seg train_segmentation.py --backbone resnet_mini --label_name "$PSEUDO_LABELS" "${SMALL_CROP[@]}"

# --- 5. benchmarks -------------------------------------------------------------------------------
echo "== benchmarks -> $REPORT"
if [ "$DRY_RUN" = 1 ]; then
  BENCH=(--dry_run --device cpu)
else
  BENCH=(--device cuda)
fi
if ! (timeout 900 "$PYTHON" -m bench.bench_gpu "${BENCH[@]}" --checks "$CHECKS" --output "$REPORT" \
      2>&1 | tee "$WORK/logs/benchmarks.log"); then
  echo "   FAILED (log: $WORK/logs/benchmarks.log)"
  FAILED=1
fi

# --- summary -------------------------------------------------------------------------------------
ELAPSED=$(($(date +%s) - STARTED))
echo
echo "checks:"
cut -f1,2 "$CHECKS" | sed 's/\t/: /; s/^/  /'
echo "total $((ELAPSED / 60)) min $((ELAPSED % 60)) s; report $REPORT; logs $WORK/logs"
if [ "$DRY_RUN" != 1 ] && [ "$ELAPSED" -gt 480 ]; then
  echo "note: longer than the 8 minutes this check is sized for"
fi
if [ "$FAILED" = 1 ]; then
  echo "gpu check: FAILED (see the logs above)"
  exit 1
fi
echo "gpu check: passed"
