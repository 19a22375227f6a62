import json
import shutil

import numpy as np
import pytest
from PIL import Image
from stage_runner import TINY_TRAINING, run_stage

import inference_segmentation
import train_segmentation
from wsss.data.voc import read_image_ids
from wsss.utils.files import load_label_png

LABEL_NAME = "fake@train@beta=10@exp_times=8@rw@crf=1"
INFERENCE = ["--backbone", "resnet_mini", "--tag", "seg", "--scale", "0.5,1.0", "--iteration", "1",
             "--num_workers", "0"]


def write_pseudo_labels(toy_voc, work):
    """Fake pseudo labels: the toy ground-truth masks of the train_aug images."""
    folder = work / "experiments" / "predictions" / LABEL_NAME
    folder.mkdir(parents=True)
    for image_id in read_image_ids("train_aug", toy_voc):
        shutil.copy(toy_voc / "SegmentationClass" / f"{image_id}.png", folder / f"{image_id}.png")
    return folder


@pytest.fixture(scope="module")
def stage3_run(toy_voc, tmp_path_factory):
    """Train on fake pseudo labels, then infer on val as the published command line does: `--scale`
    and no --data_dir (its default, ../VOCtrainval_11-May-2012/, links to the toy dataset)."""
    root = tmp_path_factory.mktemp("stage3")
    (root / "VOCtrainval_11-May-2012").symlink_to(toy_voc, target_is_directory=True)
    work = root / "repository"
    work.mkdir()
    write_pseudo_labels(toy_voc, work)
    run_stage("train_segmentation.py", "--backbone", "resnet_mini", "--mode", "fix", "--use_gn", "True", "--tag", "seg",
              "--label_name", LABEL_NAME, "--data_dir", toy_voc, *TINY_TRAINING, cwd=work)
    run_stage("inference_segmentation.py", *INFERENCE, cwd=work)
    return work


def test_training_writes_its_records(stage3_run):
    experiments = stage3_run / "experiments"
    assert (experiments / "models" / "seg.pth").is_file()
    history = json.loads((experiments / "data" / "seg.json").read_text())
    assert history["args"]["label_name"] == LABEL_NAME and history["args"]["detect_anomaly"] is False
    assert history["train"][-1]["iteration"] == 4 and np.isfinite(history["train"][-1]["total"])  # 8 images / 2
    assert len(history["validation"]) == 1 and 0 <= history["validation"][0]["mIoU"] <= 100
    assert "evaluation iteration=" in (experiments / "logs" / "seg.txt").read_text()
    assert any((experiments / "tensorboards" / "seg").iterdir())


def test_inference_writes_one_label_png_per_image_and_resumes(stage3_run, toy_voc):
    folder = stage3_run / "experiments" / "predictions" / "seg@val@scale=0.5,1.0@iteration=1"
    ids = read_image_ids("val", toy_voc)
    assert sorted(path.name for path in folder.iterdir()) == sorted(f"{image_id}.png" for image_id in ids)
    for image_id in ids:
        label = load_label_png(folder / f"{image_id}.png")
        with Image.open(toy_voc / "JPEGImages" / f"{image_id}.jpg") as image:
            assert label.shape == (image.height, image.width)
        assert label.max() <= 20
    before = {path: path.stat().st_mtime_ns for path in folder.iterdir()}
    run_stage("inference_segmentation.py", *INFERENCE, cwd=stage3_run)
    assert {path: path.stat().st_mtime_ns for path in folder.iterdir()} == before


def test_test_split_gets_colour_pngs(stage3_run, toy_voc):
    run_stage("inference_segmentation.py", "--backbone", "resnet_mini", "--tag", "seg", "--domain", "test",
              "--scales", "1.0", "--num_workers", "2", "--data_dir", toy_voc, cwd=stage3_run)
    folder = stage3_run / "experiments" / "predictions" / "seg@test@scale=1.0@iteration=0"
    paths = sorted(folder.iterdir())
    assert len(paths) == len(read_image_ids("test", toy_voc))
    with Image.open(paths[0]) as written:
        assert written.mode == "P"


def test_missing_pseudo_label_stops_training(toy_voc, tmp_path):
    folder = write_pseudo_labels(toy_voc, tmp_path)
    first = read_image_ids("train_aug", toy_voc)[0]
    (folder / f"{first}.png").unlink()
    result = run_stage("train_segmentation.py", "--backbone", "resnet_mini", "--tag", "x", "--label_name", LABEL_NAME,
                       "--data_dir", toy_voc, *TINY_TRAINING, cwd=tmp_path, check=False)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"{first}.png: pseudo label missing (1 of 8 train_aug images" in errors[0]
    assert not (tmp_path / "experiments" / "models").exists()


def test_published_defaults_and_scale_prefix():
    training = train_segmentation.build_parser().parse_args([])
    assert (training.architecture, training.backbone, training.mode, training.use_gn) == ("DeepLabv3+", "resnest269",
                                                                                         "fix", True)
    assert (training.batch_size, training.max_epoch, training.lr, training.wd, training.nesterov) == (32, 50, 0.007,
                                                                                                     4e-5, True)
    assert (training.image_size, training.min_image_size, training.max_image_size) == (512, 256, 1024)
    assert (training.print_ratio, training.pred_dir, training.detect_anomaly) == (0.1, "./experiments/predictions/",
                                                                                  False)
    inference = inference_segmentation.build_parser().parse_args(["--scale", "0.5,1.0,1.5,2.0", "--use_gn", "False"])
    assert inference.scales == "0.5,1.0,1.5,2.0" and inference.use_gn is False
    assert (inference.domain, inference.iteration, inference.mode) == ("val", 0, "fix")
    assert inference.data_dir == "../VOCtrainval_11-May-2012/"
