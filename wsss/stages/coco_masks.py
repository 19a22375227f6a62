"""Rendering COCO 2014's semantic ground-truth masks from its instance annotations (make_coco_masks.py):
one class-id PNG per image, `{mask_dir}/{split}/{image id}.png`, in the convention of wsss.data.coco,
and the split's label index `{mask_dir}/{split}.labels.npz`, which the other stages read instead of
the annotation file."""
import argparse
import functools
import pathlib

from wsss.data.coco import (
    SPLITS,
    COCOData,
    SplitLabels,
    clear_instances,
    label_index_path,
    parse_image_name,
    render_mask,
    require_annotation_file,
    save_label_index,
)
from wsss.utils.cli import add_shard_argument
from wsss.utils.errors import StageError
from wsss.utils.files import save_label_png
from wsss.utils.per_image import plan_outputs, run_per_image

DEFAULT_DATA_DIR = "../coco2014/"


def splits_type(text):
    """`train2014,val2014` → the split names, each one of SPLITS."""
    splits = [split for split in text.split(",") if split]
    unknown = [split for split in splits if split not in SPLITS]
    if not splits or unknown:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(SPLITS)}, got {text!r}")
    return splits


def add_arguments(parser):
    parser.add_argument("--data_dir", type=str, default=DEFAULT_DATA_DIR,
                        help="COCO 2014 folder: train2014/, val2014/, annotations/instances_{train,val}2014.json")
    parser.add_argument("--splits", type=splits_type, default=",".join(SPLITS), metavar="train2014,val2014",
                        help="the splits to render, comma-separated")
    parser.add_argument("--mask_dir", type=str, default=None,
                        help="output folder; default {data_dir}/mask, where the stages look for the ground truth")
    parser.add_argument("--num_workers", type=int, default=4, help="worker processes")
    add_shard_argument(parser)


def write_mask(image_id, data, out_dir):
    """Render one image's mask from the split's annotations (read once in the parent, before the
    workers fork) and write it atomically."""
    try:
        mask = render_mask(data.record(image_id))
    except ValueError as error:
        split, _ = parse_image_name(image_id)
        raise StageError(f"{data.annotation_path(split)}: {error}; the annotation file is damaged, "
                         "download and unpack it again")
    save_label_png(out_dir / f"{image_id}.png", mask)


def run(args):
    """Render every split's missing masks and write its label index; returns the mask folder."""
    data = COCOData(args.data_dir)
    mask_dir = pathlib.Path(args.mask_dir) if args.mask_dir is not None else data.root / "mask"
    for split in args.splits:  # every file there before the first split is rendered
        require_annotation_file(data.annotation_path(split))
    for split in args.splits:
        clear_instances()  # one split's annotations in memory at a time
        records = data.records(split)
        ids = list(records)
        out_dir = mask_dir / split
        pending = plan_outputs(out_dir, ids, args.shard, advice="make it writable or pass another --mask_dir")
        save_label_index(label_index_path(mask_dir, split), SplitLabels.from_records(records),
                         data.annotation_path(split))
        print(f"{split}: {len(ids)} images, {len(pending)} masks to render into {out_dir}")
        run_per_image(functools.partial(write_mask, data=data, out_dir=out_dir), pending, out_dir, args.num_workers)
    return mask_dir
