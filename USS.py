"""SILOP step 1: unsupervised segmentation by backpropagation (USS) of every image.

Per image: superpixels (--segment slic or quick), then a small network trained on the image alone
until fewer than 20 labels remain (at most --max_iterations steps); its labels painted with the
seeded palette are written to {uss_dir}/{id}.jpg (as published; --lossless True: .png). Without
--domain every .jpg of the image folder is segmented, as published. Images whose map exists are
skipped, so a stopped run resumes; --num_workers processes, --shard i/n or torchrun split the images.
  python3 USS.py                      # ./Dataset/VOC2012/JPEGImages/ → ./Dataset/USS_slic/
  python3 USS.py --segment quick      #                               → ./Dataset/USS_quick/
"""
import argparse

from wsss.algorithms.uss import SEGMENT_MODES
from wsss.data.dataset_registry import add_dataset_argument
from wsss.stages import perimeter_fit
from wsss.utils.cli import HelpFormatter, add_domain_argument, add_shard_argument, run_script, str2bool


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--segment", type=str, default="slic", choices=SEGMENT_MODES, help="superpixel method")
    parser.add_argument("--data_dir", type=str, default=perimeter_fit.PUBLISHED_DATA_DIR,
                        help="dataset folder (--dataset's layout): its images unless --image_dir, its --domain list")
    add_dataset_argument(parser)
    parser.add_argument("--image_dir", type=str, default=None,
                        help="folder of {id}.jpg images; unset: {data_dir}/JPEGImages/")
    parser.add_argument("--uss_dir", type=str, default=None,
                        help="output folder; unset: ./Dataset/USS_{segment}/, as published")
    add_domain_argument(parser, None, "image list (unset: every .jpg of the image folder, as published)")
    parser.add_argument("--rgb", type=str2bool, default=False,
                        help="feed the image in RGB order (published: OpenCV's BGR array, used as if RGB)")
    parser.add_argument("--lossless", type=str2bool, default=False,
                        help="write PNG maps (published: JPEG, whose artefacts the next stages read)")
    parser.add_argument("--max_iterations", type=int, default=64, help="training steps per image at most")
    parser.add_argument("--num_workers", type=int, default=4,
                        help="worker processes on the CPU (on a GPU the images run in this process; several "
                             "processes share one GPU under torchrun with --device cuda:0)")
    parser.add_argument("--device", type=str, default=None,
                        help="torch device; unset: cuda if available (cuda:LOCAL_RANK under torchrun), else cpu")
    add_shard_argument(parser)
    return parser


def main(args):
    out_dir = perimeter_fit.segment_images(args)
    print(f"segmentation maps in {out_dir}")


if __name__ == "__main__":
    run_script(main, build_parser())
