import shutil

import pytest
from stage_runner import TINY_TRAINING, run_stage

PUZZLE = "train_classification_with_puzzle.py"


def expect_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def copy_dataset(toy_voc, tmp_path):
    target = tmp_path / "voc"
    shutil.copytree(toy_voc, target)
    return target


def test_missing_data_dir(tmp_path):
    result = run_stage(PUZZLE, "--architecture", "resnet_mini", "--tag", "x", "--data_dir", tmp_path / "nowhere",
                       *TINY_TRAINING, cwd=tmp_path, check=False)
    expect_error(result, "nowhere", "data_dir not found")
    assert not (tmp_path / "experiments" / "models").exists() or not any((tmp_path / "experiments" / "models").iterdir())


def test_missing_image_and_annotation_and_unknown_class(toy_voc, tmp_path):
    data = copy_dataset(toy_voc, tmp_path)
    first = (data / "ImageSets" / "Segmentation" / "train_aug.txt").read_text().split()[0]
    (data / "Annotations" / f"{first}.xml").unlink()
    result = run_stage(PUZZLE, "--architecture", "resnet_mini", "--tag", "x", "--data_dir", data, *TINY_TRAINING,
                       cwd=tmp_path, check=False)
    expect_error(result, f"{first}.xml", "annotation not found")
    shutil.copy(toy_voc / "Annotations" / f"{first}.xml", data / "Annotations" / f"{first}.xml")
    xml = data / "Annotations" / f"{first}.xml"
    text = xml.read_text()
    start = text.index("<name>") + len("<name>")
    xml.write_text(text[:start] + "unicorn" + text[text.index("</name>", start):])
    result = run_stage(PUZZLE, "--architecture", "resnet_mini", "--tag", "x", "--data_dir", data, *TINY_TRAINING,
                       cwd=tmp_path, check=False)
    expect_error(result, f"{first}.xml", "unicorn")


def test_corrupt_image(toy_voc, tmp_path):
    data = copy_dataset(toy_voc, tmp_path)
    first = (data / "ImageSets" / "Segmentation" / "train.txt").read_text().split()[0]
    (data / "JPEGImages" / f"{first}.jpg").write_bytes(b"not a jpeg")
    flags = [flag if flag != "0" else "1" for flag in TINY_TRAINING]  # one loader worker process
    result = run_stage(PUZZLE, "--architecture", "resnet_mini", "--tag", "x", "--data_dir", data, *flags,
                       cwd=tmp_path, check=False)
    expect_error(result, f"{first}.jpg", "unreadable image")


def test_missing_list_and_checkpoint(toy_voc, tmp_path):
    result = run_stage("inference_classification.py", "--architecture", "resnet_mini", "--tag", "never_trained",
                       "--data_dir", toy_voc, "--num_workers", "0", cwd=tmp_path, check=False)
    expect_error(result, "never_trained.pth", "checkpoint not found")
    result = run_stage("evaluate.py", "--experiment_name", "nothing", "--data_dir", toy_voc / "SegmentationClass",
                       cwd=tmp_path, check=False)
    expect_error(result, "nothing", "prediction folder not found")


@pytest.mark.parametrize("flags,fragment", [
    (["--image_size", "72"], "multiple of 32"),
    (["--loss_option", "cl_pcl_bogus"], "bogus"),
    (["--augment", "cutmix"], "cutmix"),
    (["--batch_size", "999"], "fewer than --batch_size"),
])
def test_bad_flags(toy_voc, tmp_path, flags, fragment):
    result = run_stage(PUZZLE, "--architecture", "resnet_mini", "--tag", "x", "--data_dir", toy_voc, *TINY_TRAINING,
                       *flags, cwd=tmp_path, check=False)
    expect_error(result, fragment)
