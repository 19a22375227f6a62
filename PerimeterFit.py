"""SILOP step 3: PerimeterFit masks from the CAMs, the USS maps and their perimeter maps.

Per CAM file: a zero background map is put before the CAMs; for each map, every pixel outside its
support (except the last row and column) flood-fills the USS map black, in row-major order, and
the pixels left plus the perimeter pixels form the mask (for slic only inside the support).
Written to {perimeterfit_dir}/{id}.npy, a plain uint8 (K+1)×H×W array of 0/255. Without --domain
every CAM file of --cam_path is read, as published. Files whose output exists are skipped;
--num_workers processes, --shard i/n or torchrun split the images.
  python3 PerimeterFit.py                   # → ./Dataset/PerimeterFit_slic/
  python3 PerimeterFit.py --segment quick   # → ./Dataset/PerimeterFit_quick/
"""
import argparse

from wsss.algorithms.perimeter_fit import SEGMENT_MODES
from wsss.data.dataset_registry import add_dataset_argument
from wsss.stages import perimeter_fit
from wsss.utils.cli import HelpFormatter, add_domain_argument, add_shard_argument, run_script, str2bool


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--segment", type=str, default="slic", choices=SEGMENT_MODES,
                        help="which USS and perimeter maps, and the thresholds that go with them")
    parser.add_argument("--cam_path", type=str, default=perimeter_fit.PUBLISHED_CAM_DIR,
                        help="CAM folder (inference_classification.py)")
    parser.add_argument("--uss_dir", type=str, default=None,
                        help="segmentation maps; unset: ./Dataset/USS_{segment}/, as published")
    parser.add_argument("--pm_dir", type=str, default=None,
                        help="perimeter maps; unset: ./Dataset/PM_{segment}/, as published")
    parser.add_argument("--perimeterfit_dir", type=str, default=None,
                        help="output folder; unset: ./Dataset/PerimeterFit_{segment}/, as published")
    parser.add_argument("--data_dir", type=str, default=perimeter_fit.PUBLISHED_DATA_DIR,
                        help="dataset folder (--dataset's layout) holding the --domain list")
    add_dataset_argument(parser)
    add_domain_argument(parser, None, "image list (unset: every CAM file of --cam_path, as published)")
    parser.add_argument("--allow_pickle", type=str2bool, default=False,
                        help="read published pickled .npy CAM files (unpickling can run code: trusted files only)")
    parser.add_argument("--num_workers", type=int, default=4, help="worker processes")
    add_shard_argument(parser)
    return parser


def main(args):
    out_dir = perimeter_fit.fit_perimeters(args)
    print(f"PerimeterFit masks in {out_dir}")


if __name__ == "__main__":
    run_script(main, build_parser())
