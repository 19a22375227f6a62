"""--eval_images: the trainers score only the first N images of their evaluation list."""
import shutil

import pytest
from stage_runner import TINY_TRAINING, run_stage
from torch.utils.data import DataLoader

import train_classification
import train_segmentation
from wsss.data.datasets import first_items
from wsss.data.voc import read_image_ids
from wsss.methods import get_method
from wsss.stages import classification, segmentation


def test_first_items():
    data = ["a", "b", "c", "d"]
    assert first_items(data, 0) is data and first_items(data, 4) is data and first_items(data, 9) is data
    assert list(first_items(data, 2)) == ["a", "b"] and len(first_items(data, 3)) == 3


def count_scored_images(monkeypatch, module, name):
    """Wrap the evaluation `module.name` (model, …, loader, …) to record its image count per call."""
    scored, evaluate = [], getattr(module, name)

    def spy(*args, **options):
        loader = next(arg for arg in args if isinstance(arg, DataLoader))
        scored.append(len(loader.dataset))
        return evaluate(*args, **options)

    monkeypatch.setattr(module, name, spy)
    return scored


@pytest.mark.parametrize("count, expected", [(3, [3]), (0, [4])])
def test_the_classifier_scores_the_first_images_of_its_list(toy_voc, tmp_path, monkeypatch, one_thread, count,
                                                            expected):
    scored = count_scored_images(monkeypatch, classification, "evaluate_cams")
    monkeypatch.chdir(tmp_path)
    args = train_classification.build_parser().parse_args(
        ["--architecture", "resnet_mini", "--tag", "limited", "--data_dir", str(toy_voc), *TINY_TRAINING,
         "--eval_images", str(count)])
    classification.train(args, get_method("baseline"))
    assert scored == expected  # one epoch; the toy train list has 4 images


def test_a_negative_count_is_refused_in_one_line(toy_voc, tmp_path):
    for script, extra in (("train_classification.py", ["--architecture", "resnet_mini", "--tag", "bad"]),
                          ("train_segmentation.py", ["--tag", "bad", "--label_name", "labels"])):
        result = run_stage(script, "--data_dir", toy_voc, *extra, "--eval_images", "-1", cwd=tmp_path, check=False)
        assert result.returncode == 2, result.stderr[-2000:]  # a StageError
        assert result.stderr.strip().splitlines()[-1].endswith(
            "--eval_images -1: must be 0 (every image) or a positive count")
        models = tmp_path / "experiments" / "models"
        assert not models.exists() or not any(models.iterdir())


def test_deeplab_scores_the_first_images_of_val(toy_voc, tmp_path, monkeypatch, one_thread):
    labels = tmp_path / "experiments" / "predictions" / "labels"
    labels.mkdir(parents=True)
    for image_id in read_image_ids("train_aug", toy_voc):  # the toy ground truth as pseudo labels
        shutil.copy(toy_voc / "SegmentationClass" / f"{image_id}.png", labels / f"{image_id}.png")
    scored = count_scored_images(monkeypatch, segmentation, "evaluate")
    monkeypatch.chdir(tmp_path)
    args = train_segmentation.build_parser().parse_args(
        ["--backbone", "resnet_mini", "--tag", "limited", "--label_name", "labels", "--data_dir", str(toy_voc),
         *TINY_TRAINING, "--eval_images", "2"])
    segmentation.train(args)
    assert scored == [2]  # of the 4 toy val images
