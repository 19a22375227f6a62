"""The visual report of a run: sample images through every stage, and per-class IoU bars.

Writes experiments/reports/{tag}/samples.png (one row per sampled image: image, ground truth, CAM
heat map, random-walk heat map, pseudo label, final prediction, with a legend of the class colours
shown) and experiments/reports/{tag}/class_iou.png (per-class IoU of every evaluation given).
For SILOP's chain, --uss_dir, --perimeterfit_slic_dir, --perimeterfit_quick_dir and
--combined_cam_dir add three columns after the CAM: the USS regions, the pixels inside both
PerimeterFit masks of a present class, and the combined CAM.
run_pipeline.py calls it last; it can be rerun alone, e.g.
  python3 make_report.py --tag Toy --data_dir toy_voc --domain train \
      --cam_dir 'Toy@Puzzle@train@scale=1.0,2.0' --rw_dir ... --pseudo_dir ... --prediction_dir ... \
      --evaluations CAM='Toy@Puzzle@train@scale=1.0,2.0@train' ...
"""
import argparse

import numpy as np
from PIL import Image

from wsss.data.dataset_registry import add_dataset_argument, get_dataset
from wsss.data.visualize import colour_label, heatmap_overlay
from wsss.stages.map_kinds import MAP_KINDS
from wsss.stages.report import class_iou_chart, foreground_heat, perimeter_fit_overlap, stage_sheet
from wsss.utils.cli import HelpFormatter, add_domain_argument, run_script, str2bool
from wsss.utils.errors import StageError
from wsss.utils.files import (
    atomic_path,
    find_maps,
    find_picture,
    load_label_png,
    load_maps,
    load_perimeter_fit_masks,
    load_segmentation_map,
    read_json,
)
from wsss.utils.paths import ExperimentPaths

SEGMENTATION, PERIMETER_FIT = "segmentation", "perimeterfit"  # the SILOP columns' kinds of picture


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--tag", type=str, required=True, help="report name: experiments/reports/{tag}/")
    parser.add_argument("--data_dir", type=str, default="../VOCtrainval_11-May-2012/", help="dataset folder (--dataset's layout)")
    add_dataset_argument(parser)
    add_domain_argument(parser, "train")
    parser.add_argument("--pred_dir", type=str, default="./experiments/predictions/", help="where prediction folders are")
    parser.add_argument("--cam_dir", type=str, required=True, help="CAM folder (inference_classification.py)")
    parser.add_argument("--rw_dir", type=str, required=True, help="random-walk folder (inference_rw.py)")
    parser.add_argument("--pseudo_dir", type=str, required=True, help="pseudo-label folder (make_pseudo_labels.py)")
    parser.add_argument("--prediction_dir", type=str, required=True, help="segmentation folder (inference_segmentation.py)")
    parser.add_argument("--uss_dir", type=str, default=None, help="SILOP: USS segmentation maps (USS.py)")
    parser.add_argument("--perimeterfit_slic_dir", type=str, default=None,
                        help="SILOP: slic PerimeterFit masks (PerimeterFit.py --segment slic)")
    parser.add_argument("--perimeterfit_quick_dir", type=str, default=None,
                        help="SILOP: quick PerimeterFit masks (PerimeterFit.py --segment quick)")
    parser.add_argument("--combined_cam_dir", type=str, default=None,
                        help="SILOP: combined CAM folder (Combine_PerimeterFit.py)")
    parser.add_argument("--evaluations", type=str, nargs="*", default=[],
                        help="NAME=EXPERIMENT_NAME@DOMAIN pairs: bars named NAME from evaluate.py's result "
                             "experiments/evaluations/{EXPERIMENT_NAME}@{DOMAIN}.json")
    parser.add_argument("--samples", type=int, default=6, help="number of sampled images")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image sample")
    parser.add_argument("--allow_pickle", type=str2bool, default=False,
                        help="read published pickled .npy map files (unpickling can run code: trusted files only)")
    return parser


