"""CPN training (Zhang et al., ICCV 2021): the complementary-patch triplet, PCM and PRCM, on ResNet-38.

The published command line runs as written (`--batch_size 4 --max_epoches 8 --lr 0.01 --wt_dec 5e-4
--crop_size 448 --weights ilsvrc-cls_rna-a1_cls1000_ep-0001.pth --voc12_root $D`), through this
project's training loop: torchrun (DDP), --amp, --resume, logs, TensorBoard, and the CAM mIoU of
--val_list after every epoch. Writes experiments/models/{session_name}.pth (CPN's state dict as
published; the epoch with the best CAM mIoU).
"""
import argparse

from wsss.methods import get_method
from wsss.stages import classification
from wsss.utils.cli import HelpFormatter, run_script

METHOD = get_method("cpn")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    classification.add_arguments(parser, METHOD)
    return parser


def main(args):
    return classification.train(args, METHOD)


if __name__ == "__main__":
    run_script(main, build_parser())
