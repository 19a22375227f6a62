import random

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from bench.complementary_patch_direct import hide_patch_direct, hide_patch_ss_direct, superpixel_pair_direct
from wsss.algorithms.complementary_patch import (draw_grid, draw_superpixels, grid_keep_mask, hide_patch,
                                                 hide_patch_ss, superpixel_keep_mask, superpixels)


def smooth_image(height, width, seed):
    """A normalised-looking C×H×W float32 tensor with regions that SLIC can separate."""
    raw = gaussian_filter(np.random.RandomState(seed).rand(height, width, 3), (4, 4, 0))
    raw = (raw - raw.min()) / (raw.max() - raw.min())
    return torch.from_numpy(((raw - 0.45) / 0.225).astype(np.float32).transpose(2, 0, 1))


def test_keep_mask_of_a_hand_made_label_map():
    labels = np.array([[1, 1, 2, 2], [3, 2, 2, 4], [3, 3, 4, 4]])
    keep, kept = superpixel_keep_mask(labels, np.array([0, 2, 2, 4]))
    assert keep.dtype == np.float32
    assert keep.tolist() == [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0]]
    assert kept == 5 / 12
    keep, kept = superpixel_keep_mask(labels, np.array([0]))  # only the unused label 0 drawn
    assert keep.min() == 1 and kept == 1.0


def test_pair_is_complementary():
    image = smooth_image(40, 56, seed=0)
    img1, img2, kept, unkept = hide_patch_ss(image, np.random.RandomState(3))
    assert torch.equal(img1 + img2, image)
    hidden = (img1 == 0) & (image != 0)
    assert torch.equal(hidden, (img2 != 0) & (image != 0))  # m + (1 − m) = 1: each pixel is in exactly one
    assert hidden.all(dim=0).eq(hidden.any(dim=0)).all()  # the mask is the same for all channels
    assert kept == int((~hidden[0]).sum()) / (40 * 56)
    assert unkept == 1 - kept


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_equals_the_pixel_loop_for_the_same_draw(seed):
    image = smooth_image(48, 64, seed)
    fast = hide_patch_ss(image, np.random.RandomState(seed))
    direct = hide_patch_ss_direct(image, np.random.RandomState(seed))
    assert torch.equal(fast[0], direct[0]) and torch.equal(fast[1], direct[1])
    assert fast[2:] == direct[2:]
    assert 0 < fast[2] < 1


def test_default_draw_uses_numpys_global_generator_as_published():
    image = smooth_image(32, 32, seed=5)
    np.random.seed(11)
    fast = hide_patch_ss(image)
    np.random.seed(11)
    direct = hide_patch_ss_direct(image, np.random)
    assert torch.equal(fast[0], direct[0]) and fast[2] == direct[2]


def test_superpixels_use_the_published_slic_settings():
    image = smooth_image(60, 80, seed=1)
    labels = superpixels(image)
    assert labels.shape == (60, 80) and labels.min() == 1
    assert 50 < labels.max() <= 300 and set(np.unique(labels)) == set(range(1, labels.max() + 1))


def test_draw_count_range_and_hidden_fraction():
    assert len(draw_superpixels(300, np.random.RandomState(0))) == 150  # floor(301 · 0.5)
    assert len(draw_superpixels(301, np.random.RandomState(0))) == 151
    drawn = draw_superpixels(5, np.random.default_rng(0))
    assert len(drawn) == 3 and drawn.min() >= 0 and drawn.max() <= 5
    # 300 equal superpixels (15×20 blocks of 2×2): with replacement, 1 − (1 − 1/301)^150 ≈ 39.3% hidden
    labels = 1 + np.kron(np.arange(300).reshape(15, 20), np.ones((2, 2), dtype=np.int64))
    rng = np.random.RandomState(1)
    hidden = [1 - superpixel_keep_mask(labels, draw_superpixels(300, rng))[1] for _ in range(300)]
    assert np.mean(hidden) == pytest.approx(1 - (1 - 1 / 301) ** 150, abs=0.005)


def test_direct_loop_counts_pixels():
    labels = np.array([[1, 2], [2, 2]])
    image = torch.arange(8, dtype=torch.float32).view(2, 2, 2) - 3
    img1, img2, kept, unkept = superpixel_pair_direct(image, labels, [2])
    assert img1[:, 0, 0].tolist() == [-3, 1] and img1[:, 1, 1].abs().sum() == 0
    assert kept == 0.25 and unkept == 0.75


class PlannedRandom:
    """random.Random stand-in returning planned values."""

    def __init__(self, choice, values):
        self.choice, self.values = choice, list(values)

    def randint(self, low, high):
        assert (low, high) == (0, 1)
        return self.choice

    def random(self):
        return self.values.pop(0)


def test_grid_of_partial_cells_counts_cells():
    size, hidden = draw_grid(300, 500, PlannedRandom(0, [0.1, 0.9, 0.5, 0.7, 0.50001, 0.2]))
    assert size == 224 and hidden.tolist() == [[True, False, True], [False, False, True]]
    keep, kept = grid_keep_mask(300, 500, size, hidden)
    assert kept == 3 / 6  # cells, although the border cells are smaller
    assert keep.shape == (300, 500)
    assert keep[:224, :224].max() == 0 and keep[:224, 224:448].min() == 1 and keep[224:, 448:].max() == 0
    assert keep[224:, :448].min() == 1
    size, hidden = draw_grid(448, 448, PlannedRandom(1, [0.3]))
    assert size == 448 and hidden.tolist() == [[True]]
    assert grid_keep_mask(448, 448, size, hidden)[1] == 0.0


@pytest.mark.parametrize("seed", range(6))
def test_grid_variant_matches_the_cell_loop(seed):
    image = torch.randn(3, 300, 460)
    fast = hide_patch(image, random.Random(seed))
    direct = hide_patch_direct(image, random.Random(seed))
    assert torch.equal(fast[0], direct[0]) and torch.equal(fast[1], direct[1]) and fast[2:] == direct[2:]


def test_grid_default_uses_pythons_random_module():
    image = torch.randn(3, 448, 448)
    random.seed(4)
    fast = hide_patch(image)
    random.seed(4)
    direct = hide_patch_direct(image, random)
    assert torch.equal(fast[0], direct[0]) and fast[2] == direct[2]
