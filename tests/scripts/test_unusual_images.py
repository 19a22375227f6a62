"""Images with no positive class (CAM keys [0]) and images larger than inference_rw's 512 canvas go
through the stage-2 scripts as README describes: an empty-keys image gets an empty random-walk map
(still written) and an all-background label; a large image is walked on a canvas grown to a multiple
of 16 and keeps its full size."""
import pathlib
import shutil

import numpy as np
import pytest
import workspace
from PIL import Image

from wsss.algorithms.cam import strided_size
from wsss.data.voc import read_image_ids
from wsss.utils.files import load_label_png, load_maps, save_cams

BIG = "big_000001"
BIG_SIZE = (48, 600)  # height, width: wider than the 512 canvas
BIG_CLASS = 12  # dog (class id 12 = index 11 + 1)
DOMAIN = "unusual"
RW = "aff@val@beta=10@exp_times=3@rw"


@pytest.fixture(scope="module")
def run(toy_voc, tmp_path_factory):
    base = tmp_path_factory.mktemp("unusual")
    data = pathlib.Path(shutil.copytree(toy_voc, base / "voc"))
    root = workspace.build(data, base / "root")
    empty = read_image_ids("train_aug", data)[0]
    height, width = BIG_SIZE
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(data / "JPEGImages" / f"{BIG}.jpg")
    mask = np.zeros(BIG_SIZE, np.uint8)
    mask[10:40, 100:300] = BIG_CLASS
    Image.fromarray(mask, mode="L").save(data / "SegmentationClass" / f"{BIG}.png")
    (data / "ImageSets" / "Segmentation" / f"{DOMAIN}.txt").write_text(f"{empty}\n{BIG}\n")
    cams = root / "experiments" / "predictions" / workspace.CAMS
    with Image.open(data / "JPEGImages" / f"{empty}.jpg") as image:
        empty_size = (image.height, image.width)
    save_cams(cams / f"{empty}.npz", [0], np.zeros((0, *strided_size(*empty_size)), np.float32),
              np.zeros((0, *empty_size), np.float32))
    big_cam = np.zeros((1, height, width), np.float32)
    big_cam[0, 10:40, 100:300] = 1
    save_cams(cams / f"{BIG}.npz", [0, BIG_CLASS], big_cam[:, ::4, ::4], big_cam)
    with pytest.MonkeyPatch.context() as monkeypatch:
        for script, argv in [
            ("inference_rw.py", workspace.command("inference_rw.py", data, domain=DOMAIN)),
            ("make_pseudo_labels.py", ["--experiment_name", RW, "--domain", DOMAIN, "--crf_iteration", "2",
                                       "--data_dir", str(data), "--num_workers", "0"]),
            ("make_affinity_labels.py", workspace.command("make_affinity_labels.py", data, domain=DOMAIN)),
            ("evaluate.py", ["--experiment_name", RW, "--domain", DOMAIN, "--mode", "rw", "--data_dir",
                             str(data / "SegmentationClass"), "--num_workers", "1"]),
        ]:
            assert workspace.run_in_process(script, argv, root, monkeypatch) == 0, script
    predictions = root / "experiments" / "predictions"
    return dict(empty=empty, empty_size=empty_size, rw=predictions / RW, pseudo=predictions / f"{RW}@crf=2",
                affinity=workspace.output("make_affinity_labels.py", root), root=root)


def test_no_positive_class_gives_an_empty_walk_and_background_labels(run):
    maps = load_maps(run["rw"] / f"{run['empty']}.npz")
    assert maps["keys"].tolist() == [0] and maps["rw"].shape == (0, *run["empty_size"])
    for folder in (run["pseudo"], run["affinity"]):
        label = load_label_png(folder / f"{run['empty']}.png")
        assert label.shape == run["empty_size"] and not label.any()


def test_an_image_wider_than_the_canvas_keeps_its_size(run):
    maps = load_maps(run["rw"] / f"{BIG}.npz")
    assert maps["keys"].tolist() == [0, BIG_CLASS] and maps["rw"].shape == (1, *BIG_SIZE)
    assert np.isfinite(maps["rw"]).all() and maps["rw"].max() == pytest.approx(1.0)
    for folder in (run["pseudo"], run["affinity"]):
        label = load_label_png(folder / f"{BIG}.png")
        assert label.shape == BIG_SIZE and set(np.unique(label).tolist()) <= {0, BIG_CLASS, 255}


def test_both_are_scored(run):
    evaluation = run["root"] / "experiments" / "evaluations" / f"{RW}@{DOMAIN}.json"
    assert evaluation.is_file()
