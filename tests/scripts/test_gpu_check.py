"""scripts/gpu_check.sh: its CPU-only dry run end to end (so that the script cannot rot on machines
without a GPU), its report of missing packages, and the benchmark's refusal to put dry-run numbers
where the GPU results go."""
import os
import re
import subprocess

import pytest
from stage_runner import REPOSITORY

from bench import bench_gpu

SCRIPT = REPOSITORY / "scripts" / "gpu_check.sh"
GPU_RESULT = REPOSITORY / "bench" / "results" / "gpu.md"
CHAIN = ("toy_dataset", "device_tests_selected", "cls", "cam_inference", "affinity_labels", "aff", "random_walk",
         "pseudo_labels", "seg")


def run_script(*arguments, work, **environment):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", GPU_CHECK_WORK=str(work), **environment)
    return subprocess.run(["bash", str(SCRIPT), *arguments], capture_output=True, text=True, timeout=400, env=env,
                          cwd=work)


def snapshot(path):
    return path.stat().st_mtime_ns if path.exists() else None


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("gpu_check")
    before = snapshot(GPU_RESULT)
    result = run_script("--dry-run", work=work)
    return work, result, before


def checks(work):
    """{step: result} from the checks file the script writes."""
    rows = [line.split("\t") for line in (work / "checks.tsv").read_text().splitlines()]
    return {row[0]: row[1] for row in rows}


def test_dry_run_runs_the_stage_chain_on_the_cpu(dry_run):
    work, result, _ = dry_run
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert result.stdout.rstrip().endswith("gpu check: passed")
    results = checks(work)
    assert {step: results.get(step) for step in CHAIN} == {step: "passed" for step in CHAIN}
    experiments = work / "run" / "experiments"
    for tag in ("cls", "aff", "seg"):
        assert (experiments / "models" / f"{tag}.pth").is_file()
    predictions = experiments / "predictions"
    folders = {"cls@train@scale=0.5,1.0,1.5,2.0": ".npz", "cls@train@scale=0.5,1.0,1.5,2.0@aff_fg=0.30_bg=0.05": ".png",
               "aff@train@beta=10@exp_times=8@rw": ".npz", "aff@train@beta=10@exp_times=8@rw@crf=1": ".png"}
    for folder, suffix in folders.items():
        assert len(list((predictions / folder).glob(f"*{suffix}"))) == 4, folder  # the 4 train_aug images
    selected = re.search(r"(\d+)/\d+ tests collected", (work / "logs" / "device_tests_selected.log").read_text())
    assert selected and int(selected.group(1)) >= 10  # the CUDA half that a GPU machine runs


def test_dry_run_names_every_step_it_skips(dry_run):
    work, result, _ = dry_run
    results = checks(work)
    skipped = {step for step, outcome in results.items() if outcome.startswith("skipped")}
    assert skipped == {"device_tests_cuda", "cls-torchrun", "cls-amp", "aff-torchrun", "aff-amp", "seg-torchrun",
                       "seg-amp"}
    for step in skipped:
        assert f"== {step}: skipped (" in result.stdout
    assert "torchrun with nccl" in results["cls-torchrun"]


def test_dry_run_writes_its_report_to_the_working_folder_only(dry_run):
    work, result, before = dry_run
    assert snapshot(GPU_RESULT) == before  # no dry-run numbers where the GPU results go
    report = (work / "gpu.md").read_text()
    assert report.startswith("# GPU check: benchmarks (DRY RUN")
    for title in ("## Checks run before the benchmarks", "## Random walk: sparse vs dense", "## CAM inference",
                  "## Classifier training", "## DeepLabv3+ inference"):
        assert title in report
    assert "| cls | passed |" in report and "| cls-torchrun | skipped: needs CUDA" in report
    walk = re.search(r"^\| 12×16 \| 192 \|.*\| ([0-9.e+-]+) \|$", report, re.MULTILINE)
    assert walk and float(walk.group(1)) < 1e-3  # sparse and dense walks agree
    speeds = re.findall(r"^\| (?:float32|bf16 autocast) \| (?:contiguous \| |channels-last \| )?([0-9.]+) \|", report,
                        re.MULTILINE)
    assert len(speeds) == 2 + 4 + 2 and all(float(speed) > 0 for speed in speeds)


def test_missing_packages_are_named_with_how_to_bring_them(tmp_path):
    shadow = tmp_path / "shadow" / "resnest"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('resnest is not installed here')\n")
    (tmp_path / "work").mkdir()
    result = run_script(work=tmp_path / "work", GPU_CHECK_DRY_RUN="1", PYTHONPATH=str(shadow.parent))
    assert result.returncode == 1
    assert "missing packages:\n  resnest==0.0.5 (ImportError: resnest is not installed here)" in result.stderr
    assert "pip wheel -w wheels -r requirements.txt" in result.stderr
    assert "pip install --no-index --find-links wheels -r requirements.txt" in result.stderr
    assert not (tmp_path / "work" / "toy").exists()  # stopped before any other step


def test_unknown_argument_prints_the_usage(tmp_path):
    result = run_script("--dryrun", work=tmp_path)
    assert result.returncode == 2 and "usage: bash scripts/gpu_check.sh [--dry-run]" in result.stderr


def test_benchmark_refuses_dry_run_numbers_in_the_gpu_results():
    with pytest.raises(SystemExit, match="real GPU measurements only"):
        bench_gpu.main(bench_gpu.build_parser().parse_args(["--dry_run", "--device", "cpu",
                                                            "--output", str(GPU_RESULT)]))
    with pytest.raises(SystemExit, match="add --dry_run"):
        bench_gpu.main(bench_gpu.build_parser().parse_args(["--device", "cpu", "--output", "elsewhere.md"]))
