"""Direct per-pixel / per-cell formulations of CPN's complementary pair, with the published semantics.

Reference for the tests and the benchmark of wsss/algorithms/complementary_patch.py: the mask is
built one pixel (superpixel variant) or one cell (grid variant) at a time in Python, the random
draws are made in the published order, and c counts kept pixels (or cells) one by one.
"""
import numpy as np
import torch
from skimage.segmentation import slic


def superpixel_pair_direct(image, labels, drawn):
    """(img1, img2, c, uc) from a label map and the drawn labels, visiting every pixel."""
    drawn = set(int(label) for label in drawn)
    sign = torch.ones(image.shape)
    hidden_pixels = kept_pixels = 0
    for row in range(image.shape[1]):
        for col in range(image.shape[2]):
            if int(labels[row, col]) in drawn:
                sign[:, row, col] = 0
                hidden_pixels += 1
            else:
                kept_pixels += 1
    kept = kept_pixels / (kept_pixels + hidden_pixels)
    return image * sign, image * (1 - sign), kept, 1 - kept


def hide_patch_ss_direct(image, rng):
    """The whole superpixel variant with a numpy RandomState (or the np.random module)."""
    labels = slic(np.asarray(image.permute(1, 2, 0)), compactness=10, n_segments=300, start_label=1)
    num_labels = int(np.max(labels)) + 1
    drawn = rng.randint(0, num_labels, int(np.floor(num_labels * 0.5)))
    return superpixel_pair_direct(image, labels, drawn)


def hide_patch_direct(image, rng):
    """The grid variant with a random.Random (or the random module), one cell at a time."""
    height, width = image.shape[1:]
    sign = torch.ones(image.shape)
    size = (224, 448)[rng.randint(0, 1)]
    hidden_cells = kept_cells = 0
    for top in range(0, height, size):
        for left in range(0, width, size):
            if rng.random() <= 0.5:
                sign[:, top:min(height, top + size), left:min(width, left + size)] = 0
                hidden_cells += 1
            else:
                kept_cells += 1
    kept = kept_cells / (kept_cells + hidden_cells)
    return image * sign, image * (1 - sign), kept, 1 - kept
