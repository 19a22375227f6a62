import json

import numpy as np
import pytest
from stage_runner import TINY_TRAINING, run_stage

from wsss.data.voc import read_image_ids
from wsss.utils.files import load_maps


@pytest.fixture(scope="module")
def stage1_run(toy_voc, tmp_path_factory):
    """Train with puzzle, infer CAMs on train, once for the module."""
    work = tmp_path_factory.mktemp("stage1")
    run_stage("train_classification_with_puzzle.py", "--architecture", "resnet_mini", "--tag", "puzzle",
              "--data_dir", toy_voc, "--alpha", "4.00", "--re_loss_option", "masking", "--re_loss", "L1_Loss",
              "--alpha_schedule", "0.50", *TINY_TRAINING, cwd=work)
    run_stage("inference_classification.py", "--architecture", "resnet_mini", "--tag", "puzzle", "--domain", "train",
              "--scales", "0.5,1.0", "--data_dir", toy_voc, "--num_workers", "0", cwd=work)
    return work


def test_puzzle_training_writes_its_records(stage1_run):
    experiments = stage1_run / "experiments"
    assert (experiments / "models" / "puzzle.pth").is_file()
    history = json.loads((experiments / "data" / "puzzle.json").read_text())
    assert history["args"]["alpha"] == 4.0 and history["validation"][0]["epoch"] == 1
    assert {"class_loss", "p_class_loss", "re_loss", "alpha", "lr"} <= set(history["train"][0])
    assert "evaluation iteration=" in (experiments / "logs" / "puzzle.txt").read_text()
    assert any((experiments / "tensorboards" / "puzzle").iterdir())


def test_cam_inference_writes_one_npz_per_image(stage1_run, toy_voc):
    folder = stage1_run / "experiments" / "predictions" / "puzzle@train@scale=0.5,1.0"
    ids = read_image_ids("train", toy_voc)
    assert sorted(path.stem for path in folder.glob("*.npz")) == sorted(ids)
    maps = load_maps(folder / f"{ids[0]}.npz")
    height, width = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(toy_voc / "JPEGImages" / f"{ids[0]}.jpg")).shape[:2]
    assert maps["keys"][0] == 0 and len(maps["keys"]) == maps["hr_cam"].shape[0] + 1
    assert maps["hr_cam"].shape[1:] == (height, width)
    assert maps["cam"].shape[1:] == ((height - 1) // 4 + 1, (width - 1) // 4 + 1)
    # rerun skips every existing output
    before = {path: path.stat().st_mtime_ns for path in folder.iterdir()}
    run_stage("inference_classification.py", "--architecture", "resnet_mini", "--tag", "puzzle", "--domain", "train",
              "--scales", "0.5,1.0", "--data_dir", toy_voc, "--num_workers", "0", cwd=stage1_run)
    assert {path: path.stat().st_mtime_ns for path in folder.iterdir()} == before


def test_evaluate_cams_prints_the_published_line_and_json(stage1_run, toy_voc):
    result = run_stage("evaluate.py", "--experiment_name", "puzzle@train@scale=0.5,1.0", "--domain", "train",
                       "--data_dir", toy_voc / "SegmentationClass", "--num_workers", "2", cwd=stage1_run)
    first = result.stdout.splitlines()[0]
    assert first.startswith("Th=") and "mIoU=" in first and "FP=" in first and "FN=" in first
    saved = json.loads((stage1_run / "experiments" / "evaluations" / "puzzle@train@scale=0.5,1.0@train.json").read_text())
    assert saved["images"] == len(read_image_ids("train", toy_voc))
    assert len(saved["sweep"]) == 15 and saved["sweep"][-1]["threshold"] == 0.75
    best = [line for line in result.stdout.splitlines() if line.startswith("Best Th=")]
    assert best == [f"Best Th={saved['threshold']:.2f}, mIoU={saved['mIoU']:.3f}%"]


def test_plain_classifier_trains(toy_voc, tmp_path):
    run_stage("train_classification.py", "--architecture", "resnet_mini", "--tag", "plain", "--data_dir", toy_voc,
              *TINY_TRAINING, cwd=tmp_path)
    assert (tmp_path / "experiments" / "models" / "plain.pth").is_file()


@pytest.mark.parametrize("script", ["train_classification.py", "train_classification_with_puzzle.py",
                                    "inference_classification.py", "evaluate.py"])
def test_help_lists_every_flag(script, tmp_path):
    text = run_stage(script, "--help", cwd=tmp_path).stdout
    expected = {"train_classification_with_puzzle.py": ["--num_pieces", "--loss_option", "--level", "--re_loss",
                                                         "--re_loss_option", "--alpha", "--alpha_schedule", "--augment",
                                                         "--print_ratio", "--nesterov", "--wd", "--min_image_size"],
                "train_classification.py": ["--architecture", "--mode", "--batch_size", "--max_epoch", "--lr", "--tag"],
                "inference_classification.py": ["--architecture", "--mode", "--tag", "--domain", "--scales", "--data_dir"],
                "evaluate.py": ["--experiment_name", "--domain", "--threshold", "--gt_dir", "--data_dir", "--mode", "--max_th"]}
    for flag in expected[script]:
        assert flag in text


def test_published_lines_with_resnest101(toy_voc, tmp_path):
    """docs/design.md §1 lines 1–2 as written, plus only the scratch flag and reduced sizes."""
    run_stage("train_classification_with_puzzle.py", "--architecture", "resnest101", "--re_loss_option", "masking",
              "--re_loss", "L1_Loss", "--alpha_schedule", "0.50", "--alpha", "4.00", "--tag", "ResNeSt101@Puzzle@optimal",
              "--data_dir", toy_voc, "--pretrained", "none", "--batch_size", "4", "--max_epoch", "1",
              "--image_size", "64", "--min_image_size", "48", "--max_image_size", "64", "--num_workers", "0", cwd=tmp_path)
    run_stage("inference_classification.py", "--architecture", "resnest101", "--tag", "ResNeSt101@Puzzle@optimal",
              "--domain", "train", "--data_dir", toy_voc, "--scales", "0.5,1.0", "--num_workers", "0", cwd=tmp_path)
    folder = tmp_path / "experiments" / "predictions" / "ResNeSt101@Puzzle@optimal@train@scale=0.5,1.0"
    assert len(list(folder.glob("*.npz"))) == len(read_image_ids("train", toy_voc))
