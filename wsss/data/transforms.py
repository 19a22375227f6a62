"""Image transforms of the published pipeline, on PIL images and numpy arrays (no torchvision).

Randomness comes from Python's `random` module, which PyTorch seeds in each loader worker.
"""
import random

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from wsss.utils.labels import IGNORE_LABEL

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def random_long_side_resize(image, min_size, max_size, label=None):
    """Resize so the longer side is a random integer in [min_size, max_size] (image bicubic, label nearest)."""
    target = random.randint(min_size, max_size)
    width, height = image.size
    scale = target / max(width, height)
    size = (int(round(width * scale)), int(round(height * scale)))
    if size != (width, height):
        image = image.resize(size, Image.BICUBIC)
        if label is not None:
            label = label.resize(size, Image.NEAREST)
    return image, label


def random_hflip(image, label=None):
    if random.random() < 0.5:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
        if label is not None:
            label = label.transpose(Image.FLIP_LEFT_RIGHT)
    return image, label


def normalize(image):
    """uint8 RGB (PIL or array) → float32 HWC with ImageNet mean/std applied to values/255."""
    array = np.asarray(image, dtype=np.float64) / 255.0
    return ((array - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)


def random_crop_box(height, width, size):
    """Offsets for a size×size crop: a larger side gets a random image offset, a smaller side a
    random offset inside the canvas. Returns (image_top, image_left, canvas_top, canvas_left)."""
    image_top, canvas_top = _random_offsets(height, size)
    image_left, canvas_left = _random_offsets(width, size)
    return image_top, image_left, canvas_top, canvas_left


def _random_offsets(length, size):
    space = length - size
    if space > 0:
        return random.randrange(space + 1), 0
    return 0, random.randrange(-space + 1)


def crop(array, box, size, fill):
    """Place the crop `box` (from random_crop_box; all zeros = top-left) of an HW[C] array on a
    size×size canvas filled with `fill`."""
    image_top, image_left, canvas_top, canvas_left = box
    height = min(size, array.shape[0])
    width = min(size, array.shape[1])
    canvas = np.full((size, size) + array.shape[2:], fill, dtype=array.dtype)
    canvas[canvas_top:canvas_top + height, canvas_left:canvas_left + width] = \
        array[image_top:image_top + height, image_left:image_left + width]
    return canvas


TOP_LEFT = (0, 0, 0, 0)


def colour_jitter(image, brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1):
    """Brightness, contrast, saturation and hue jitter in random order (torchvision's ColorJitter)."""
    def adjust_hue(img):
        shift = random.uniform(-hue, hue)
        h, s, v = img.convert("HSV").split()
        h = Image.fromarray((np.asarray(h, dtype=np.int16) + int(round(shift * 255))).astype(np.uint8), "L")
        return Image.merge("HSV", (h, s, v)).convert("RGB")

    steps = [
        lambda img: ImageEnhance.Brightness(img).enhance(random.uniform(1 - brightness, 1 + brightness)),
        lambda img: ImageEnhance.Contrast(img).enhance(random.uniform(1 - contrast, 1 + contrast)),
        lambda img: ImageEnhance.Color(img).enhance(random.uniform(1 - saturation, 1 + saturation)),
        adjust_hue,
    ]
    random.shuffle(steps)
    for step in steps:
        image = step(image)
    return image


def _level(v, max_v, magnitude=10):
    return v * max_v / magnitude


RANDAUGMENT_OPS = {
    "autocontrast": lambda img, v: ImageOps.autocontrast(img),
    "brightness": lambda img, v: ImageEnhance.Brightness(img).enhance(1.0 + _level(v, 0.9) * random.choice((-1, 1))),
    "color": lambda img, v: ImageEnhance.Color(img).enhance(1.0 + _level(v, 0.9) * random.choice((-1, 1))),
    "contrast": lambda img, v: ImageEnhance.Contrast(img).enhance(1.0 + _level(v, 0.9) * random.choice((-1, 1))),
    "equalize": lambda img, v: ImageOps.equalize(img),
    "identity": lambda img, v: img,
    "posterize": lambda img, v: ImageOps.posterize(img, 8 - int(_level(v, 4))),
    "rotate": lambda img, v: img.rotate(_level(v, 30) * random.choice((-1, 1))),
    "sharpness": lambda img, v: ImageEnhance.Sharpness(img).enhance(1.0 + _level(v, 0.9) * random.choice((-1, 1))),
    "shear_x": lambda img, v: img.transform(img.size, Image.AFFINE, (1, _level(v, 0.3) * random.choice((-1, 1)), 0, 0, 1, 0)),
    "shear_y": lambda img, v: img.transform(img.size, Image.AFFINE, (1, 0, 0, _level(v, 0.3) * random.choice((-1, 1)), 1, 0)),
    "solarize": lambda img, v: ImageOps.solarize(img, 256 - int(_level(v, 256))),
    "translate_x": lambda img, v: img.transform(img.size, Image.AFFINE, (1, 0, _level(v, 0.3) * img.size[0] * random.choice((-1, 1)), 0, 1, 0)),
    "translate_y": lambda img, v: img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, _level(v, 0.3) * img.size[1] * random.choice((-1, 1)))),
}


