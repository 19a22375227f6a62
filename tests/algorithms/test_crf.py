import numpy as np
import pytest

from wsss.algorithms.cam import maps_to_label
from wsss.algorithms.crf import crf_refined_label, label_crf, probability_crf


def two_colour_image(height=40, width=60, split=30, seed=0):
    """Red left of column `split`, blue from it on, with a little noise."""
    image = np.zeros((height, width, 3), dtype=np.int64)
    image[:, :split] = (200, 40, 40)
    image[:, split:] = (40, 40, 200)
    noise = np.random.default_rng(seed).integers(-3, 4, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def test_label_crf_keeps_confident_labels_and_fills_the_strip_by_colour():
    image = two_colour_image()
    labels = np.zeros((40, 60), dtype=np.int64)  # the strip of columns 22…37 says background
    labels[:, :22] = 1
    labels[:, 38:] = 2
    refined = label_crf(image, labels, n_labels=3, t=10)
    assert refined.shape == (40, 60)
    assert np.all(refined[:, :30] == 1)
    assert np.all(refined[:, 30:] == 2)


def test_label_crf_with_one_label_is_all_that_label():
    assert np.array_equal(label_crf(two_colour_image(), np.zeros((40, 60)), n_labels=1), np.zeros((40, 60)))


def test_label_crf_refuses_an_image_of_another_size():
    with pytest.raises(ValueError, match="RGB image of shape"):
        label_crf(two_colour_image(), np.zeros((40, 61), dtype=np.int64), n_labels=2)


def test_probability_crf_sharpens_a_blurry_map_towards_the_image_edge():
    image = two_colour_image()
    columns = np.arange(60)
    blue = 1 / (1 + np.exp(-(columns - 35) / 6.0))  # a soft edge 5 columns right of the real one
    probs = np.stack([1 - blue, blue])[:, None, :].repeat(40, axis=1).astype(np.float32)
    refined = probability_crf(image, probs, t=10)
    assert refined.shape == (2, 40, 60) and refined.dtype == np.float32
    assert np.allclose(refined.sum(axis=0), 1, atol=1e-4)
    assert np.any(probs.argmax(axis=0)[:, 30:35] == 0)
    assert np.all(refined.argmax(axis=0) == (columns >= 30)[None])
    assert refined.max(axis=0).mean() > probs.max(axis=0).mean() + 0.1


def test_crf_refined_label_without_crf_is_threshold_argmax_keys():
    maps = np.random.default_rng(1).random((3, 5, 6)).astype(np.float32)
    keys = np.array([0, 4, 9, 13])
    expected = maps_to_label(maps, keys, 0.5)
    assert np.array_equal(crf_refined_label(None, maps, keys, 0.5, crf_iteration=0), expected)
