"""Stage 2b: train AffinityNet's edge layers on the affinity labels (docs/design.md §3.2, §6.4)."""
import argparse

from wsss.data.dataset_registry import add_dataset_argument
from wsss.models.backbones import BACKBONES
from wsss.stages.affinity import train
from wsss.utils.cli import HelpFormatter, add_pretrained_argument, add_training_arguments, run_script, str2bool


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_dataset_argument(add_training_arguments(parser, max_epoch=3))
    parser.add_argument("--architecture", type=str, default="resnet50", choices=sorted(BACKBONES), help="backbone (always mode fix)")
    add_pretrained_argument(parser)
    parser.add_argument("--pred_dir", type=str, default="./experiments/predictions/", help="where prediction folders are")
    parser.add_argument("--label_name", type=str, default="", help="the affinity-label folder under --pred_dir")
    parser.add_argument("--detect_anomaly", type=str2bool, default=False,
                        help="torch.autograd anomaly detection (on in the published trainer; slow)")
    return parser


def main(args):
    return train(args)


if __name__ == "__main__":
    run_script(main, build_parser())
