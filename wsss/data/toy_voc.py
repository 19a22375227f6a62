"""A small synthetic dataset in PASCAL VOC 2012 format, to run the whole pipeline in minutes on a CPU.

`generate(out_dir)` (or `python -m wsss.data.toy_voc --out_dir toy_voc`) writes `JPEGImages/`,
`Annotations/` (VOC XML, one `<object>` per instance), `SegmentationClass/` (VOC palette PNGs,
0 = background, 1..20 = classes, 255 = a 2-pixel void band on every instance boundary) and
`ImageSets/Segmentation/{train,train_aug,val,test}.txt`; every stage then takes `--data_dir out_dir`.
Ids are `toy_000001`, ... numbered over train (the first `num_train` of train_aug), the rest of
train_aug, val and test. Test images have a JPEG only, like VOC's test set. Boxes are VOC's 1-based
pixel coordinates of the instance's visible pixels. `toy_voc.json`, written last, records the
parameters: a folder whose manifest matches is complete and is not generated again.

Design, so that CAMs are informative but imperfect, and each refinement has something to fix:
- ten shape families (winged, wheeled, ...), each shared by two classes ("siblings");
- the body is textured (stripes, checks, dots, waves or blotches; each kind used by two families)
  in two shades of a class hue at medium saturation, at 70 % contrast: body colour and texture
  tell the class, but less surely than
- a small part (about 5 % of the object) near one end, in a saturated class colour (20 hues,
  siblings about 200 degrees apart; a disc for the first sibling, a square for the second), the
  surest sign of the class, so a classifier's CAM peaks on it rather than covering the object;
- backgrounds are smooth colour noise with gradients and clutter (some of it textured like the
  bodies), all desaturated towards grey, so object boundaries are colour edges a dense CRF can
  follow (version 1 painted bodies and clutter from one muted pool: a scratch classifier did not
  learn it in the demo's budget and the CRF step lowered the pseudo-label mIoU);
  objects are 6-45 % of the image, 1-3 per image (the first
  one's class cycles through the 20 classes with the image number, so classes are balanced);
  objects are placed apart when they fit, otherwise later ones occlude earlier ones, each
  instance staying at least half visible; some are cut by the image border.
Each image comes from its own `numpy.random.Generator` seeded with (seed, image number), so the
output is byte-identical for the same parameters and independent of generation order.
"""
import argparse
import colorsys
import math
import pathlib
import re
import xml.etree.ElementTree as ElementTree

import cv2
import numpy as np
from PIL import Image

from wsss.data import voc
from wsss.utils import files
from wsss.utils.cli import str2bool
from wsss.utils.logs import progress

__all__ = ["VERSION", "MANIFEST_NAME", "generate", "build_parser", "main"]

VERSION = 2
MANIFEST_NAME = "toy_voc.json"
CLASS_INFO_PATH = pathlib.Path(__file__).resolve().parents[2] / "data" / "VOC_2012.json"
ID_PATTERN = re.compile(r"toy_\d{6}")

# shape family: (its two classes, body texture kind); the first class draws its part as a disc
FAMILIES = {
    "winged": (("aeroplane", "bird"), "stripes"),
    "wheeled": (("bicycle", "motorbike"), "checks"),
    "hull": (("boat", "car"), "dots"),
    "vase": (("bottle", "pottedplant"), "waves"),
    "longbox": (("bus", "train"), "stripes"),
    "eared": (("cat", "dog"), "blotches"),
    "seat": (("chair", "sofa"), "checks"),
    "quadruped": (("cow", "sheep"), "blotches"),
    "slab": (("diningtable", "tvmonitor"), "waves"),
    "figure": (("horse", "person"), "dots"),
}
UPRIGHT_FAMILIES = ("vase", "figure")  # major axis vertical, part on top

