"""CPN's complementary image pair: img1 = img·m and img2 = img·(1 − m) for a 0/1 mask m.

Two published ways to draw m, on the normalised training crop (C×H×W):

- superpixels (`hide_patch_ss`, the published default): SLIC (300 segments, compactness 10, labels
  from 1) gives K superpixels; floor((K+1)·0.5) labels are drawn uniformly from {0, …, K} with
  replacement (0 is never a label, and repeats are common, so about 39% of the superpixels end up
  hidden); m = 0 on the drawn superpixels. c = fraction of pixels kept in img1.
- grid (`hide_patch`): a cell size drawn from {224, 448}; cells in row-major order, each hidden when
  a uniform draw is <= 0.5. c = fraction of cells kept (cells at the border may be partial).

The published code set m pixel by pixel in Python; here m comes from a lookup table indexed by the
superpixel label map. Random draws are the published ones, in the same order: numpy's global
legacy generator (`np.random.randint`) for the superpixels and Python's `random` module for the
grid, or the generator passed as `rng` (a `np.random.RandomState` reproduces the published draw for
the same seed; a `np.random.Generator` draws with `integers`; for the grid, a `random.Random`).
Both variants return (img1, img2, c, uc) with uc = 1 − c.
"""
import random

import numpy as np
import torch
from skimage.segmentation import slic

__all__ = ["superpixels", "draw_superpixels", "superpixel_keep_mask", "hide_patch_ss",
           "draw_grid", "grid_keep_mask", "hide_patch", "complementary_pair"]

SLIC_SEGMENTS = 300
SLIC_COMPACTNESS = 10
DRAW_FRACTION = 0.5
GRID_SIZES = (224, 448)
HIDE_PROBABILITY = 0.5


def superpixels(image):
    """SLIC label map (H×W, labels 1…K) of a C×H×W image tensor, with the published settings."""
    return slic(np.asarray(image.permute(1, 2, 0)), compactness=SLIC_COMPACTNESS, n_segments=SLIC_SEGMENTS,
                start_label=1)


def draw_superpixels(num_superpixels, rng=None):
    """floor((K+1)·0.5) labels drawn from {0…K} with replacement, K = `num_superpixels` (the
    largest label). rng: None (numpy's global generator, as published), RandomState or Generator."""
    count = int(np.floor((num_superpixels + 1) * DRAW_FRACTION))
    if rng is None:
        return np.random.randint(0, num_superpixels + 1, count)
    if isinstance(rng, np.random.Generator):
        return rng.integers(0, num_superpixels + 1, count)
    return rng.randint(0, num_superpixels + 1, count)


def superpixel_keep_mask(labels, drawn):
    """(m, c): m = float32 H×W, 0 on pixels whose label is among `drawn`, else 1; c = mean of m
    (as a Python float: kept pixels / all pixels)."""
    labels = np.asarray(labels)
    hidden = np.zeros(max(int(labels.max()), int(np.max(drawn, initial=0))) + 1, dtype=bool)
    hidden[np.asarray(drawn, dtype=np.int64)] = True
    keep = ~hidden[labels]
    return keep.astype(np.float32), int(np.count_nonzero(keep)) / keep.size


def complementary_pair(image, keep):
    """img·m and img·(1 − m) for a C×H×W tensor and an H×W 0/1 mask."""
    mask = torch.from_numpy(keep).to(device=image.device, dtype=image.dtype)
    return image * mask, image * (1 - mask)


def hide_patch_ss(image, rng=None):
    """Superpixel variant: (img1, img2, c, uc) for a C×H×W tensor."""
    labels = superpixels(image)
    keep, kept = superpixel_keep_mask(labels, draw_superpixels(int(labels.max()), rng))
    img1, img2 = complementary_pair(image, keep)
    return img1, img2, kept, 1 - kept


def draw_grid(height, width, rng=None):
    """(cell size, hidden): the cell size from {224, 448}, then one draw per cell in row-major
    order, hidden when <= 0.5. rng: None (Python's `random` module, as published) or a random.Random."""
    rng = random if rng is None else rng
    size = GRID_SIZES[rng.randint(0, len(GRID_SIZES) - 1)]
    rows, cols = len(range(0, height, size)), len(range(0, width, size))
    hidden = np.array([rng.random() <= HIDE_PROBABILITY for _ in range(rows * cols)], dtype=bool)
    return size, hidden.reshape(rows, cols)


def grid_keep_mask(height, width, size, hidden):
    """(m, c): m = float32 H×W, 0 inside hidden cells of `size` pixels; c = kept cells / cells."""
    keep = np.repeat(np.repeat(~hidden, size, axis=0), size, axis=1)[:height, :width]
    return keep.astype(np.float32), int(np.count_nonzero(~hidden)) / hidden.size


def hide_patch(image, rng=None):
    """Grid variant: (img1, img2, c, uc) for a C×H×W tensor."""
    height, width = image.shape[1:]
    keep, kept = grid_keep_mask(height, width, *draw_grid(height, width, rng))
    img1, img2 = complementary_pair(image, keep)
    return img1, img2, kept, 1 - kept
