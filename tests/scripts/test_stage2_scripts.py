"""Stage 2 from the command line (docs/design.md §6.3–6.7): affinity labels, AffinityNet, random walk,
pseudo labels and their evaluation, on the toy dataset with the published-style lines."""
import shutil

import numpy as np
import pytest
from PIL import Image
from stage_runner import TINY_TRAINING, run_stage

from wsss.data.voc import read_image_ids
from wsss.utils.files import load_maps

CAMS = "cls@train@scale=1.0"
AFFINITY_LABELS = "cls@train@scale=1.0@aff_fg=0.40_bg=0.10"
RW = "aff@train@beta=10@exp_times=8@rw"
PSEUDO_LABELS = "aff@train@beta=10@exp_times=8@rw@crf=1"


def affinity_label_line(data_dir, num_workers, *extra):
    return ["make_affinity_labels.py", "--experiment_name", CAMS, "--domain", "train_aug", "--fg_threshold", "0.40",
            "--bg_threshold", "0.10", "--data_dir", data_dir, "--num_workers", num_workers, *extra]


def pseudo_label_line(data_dir, num_workers, *extra):
    return ["make_pseudo_labels.py", "--experiment_name", RW, "--domain", "train_aug", "--threshold", "0.35",
            "--crf_iteration", "1", "--data_dir", data_dir, "--num_workers", num_workers, *extra]


def rw_line(data_dir):
    return ["inference_rw.py", "--architecture", "resnet_mini", "--model_name", "aff", "--cam_dir", CAMS,
            "--domain", "train_aug", "--data_dir", data_dir, "--num_workers", "0"]


