"""The Puzzle-CAM and baseline entries of the CAM-method registry: the loss combination of one
puzzle step computed by hand, and the registry's contract."""
import argparse
import pathlib

import numpy as np
import pytest
import torch

from wsss.methods import METHODS, get_method
from wsss.methods.base import Schedule
from wsss.utils.cli import add_training_arguments

REPOSITORY = pathlib.Path(__file__).resolve().parents[2]


class MeanShiftNet(torch.nn.Module):
    """features = x + (spatial mean of x): not local, so a piece's features differ from the whole
    image's features on that piece, and the reconstruction loss is not zero."""

    def forward(self, images, with_cam=False):
        features = images + images.mean(dim=(2, 3), keepdim=True)
        logits = features.mean(dim=(2, 3))
        return (logits, features) if with_cam else logits


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def soft_margin(logits, labels):
    """Multilabel soft margin, mean over classes then samples."""
    per_class = -(labels * np.log(sigmoid(logits)) + (1 - labels) * np.log(sigmoid(-logits)))
    return per_class.mean()


def parse(method, argv):
    parser = argparse.ArgumentParser()
    add_training_arguments(parser)
    method.add_arguments(parser)
    return parser.parse_args(argv)


def test_puzzle_step_combines_the_four_terms_as_published():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 3, 4, 4))
    labels = np.array([[1, 0, 1], [0, 1, 0]], dtype=np.float64)
    args = parse(get_method("puzzle"), ["--loss_option", "cl_pcl_re_conf", "--alpha", "4.0",
                                        "--alpha_schedule", "0.5", "--image_size", "32"])
    schedule = Schedule(iteration=10, max_iteration=40, batch_size=2)
    result = get_method("puzzle").step_losses(MeanShiftNet(), [torch.tensor(images), torch.tensor(labels)],
                                             args, schedule)

    # by hand: whole-image features, then each 2×2 quarter shifted by its own mean, re-assembled
    features = images + images.mean(axis=(2, 3), keepdims=True)
    merged = np.empty_like(images)
    quarter_logits = []
    for row in range(2):
        for col in range(2):
            block = images[:, :, 2 * row:2 * row + 2, 2 * col:2 * col + 2]
            shifted = block + block.mean(axis=(2, 3), keepdims=True)
            merged[:, :, 2 * row:2 * row + 2, 2 * col:2 * col + 2] = shifted
            quarter_logits.append(shifted.mean(axis=(2, 3)))
    alpha = 4.0 * 10 / (40 * 0.5)  # the linear ramp, halfway up
    class_loss = soft_margin(features.mean(axis=(2, 3)), labels)
    p_class_loss = soft_margin(merged.mean(axis=(2, 3)), labels)
    re_loss = (np.abs(features - merged) * labels[:, :, None, None]).mean()  # "masking": absent classes count as 0
    probabilities = sigmoid(np.concatenate(quarter_logits))
    conf_loss = -(probabilities * np.log(probabilities + 1e-5)).sum(axis=1).mean()

    assert result["alpha"] == pytest.approx(alpha)
    assert result["class_loss"].item() == pytest.approx(class_loss, rel=1e-6)
    assert result["p_class_loss"].item() == pytest.approx(p_class_loss, rel=1e-6)
    assert result["re_loss"].item() == pytest.approx(re_loss, rel=1e-6) and re_loss > 0.1
    assert result["conf_loss"].item() == pytest.approx(conf_loss, rel=1e-6)
    assert result["total"].item() == pytest.approx(class_loss + p_class_loss + alpha * re_loss + conf_loss, rel=1e-6)


def test_terms_left_out_of_the_loss_option_are_zero():
    images, labels = torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.tensor([[1., 0., 1.], [0., 1., 0.]])
    args = parse(get_method("puzzle"), ["--loss_option", "cl", "--image_size", "32"])
    result = get_method("puzzle").step_losses(MeanShiftNet(), [images, labels], args, Schedule(0, 10, 2))
    assert result["p_class_loss"].item() == result["re_loss"].item() == result["conf_loss"].item() == 0
    assert result["total"].item() == pytest.approx(result["class_loss"].item())


def test_baseline_step_is_the_classification_loss():
    images, labels = torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.tensor([[1., 0., 1.], [0., 1., 0.]])
    method = get_method("baseline")
    result = method.step_losses(MeanShiftNet(), [images, labels], parse(method, []), Schedule(0, 10, 2))
    expected = soft_margin(2 * images.mean(dim=(2, 3)).numpy(), labels.numpy())
    assert result["total"].item() == pytest.approx(expected, rel=1e-6)


def test_unknown_method_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown CAM method 'nope'; choose from \['baseline', 'puzzle'"):
        get_method("nope")


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_has_a_script_and_parses_its_published_defaults(name):
    method = METHODS[name]
    assert (REPOSITORY / method.train_script).is_file()
    args = parse(method, [])
    method.check(args)  # the published defaults are consistent
    assert method.name == name and method.title and method.tag_word and method.checkpoint_layout


def test_puzzle_check_refuses_crops_the_merge_cannot_split():
    args = parse(get_method("puzzle"), ["--image_size", "40"])
    with pytest.raises(ValueError, match="multiple of 32"):
        get_method("puzzle").check(args)