# background and clutter colours; the whole background is then desaturated (BACKGROUND_SATURATION)
BACKGROUND_COLOURS = np.array([
    (170, 160, 140), (120, 120, 125), (90, 120, 150), (100, 130, 90), (180, 150, 90), (150, 180, 210),
    (90, 140, 70), (200, 180, 140), (60, 60, 60), (220, 220, 215), (120, 150, 170),
], dtype=np.float32)
BACKGROUND_SATURATION = 0.45     # background colours pulled this far from grey
BODY_SATURATION = 0.5            # object bodies: a class hue at medium saturation,
BODY_VALUES = (0.5, 0.75)        # in two shades mixed by the family texture,
TEXTURE_CONTRAST = 0.7           # at this fraction of full contrast

OBJECT_COUNT_PROBS = (0.45, 0.35, 0.2)          # 1, 2 or 3 objects
AREA_FRACTION = {1: (0.15, 0.45), 2: (0.08, 0.25), 3: (0.06, 0.16)}  # per object, of the image
SAME_CLASS_PROB = 0.25                          # a further object repeats an earlier class
MIN_VISIBLE = 0.5                               # fraction of an instance left after occlusion
MIN_PIXELS = 60                                 # and at least this many pixels
PLACEMENT_TRIES = 20
TRUNCATION = 0.05                               # fraction of an object's box allowed outside the image
JPEG_QUALITY = 95


def _class_styles(class_names):
    """Per class index: shape family, sibling (0/1), texture kind, period and angle, body colours, part colour."""
    styles = {}
    for family_index, (family, (pair, kind)) in enumerate(FAMILIES.items()):
        for sibling, name in enumerate(pair):
            index = class_names.index(name)
            hue = (family_index * 36 + sibling * 198) % 360
            part = colorsys.hsv_to_rgb(hue / 360, 0.9, 0.95)
            body_hue = (index * 360 / len(class_names) + 9) % 360
            styles[index] = dict(
                family=family, sibling=sibling, kind=kind,
                colours=[np.array(colorsys.hsv_to_rgb(body_hue / 360, BODY_SATURATION, value), dtype=np.float32) * 255
                         for value in BODY_VALUES],
                period=(5.0, 9.0) if sibling == 0 else (7.0, 12.0),
                angle=math.radians((index * 47) % 180),
                part_colour=np.array(part, dtype=np.float32) * 255)
    return styles


# ---- shapes: polygons in a unit frame (major axis x in [-1, 1], y down), (points, filled) pairs

def _ellipse(cx, cy, rx, ry, n=36):
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1)


def _rect(x0, y0, x1, y1):
    return np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], dtype=np.float64)


def _bar(x0, y0, x1, y1, width):
    direction = np.array([x1 - x0, y1 - y0])
    normal = np.array([-direction[1], direction[0]]) / np.linalg.norm(direction) * width / 2
    start, end = np.array([x0, y0]), np.array([x1, y1])
    return np.array([start + normal, end + normal, end - normal, start - normal])


def _winged(rng):
    span, sweep = rng.uniform(0.7, 0.95), rng.uniform(0.1, 0.35)
    wing = np.array([(0.3, 0), (0.1 - sweep, -span), (-0.15 - sweep, -span), (-0.2, 0)])
    tail = np.array([(-0.7, 0), (-0.95, -0.4), (-1.02, -0.4), (-0.95, 0)])
    parts = [_ellipse(0, 0, 1.0, rng.uniform(0.14, 0.2)), wing, wing * (1, -1), tail, tail * (1, -0.6)]
    return [(p, True) for p in parts], (0.8, 0.0)


def _wheeled(rng):
    radius, rim, bar = rng.uniform(0.32, 0.4), rng.uniform(0.11, 0.15), rng.uniform(0.14, 0.18)
    shapes = []
    for cx in (-0.62, 0.62):
        shapes += [(_ellipse(cx, 0.25, radius, radius), True), (_ellipse(cx, 0.25, radius - rim, radius - rim), False)]
    for bar_ends in ((-0.62, 0.25, 0.0, -0.2), (0.0, -0.2, 0.62, 0.25), (-0.35, -0.25, 0.5, -0.25),
                     (0.5, -0.3, 0.62, 0.25)):
        shapes.append((_bar(*bar_ends, bar), True))
    return shapes, (0.55, -0.3)


