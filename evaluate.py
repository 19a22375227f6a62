"""Score predictions of any stage against the ground-truth masks (docs/design.md §6.10).

--mode npy: CAM files (`hr_cam`), background threshold swept over 0.05…0.75 unless --threshold;
--mode rw: random-walk files (`rw`), swept over 0.05…--max_th; --mode png: label PNGs.
Prints what the published script prints, line for line (a sweep: every threshold, then the best;
rw: also the thresholds whose FP is 1.6× and 0.6× the best one's), then a per-class table, and
writes experiments/evaluations/{experiment_name}@{domain}.json. A prediction pixel holding 255
predicts no class, as published.
"""
import argparse

from wsss.data.dataset_registry import add_dataset_argument, get_dataset
from wsss.stages.evaluation import class_table, evaluate_folder, published_printout, sweep
from wsss.utils.cli import HelpFormatter, add_domain_argument, run_script, str2bool
from wsss.utils.errors import StageError
from wsss.utils.files import check_writable, write_json
from wsss.utils.paths import WRITABLE_ADVICE, ExperimentPaths


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--experiment_name", type=str, required=True, help="folder under experiments/predictions/")
    add_domain_argument(parser, "train")
    parser.add_argument("--threshold", type=float, default=None, help="background threshold (None: sweep)")
    parser.add_argument("--gt_dir", "--data_dir", dest="gt_dir", type=str,
                        default="../VOCtrainval_11-May-2012/SegmentationClass",
                        help="ground-truth folder (VOC's SegmentationClass/), or the dataset folder that holds "
                             "it (COCO: the dataset folder, whose mask/ make_coco_masks.py wrote); --data_dir is an "
                             "alias")
    add_dataset_argument(parser)
    parser.add_argument("--pred_dir", type=str, default="./experiments/predictions/", help="where prediction folders are")
    parser.add_argument("--mode", type=str, default="npy", choices=["npy", "png", "rw"], help="prediction format")
    parser.add_argument("--max_th", type=float, default=0.50,
                        help="upper end of the rw sweep (a value above 1 is read as percent, as published)")
    parser.add_argument("--num_workers", type=int, default=4, help="worker processes")
    parser.add_argument("--allow_pickle", type=str2bool, default=False,
                        help="read published pickled .npy files (unpickling can run code: trusted files only)")
    return parser


def main(args):
    benchmark = get_dataset(args.dataset)
    data_dir, mask_path = benchmark.ground_truth(args.gt_dir)
    pred_dir = ExperimentPaths(pred_dir=args.pred_dir).predictions(args.experiment_name)
    if not pred_dir.is_dir():
        raise StageError(f"{pred_dir}: prediction folder not found; check --experiment_name")
    out = ExperimentPaths().evaluation(args.experiment_name, args.domain)
    check_writable(out.parent, WRITABLE_ADVICE)
    ids = benchmark.image_ids(args.domain, data_dir)
    max_th = args.max_th / 100 if args.max_th > 1 else args.max_th
    if args.mode == "png" or args.threshold is not None:
        thresholds = [args.threshold]
    else:
        thresholds = sweep(0.05, 0.75 if args.mode == "npy" else max_th)
    metrics = evaluate_folder(pred_dir, mask_path, benchmark, ids, args.mode, thresholds, args.num_workers,
                              args.allow_pickle)
    scores = [metric.scores() for metric in metrics]
    lines, chosen = published_printout(args.mode, thresholds, scores)
    print("\n".join(lines))
    best = chosen["best"]
    result = {"experiment_name": args.experiment_name, "domain": args.domain, "mode": args.mode,
              "images": len(ids), "threshold": thresholds[best], **scores[best],
              "sweep": [{"threshold": th, **{k: s[k] for k in ("mIoU", "FP", "FN")}}
                        for th, s in zip(thresholds, scores)]}
    for word in ("over", "under"):
        if word in chosen:
            result[f"threshold_{word}"] = thresholds[chosen[word]]
    unpredicted = metrics[best].unpredicted_pixels
    if unpredicted:
        print(f"note: {unpredicted} scored prediction pixels hold 255 (void); as published, they predict no class")
    result["unpredicted_pixels"] = unpredicted
    print(class_table(scores[best], benchmark.class_names()))
    write_json(out, result)
    print(f"results in {out}")
    return result


if __name__ == "__main__":
    run_script(main, build_parser())
