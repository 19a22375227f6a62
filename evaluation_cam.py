"""CPN's CAM evaluation (evaluation_cam.py): CAM mIoU against the ground truth, no CRF.

--type npy: each pixel takes the class of the largest of [background score t, the present classes'
maps] (infer_cam.py's files, on CPN's ÷2 scale, or with --allow_pickle True the published pickled
dicts); --type png: label PNGs. With the curve (the default) t runs from 0.20 to 0.59 in steps of
0.01, one published line each ('i/60 background score: t<TAB>mIoU: m%'); without it one evaluation
at --t and the per-class table. Either is appended to --logfile as published, and written to
experiments/evaluations/{predict_dir name}@{list name}.json.

--curve is parsed as published, with Python's bool(): any non-empty value (`False` and `0`
included) turns the curve on; only an empty value, --curve '', turns it off.
"""
import argparse

from wsss.data.dataset_registry import add_dataset_argument
from wsss.stages.cpn import evaluation_cam
from wsss.utils.cli import HelpFormatter, run_script, str2bool


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--list", type=str, required=True,
                        help="image list: a file (plain ids or SEAM's lines) or a list name looked up beside "
                             "--gt_dir (ImageSets/Segmentation/) or in data/")
    parser.add_argument("--predict_dir", type=str, default="out_cam", help="the CAM (or label PNG) folder")
    parser.add_argument("--gt_dir", type=str, required=True, help="ground-truth folder (VOC's SegmentationClass; COCO: the dataset folder, whose "
                             "mask/ make_coco_masks.py wrote)")
    add_dataset_argument(parser)
    parser.add_argument("--logfile", type=str, default="./eval.txt", help="file the results are appended to")
    parser.add_argument("--comment", type=str, default="", help="text written with the results in --logfile")
    parser.add_argument("--type", type=str, default="npy", choices=["npy", "png"], help="prediction format")
    parser.add_argument("--t", type=float, default=None, help="background score without the curve")
    parser.add_argument("--curve", type=bool, default=True,
                        help="sweep t over 0.20…0.59 (published type=bool: any non-empty value is True; "
                             "pass --curve '' to turn it off)")
    parser.add_argument("--num_workers", type=int, default=8, help="worker processes (the published 8)")
    parser.add_argument("--allow_pickle", type=str2bool, default=False,
                        help="read published pickled .npy files (unpickling can run code: trusted files only)")
    return parser


def main(args):
    return evaluation_cam(args)


if __name__ == "__main__":
    run_script(main, build_parser())