def _hull(rng):
    bow = rng.uniform(0.65, 0.85)
    hull = np.array([(-1, -0.1), (1, -0.1), (bow, 0.35), (-bow - 0.05, 0.35)])
    cabin = _rect(-0.5, -rng.uniform(0.4, 0.55), rng.uniform(0.2, 0.45), -0.08)
    return [(hull, True), (cabin, True)], (0.78, 0.05)


def _vase(rng):
    body = _ellipse(-0.25, 0, 0.75, rng.uniform(0.38, 0.48))
    neck = _rect(0.3, -0.16, 0.95, 0.16)
    lip = _rect(0.85, -0.24, 1.0, 0.24)
    return [(body, True), (neck, True), (lip, True)], (0.82, 0.0)


def _longbox(rng):
    half = rng.uniform(0.26, 0.36)
    nose = rng.uniform(0.05, 0.2)
    box = np.array([(-1, -half), (1 - nose, -half), (1, -half + nose), (1, half), (-1, half)])
    wheels = [(_ellipse(x, half, 0.13, 0.13), True) for x in (-0.65, -0.4, 0.45, 0.7)]
    return [(box, True)] + wheels, (0.8, -half * 0.3)


def _eared(rng):
    head = rng.uniform(0.26, 0.34)
    ear = rng.uniform(0.2, 0.32)
    shapes = [_ellipse(-0.25, 0.1, 0.72, 0.4), _ellipse(0.65, -0.2, head, head * 0.9),
              np.array([(0.45, -0.35), (0.5, -0.35 - ear), (0.65, -0.4)]),
              np.array([(0.7, -0.42), (0.82, -0.38 - ear), (0.88, -0.32)]),
              _bar(-0.9, 0.15, -1.0, -0.35, 0.12)]
    return [(p, True) for p in shapes], (0.68, -0.18)


def _seat(rng):
    back = rng.uniform(0.6, 0.9)
    shapes = [_rect(-0.85, -0.05, 0.85, 0.25), _rect(-0.85, -back, -0.55, 0.0),
              _rect(-0.8, 0.2, -0.65, 0.65), _rect(0.65, 0.2, 0.8, 0.65)]
    return [(p, True) for p in shapes], (-0.7, -back + 0.15)


def _quadruped(rng):
    leg = rng.uniform(0.6, 0.8)
    shapes = [_ellipse(-0.1, 0, 0.72, rng.uniform(0.3, 0.38)), _bar(0.45, -0.1, 0.75, -0.35, 0.2),
              _ellipse(0.8, -0.35, 0.22, 0.16)]
    shapes += [_rect(x - 0.07, 0.15, x + 0.07, leg) for x in (-0.6, -0.4, 0.2, 0.4)]
    return [(p, True) for p in shapes], (0.82, -0.35)


def _slab(rng):
    top = rng.uniform(0.15, 0.55)
    shapes = [_rect(-1, -0.55, 1, -0.55 + top + 0.2), _rect(-0.8, -0.4, -0.62, 0.55), _rect(0.62, -0.4, 0.8, 0.55)]
    return [(p, True) for p in shapes], (0.78, -0.45 + top / 2)


def _figure(rng):
    spread, arm = rng.uniform(0.2, 0.4), rng.uniform(0.3, 0.55)
    shapes = [_ellipse(0.8, 0, 0.2, 0.2), _ellipse(0.25, 0, 0.42, 0.26),
              _bar(-0.1, -0.12, -1.0, -spread, 0.15), _bar(-0.1, 0.12, -1.0, spread, 0.15),
              _bar(0.5, -0.2, 0.5 - arm, -0.55, 0.12), _bar(0.5, 0.2, 0.5 - arm, 0.55, 0.12)]
    return [(p, True) for p in shapes], (0.8, 0.0)


SHAPES = {"winged": _winged, "wheeled": _wheeled, "hull": _hull, "vase": _vase, "longbox": _longbox,
          "eared": _eared, "seat": _seat, "quadruped": _quadruped, "slab": _slab, "figure": _figure}


def _rasterize(shapes, height, width):
    mask = np.zeros((height, width), dtype=np.uint8)
    for points, filled in shapes:
        cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], 1 if filled else 0, cv2.LINE_8, shift=4)
    return mask.astype(bool)


