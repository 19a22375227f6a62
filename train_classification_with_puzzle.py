"""Stage 1: train the CAM classifier with the puzzle module (Puzzle-CAM)."""
import argparse

from wsss.methods import get_method
from wsss.stages import classification
from wsss.utils.cli import HelpFormatter, run_script

METHOD = get_method("puzzle")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    classification.add_arguments(parser, METHOD)
    return parser


def main(args):
    return classification.train(args, METHOD)


if __name__ == "__main__":
    run_script(main, build_parser())
