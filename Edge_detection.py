"""SILOP step 2: the perimeter map of every USS segmentation map.

Per map: grey, 3×3 Gaussian blur, Canny with thresholds 1 and 50, written to {pm_dir}/{id}.jpg (as
published; --lossless True: .png). Without --domain every map of the USS folder is read, as
published. Maps whose output exists are skipped; --num_workers processes, --shard i/n or torchrun
split the images.
  python3 Edge_detection.py                     # ./Dataset/USS_slic/ → ./Dataset/PM_slic/
  python3 Edge_detection.py --segment quick     # ./Dataset/USS_quick/ → ./Dataset/PM_quick/
"""
import argparse

from wsss.algorithms.perimeter_fit import SEGMENT_MODES
from wsss.data.dataset_registry import add_dataset_argument
from wsss.stages import perimeter_fit
from wsss.utils.cli import HelpFormatter, add_domain_argument, add_shard_argument, run_script, str2bool


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--segment", type=str, default="slic", choices=SEGMENT_MODES,
                        help="which USS maps (their superpixel method)")
    parser.add_argument("--uss_dir", type=str, default=None,
                        help="segmentation maps; unset: ./Dataset/USS_{segment}/, as published")
    parser.add_argument("--pm_dir", type=str, default=None,
                        help="output folder; unset: ./Dataset/PM_{segment}/, as published")
    parser.add_argument("--data_dir", type=str, default=perimeter_fit.PUBLISHED_DATA_DIR,
                        help="dataset folder (--dataset's layout) holding the --domain list")
    add_dataset_argument(parser)
    add_domain_argument(parser, None, "image list (unset: every map of the USS folder, as published)")
    parser.add_argument("--lossless", type=str2bool, default=False, help="write PNG maps (published: JPEG)")
    parser.add_argument("--num_workers", type=int, default=4, help="worker processes")
    add_shard_argument(parser)
    return parser


def main(args):
    out_dir = perimeter_fit.detect_edges(args)
    print(f"perimeter maps in {out_dir}")


if __name__ == "__main__":
    run_script(main, build_parser())
