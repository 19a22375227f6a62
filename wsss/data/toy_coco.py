"""The toy dataset (wsss.data.toy_voc) in MS COCO 2014 layout, so that the COCO path runs on a CPU.

`generate(out_dir)` (or `python -m wsss.data.toy_coco --out_dir toy_coco`) writes

    train2014/COCO_train2014_<12-digit id>.jpg     the toy's train_aug scenes
    val2014/COCO_val2014_<12-digit id>.jpg         its val scenes
    annotations/instances_{train,val}2014.json     one annotation per object, compressed RLE

and `toy_coco.json`, the manifest written last (a folder whose manifest matches is complete and is
not generated again). The ground-truth masks are then rendered like COCO's, by make_coco_masks.py.

The scenes are toy_voc's, pixel for pixel: image n (COCO id n) is toy_voc's `toy_{n:06d}` for the
same seed, sizes and `num_train` = toy_voc's `num_train_aug`. Each annotation is an object's full
shape, written in drawing order, so the mask convention (a later annotation covers an earlier one)
reproduces the occlusions, and the rendered mask equals toy_voc's class map off its void band.
The 20 toy classes are the VOC classes, mapped onto their COCO categories (TOY_CATEGORIES: person,
bicycle, car, motorcycle, airplane, bus, train, boat, bird, cat, dog, horse, sheep, cow, bottle,
chair, couch, potted plant, dining table, tv: COCO class ids 1–7, 9, 15–20, 40, 57–59, 61, 63), so
masks and labels use ids up to 63 of the 81. The annotation files list all 80 categories.
"""
import argparse
import pathlib

import numpy as np

from wsss.data import coco
from wsss.data.toy_voc import CLASS_INFO_PATH, _class_styles, _render, _write_jpeg
from wsss.utils import files
from wsss.utils.cli import str2bool
from wsss.utils.logs import progress

__all__ = ["VERSION", "MANIFEST_NAME", "TOY_CATEGORIES", "generate", "build_parser", "main"]

VERSION = 1
MANIFEST_NAME = "toy_coco.json"
# toy (VOC) class name → COCO category id
TOY_CATEGORIES = {
    "aeroplane": 5, "bicycle": 2, "bird": 16, "boat": 9, "bottle": 44, "bus": 6, "car": 3, "cat": 17,
    "chair": 62, "cow": 21, "diningtable": 67, "dog": 18, "horse": 19, "motorbike": 4, "person": 1,
    "pottedplant": 64, "sheep": 20, "sofa": 63, "train": 7, "tvmonitor": 72,
}


def _annotation(annotation_id, image_number, category, instance_mask):
    ys, xs = np.nonzero(instance_mask)
    box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
    return dict(id=annotation_id, image_id=image_number, category_id=category,
                segmentation=coco.encode_instance(instance_mask), area=int(instance_mask.sum()), bbox=box, iscrowd=0)


def _remove_stale(out_dir, keep):
    """Delete toy images an earlier generation wrote and this one does not, leftover temporaries,
    and every rendered mask (they were rendered from the earlier annotations)."""
    for split in coco.SPLITS:
        for path in (out_dir / split).glob("*.jpg"):
            if path.name.startswith(".COCO_") or (coco.NAME_PATTERN.fullmatch(path.stem) and path.stem not in keep):
                path.unlink()
        for path in (out_dir / "mask" / split).glob("*.png"):
            if path.name.startswith(".COCO_") or coco.NAME_PATTERN.fullmatch(path.stem):
                path.unlink()


def generate(out_dir, *, seed=0, num_train=400, num_val=80, min_size=96, max_size=192, show_progress=True):
    """Write the toy dataset in COCO layout to `out_dir` unless a complete one with these parameters is there."""
    if num_train < 0 or num_val < 0 or num_train + num_val < 1:
        raise ValueError("need num_train, num_val >= 0 and some images")
    if not 32 <= min_size <= max_size:
        raise ValueError(f"need 32 <= min_size <= max_size, got {min_size}, {max_size}")
    out_dir = pathlib.Path(out_dir)
    manifest = dict(version=VERSION, seed=seed, num_train=num_train, num_val=num_val, min_size=min_size,
                    max_size=max_size)
    manifest_path = out_dir / MANIFEST_NAME
    if manifest_path.is_file() and files.read_json(manifest_path).get("parameters") == manifest:
        return out_dir
    manifest_path.unlink(missing_ok=True)  # an interrupted regeneration must not look complete

    class_names = files.read_json(CLASS_INFO_PATH)["class_names"]
    styles = _class_styles(class_names)
    splits = ["train2014"] * num_train + ["val2014"] * num_val
    names = [coco.image_name(split, number + 1) for number, split in enumerate(splits)]
    _remove_stale(out_dir, set(names))
    instances = {split: dict(images=[], annotations=[]) for split in coco.SPLITS}
    annotation_count = 0  # annotation ids are unique over both files, as in COCO
    for number, (split, name) in enumerate(progress(list(zip(splits, names)), desc="toy COCO",
                                                     disable=not show_progress)):
        rng = np.random.default_rng([seed, number])
        height, width = (int(v) for v in rng.integers(min_size, max_size + 1, 2))
        image, _, objects, masks = _render(rng, number % len(class_names), height, width, styles)
        _write_jpeg(out_dir / split / f"{name}.jpg", image)
        instances[split]["images"].append(dict(id=number + 1, file_name=f"{name}.jpg", height=height, width=width))
        for (class_index, _, _), instance_mask in zip(objects, masks):
            annotation_count += 1
            instances[split]["annotations"].append(_annotation(
                annotation_count, number + 1, TOY_CATEGORIES[class_names[class_index]], instance_mask))
    categories = [dict(id=category, name=name) for category, name in coco.CATEGORIES]
    for split, content in instances.items():
        files.write_json(out_dir / "annotations" / f"instances_{split}.json",
                         dict(info=dict(description="toy scenes in MS COCO 2014 layout (wsss.data.toy_coco)",
                                        version=VERSION), **content, categories=categories))
    files.write_json(manifest_path, dict(parameters=manifest, images={split: len(v["images"])
                                                                      for split, v in instances.items()}))
    return out_dir


def build_parser():
    parser = argparse.ArgumentParser(description="Generate the toy dataset in MS COCO 2014 layout.")
    parser.add_argument("--out_dir", type=str, required=True, help="output folder (then pass it as --data_dir)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; image n uses the generator (seed, n)")
    parser.add_argument("--num_train", type=int, default=400, help="images of train2014 (toy_voc's train_aug)")
    parser.add_argument("--num_val", type=int, default=80, help="images of val2014 (toy_voc's val)")
    parser.add_argument("--min_size", type=int, default=96, help="smallest image width/height")
    parser.add_argument("--max_size", type=int, default=192, help="largest image width/height")
    parser.add_argument("--show_progress", type=str2bool, default=True, help="tqdm progress bar (True/False)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    path = generate(args.out_dir, seed=args.seed, num_train=args.num_train, num_val=args.num_val,
                    min_size=args.min_size, max_size=args.max_size, show_progress=args.show_progress)
    print(f"toy COCO dataset ready: {path}; render its masks with make_coco_masks.py --data_dir {path}")
    return path


if __name__ == "__main__":
    main()
