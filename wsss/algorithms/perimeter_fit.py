"""SILOP's PerimeterFit: perimeter maps of an unsupervised segmentation, the perimeter-fitted class
masks, and their combination with Puzzle-CAM's CAMs.

The published PerimeterFit calls PIL's `ImageDraw.floodfill(thresh=10)` from every pixel, one call
after the other, and the result depends on that order (see `surviving_pixels`). This module computes
exactly the same masks with the same sequence of fills, compiled with numba (`_fill_black`).
"""
import cv2
import numba
import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "EDGE_THRESHOLDS",
    "FILL_THRESHOLD",
    "SEGMENT_MODES",
    "SUPPORT_THRESHOLDS",
    "combine_perimeter_fit",
    "perimeter_fit",
    "perimeter_map",
    "rescale_to_full_range",
    "surviving_pixels",
]

SEGMENT_MODES = ("slic", "quick")
FILL_THRESHOLD = 10  # largest L1 colour distance (summed over channels) that a flood fill crosses
EDGE_THRESHOLDS = {"quick": 200, "slic": 250}  # perimeter pixels: perimeter map > threshold
SUPPORT_THRESHOLDS = {"quick": 0.0, "slic": 0.05}  # class support: CAM > threshold


def perimeter_map(uss_image):
    """The perimeter map of an H×W×3 uint8 segmentation image as OpenCV reads it (BGR order: the
    grey conversion weighs the channels): grey, 3×3 Gaussian blur (σ from the kernel size),
    Canny with thresholds 1 and 50. Returns H×W uint8 in {0, 255}."""
    if uss_image.ndim != 3 or uss_image.shape[2] != 3 or uss_image.dtype != np.uint8:
        raise ValueError(f"expected an H×W×3 uint8 image, got shape {uss_image.shape} and dtype {uss_image.dtype}")
    grey = cv2.cvtColor(uss_image, cv2.COLOR_BGR2GRAY)
    return cv2.Canny(cv2.GaussianBlur(grey, (3, 3), 0), 1, 50)


def rescale_to_full_range(image):
    """Stretch an image so that its largest value becomes 255, truncating as the published code does:
    uint8(int(image / max · 255))."""
    peak = int(np.max(image))
    if peak == 0:
        raise ValueError("the segmentation image is entirely black: it cannot be rescaled by its maximum")
    return ((image / peak) * 255).astype(int).astype(np.uint8)


def surviving_pixels(image, seeds, thresh=FILL_THRESHOLD):
    """The pixels of an H×W×3 uint8 image left non-black after flood-filling black from every seed
    pixel in row-major order (y outer, x inner), as PIL's `ImageDraw.floodfill(image, (x, y),
    (0, 0, 0), thresh=thresh)` does one seed after the other.

    Each fill blackens the 4-connected region of pixels whose current colour lies within L1 distance
    `thresh` of the seed's current colour; a seed within `thresh` of black does nothing. Pixels
    blackened by earlier fills stop later ones, so the result depends on the order: it is not a
    connected-components labelling of the colours. Returns an H×W bool mask.
    """
    return _surviving_per_mask(image, seeds[None], thresh)[0]


