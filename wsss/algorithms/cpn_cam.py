"""CPN's multi-scale CAM of one image (its `infer_cam` step), as a pure function of the network.

For each scale in {0.5, 1, 1.5, 2}: the image resized with PIL bicubic to (round(W·s), round(H·s)),
ImageNet-normalised, and its horizontal flip, each through the network alone (8 passes). Of each
pass: the refined map `cam_rv`, foreground channels only, upsampled to H×W (bilinear,
align_corners=False), times the 20 labels, flipped back for the flipped inputs. Then, as published:

  s = sum of the 8 maps, clamped below at 0;   per class: lo = min s, hi = max s;
  s[s < lo + 1e-5] = 0;   cam = (s − lo − 1e-5) / (hi − lo + 1e-5) / 2

The final ÷2 is a published quirk ("compresses the foreground values" so that its background sweep
covers 0.20–0.59): CPN's maps are on half the usual scale, peaking just under 0.5. Note also that
the pixels zeroed by the second line come out slightly negative, −(lo + 1e-5)/(hi − lo + 1e-5)/2.
Only the classes present in the label are kept.

Keys follow this project's CAM-file convention: `keys` = [0, c1 + 1, c2 + 1, …] (0 = background,
then the 1-based ids of the present classes), and the maps are stacked in that order ((K−1)×H×W).
The published file was a dict {c: H×W map} with 0-based class indices c = keys[1:] − 1.
"""
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = ["CPN_SCALES", "normalize_image", "cpn_cam"]

CPN_SCALES = (0.5, 1.0, 1.5, 2.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_image(image):
    """uint8 RGB image (PIL or H×W×3 array) → float32 3×H×W, (value/255 − mean)/std computed in
    float64 as published."""
    array = np.asarray(image, dtype=np.float64) / 255.0
    return ((array - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32).transpose(2, 0, 1)


@torch.no_grad()
def cpn_cam(network, image, label, scales=CPN_SCALES, device="cpu"):
    """(keys, maps) of one image.

    network: a callable taking a 1×3×h×w float32 tensor and returning (cam, cam_rv), each
    1×(K+1)×h'×w' (the network in eval mode). image: RGB PIL image. label: K values (0/1).
    Returns keys (int64, [0, c+1, …]) and maps (float32, (K−1)×H×W) for the present classes.
    """
    width, height = image.size
    label = np.asarray(label, dtype=np.float32).reshape(-1, 1, 1)
    passes = []
    for scale in scales:
        resized = image.resize((round(width * scale), round(height * scale)), resample=Image.BICUBIC)
        array = normalize_image(resized)
        for flipped in (False, True):
            batch = torch.from_numpy(np.flip(array, -1).copy() if flipped else array)[None].to(device)
            refined = network(batch)[1]
            refined = F.interpolate(refined[:, 1:], (height, width), mode="bilinear", align_corners=False)[0]
            refined = refined.cpu().numpy() * label
            passes.append(np.flip(refined, axis=-1) if flipped else refined)
    total = np.sum(passes, axis=0)
    total[total < 0] = 0
    top = np.max(total, (1, 2), keepdims=True)
    bottom = np.min(total, (1, 2), keepdims=True)
    total[total < bottom + 1e-5] = 0
    normalized = (total - bottom - 1e-5) / (top - bottom + 1e-5)
    normalized = normalized / 2
    present = np.flatnonzero(label.reshape(-1) > 1e-5)
    keys = np.concatenate([[0], present + 1]).astype(np.int64)
    return keys, np.ascontiguousarray(normalized[present], dtype=np.float32)
