"""Stage 2a: AffinityNet's training labels from CAMs and the label CRF (SPEC §6.3).

Writes experiments/predictions/{experiment_name}@aff_fg={fg}_bg={bg}/{id}.png: confident
foreground classes, confident background 0, and 255 where the two thresholds disagree.
"""
import argparse
import functools
import pathlib

import numpy as np

from core.affinity_labels import make_affinity_label
from tools import distributed
from tools.cli import StageError, add_shard_argument, run_script, str2bool
from tools.experiment import affinity_label_name
from tools.files import check_map_files, check_writable, load_map_array, save_label_png
from tools.per_image import pending_ids, run_per_image
from tools.voc import VOCData, read_image_ids

LABEL_CRF_ITERATIONS = 10


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experiment_name", type=str, required=True, help="the CAM folder under --pred_dir")
    parser.add_argument("--domain", type=str, default="train", help="image list")
    parser.add_argument("--fg_threshold", type=float, default=0.30, help="background level for confident foreground")
    parser.add_argument("--bg_threshold", type=float, default=0.05, help="background level for confident background")
    parser.add_argument("--data_dir", type=str, default="../VOCtrainval_11-May-2012/", help="VOC2012-format folder")
    parser.add_argument("--pred_dir", type=str, default="./experiments/predictions/", help="where prediction folders are")
    parser.add_argument("--num_workers", type=int, default=4, help="worker processes for the CRF")
    add_shard_argument(parser)
    parser.add_argument("--allow_pickle", type=str2bool, default=False,
                        help="read published pickled .npy CAM files (unpickling can run code: trusted files only)")
    return parser


def label_one(image_id, data, cam_dir, out_dir, fg_threshold, bg_threshold, allow_pickle):
    image = np.array(data.image(image_id))
    keys, maps = load_map_array(cam_dir, image_id, "hr_cam", image.shape[:2], allow_pickle)
    label = make_affinity_label(image, maps, keys, fg_threshold, bg_threshold, LABEL_CRF_ITERATIONS)
    save_label_png(out_dir / f"{image_id}.png", label)


def main(args):
    data = VOCData(args.data_dir)
    cam_dir = pathlib.Path(args.pred_dir) / args.experiment_name
    if not cam_dir.is_dir():
        raise StageError(f"{cam_dir}: CAM folder not found; run inference_classification.py first or check --experiment_name")
    out_dir = pathlib.Path(args.pred_dir) / affinity_label_name(args.experiment_name, args.fg_threshold, args.bg_threshold)
    check_writable(out_dir, "make it writable or pass another --pred_dir")
    ids = pending_ids(distributed.share(read_image_ids(args.domain, args.data_dir), args.shard), out_dir)
    data.check_images(ids, args.domain)
    check_map_files(cam_dir, ids, "CAM", "inference_classification.py")
    out_dir.mkdir(parents=True, exist_ok=True)
    work = functools.partial(label_one, data=data, cam_dir=cam_dir, out_dir=out_dir, fg_threshold=args.fg_threshold,
                             bg_threshold=args.bg_threshold, allow_pickle=args.allow_pickle)
    run_per_image(work, ids, args.num_workers, out_dir.name)
    print(f"affinity labels in {out_dir}")


if __name__ == "__main__":
    run_script(main, build_parser())