def _part_polygon(anchor, radius, sibling):
    if sibling == 0:
        return _ellipse(anchor[0], anchor[1], radius, radius, n=24)
    half = radius * math.sqrt(math.pi) / 2  # the same area as the disc
    return _rect(anchor[0] - half, anchor[1] - half, anchor[0] + half, anchor[1] + half)


# ---- textures: values in [0, 1] over an image-sized grid, mixed between two colours

def _texture(rng, kind, period, angle, height, width):
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cos, sin = math.cos(angle), math.sin(angle)
    u = (xx * cos + yy * sin) / period + rng.uniform(0, 1)
    v = (yy * cos - xx * sin) / period + rng.uniform(0, 1)
    if kind == "stripes":
        value = 2.5 * np.sin(2 * np.pi * u)
    elif kind == "checks":
        value = 4.0 * np.sin(2 * np.pi * u) * np.sin(2 * np.pi * v)
    elif kind == "dots":
        distance = np.hypot(u - np.round(u), v - np.round(v))
        value = (0.3 - distance) * period
    elif kind == "waves":
        value = 2.5 * np.sin(2 * np.pi * (u + 0.3 * np.sin(2 * np.pi * v / 2.5)))
    else:  # blotches
        cells = rng.standard_normal((int(height / period) + 2, int(width / period) + 2)).astype(np.float32)
        value = 2.0 * cv2.resize(cells, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(0.5 + value, 0, 1)[..., None]


def _jitter(rng, colour, amount):
    return np.clip(colour + rng.uniform(-amount, amount, 3), 0, 255).astype(np.float32)


def _shading(rng, height, width, centre, scale, amount):
    """A linear brightness ramp through `centre` in a random direction, +-amount at `scale` pixels."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = ((xx - centre[0]) * math.cos(angle) + (yy - centre[1]) * math.sin(angle)) / scale
    return (1 + rng.uniform(-amount, amount) * np.clip(ramp, -1.5, 1.5))[..., None]


def _background(rng, height, width):
    grid = (int(rng.integers(2, 6)), int(rng.integers(2, 6)))
    cells = BACKGROUND_COLOURS[rng.integers(0, len(BACKGROUND_COLOURS), grid)]
    cells = np.clip(cells + rng.uniform(-25, 25, cells.shape), 0, 255).astype(np.float32)
    image = cv2.resize(cells, (width, height), interpolation=cv2.INTER_CUBIC)
    image *= _shading(rng, height, width, (width / 2, height / 2), max(height, width) / 2, 0.25)
    size = min(height, width)
    for _ in range(int(rng.integers(2, 8))):
        centre = rng.uniform(0, 1, 2) * (width, height)
        kind = rng.integers(0, 3)
        if kind == 0:
            shape = _ellipse(*centre, *rng.uniform(0.05, 0.25, 2) * size)
        elif kind == 1:
            angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 7))))
            radii = rng.uniform(0.05, 0.25, len(angles)) * size
            shape = centre + np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
        else:
            end = centre + rng.uniform(-0.5, 0.5, 2) * size
            shape = _bar(*centre, *end, rng.uniform(1.5, 5.0))
        mask = _rasterize([(shape, True)], height, width)
        if not mask.any():
            continue
        colour = _jitter(rng, BACKGROUND_COLOURS[rng.integers(0, len(BACKGROUND_COLOURS))], 20)
        if rng.uniform() < 0.3:  # textured like an object body
            other = _jitter(rng, BACKGROUND_COLOURS[rng.integers(0, len(BACKGROUND_COLOURS))], 20)
            kind_name = ("stripes", "checks", "dots", "waves", "blotches")[rng.integers(0, 5)]
            mix = _texture(rng, kind_name, rng.uniform(5, 12), rng.uniform(0, np.pi), height, width)
            fill = colour * (1 - mix) + other * mix
        else:
            fill = np.broadcast_to(colour, image.shape)
        alpha = rng.uniform(0.5, 1.0)
        image[mask] = (1 - alpha) * image[mask] + alpha * fill[mask]
    grey = image.mean(axis=2, keepdims=True)
    return grey + BACKGROUND_SATURATION * (image - grey)


# ---- objects

def _transform(points, centre, scale, angle, mirror):
    """Unit frame -> image: mirror (x or y), scale, rotate, translate."""
    points = points * mirror * scale
    cos, sin = math.cos(angle), math.sin(angle)
    return np.stack([points[:, 0] * cos - points[:, 1] * sin + centre[0],
                     points[:, 0] * sin + points[:, 1] * cos + centre[1]], axis=1)


def _sample_object(rng, style, area, height, width):
    """A placed object: its full mask (body and part), painted pixels, and whether it is truncated."""
    family, sibling = style["family"], style["sibling"]
    shapes, anchor = SHAPES[family](rng)
    stretch = rng.uniform(0.85, 1.15)
    shapes = [(points * (1, stretch), filled) for points, filled in shapes]
    anchor = (anchor[0], anchor[1] * stretch)
    if family in UPRIGHT_FAMILIES:
        angle = -math.pi / 2 + rng.uniform(-0.35, 0.35)
        mirror = np.array([1, rng.choice([-1, 1])])
    else:
        angle = rng.uniform(-0.45, 0.45)
        mirror = np.array([rng.choice([-1, 1]), 1])
    reference = 48.0  # measure the unit shape's area at this scale, then scale to the target area
    unit_area = _rasterize([(p * reference + 64, f) for p, f in shapes], 128, 128).sum() / reference ** 2
    scale = math.sqrt(area / unit_area)
    part_radius = math.sqrt(rng.uniform(0.04, 0.07) * area / math.pi) / scale
    shapes.append((_part_polygon(anchor, part_radius, sibling), True))
    for _ in range(PLACEMENT_TRIES):
        outline = _transform(np.concatenate([p for p, _ in shapes]), (0, 0), scale, angle, mirror)
        low, high = outline.min(axis=0), outline.max(axis=0)
        slack = TRUNCATION * (high - low)
        start, stop = -low - slack, np.array([width, height]) - high + slack
        if np.all(stop >= start):
            break
        scale *= 0.85
    else:
        return None
    centre = rng.uniform(start, stop)
    placed = [(_transform(p, centre, scale, angle, mirror), f) for p, f in shapes]
    mask = _rasterize(placed, height, width)
    part_mask = _rasterize(placed[-1:], height, width)
    truncated = bool(np.any(low + centre < 0) or np.any(high + centre > (width - 1, height - 1)))

    first, second = (_jitter(rng, colour, 10) for colour in style["colours"])
    mix = _texture(rng, style["kind"], rng.uniform(*style["period"]),
                   style["angle"] + angle + rng.uniform(-0.3, 0.3), height, width)
    mix = 0.5 + TEXTURE_CONTRAST * (mix - 0.5)
    paint = first * (1 - mix) + second * mix
    paint[part_mask] = _jitter(rng, style["part_colour"], 12)
    rim = part_mask & ~cv2.erode(part_mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    paint[rim] *= 0.6
    paint *= _shading(rng, height, width, centre, scale, 0.2)
    return dict(mask=mask, paint=paint, truncated=truncated)


def _sample_classes(rng, first_class, count, num_classes):
    classes = [first_class]
    while len(classes) < count:
        if rng.uniform() < SAME_CLASS_PROB:
            classes.append(classes[int(rng.integers(0, len(classes)))])
        else:
            classes.append(int(rng.choice([c for c in range(num_classes) if c not in classes])))
    return classes


def _occlusion_ok(masks, min_visible):
    """Every mask keeps `min_visible` of its pixels (and MIN_PIXELS) under the masks drawn after it."""
    above = np.zeros_like(masks[-1])
    for mask in reversed(masks):
        if (mask & ~above).sum() < max(min_visible * mask.sum(), MIN_PIXELS):
            return False
        above |= mask
    return True


def _render(rng, first_class, height, width, styles):
    """One image: RGB uint8 array, class map (0, 1..20, 255 void), the objects (class, box, truncated)
    and their full masks in drawing order (a later object covers an earlier one).

    Boxes are (xmin, ymin, xmax, ymax) of the instance's visible pixels, 0-based inclusive.
    """
    count = int(rng.choice(len(OBJECT_COUNT_PROBS), p=OBJECT_COUNT_PROBS)) + 1
    classes = _sample_classes(rng, first_class, count, len(styles))
    image = _background(rng, height, width)
    placed = []
    for class_index in classes:
        for attempt in range(PLACEMENT_TRIES):
            area = rng.uniform(*AREA_FRACTION[count]) * height * width
            candidate = _sample_object(rng, styles[class_index], area, height, width)
            # try for disjoint objects first, then accept more and more occlusion
            min_visible = max(MIN_VISIBLE, 1 - attempt / PLACEMENT_TRIES)
            if candidate is not None and _occlusion_ok([p["mask"] for p in placed] + [candidate["mask"]], min_visible):
                placed.append(dict(candidate, class_index=class_index))
                break

    instances = np.zeros((height, width), dtype=np.uint8)
    for number, obj in enumerate(placed, start=1):
        image[obj["mask"]] = obj["paint"][obj["mask"]]
        instances[obj["mask"]] = number
    image = cv2.GaussianBlur(image, (0, 0), 0.6)
    image += rng.normal(0, rng.uniform(2, 6), image.shape).astype(np.float32)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)

    kernel = np.ones((3, 3), np.uint8)
    border = cv2.dilate(instances, kernel) != cv2.erode(instances, kernel)
    labels = np.zeros((height, width), dtype=np.uint8)
    objects = []
    for number, obj in enumerate(placed, start=1):
        ys, xs = np.nonzero(instances == number)
        labels[instances == number] = obj["class_index"] + 1
        objects.append((obj["class_index"], (xs.min(), ys.min(), xs.max(), ys.max()), obj["truncated"]))
    labels[border] = 255
    return image, labels, objects, [obj["mask"] for obj in placed]


# ---- files

def _annotation_xml(image_id, height, width, objects, class_names):
    root = ElementTree.Element("annotation")
    ElementTree.SubElement(root, "folder").text = "toy_voc"
    ElementTree.SubElement(root, "filename").text = f"{image_id}.jpg"
    size = ElementTree.SubElement(root, "size")
    for key, value in (("width", width), ("height", height), ("depth", 3)):
        ElementTree.SubElement(size, key).text = str(value)
    ElementTree.SubElement(root, "segmented").text = "1"
    for class_index, box, truncated in objects:
        element = ElementTree.SubElement(root, "object")
        for key, value in (("name", class_names[class_index]), ("pose", "Unspecified"),
                           ("truncated", int(truncated)), ("difficult", 0)):
            ElementTree.SubElement(element, key).text = str(value)
        bndbox = ElementTree.SubElement(element, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ElementTree.SubElement(bndbox, key).text = str(int(value) + 1)  # VOC boxes are 1-based
    ElementTree.indent(root, space="\t")
    return ElementTree.tostring(root, encoding="unicode") + "\n"


def _write_jpeg(path, image):
    with files.atomic_path(path) as temporary:
        Image.fromarray(image).save(temporary, format="JPEG", quality=JPEG_QUALITY)


def _split_ids(num_train, num_train_aug, num_val, num_test):
    ids = [f"toy_{number:06d}" for number in range(1, num_train_aug + num_val + num_test + 1)]
    train_aug = ids[:num_train_aug]
    return dict(train=train_aug[:num_train], train_aug=train_aug,
                val=ids[num_train_aug:num_train_aug + num_val], test=ids[num_train_aug + num_val:])


def _remove_stale(out_dir, keep):
    """Delete toy files (and leftover temporaries) of an earlier generation that this one does not write."""
    for folder, suffix in (("JPEGImages", ".jpg"), ("Annotations", ".xml"), ("SegmentationClass", ".png")):
        for path in (out_dir / folder).glob(f"*{suffix}"):
            if path.name.startswith(".toy_") or (ID_PATTERN.fullmatch(path.stem) and path.stem not in keep[folder]):
                path.unlink()


def generate(out_dir, *, seed=0, num_train=80, num_train_aug=400, num_val=80, num_test=20,
             min_size=96, max_size=192, show_progress=True):
    """Write the toy dataset to `out_dir` unless a complete one with these parameters is there."""
    if not 0 <= num_train <= num_train_aug or min(num_val, num_test) < 0 or num_train_aug + num_val < 1:
        raise ValueError("need 0 <= num_train <= num_train_aug, num_val, num_test >= 0 and some images")
    if not 32 <= min_size <= max_size:
        raise ValueError(f"need 32 <= min_size <= max_size, got {min_size}, {max_size}")
    out_dir = pathlib.Path(out_dir)
    manifest = dict(version=VERSION, seed=seed, num_train=num_train, num_train_aug=num_train_aug,
                    num_val=num_val, num_test=num_test, min_size=min_size, max_size=max_size)
    manifest_path = out_dir / MANIFEST_NAME
    if manifest_path.is_file() and files.read_json(manifest_path).get("parameters") == manifest:
        return out_dir
    manifest_path.unlink(missing_ok=True)  # an interrupted regeneration must not look complete

    class_names = files.read_json(CLASS_INFO_PATH)["class_names"]
    styles = _class_styles(class_names)
    palette = voc.voc_palette()
    splits = _split_ids(num_train, num_train_aug, num_val, num_test)
    annotated = splits["train_aug"] + splits["val"]
    _remove_stale(out_dir, {"JPEGImages": set(annotated + splits["test"]),
                            "Annotations": set(annotated), "SegmentationClass": set(annotated)})
    instances = {name: 0 for name in class_names}
    for number, image_id in enumerate(progress(annotated + splits["test"], desc="toy VOC", disable=not show_progress)):
        rng = np.random.default_rng([seed, number])
        height, width = (int(v) for v in rng.integers(min_size, max_size + 1, 2))
        image, labels, objects, _ = _render(rng, number % len(class_names), height, width, styles)
        _write_jpeg(out_dir / "JPEGImages" / f"{image_id}.jpg", image)
        if number < len(annotated):
            files.write_text(out_dir / "Annotations" / f"{image_id}.xml",
                             _annotation_xml(image_id, height, width, objects, class_names))
            files.save_colour_png(out_dir / "SegmentationClass" / f"{image_id}.png", labels, palette)
            for class_index, _, _ in objects:
                instances[class_names[class_index]] += 1
    for domain, ids in splits.items():
        files.write_text(out_dir / "ImageSets" / "Segmentation" / f"{domain}.txt", "".join(f"{i}\n" for i in ids))
    files.write_json(manifest_path, dict(parameters=manifest, images={k: len(v) for k, v in splits.items()},
                                         instances_train_aug_val=instances))
    return out_dir


def build_parser():
    parser = argparse.ArgumentParser(description="Generate the toy dataset in PASCAL VOC 2012 format.")
    parser.add_argument("--out_dir", type=str, required=True, help="output folder (then pass it as --data_dir)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; image n uses the generator (seed, n)")
    parser.add_argument("--num_train", type=int, default=80, help="images of the train list (the first of train_aug)")
    parser.add_argument("--num_train_aug", type=int, default=400, help="images of the train_aug list")
    parser.add_argument("--num_val", type=int, default=80, help="images of the val list")
    parser.add_argument("--num_test", type=int, default=20, help="images of the test list (JPEG only)")
    parser.add_argument("--min_size", type=int, default=96, help="smallest image width/height")
    parser.add_argument("--max_size", type=int, default=192, help="largest image width/height")
    parser.add_argument("--show_progress", type=str2bool, default=True, help="tqdm progress bar (True/False)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    path = generate(args.out_dir, seed=args.seed, num_train=args.num_train, num_train_aug=args.num_train_aug,
                    num_val=args.num_val, num_test=args.num_test, min_size=args.min_size, max_size=args.max_size,
                    show_progress=args.show_progress)
    print(f"toy VOC dataset ready: {path}")
    return path


if __name__ == "__main__":
    main()
