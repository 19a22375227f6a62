"""Stage 2a: AffinityNet's training labels from CAMs and the label CRF.

Writes {pred_dir}/{experiment_name}@aff_fg={fg}_bg={bg}/{id}.png: confident foreground classes,
confident background 0, and 255 where the two thresholds disagree. Images whose label exists are
skipped, so a stopped run resumes; --shard i/n or torchrun split the images.
"""
import argparse
import functools

from wsss.algorithms.affinity_labels import make_affinity_label
from wsss.stages import label_maps
from wsss.stages.map_kinds import MAP_KINDS
from wsss.utils.cli import HelpFormatter, run_script
from wsss.utils.paths import affinity_label_name

LABEL_CRF_ITERATIONS = 10


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    label_maps.add_arguments(parser, MAP_KINDS["cam"])
    parser.add_argument("--fg_threshold", type=float, default=0.30, help="background level for confident foreground")
    parser.add_argument("--bg_threshold", type=float, default=0.05, help="background level for confident background")
    return parser


def main(args):
    make_label = functools.partial(make_affinity_label, fg_threshold=args.fg_threshold,
                                   bg_threshold=args.bg_threshold, crf_iteration=LABEL_CRF_ITERATIONS)
    out_dir = label_maps.make_labels(args, MAP_KINDS["cam"], affinity_label_name(
        args.experiment_name, args.fg_threshold, args.bg_threshold), make_label)
    print(f"affinity labels in {out_dir}")


if __name__ == "__main__":
    run_script(main, build_parser())
