"""Stage 2d: pseudo labels from the random-walk maps and the label CRF.

Writes {pred_dir}/{experiment_name}@crf={crf_iteration}/{id}.png (class ids). Images whose label
exists are skipped, so a stopped run resumes; --shard i/n or torchrun split the images.
"""
import argparse
import functools

from wsss.algorithms.crf import crf_refined_label
from wsss.stages import label_maps
from wsss.stages.map_kinds import MAP_KINDS
from wsss.utils.cli import HelpFormatter, run_script
from wsss.utils.paths import pseudo_label_name


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    label_maps.add_arguments(parser, MAP_KINDS["rw"])
    parser.add_argument("--threshold", type=float, default=0.25, help="constant background map level")
    parser.add_argument("--crf_iteration", type=int, default=10, help="label CRF iterations (0: no CRF)")
    return parser


def main(args):
    make_label = functools.partial(crf_refined_label, threshold=args.threshold, crf_iteration=args.crf_iteration)
    out_dir = label_maps.make_labels(args, MAP_KINDS["rw"], pseudo_label_name(args.experiment_name, args.crf_iteration),
                                     make_label)
    print(f"pseudo labels in {out_dir}")


if __name__ == "__main__":
    run_script(main, build_parser())
