"""Stage 1 baseline: train the CAM classifier with the classification loss only."""
import argparse

from core import classification
from tools.cli import run_script


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__)
    classification.add_arguments(parser, puzzle_branch=False)
    return parser


def main(args):
    return classification.train(args, puzzle_branch=False)


if __name__ == "__main__":
    run_script(main, build_parser())