def sample_row(data, image_id, columns, num_classes, allow_pickle):
    """(id, pictures, label maps shown) of one image: the image, its ground truth, then a picture
    per column (a heat map of a map file's foreground, or a label map in class colours)."""
    image = np.asarray(data.image(image_id))
    truth = data.mask(image_id)
    pictures, labels = [image, colour_label(truth)], [truth]
    for _, folder, kind in columns:
        if kind is None:
            label = load_label_png(folder / f"{image_id}.png")
            pictures.append(colour_label(label))
            labels.append(label)
            continue
        if kind == SEGMENTATION:
            path = find_picture(folder, image_id)
            if path is None:
                raise StageError(f"{folder / image_id}.jpg: segmentation map not found; run USS.py first")
            pictures.append(load_segmentation_map(path)[..., ::-1])  # OpenCV's channel order → RGB
            continue
        if kind == PERIMETER_FIT:
            masks = (load_perimeter_fit_masks(mask_dir / f"{image_id}.npy") for mask_dir in folder)
            pictures.append(heatmap_overlay(image, perimeter_fit_overlap(*masks)))
            continue
        path = find_maps(folder, image_id)
        if path is None:
            raise StageError(f"{folder / image_id}.npz: {kind.noun} file not found; run {kind.producer} first")
        pictures.append(heatmap_overlay(image, foreground_heat(load_maps(path, num_classes, allow_pickle)[kind.label_array])))
    return image_id, pictures, labels


def silop_columns(args, paths):
    """The three SILOP columns, when all four of their folders are given (none: no columns)."""
    folders = (args.uss_dir, args.perimeterfit_slic_dir, args.perimeterfit_quick_dir, args.combined_cam_dir)
    if not any(folders):
        return []
    if not all(folders):
        raise StageError("--uss_dir, --perimeterfit_slic_dir, --perimeterfit_quick_dir and --combined_cam_dir "
                         "go together (the SILOP columns); give all four or none")
    return [("USS regions", paths.predictions(args.uss_dir), SEGMENTATION),
            ("PerimeterFit", (paths.predictions(args.perimeterfit_slic_dir),
                              paths.predictions(args.perimeterfit_quick_dir)), PERIMETER_FIT),
            (f"combined {MAP_KINDS['cam'].report_column}", paths.predictions(args.combined_cam_dir), MAP_KINDS["cam"])]


def save_png(path, picture):
    with atomic_path(path) as temporary:
        Image.fromarray(picture).save(temporary, format="PNG")


def main(args):
    benchmark = get_dataset(args.dataset)
    data = benchmark.open(args.data_dir)
    paths = ExperimentPaths(pred_dir=args.pred_dir)
    columns = [(MAP_KINDS["cam"].report_column, paths.predictions(args.cam_dir), MAP_KINDS["cam"]),
               *silop_columns(args, paths),
               (MAP_KINDS["rw"].report_column, paths.predictions(args.rw_dir), MAP_KINDS["rw"]),
               ("pseudo label", paths.predictions(args.pseudo_dir), None),
               ("prediction", paths.predictions(args.prediction_dir), None)]
    for _, folders, _ in columns:
        for folder in folders if isinstance(folders, tuple) else (folders,):
            if not folder.is_dir():
                raise StageError(f"{folder}: prediction folder not found; run the stage that writes it first")
    ids = benchmark.image_ids(args.domain, args.data_dir)
    chosen = np.random.default_rng(args.seed).choice(len(ids), size=min(args.samples, len(ids)), replace=False)
    rows = [sample_row(data, ids[i], columns, benchmark.num_classes, args.allow_pickle) for i in sorted(chosen)]
    class_names = benchmark.class_names()
    titles = ["image", "ground truth"] + [title for title, _, _ in columns]
    label_columns = [1] + [2 + index for index, (_, _, kind) in enumerate(columns) if kind is None]
    out_dir = paths.report(args.tag)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "samples.png"]
    save_png(written[0], stage_sheet(rows, titles, class_names, label_columns=label_columns))
    if args.evaluations:
        results = {}
        for pair in args.evaluations:
            name, _, evaluation = pair.partition("=")
            experiment_name, _, domain = evaluation.rpartition("@")
            if not experiment_name:
                raise StageError(f"--evaluations {pair!r}: expected NAME=EXPERIMENT_NAME@DOMAIN")
            results[name] = read_json(paths.evaluation(experiment_name, domain))
        written.append(out_dir / "class_iou.png")
        save_png(written[1], class_iou_chart(results, class_names, f"per-class IoU (%), {args.tag}"))
    for path in written:
        print(f"report: {path}")
    return written


if __name__ == "__main__":
    run_script(main, build_parser())
