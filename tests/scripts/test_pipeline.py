"""run_pipeline.py end to end on the tiny toy dataset: interrupted midway (Ctrl-C), rerun to the end,
rerun again."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from stage_runner import PROGRESS_LINE, REPOSITORY, ctrl_c_as_in_a_terminal

import run_pipeline
from wsss.data import coco

TINY = ["--generate_toy", "False", "--batch_size", "2", "--seg_batch_size", "2", "--image_size", "96",
        "--min_image_size", "64", "--max_image_size", "112", "--cls_epochs", "1", "--aff_epochs", "1",
        "--seg_epochs", "1", "--scales", "1.0", "--num_workers", "0"]
STAGES = ["classifier Toy@Puzzle", "CAMs Toy@Puzzle", "affinity labels", "AffinityNet", "random walk",
          "pseudo labels", "DeepLabv3+", "segmentation val", "segmentation train"]


def pipeline(data_dir, *extra):
    command = [sys.executable, str(REPOSITORY / "run_pipeline.py"), "--data_dir", str(data_dir), *TINY, *extra]
    environment = dict(os.environ, PYTHONWARNINGS="ignore", CUDA_VISIBLE_DEVICES="")
    return command, environment


def test_presets_fill_only_unset_flags_and_voc_keeps_published_defaults():
    args = run_pipeline.apply_preset(run_pipeline.build_parser().parse_args(["--preset", "voc", "--tag", "R"]))
    assert args.tag == "R" and args.architecture == "resnest101" and args.pretrained == "imagenet"
    plan = run_pipeline.table2(args)
    classifier = plan.stages[0][2]
    # unset sizes, epochs, lr and momentum are not passed: the scripts' published defaults apply
    for flag in ("--batch_size", "--image_size", "--max_epoch", "--lr", "--momentum"):
        assert flag not in classifier
    assert classifier[classifier.index("--alpha") + 1] == 4.0
    affinity = dict(zip(plan.stages[3][2][::2], plan.stages[3][2][1::2]))
    assert affinity["--pretrained"] == "imagenet" and affinity["--tag"] == "AffinityNet@R"
    assert [stage[1] for stage in plan.stages] == [
        "train_classification_with_puzzle.py", "inference_classification.py", "make_affinity_labels.py",
        "train_affinitynet.py", "inference_rw.py", "make_pseudo_labels.py", "train_segmentation.py",
        "inference_segmentation.py", "inference_segmentation.py"]


@pytest.mark.parametrize("method, refine", [("puzzle", "perimeterfit"), ("cpn", "none")])
def test_eval_images_goes_to_the_trainers_that_evaluate_every_epoch(method, refine):
    argv = ["--dataset", "coco14", "--eval_images", "7", "--method", method, "--refine", refine]
    args = run_pipeline.apply_preset(run_pipeline.build_parser().parse_args(argv))
    plan = run_pipeline.cpn_chain(args) if method == "cpn" else run_pipeline.table2(args)
    limited = [stage.script for stage in plan.stages
               if "--eval_images" in stage.flags and stage.flags[stage.flags.index("--eval_images") + 1] == 7]
    expected = {"puzzle": ["train_classification_with_puzzle.py", "train_segmentation.py", "train_segmentation.py"],
                "cpn": ["train_cpn.py", "train_segmentation.py"]}
    assert limited == expected[method]
    unset = run_pipeline.table2(run_pipeline.apply_preset(run_pipeline.build_parser().parse_args([])))
    assert all("--eval_images" not in stage.flags for stage in unset.stages)


def test_table1_plan_trains_the_four_loss_options():
    args = run_pipeline.apply_preset(run_pipeline.build_parser().parse_args(["--table", "1"]))
    plan = run_pipeline.table1(args)
    scripts = [(stage[1], stage[2][stage[2].index("--loss_option") + 1] if "--loss_option" in stage[2] else None)
               for stage in plan.stages if stage[0].startswith("classifier")]
    assert scripts == [("train_classification.py", None), ("train_classification_with_puzzle.py", "cl_pcl"),
                       ("train_classification_with_puzzle.py", "cl_re"), ("train_classification_with_puzzle.py", "cl_pcl_re")]
    assert list(plan.evaluations) == ["cls", "cls+pcl", "cls+re", "cls+pcl+re"]
    assert all(domain == "train" and mode == "npy" for _, mode, domain in plan.evaluations.values())


def stage_processes(marker):
    """Live processes whose command line holds `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read().decode(errors="replace")
        except OSError:
            continue
        if entry.isdigit() and marker in command and "pytest" not in command:
            found.append(int(entry))
    return found


def test_pipeline_interrupted_midway_then_rerun_finishes_and_a_third_run_skips_everything(toy_voc, tmp_path):
    command, environment = pipeline(toy_voc)
    # 1. Ctrl-C (SIGINT to the foreground process group) once the CAM stage has written its first file
    process = subprocess.Popen(command, cwd=tmp_path, env=environment, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=ctrl_c_as_in_a_terminal)
    cam_dir = tmp_path / "experiments" / "predictions" / "Toy@Puzzle@train@scale=1.0"
    deadline = time.time() + 600
    while not (cam_dir.is_dir() and any(cam_dir.glob("*.npz"))):
        assert process.poll() is None, "the pipeline ended before the CAM stage wrote a file"
        assert time.time() < deadline, "no CAM file after 10 minutes"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode == 130
    messages = [line for line in stderr.splitlines() if line.strip() and not PROGRESS_LINE.search(line)]
    # on an idle machine the eight tiny CAM files may all be written before the signal lands: then the
    # next stage is the one interrupted (test_interruption.py stops each stage family midway)
    assert len(messages) == 1 and messages[0].startswith("interrupted during stage '"), stderr[-2000:]
    deadline = time.time() + 15
    while stage_processes(str(toy_voc)) and time.time() < deadline:  # the stage and its workers stop with it
        time.sleep(0.2)
    assert stage_processes(str(toy_voc)) == []

    # 2. rerun: the classifier is skipped, the CAM stage continues, everything else runs
    second = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "== classifier Toy@Puzzle: complete, skipped" in second.stdout
    assert "stage times (s): " in second.stdout
    table = second.stdout[second.stdout.index("Table 2"):]
    for row in ("CAM ", "CAM+RW ", "CAM+RW+dCRF", "DeepLabv3+ val"):
        assert row in table
    summary = json.loads((tmp_path / "experiments" / "evaluations" / "Toy@table2.json").read_text())
    assert set(summary) == {"preset", "dataset", "CAM", "CAM+RW", "CAM+RW+dCRF", "DeepLabv3+ val"}
    assert summary["dataset"] == "voc12"
    for name in ("samples.png", "class_iou.png"):
        with Image.open(tmp_path / "experiments" / "reports" / "Toy" / name) as picture:
            assert picture.mode == "RGB" and min(picture.size) > 100
            assert np.asarray(picture).std() > 10  # drawn, not blank

    # 3. a third run skips every stage and prints the same table
    third = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600)
    assert third.returncode == 0, third.stderr[-3000:]
    for stage in STAGES:
        assert f"== {stage}: complete, skipped" in third.stdout
    assert third.stdout[third.stdout.index("Table 2"):].splitlines()[:6] == table.splitlines()[:6]


def test_coco_plan_renders_the_masks_first_and_passes_the_dataset_to_every_stage():
    args = run_pipeline.apply_preset(run_pipeline.build_parser().parse_args(["--dataset", "coco14"]))
    assert args.data_dir == "toy_coco" and args.tag == "Toy-coco14"
    plan = run_pipeline.table2(args)
    assert [stage.script for stage in plan.stages[:2]] == ["make_coco_masks.py", "train_classification_with_puzzle.py"]
    for stage in plan.stages[1:]:
        stage_flags = dict(zip(stage.flags[::2], stage.flags[1::2]))
        assert stage_flags["--dataset"] == "coco14" and stage_flags["--data_dir"] == "toy_coco", stage.name
    assert "--dataset" not in plan.stages[0].flags  # make_coco_masks.py is COCO's own script
    done = plan.stages[0].done  # every mask and both label indexes (tests/scripts/test_make_coco_masks.py)
    assert (done.func, done.args) == (coco.ground_truth_ready, ("toy_coco",))
    report = dict(zip(plan.report[::2], plan.report[1::2]))
    assert report["--dataset"] == "coco14"
    # VOC plans name no dataset: the printed command lines stay the published ones
    voc = run_pipeline.table2(run_pipeline.apply_preset(run_pipeline.build_parser().parse_args([])))
    assert voc.stages[0].script == "train_classification_with_puzzle.py"
    assert all("--dataset" not in stage.flags for stage in voc.stages)