def _surviving_per_mask(image, seed_masks, thresh):
    """`surviving_pixels` for each of the C×H×W seed masks, each on its own copy of the image."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an H×W×3 uint8 image, got shape {image.shape} and dtype {image.dtype}")
    if seed_masks.shape[1:] != image.shape[:2]:
        raise ValueError(f"the seed mask has shape {seed_masks.shape[1:]}, the image {image.shape[:2]}")
    colours = np.ascontiguousarray(image.reshape(-1, 3), dtype=np.int32)
    flat_seeds = np.ascontiguousarray(seed_masks.reshape(len(seed_masks), -1), dtype=np.bool_)
    black = _fill_black(colours, flat_seeds, image.shape[1], int(thresh))
    return ~black.reshape(seed_masks.shape)


@numba.njit(cache=True)
def _fill_black(colours, seed_masks, width, thresh):
    """The published fills, one seed after the other. colours: N×3 int32 pixels of an H×W image in
    row-major order; seed_masks: C×N bool. Returns C×N bool, the pixels black at the end.

    A pixel's colour only ever changes to black, and black is farther than `thresh` from any seed
    that fills (a seed within `thresh` of black does nothing), so a fill is the 4-connected region
    of non-black pixels within `thresh` of the seed's colour, found here by a depth-first search.
    Each pixel is blackened at most once per mask: the work is linear in the image size.
    """
    num_pixels = colours.shape[0]
    black = np.empty(seed_masks.shape, dtype=np.bool_)
    stack = np.empty(num_pixels, dtype=np.int64)
    for mask in range(seed_masks.shape[0]):
        for pixel in range(num_pixels):
            black[mask, pixel] = colours[pixel, 0] == 0 and colours[pixel, 1] == 0 and colours[pixel, 2] == 0
        for seed in range(num_pixels):
            if not seed_masks[mask, seed] or black[mask, seed]:
                continue
            red, green, blue = colours[seed, 0], colours[seed, 1], colours[seed, 2]
            if red + green + blue <= thresh:  # within thresh of black: PIL returns at once
                continue
            black[mask, seed] = True
            stack[0] = seed
            size = 1
            while size > 0:
                size -= 1
                pixel = stack[size]
                column = pixel % width
                for step in range(4):
                    if step == 0:
                        if pixel < width:
                            continue
                        neighbour = pixel - width
                    elif step == 1:
                        if column == 0:
                            continue
                        neighbour = pixel - 1
                    elif step == 2:
                        if column == width - 1:
                            continue
                        neighbour = pixel + 1
                    else:
                        if pixel + width >= num_pixels:
                            continue
                        neighbour = pixel + width
                    if black[mask, neighbour]:
                        continue
                    if (abs(colours[neighbour, 0] - red) + abs(colours[neighbour, 1] - green)
                            + abs(colours[neighbour, 2] - blue)) <= thresh:
                        black[mask, neighbour] = True
                        stack[size] = neighbour
                        size += 1
    return black


def perimeter_fit(uss_image, perimeter, hr_cam, segment):
    """PerimeterFit masks for one image.

    uss_image: H×W×3 uint8 unsupervised segmentation (either channel order: only L1 distances and
    black matter); perimeter: H×W perimeter map; hr_cam: K×H×W CAMs; segment: "slic" or "quick".
    The image is stretched to a maximum of 255; a zero background channel is put before the CAMs.
    For each of the K+1 channels, every pixel outside the channel's support except those of the last
    row and the last column seeds a black flood fill (`surviving_pixels`); the channel's mask is
    the surviving pixels plus the perimeter pixels, limited to the support for "slic".
    Returns (K+1)×H×W float64 with values {0, 255}.
    """
    if segment not in SEGMENT_MODES:
        raise ValueError(f"unknown segment mode {segment!r}: expected one of {SEGMENT_MODES}")
    if hr_cam.ndim != 3:
        raise ValueError(f"expected K×H×W CAMs, got shape {hr_cam.shape}")
    if perimeter.shape != uss_image.shape[:2] or hr_cam.shape[1:] != uss_image.shape[:2]:
        raise ValueError(f"size mismatch: segmentation image {uss_image.shape[:2]}, perimeter map "
                         f"{perimeter.shape}, CAMs {hr_cam.shape[1:]}")
    image = rescale_to_full_range(uss_image)
    edges = perimeter > EDGE_THRESHOLDS[segment]
    cams = np.concatenate([np.zeros((1,) + hr_cam.shape[1:], dtype=hr_cam.dtype), hr_cam])
    supports = cams > SUPPORT_THRESHOLDS[segment]
    seed_masks = ~supports
    seed_masks[:, -1, :] = False
    seed_masks[:, :, -1] = False
    kept = _surviving_per_mask(image, seed_masks, FILL_THRESHOLD) | edges
    if segment == "slic":
        kept &= supports
    return np.where(kept, 255.0, 0.0)


def combine_perimeter_fit(hr_cam, cam, slic_masks, quick_masks, rebinarise=False):
    """SILOP's combination: CAM_c ← CAM_c · (1 + M_slic[c+1] · M_quick[c+1]) with the masks binarised
    (> 0), for the full-resolution `hr_cam` (K×H×W) and for the stride-4 `cam` (K×h×w).

    For `cam` the binary masks are resized to h×w bilinearly (align_corners=False) and, as published,
    not binarised again, so the multipliers take fractional values between 1 and 2 along mask
    borders; rebinarise=True applies the same > 0 rule after resizing instead. The products are
    computed in float64 and stored in the CAMs' dtype. Returns (hr_cam, cam) as new arrays.
    """
    hr_cam = np.asarray(hr_cam)
    cam = np.asarray(cam)
    expected = (hr_cam.shape[0] + 1,) + hr_cam.shape[1:]
    if slic_masks.shape != expected or quick_masks.shape != expected:
        raise ValueError(f"the masks have shapes {slic_masks.shape} and {quick_masks.shape}; CAMs of shape "
                         f"{hr_cam.shape} need {expected}")
    if cam.ndim != 3 or cam.shape[0] != hr_cam.shape[0]:
        raise ValueError(f"the stride-4 CAMs have shape {cam.shape}, the full-resolution ones {hr_cam.shape}")
    if len(hr_cam) == 0:  # an image without classes (COCO has some): nothing to scale, and no map to resize
        return hr_cam.copy(), cam.copy()
    slic = torch.from_numpy(np.asarray(slic_masks) > 0).double()[1:]
    quick = torch.from_numpy(np.asarray(quick_masks) > 0).double()[1:]
    hr = torch.from_numpy(hr_cam).double()
    combined_hr = (hr * slic * quick + hr).numpy().astype(hr_cam.dtype)

    small_slic, small_quick = (F.interpolate(mask[None], size=cam.shape[1:], mode="bilinear",
                                             align_corners=False)[0] for mask in (slic, quick))
    if rebinarise:
        small_slic, small_quick = (small_slic > 0).double(), (small_quick > 0).double()
    strided = torch.from_numpy(cam).double()
    combined_cam = (strided * small_slic * small_quick + strided).numpy().astype(cam.dtype)
    return combined_hr, combined_cam
