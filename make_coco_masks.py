"""Render MS COCO 2014's semantic ground truth once: one class-id PNG per image from the instance
annotations, {data_dir}/mask/{train2014,val2014}/{image id}.png (e.g.
mask/train2014/COCO_train2014_000000000009.png), where the stages read it.

Convention of the IRN-derived COCO code (ReCAM's mscoco/annToMask.py):
  - class ids: 0 background, 1..80 the categories in ascending COCO category id (1..90 with gaps);
  - each non-crowd annotation is painted in the order of the annotation file, so a later instance
    covers an earlier one where they overlap;
  - crowd regions stay background (0, not 255); an image without annotations is all background;
  - 8-bit grayscale PNGs without void pixels.
ReCAM names a mask {integer image id}.png; here it carries the image id, like every other file of
the image. Annotations are decoded with pycocotools (polygons, uncompressed and compressed RLE).

Masks already written are skipped, so a stopped run resumes; --shard i/n splits the images over
machines, --num_workers over processes. Each split's annotation file is read once (all of it is
held in memory while that split is rendered).

Also writes each split's label index, {data_dir}/mask/{split}.labels.npz (the ids and image-level
labels, stamped with the annotation file's size and date): the other stages list and label images
from it instead of parsing the annotation file. A rerun writes it again and skips existing masks.
"""
import argparse

from wsss.stages import coco_masks
from wsss.utils.cli import HelpFormatter, run_script


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    coco_masks.add_arguments(parser)
    return parser


def main(args):
    mask_dir = coco_masks.run(args)
    print(f"masks in {mask_dir}")


if __name__ == "__main__":
    run_script(main, build_parser())
