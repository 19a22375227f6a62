"""Stage 2d: pseudo labels from the random-walk maps and the label CRF (SPEC §6.7).

Writes experiments/predictions/{experiment_name}@crf={crf_iteration}/{id}.png (class ids).
"""
import argparse
import functools
import pathlib

import numpy as np

from core.crf import crf_refined_label
from tools import distributed
from tools.cli import StageError, add_shard_argument, run_script, str2bool
from tools.experiment import pseudo_label_name
from tools.files import check_map_files, check_writable, load_map_array, save_label_png
from tools.per_image import pending_ids, run_per_image
from tools.voc import VOCData, read_image_ids


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experiment_name", type=str, required=True, help="the random-walk folder under --pred_dir")
    parser.add_argument("--domain", type=str, default="train", help="image list")
    parser.add_argument("--threshold", type=float, default=0.25, help="constant background map level")
    parser.add_argument("--crf_iteration", type=int, default=10, help="label CRF iterations (0: no CRF)")
    parser.add_argument("--data_dir", type=str, default="../VOCtrainval_11-May-2012/", help="VOC2012-format folder")
    parser.add_argument("--pred_dir", type=str, default="./experiments/predictions/", help="where prediction folders are")
    parser.add_argument("--num_workers", type=int, default=4, help="worker processes for the CRF")
    add_shard_argument(parser)
    parser.add_argument("--allow_pickle", type=str2bool, default=False,
                        help="read published pickled .npy files (unpickling can run code: trusted files only)")
    return parser


def label_one(image_id, data, rw_dir, out_dir, threshold, crf_iteration, allow_pickle):
    image = np.array(data.image(image_id))
    keys, maps = load_map_array(rw_dir, image_id, "rw", image.shape[:2], allow_pickle)
    save_label_png(out_dir / f"{image_id}.png", crf_refined_label(image, maps, keys, threshold, crf_iteration))


def main(args):
    data = VOCData(args.data_dir)
    rw_dir = pathlib.Path(args.pred_dir) / args.experiment_name
    if not rw_dir.is_dir():
        raise StageError(f"{rw_dir}: random-walk folder not found; run inference_rw.py first or check --experiment_name")
    out_dir = pathlib.Path(args.pred_dir) / pseudo_label_name(args.experiment_name, args.crf_iteration)
    check_writable(out_dir, "make it writable or pass another --pred_dir")
    ids = pending_ids(distributed.share(read_image_ids(args.domain, args.data_dir), args.shard), out_dir)
    data.check_images(ids, args.domain)
    check_map_files(rw_dir, ids, "random-walk", "inference_rw.py")
    out_dir.mkdir(parents=True, exist_ok=True)
    work = functools.partial(label_one, data=data, rw_dir=rw_dir, out_dir=out_dir, threshold=args.threshold,
                             crf_iteration=args.crf_iteration, allow_pickle=args.allow_pickle)
    run_per_image(work, ids, args.num_workers, out_dir.name)
    print(f"pseudo labels in {out_dir}")


if __name__ == "__main__":
    run_script(main, build_parser())
