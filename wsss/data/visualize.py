"""Pictures: CAM heat-map overlays and VOC-coloured label maps."""
import cv2
import numpy as np

from wsss.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from wsss.data.voc import voc_palette


def denormalize(image_chw):
    """A normalised CHW float array back to uint8 RGB HWC."""
    image = image_chw.transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN
    return np.clip(image * 255, 0, 255).astype(np.uint8)


def heatmap_overlay(image_rgb, cam, alpha=0.5):
    """A [0, 1] map resized to the image, JET-coloured and blended over it (RGB uint8)."""
    height, width = image_rgb.shape[:2]
    cam = cv2.resize(np.asarray(cam, dtype=np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap((np.clip(cam, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    colour = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)
    return (image_rgb * (1 - alpha) + colour * alpha).astype(np.uint8)


def colour_label(label):
    """Class ids → VOC colours (RGB uint8)."""
    palette = np.asarray(voc_palette(), dtype=np.uint8).reshape(256, 3)
    return palette[np.asarray(label, dtype=np.uint8)]