def rand_augment(image, n=2, m=10, cutout=16):
    """FixMatch RandAugment: n random ops, each applied with probability 0.5 at a random level in
    [1, m), then a cutout square of side `cutout` filled with grey."""
    for name in random.choices(sorted(RANDAUGMENT_OPS), k=n):
        if random.random() < 0.5:
            image = RANDAUGMENT_OPS[name](image, random.randint(1, m - 1))
    return cutout_abs(image, cutout)


def cutout_abs(image, size):
    width, height = image.size
    x0 = int(max(0, random.uniform(0, width) - size / 2.0))
    y0 = int(max(0, random.uniform(0, height) - size / 2.0))
    image = image.copy()
    image.paste((127, 127, 127), (x0, y0, min(width, x0 + size), min(height, y0 + size)))
    return image


AUGMENTATIONS = {"colorjitter": colour_jitter, "randaugment": rand_augment}


def parse_augment(text):
    """`--augment colorjitter_randaugment` → the ordered list of photometric augmentations."""
    names = [name for name in text.split("_") if name] if text else []
    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation(s) {unknown}; choose from {sorted(AUGMENTATIONS)}")
    return [name for name in AUGMENTATIONS if name in names]


class TrainTransform:
    """Random resize → flip → photometric augmentations → normalise → random crop → CHW.

    With a label (affinity and segmentation training) resize and flip are joint, the label is
    cropped with fill 255 and, when `label_size` is set, resized (nearest) to label_size².
    """

    def __init__(self, image_size, min_image_size, max_image_size, augment="", label_size=None):
        self.image_size = image_size
        self.min_image_size = min_image_size
        self.max_image_size = max_image_size
        self.augmentations = [AUGMENTATIONS[name] for name in parse_augment(augment)]
        self.label_size = label_size

    def __call__(self, image, label=None):
        image, label = random_long_side_resize(image, self.min_image_size, self.max_image_size, label)
        image, label = random_hflip(image, label)
        for augmentation in self.augmentations:
            image = augmentation(image)
        array = normalize(image)
        box = random_crop_box(array.shape[0], array.shape[1], self.image_size)
        array = crop(array, box, self.image_size, 0.0).transpose(2, 0, 1)
        if label is None:
            return array, None
        label = crop(np.asarray(label, dtype=np.uint8), box, self.image_size, IGNORE_LABEL)
        if self.label_size is not None:
            label = np.asarray(Image.fromarray(label).resize((self.label_size, self.label_size), Image.NEAREST))
        return array, label


class TopLeftCropTransform:
    """Evaluation: normalise, top-left crop to image_size (image padded 0, mask padded 255), CHW."""

    def __init__(self, image_size):
        self.image_size = image_size

    def __call__(self, image, mask):
        array = crop(normalize(image), TOP_LEFT, self.image_size, 0.0).transpose(2, 0, 1)
        return array, crop(np.asarray(mask, dtype=np.uint8), TOP_LEFT, self.image_size, IGNORE_LABEL)