@pytest.fixture(scope="module")
def one_thread(toy_voc):
    """One torch thread per stage process: on a shared 2-core machine, oversubscribed threads made the
    tiny runs several times slower."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        yield


@pytest.fixture(scope="module")
def stage2_run(one_thread, toy_voc, tmp_path_factory):
    """CAMs on train_aug, then the four stage-2 scripts, once for the module."""
    work = tmp_path_factory.mktemp("stage2")
    run_stage("train_classification_with_puzzle.py", "--architecture", "resnet_mini", "--tag", "cls",
              "--data_dir", toy_voc, *TINY_TRAINING, cwd=work)
    run_stage("inference_classification.py", "--architecture", "resnet_mini", "--tag", "cls", "--domain", "train_aug",
              "--scales", "1.0", "--data_dir", toy_voc, "--num_workers", "0", cwd=work)
    run_stage(*affinity_label_line(toy_voc, 2), cwd=work)
    run_stage("train_affinitynet.py", "--architecture", "resnet_mini", "--pretrained", "none", "--tag", "aff",
              "--label_name", AFFINITY_LABELS, "--data_dir", toy_voc, "--batch_size", "2", "--max_epoch", "1",
              "--image_size", "96", "--min_image_size", "64", "--max_image_size", "96", "--num_workers", "0", cwd=work)
    run_stage(*rw_line(toy_voc), cwd=work)
    run_stage(*pseudo_label_line(toy_voc, 2), cwd=work)
    return work


def predictions(work, name):
    return work / "experiments" / "predictions" / name


def image_size(data_dir, image_id):
    with Image.open(data_dir / "JPEGImages" / f"{image_id}.jpg") as image:
        return image.size[1], image.size[0]


def folder_bytes(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def mtimes(folder):
    return {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}


def check_label_folder(work, data_dir, name, allow_unsure):
    folder = predictions(work, name)
    ids = read_image_ids("train_aug", data_dir)
    assert sorted(path.name for path in folder.iterdir()) == sorted(f"{image_id}.png" for image_id in ids)
    for image_id in ids:
        with Image.open(folder / f"{image_id}.png") as image:
            assert image.mode == "L"
            label = np.array(image)
        assert label.shape == image_size(data_dir, image_id)
        keys = load_maps(predictions(work, CAMS) / f"{image_id}.npz")["keys"]
        allowed = set(keys.tolist()) | ({255} if allow_unsure else set())
        assert set(np.unique(label).tolist()) <= allowed, image_id


def test_experiment_folders_have_the_published_names(stage2_run):
    folders = {path.name for path in (stage2_run / "experiments" / "predictions").iterdir()}
    assert folders == {CAMS, AFFINITY_LABELS, RW, PSEUDO_LABELS}
    assert (stage2_run / "experiments" / "models" / "aff.pth").is_file()
    assert (stage2_run / "experiments" / "logs" / "aff.txt").is_file()


def test_affinity_labels_are_one_png_per_image(stage2_run, toy_voc):
    check_label_folder(stage2_run, toy_voc, AFFINITY_LABELS, allow_unsure=True)


def test_pseudo_labels_are_one_png_per_image_without_unsure(stage2_run, toy_voc):
    check_label_folder(stage2_run, toy_voc, PSEUDO_LABELS, allow_unsure=False)


def test_random_walk_maps_are_one_npz_per_image(stage2_run, toy_voc):
    folder = predictions(stage2_run, RW)
    ids = read_image_ids("train_aug", toy_voc)
    assert sorted(path.name for path in folder.iterdir()) == sorted(f"{image_id}.npz" for image_id in ids)
    for image_id in ids:
        maps = load_maps(folder / f"{image_id}.npz")
        assert set(maps) == {"keys", "rw"}
        cam_keys = load_maps(predictions(stage2_run, CAMS) / f"{image_id}.npz")["keys"]
        assert np.array_equal(maps["keys"], cam_keys) and maps["keys"][0] == 0
        assert maps["rw"].dtype == np.float32
        assert maps["rw"].shape == (len(maps["keys"]) - 1, *image_size(toy_voc, image_id))
        assert np.isfinite(maps["rw"]).all() and maps["rw"].min() >= 0 and maps["rw"].max() <= 1 + 1e-6


@pytest.mark.parametrize("line, name", [(affinity_label_line, AFFINITY_LABELS), (pseudo_label_line, PSEUDO_LABELS)])
def test_labels_do_not_depend_on_the_worker_count(stage2_run, toy_voc, tmp_path, line, name):
    source = "rw" if name == PSEUDO_LABELS else "cam"
    shutil.copytree(predictions(stage2_run, RW if source == "rw" else CAMS),
                    tmp_path / (RW if source == "rw" else CAMS))
    run_stage(*line(toy_voc, 0, "--pred_dir", tmp_path), cwd=stage2_run)
    assert folder_bytes(tmp_path / name) == folder_bytes(predictions(stage2_run, name))


@pytest.mark.parametrize("line, name", [(affinity_label_line, AFFINITY_LABELS), (pseudo_label_line, PSEUDO_LABELS),
                                        (lambda data_dir, _: rw_line(data_dir), RW)])
def test_rerun_skips_existing_outputs(stage2_run, toy_voc, line, name):
    before = mtimes(predictions(stage2_run, name))
    run_stage(*line(toy_voc, 2), cwd=stage2_run)
    assert mtimes(predictions(stage2_run, name)) == before


@pytest.mark.parametrize("mode, name", [("rw", RW), ("png", PSEUDO_LABELS)])
def test_evaluate_random_walk_and_pseudo_labels(stage2_run, toy_voc, mode, name):
    result = run_stage("evaluate.py", "--experiment_name", name, "--domain", "train", "--mode", mode,
                       "--data_dir", toy_voc / "SegmentationClass", "--num_workers", "2", cwd=stage2_run)
    first = result.stdout.splitlines()[0]
    assert "mIoU=" in first and "FP=" in first and (mode == "rw" or "FN=" in first)
    if mode == "rw":  # a threshold sweep, then the published FP-matched lines
        assert first.startswith("Th=") and "\nOver FP : " in result.stdout and "\nUnder Th=" in result.stdout
    assert (stage2_run / "experiments" / "evaluations" / f"{name}@train.json").is_file()


def assert_one_error_line(result, folder):
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and folder in lines[0], result.stderr


def test_missing_cam_folder_is_one_error_line(stage2_run, toy_voc):
    result = run_stage("make_affinity_labels.py", "--experiment_name", "nope@train@scale=1.0", "--domain", "train_aug",
                       "--data_dir", toy_voc, "--num_workers", "0", cwd=stage2_run, check=False)
    assert_one_error_line(result, "nope@train@scale=1.0")
    assert not predictions(stage2_run, "nope@train@scale=1.0@aff_fg=0.30_bg=0.05").exists()


def test_missing_label_folder_is_one_error_line(stage2_run, toy_voc):
    result = run_stage("train_affinitynet.py", "--architecture", "resnet_mini", "--pretrained", "none", "--tag", "aff2",
                       "--label_name", "nope@aff_fg=0.40_bg=0.10", "--data_dir", toy_voc, "--image_size", "96",
                       "--num_workers", "0", cwd=stage2_run, check=False)
    assert_one_error_line(result, "nope@aff_fg=0.40_bg=0.10")
    assert not (stage2_run / "experiments" / "models" / "aff2.pth").exists()
