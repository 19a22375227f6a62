"""CPN's CAMs (infer_cam.py): the refined map `cam_rv` of a trained CPN network over 4 scales × flip.

Per image: the 8 passes' foreground maps at the image size, times the image's labels, summed,
clamped at 0, min–max normalised per class and divided by 2 (the published scale: foreground values
up to 0.5). Writes {out_cam}/{id}.npz with `keys` (0, then the present classes + 1), `hr_cam` (that
map, H×W) and `cam` (hr_cam resized to the stride-4 size the random walk reads), which this
project's make_affinity_labels.py, inference_rw.py and evaluate.py read; the published file was a
pickled dict {class 0–19: H×W}. Images whose file exists are skipped; under torchrun, or with
--shard i/n on several machines, each process takes its share.
"""
import argparse

from wsss.data.dataset_registry import add_dataset_argument
from wsss.methods.cpn import RESNET38D, network_name
from wsss.stages.cpn import infer_cams
from wsss.utils.cli import HelpFormatter, add_model_stage_arguments, run_script, scales_type

DEFAULT_SCALES = "0.5,1.0,1.5,2.0"


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--weights", type=str, default="experiments/models/CPN.pth",
                        help="the trained CPN network (train_cpn.py's experiments/models/{session_name}.pth, or "
                             "a state dict of the published network)")
    parser.add_argument("--network", type=network_name, default=RESNET38D, metavar="NAME",
                        help="trunk the network was trained with: resnet38d (network.resnet38_CPN) or a "
                             "registered backbone")
    parser.add_argument("--infer_list", "--domain", dest="infer_list", type=str, default="voc12/train.txt",
                        help="image list: a list name (train, train_aug, val, …) or file (plain ids or SEAM's "
                             "lines); voc12/<name>.txt is looked up as <name> when that file is not here")
    parser.add_argument("--num_workers", type=int, default=4, help="image loading worker processes")
    parser.add_argument("--voc12_root", "--data_dir", dest="data_dir", type=str, default="../VOCtrainval_11-May-2012/",
                        help="VOC2012-format folder (JPEGImages/, Annotations/)")
    add_dataset_argument(parser)
    parser.add_argument("--out_cam", type=str, default="out_cam", help="output folder of the CAM files")
    parser.add_argument("--scales", type=scales_type, default=DEFAULT_SCALES,
                        help="image scales, each passed with its flip (published: 0.5,1.0,1.5,2.0)")
    add_model_stage_arguments(parser)
    return parser


def main(args):
    out_dir = infer_cams(args)
    print(f"CAMs in {out_dir}")


if __name__ == "__main__":
    run_script(main, build_parser())
