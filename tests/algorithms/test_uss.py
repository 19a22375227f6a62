import numpy as np
import pytest
import torch

from wsss.algorithms.uss import (
    NUM_LABELS,
    majority_targets,
    paint_labels,
    segment_image,
    superpixels,
    unsupervised_segmentation,
    uss_palette,
)


def synthetic_image(height=16, width=20, seed=0):
    """Four flat quadrants with a little noise."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), dtype=np.int64)
    image[:height // 2, :width // 2] = (200, 30, 30)
    image[:height // 2, width // 2:] = (30, 200, 30)
    image[height // 2:, :width // 2] = (30, 30, 200)
    image[height // 2:, width // 2:] = (220, 220, 40)
    return np.clip(image + rng.integers(-20, 21, size=image.shape), 0, 255).astype(np.uint8)


def test_majority_targets_hand_made_with_ties():
    labels = np.array([3, 3, 5, 5, 1, 2, 2, 2, 7, 6, 4, 31, 0])
    segments = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3])
    # segment 0: 3 and 5 twice each → 3; segment 1: 2; segment 2: 6 and 4 once each → 4; segment 3: 0
    expected = np.array([3, 3, 3, 3, 3, 2, 2, 2, 2, 4, 4, 0, 0])
    np.testing.assert_array_equal(majority_targets(labels, segments, 4), expected)


def test_majority_targets_matches_the_per_superpixel_loop():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, size=500)  # few labels: many ties
    segments = rng.integers(0, 40, size=500)
    expected = labels.copy()
    for segment in np.unique(segments):
        where = np.where(segments == segment)[0]
        values, counts = np.unique(labels[where], return_counts=True)
        expected[where] = values[np.argmax(counts)]
    np.testing.assert_array_equal(majority_targets(labels, segments, 40, NUM_LABELS), expected)


def test_palette_is_the_seeded_global_draw():
    state = np.random.get_state()
    try:
        np.random.seed(43)
        expected = np.random.randint(255, size=(256, 3))
    finally:
        np.random.set_state(state)
    palette = uss_palette()
    np.testing.assert_array_equal(palette, expected)
    assert palette[:3].tolist() == [[68, 64, 49], [21, 58, 16], [51, 145, 187]]
    assert palette[255].tolist() == [172, 174, 178]
    assert palette.min() >= 0 and palette.max() <= 254


def test_paint_labels_by_rank_of_the_labels_present():
    palette = uss_palette()
    labels = np.array([[9, 5], [5, 30]])
    painted = paint_labels(labels, palette)
    assert painted.dtype == np.uint8
    np.testing.assert_array_equal(painted[0, 1], palette[0])  # 5: smallest label present
    np.testing.assert_array_equal(painted[0, 0], palette[1])  # 9
    np.testing.assert_array_equal(painted[1, 1], palette[2])  # 30
    np.testing.assert_array_equal(painted[1, 0], palette[0])


def test_stops_after_the_first_step_with_few_superpixels():
    image = synthetic_image()
    quadrants = np.zeros(image.shape[:2], dtype=np.int64)
    quadrants[:8, 10:] = 1
    quadrants[8:, :10] = 2
    quadrants[8:, 10:] = 3
    result = unsupervised_segmentation(image, quadrants, max_iterations=5)
    assert result.iterations == 1  # at most 4 labels < 20 after one step
    # the labels are constant on each superpixel
    for segment in range(4):
        assert len(np.unique(result.labels[quadrants == segment])) == 1
    np.testing.assert_array_equal(result.painted, paint_labels(result.labels, uss_palette()))


def test_early_stop_is_the_first_step_below_min_labels():
    image = synthetic_image()
    every_pixel = np.arange(image.shape[0] * image.shape[1]).reshape(image.shape[:2])
    counts = [len(np.unique(unsupervised_segmentation(image, every_pixel, max_iterations=n, min_labels=0).labels))
              for n in range(1, 5)]
    full = unsupervised_segmentation(image, every_pixel, max_iterations=4, min_labels=0)
    assert full.iterations == 4
    # a threshold between the counts: the run must stop at the first step whose count is below it
    for min_labels in sorted(set(counts)):
        threshold = min_labels + 1
        first = next(step for step, count in enumerate(counts, start=1) if count < threshold)
        result = unsupervised_segmentation(image, every_pixel, max_iterations=4, min_labels=threshold)
        assert result.iterations == first
        reference = unsupervised_segmentation(image, every_pixel, max_iterations=first, min_labels=0)
        np.testing.assert_array_equal(result.labels, reference.labels)


def test_seeded_and_deterministic_without_touching_the_global_generator():
    image = synthetic_image()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = segment_image(image, "quick", max_iterations=3)
    assert torch.equal(torch.get_rng_state(), before)
    second = segment_image(image, "quick", max_iterations=3)
    np.testing.assert_array_equal(first.labels, second.labels)
    np.testing.assert_array_equal(first.painted, second.painted)
    assert first.iterations == second.iterations
    other_seed = segment_image(image, "quick", max_iterations=3, seed=7, min_labels=0)
    same_seed = segment_image(image, "quick", max_iterations=3, min_labels=0)
    assert not np.array_equal(other_seed.painted, same_seed.painted)


def test_superpixels_published_arguments():
    image = synthetic_image(24, 24)
    slic = superpixels(image, "slic")
    assert slic.shape == (24, 24) and slic.min() == 1  # start_label=1
    quick = superpixels(image, "quick")
    assert quick.shape == (24, 24) and quick.min() == 0
    with pytest.raises(ValueError, match="unknown segment mode"):
        superpixels(image, "felzenszwalb")


def test_bad_inputs():
    image = synthetic_image()
    segments = np.zeros(image.shape[:2], dtype=np.int64)
    with pytest.raises(ValueError, match="uint8"):
        unsupervised_segmentation(image.astype(np.float32), segments)
    with pytest.raises(ValueError, match="superpixel map"):
        unsupervised_segmentation(image, segments[:-1])
    with pytest.raises(ValueError, match="max_iterations"):
        unsupervised_segmentation(image, segments, max_iterations=0)
