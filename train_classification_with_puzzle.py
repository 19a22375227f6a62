"""Stage 1: train the CAM classifier with the puzzle module (Puzzle-CAM)."""
import argparse

from core import classification
from tools.cli import run_script


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__)
    classification.add_arguments(parser, puzzle_branch=True)
    return parser


def main(args):
    return classification.train(args, puzzle_branch=True)


if __name__ == "__main__":
    run_script(main, build_parser())
