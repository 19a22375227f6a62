"""Stage 3 training: DeepLabv3+ on the pseudo labels of train_aug, validated on val (docs/design.md §6.8).

Reads experiments/predictions/{label_name}/{id}.png (under --pred_dir); writes
experiments/models/{tag}.pth (best val mIoU), logs/{tag}.txt, data/{tag}.json, tensorboards/{tag}/.
"""
import argparse

from wsss.data.dataset_registry import add_dataset_argument
from wsss.models.backbones import BACKBONES, NORM_LAYERS
from wsss.models.segmentation_models import SEGMENTATION_MODELS
from wsss.stages import segmentation
from wsss.utils.cli import (
    HelpFormatter,
    add_eval_images_argument,
    add_pretrained_argument,
    add_sync_bn_argument,
    add_training_arguments,
    run_script,
    str2bool,
)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    training = add_training_arguments(parser, batch_size=32, max_epoch=50, lr=0.007, wd=4e-5, image_size=512,
                                      min_image_size=256, max_image_size=1024)
    add_dataset_argument(training)
    add_eval_images_argument(training, "val")
    training.add_argument("--detect_anomaly", type=str2bool, default=False,
                          help="torch.autograd anomaly detection (the published trainer left it on; slow)")
    model = parser.add_argument_group("model")
    model.add_argument("--architecture", type=str, default="DeepLabv3+", choices=sorted(SEGMENTATION_MODELS),
                       help="segmentation model")
    model.add_argument("--backbone", type=str, default="resnest269", choices=sorted(BACKBONES), help="backbone")
    model.add_argument("--mode", type=str, default="fix", choices=sorted(NORM_LAYERS),
                       help="batch norm: fix (frozen statistics) or normal")
    add_sync_bn_argument(model)
    model.add_argument("--use_gn", type=str2bool, default=True,
                       help="GroupNorm(4, C) in the ASPP and decoder instead of the backbone's norm (True/False)")
    add_pretrained_argument(model)
    labels = parser.add_argument_group("pseudo labels")
    labels.add_argument("--pred_dir", type=str, default="./experiments/predictions/",
                        help="folder holding the pseudo-label folders")
    labels.add_argument("--label_name", type=str, default="",
                        help="pseudo-label folder name (make_pseudo_labels' experiment name, e.g. ...@crf=1)")
    return parser


def main(args):
    return segmentation.train(args)


if __name__ == "__main__":
    run_script(main, build_parser())
