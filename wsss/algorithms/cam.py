"""CAM inference (docs/design.md §6.2) and the one place that turns class maps into a label map."""
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from wsss.data.transforms import normalize
from wsss.utils.device import autocast


def strided_size(height, width, stride=4):
    return (height - 1) // stride + 1, (width - 1) // stride + 1


def strided_up_size(height, width, stride=16):
    rows, cols = strided_size(height, width, stride)
    return rows * stride, cols * stride


def resize_maps(maps, size, mode="bilinear"):
    """C×H×W → C×size (bilinear, align_corners=False)."""
    return F.interpolate(maps[None], size=size, mode=mode, align_corners=False)[0]


def flip_fused_output(model_fn, image, scale, device, amp="off"):
    """`model_fn` on the image resized by `scale` and on its horizontal flip: out[0] + flip(out[1]).

    The image is resized with PIL bicubic to (round(w·s), round(h·s)); Python's round sends halves
    to even, as published (441·0.5 → 220). `model_fn` runs in the precision of `amp` (--amp);
    its output is fused in float32.
    """
    width, height = image.size
    if scale != 1.0:
        image = image.resize((round(width * scale), round(height * scale)), Image.BICUBIC)
    array = torch.from_numpy(normalize(image).transpose(2, 0, 1))
    batch = torch.stack([array, array.flip(-1)]).to(device)
    with autocast(device, amp):
        outputs = model_fn(batch)
    outputs = outputs.float()
    return outputs[0] + outputs[1].flip(-1)


def class_activation(classifier):
    """relu of the classifier's class feature maps."""
    return lambda images: torch.relu(classifier(images, with_cam=True)[1])


@torch.no_grad()
def multiscale_cams(classifier, image, label, scales, device, amp="off"):
    """keys, strided CAMs ((K−1)×h/4×w/4) and full-size CAMs ((K−1)×h×w) of one image (docs/design.md §6.2)."""
    width, height = image.size
    activation = class_activation(classifier)
    per_scale = [flip_fused_output(activation, image, scale, device, amp) for scale in scales]
    strided = torch.stack([resize_maps(cams, strided_size(height, width)) for cams in per_scale]).sum(0)
    high_res = torch.stack([resize_maps(cams, strided_up_size(height, width)) for cams in per_scale]).sum(0)
    high_res = high_res[:, :height, :width]
    classes = torch.nonzero(torch.as_tensor(label))[:, 0].to(strided.device)
    strided = strided[classes]
    high_res = high_res[classes]
    strided = strided / (strided.flatten(1).max(dim=1)[0][:, None, None] + 1e-5)
    high_res = high_res / (high_res.flatten(1).max(dim=1)[0][:, None, None] + 1e-5)
    keys = np.concatenate([[0], classes.cpu().numpy() + 1]).astype(np.int64)
    return keys, strided.cpu().numpy(), high_res.cpu().numpy()


def maps_to_label(maps, keys, threshold):
    """Prepend a constant background map at `threshold`, argmax, map through keys (class ids)."""
    maps = np.asarray(maps)
    background = np.full((1,) + maps.shape[1:], threshold, dtype=maps.dtype)
    return np.asarray(keys)[np.argmax(np.concatenate([background, maps]), axis=0)]
