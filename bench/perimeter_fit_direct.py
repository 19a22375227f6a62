"""A direct, deliberately simple PerimeterFit: the published per-pixel loop around PIL's own
`ImageDraw.floodfill`, kept as the reference that wsss/algorithms/perimeter_fit.py must match
(tests) and beat (bench/bench_perimeter_fit.py). Slow on purpose: one flood-fill call per seed.
"""
import numpy as np
from PIL import Image, ImageDraw

EDGE_THRESHOLDS = {"quick": 200, "slic": 250}
SUPPORT_THRESHOLDS = {"quick": 0.0, "slic": 0.05}


def surviving_pixels_direct(image, seeds, thresh=10, calls_per_seed=1):
    """Flood-fill black from every seed, row-major, with PIL; returns the H×W mask of pixels left
    non-black. The published loop calls the fill three times per seed (calls_per_seed=3); the
    second and third calls find the seed black and return at once."""
    picture = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    height, width = seeds.shape
    for y in range(height):
        for x in range(width):
            if seeds[y, x]:
                for _ in range(calls_per_seed):
                    ImageDraw.floodfill(picture, (x, y), (0, 0, 0), thresh=thresh)
    return np.asarray(picture).astype(np.int64).sum(axis=2) > 0


def perimeter_fit_direct(uss_image, perimeter, hr_cam, segment, calls_per_seed=1):
    """PerimeterFit written the published way, step by step: stretch the image to a maximum of 255,
    threshold the perimeter map, prepend a zero background CAM, and per channel flood-fill from the
    pixels outside the support (the last row and column excepted), then keep the non-black pixels
    plus the perimeter (and, for slic, only inside the support). Returns (K+1)×H×W float64."""
    image = ((uss_image / np.amax(uss_image)) * 255).astype(int).astype(np.uint8)
    edges = (perimeter > EDGE_THRESHOLDS[segment]).astype(np.int64)
    cams = np.pad(hr_cam, ((1, 0), (0, 0), (0, 0)), mode="constant", constant_values=0.0)
    support = (cams > SUPPORT_THRESHOLDS[segment]).astype(np.int64)
    _, height, width = cams.shape
    result = np.zeros(cams.shape)
    for channel in range(cams.shape[0]):
        seeds = np.zeros((height, width), dtype=bool)
        seeds[:height - 1, :width - 1] = support[channel, :height - 1, :width - 1] == 0
        kept = surviving_pixels_direct(image, seeds, calls_per_seed=calls_per_seed).astype(np.int64)
        if segment == "quick":
            kept = kept + edges
        else:
            kept = (kept + edges) * support[channel]
        result[channel][kept > 0] = 255
    return result
