"""Unsupervised segmentation by backpropagation (Kanezaki) as SILOP runs it before PerimeterFit.

A small fully convolutional network is trained on one image: each step takes the per-pixel argmax
of its 32 outputs, replaces it inside each superpixel by the superpixel's most frequent label and
trains towards that target, until fewer than `min_labels` labels remain or after `max_iterations`
steps. The result is painted with a fixed random palette.

The published script feeds the array OpenCV reads (BGR order) to scikit-image and to the network as
if it were RGB; the functions here use the channels as given, so a caller reproduces that by passing
OpenCV's array unchanged.
"""
from dataclasses import dataclass

import numpy as np
import torch
from skimage import segmentation
from torch import nn

__all__ = ["NUM_LABELS", "SEED", "SEGMENT_MODES", "USSNet", "USSResult", "majority_targets", "paint_labels",
           "segment_image", "superpixels", "unsupervised_segmentation", "uss_palette"]

NUM_LABELS = 32  # output channels of the network
SEED = 43  # the published seed for the network weights and the palette
SEGMENT_MODES = ("slic", "quick")


def uss_palette(seed=SEED, size=256):
    """The published colours: `np.random.seed(seed); np.random.randint(255, size=(size, 3))`,
    drawn from a private generator (same stream) so the global one is left alone. Values 0…254."""
    return np.random.RandomState(seed).randint(255, size=(size, 3))


def superpixels(image, segment):
    """Superpixels of an H×W×3 uint8 image with the published arguments: "slic" (1000 segments,
    compactness 15, σ 1, labels from 1) or "quick" (quickshift, kernel 3, max distance 6,
    ratio 0.29). Returns an H×W integer label map."""
    if segment == "slic":
        return segmentation.slic(image, n_segments=1000, compactness=15, sigma=1, start_label=1)
    if segment == "quick":
        return segmentation.quickshift(image, kernel_size=3, max_dist=6, ratio=0.29)
    raise ValueError(f"unknown segment mode {segment!r}: expected one of {SEGMENT_MODES}")


class USSNet(nn.Module):
    """conv3×3(3→64)-BN-ReLU, conv1×1(64→32)-BN-ReLU, conv3×3(32→64)-BN-ReLU, conv1×1(64→32)-BN;
    the layers are created in this order so that a seeded construction draws the published weights."""

    def __init__(self, in_channels=3, hidden_channels=64, num_labels=NUM_LABELS):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, hidden_channels, kernel_size=3, stride=1, padding=1),
            nn.BatchNorm2d(hidden_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_channels, num_labels, kernel_size=1, stride=1, padding=0),
            nn.BatchNorm2d(num_labels),
            nn.ReLU(inplace=True),
            nn.Conv2d(num_labels, hidden_channels, kernel_size=3, stride=1, padding=1),
            nn.BatchNorm2d(hidden_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_channels, num_labels, kernel_size=1, stride=1, padding=0),
            nn.BatchNorm2d(num_labels),
        )

    def forward(self, x):
        return self.layers(x)


def majority_targets(labels, segment_index, num_segments, num_labels=NUM_LABELS):
    """Replace each pixel's label by the most frequent label of its superpixel.

    labels: (N,) integers in [0, num_labels); segment_index: (N,) superpixel of each pixel in
    [0, num_segments). A tie goes to the smallest label, as `np.unique` + `argmax` per superpixel
    does in the published loop. One bincount over (superpixel, label) pairs. Returns (N,) int64.
    """
    counts = np.bincount(segment_index * num_labels + labels, minlength=num_segments * num_labels)
    return counts.reshape(num_segments, num_labels).argmax(axis=1)[segment_index]


def paint_labels(labels, palette):
    """Colour a label map as published: the k-th smallest label present gets palette[k] (by rank,
    not by label value). Returns H×W×3 uint8."""
    _, rank = np.unique(labels, return_inverse=True)
    return palette[rank.reshape(labels.shape)].astype(np.uint8)


@dataclass
class USSResult:
    labels: np.ndarray  # H×W int64, the network's labels after the last step (0…31)
    painted: np.ndarray  # H×W×3 uint8, the labels painted with the palette
    iterations: int  # training steps taken


def unsupervised_segmentation(image, superpixel_map, max_iterations=64, min_labels=20, seed=SEED,
                              device="cpu"):
    """Train the network on one H×W×3 uint8 image (channels as given, scaled to [0, 1]) with the
    superpixels `superpixel_map` (H×W): SGD lr 0.05, momentum 0.9, cross-entropy towards the
    superpixel-majority targets; stop once fewer than `min_labels` labels remain. The weights are
    drawn after `torch.manual_seed(seed)` (on the CPU, then moved to `device`) without touching the
    caller's random state. Returns a USSResult."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an H×W×3 uint8 image, got shape {image.shape} and dtype {image.dtype}")
    if superpixel_map.shape != image.shape[:2]:
        raise ValueError(f"the superpixel map has shape {superpixel_map.shape}, the image {image.shape[:2]}")
    if max_iterations < 1:
        raise ValueError(f"max_iterations must be at least 1, got {max_iterations}")
    device = torch.device(device)
    _, segment_index = np.unique(superpixel_map.ravel(), return_inverse=True)
    num_segments = int(segment_index.max()) + 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = USSNet().to(device)
    inputs = torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32) / 255.0)[None].to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=5e-2, momentum=0.9)
    model.train()
    for iteration in range(1, max_iterations + 1):
        optimizer.zero_grad()
        scores = model(inputs)[0].permute(1, 2, 0).reshape(-1, NUM_LABELS)
        predicted = torch.argmax(scores, dim=1).cpu().numpy()
        targets = majority_targets(predicted, segment_index, num_segments)
        loss = criterion(scores, torch.from_numpy(targets).to(device))
        loss.backward()
        optimizer.step()
        if len(np.unique(targets)) < min_labels:
            break
    labels = targets.reshape(image.shape[:2])
    return USSResult(labels=labels, painted=paint_labels(labels, uss_palette(seed)), iterations=iteration)


def segment_image(image, segment="slic", max_iterations=64, min_labels=20, seed=SEED, device="cpu"):
    """Superpixels (`superpixels`) then `unsupervised_segmentation` of one H×W×3 uint8 image."""
    return unsupervised_segmentation(image, superpixels(image, segment), max_iterations=max_iterations,
                                     min_labels=min_labels, seed=seed, device=device)
