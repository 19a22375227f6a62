"""CPN's two CAM stages: `infer_cam.py` (the 8-pass CAM of every listed image, one `.npz` each) and
`evaluation_cam.py` (CAM mIoU over the published background-score sweep, no CRF).

CAM files hold `keys`, `cam` and `hr_cam` like every CAM file of this project, on CPN's scale: the
published routine divides the normalised maps by 2, so foreground values reach 0.5 at most and the
sweep's background scores 0.20–0.59 correspond to 0.40–1.18 on the usual scale. The published
pickled `.npy` dicts ({class 0–19: H×W}) are read only with `allow_pickle`.
"""
import functools
import pathlib
import time

import numpy as np

from wsss.algorithms.cam import maps_to_label
from wsss.data.dataset_registry import get_dataset
from wsss.data.datasets import ImageListDataset
from wsss.methods.cpn import build_network, cpn_image_cams
from wsss.stages.evaluation import check_ground_truth, score_images
from wsss.utils import distributed
from wsss.utils.cli import parse_scales
from wsss.utils.errors import StageError, as_stage_error
from wsss.utils.files import (
    MAP_SUFFIXES,
    check_writable,
    find_maps,
    load_checkpoint,
    load_label_png,
    load_maps,
    load_weights,
    save_cams,
    save_checkpoint,
    write_json,
)
from wsss.utils.paths import ExperimentPaths
from wsss.utils.per_image import plan_outputs, run_over_loader

__all__ = ["SWEEP", "infer_cams", "read_cam_file", "cams_from_published_dict", "evaluate_predictions",
           "sweep_line", "class_table_text", "log_entry", "evaluation_cam", "export_trunk"]

SWEEP = [(index, index / 100.0) for index in range(20, 60)]  # (i, background score t = i/100)


def infer_cams(args):
    """infer_cam.py: CAM files of every image of --infer_list still without one in --out_cam.
    Returns the output folder."""
    out_dir = pathlib.Path(args.out_cam)
    benchmark = get_dataset(args.dataset)
    ids = plan_outputs(out_dir, benchmark.image_ids(args.infer_list, args.data_dir), args.shard, MAP_SUFFIXES,
                       "make it writable or pass another --out_cam")
    dataset = ImageListDataset(benchmark, args.data_dir, args.infer_list, ids=ids, with_labels=True)
    device = distributed.process_device(args.device)
    with as_stage_error():
        model = build_network(args.network, num_classes=benchmark.num_classes)
    load_weights(model, args.weights)
    model.to(device).eval()
    scales = parse_scales(args.scales)

    def cams_of(image_id, image, label):
        keys, cam, hr_cam = cpn_image_cams(model, image, label, scales, device, args.amp)
        save_cams(out_dir / f"{image_id}.npz", keys, cam, hr_cam)

    run_over_loader(dataset, cams_of, out_dir, args.num_workers)
    return out_dir


def cams_from_published_dict(data, path, size, num_classes=20):
    """(keys, maps) of a published CPN CAM dict {class index 0…num_classes−1: H×W map} (`size` = H×W,
    used when the dict is empty)."""
    if not isinstance(data, dict) or not all(isinstance(key, (int, np.integer)) for key in data):
        raise StageError(f"{path}: neither a CAM file of this pipeline nor CPN's {{class: map}} dict")
    classes = sorted(int(key) for key in data)
    if classes and (classes[0] < 0 or classes[-1] >= num_classes):
        raise StageError(f"{path}: class indices {classes} outside 0-{num_classes - 1}")
    maps = [np.asarray(data[key], dtype=np.float32) for key in sorted(data)]
    if any(array.shape != maps[0].shape or array.ndim != 2 for array in maps):
        raise StageError(f"{path}: the class maps differ in shape or are not 2-D")
    keys = np.array([0] + [c + 1 for c in classes], dtype=np.int64)
    return keys, np.stack(maps) if maps else np.zeros((0, *size), np.float32)


def read_cam_file(path, size, num_classes, allow_pickle=False):
    """(keys, full-size maps) of one CAM file: this project's `.npz` (`hr_cam`), or with
    `allow_pickle` a published pickled `.npy`: CPN's dict or this project's published dict layout."""
    path = pathlib.Path(path)
    if path.suffix == ".npy" and allow_pickle:
        try:
            data = np.load(path, allow_pickle=True).item()
        except Exception as error:
            raise StageError(f"{path}: unreadable map file ({type(error).__name__}: {error}); rerun infer_cam.py")
        if not (isinstance(data, dict) and "keys" in data):
            return cams_from_published_dict(data, path, size, num_classes)
    maps = load_maps(path, num_classes, allow_pickle=allow_pickle)
    if "hr_cam" not in maps:
        raise StageError(f"{path}: no 'hr_cam' array (has {sorted(maps)}); not a CAM file")
    if maps["hr_cam"].shape[0] != len(maps["keys"]) - 1:
        raise StageError(f"{path}: {maps['hr_cam'].shape[0]} maps for {len(maps['keys']) - 1} classes in 'keys'")
    return maps["keys"], maps["hr_cam"]


def prediction_file(predict_dir, image_id, kind):
    """The `.npz`/`.npy` (npy) or `.png` (png) prediction of an image, or None."""
    if kind == "npy":
        return find_maps(predict_dir, image_id)
    path = predict_dir / f"{image_id}.png"
    return path if path.is_file() else None


def cam_predictions(image_id, shape, predict_dir, benchmark, kind, thresholds, allow_pickle):
    """(path, label maps) of one image, one per background score (the same PNG for every score).

    npy: argmax of [t, maps of the present classes] mapped through the keys, as published (the
    published code also stacked zero maps for the absent classes, which never win over t > 0)."""
    path = prediction_file(predict_dir, image_id, kind)
    if kind == "png":
        return path, [benchmark.check_class_ids(load_label_png(path), path)] * len(thresholds)
    keys, maps = read_cam_file(path, shape, benchmark.num_classes, allow_pickle)
    return path, [maps_to_label(maps, keys, threshold) for threshold in thresholds]


def evaluate_predictions(predict_dir, mask_path, benchmark, ids, kind, thresholds, num_workers=1, allow_pickle=False):
    """Scores (SegmentationMetric.scores()) per background score over every listed image;
    `mask_path(id)` is an image's ground truth, `benchmark` the dataset entry."""
    predict_dir = pathlib.Path(predict_dir)
    check_ground_truth(mask_path, ids, advice="check --gt_dir and --list")
    suffix = ".npz (or the published .npy)" if kind == "npy" else ".png"
    missing = [image_id for image_id in ids if prediction_file(predict_dir, image_id, kind) is None]
    if missing:
        raise StageError(f"{predict_dir / missing[0]}{suffix}: prediction missing ({len(missing)} of {len(ids)} "
                         f"listed images have none); run infer_cam.py first or check --predict_dir and --type")
    predictions_of = functools.partial(cam_predictions, predict_dir=predict_dir, benchmark=benchmark, kind=kind,
                                       thresholds=thresholds, allow_pickle=allow_pickle)
    metrics = score_images(ids, predictions_of, len(thresholds), mask_path, benchmark, num_workers)
    return [metric.scores() for metric in metrics]


def sweep_line(index, threshold, miou):
    """One published line of the sweep."""
    return "%d/60 background score: %.3f\tmIoU: %.3f%%" % (index, threshold, miou)


def class_table_text(names, scores):
    """The published per-class table, as printed: two classes per line (tab-separated), a rule, mIoU."""
    text = ""
    for index, (name, value) in enumerate(zip(names, scores["IoU"])):
        text += "%11s:%7.3f%%" % (name, value) + ("\t" if index % 2 != 1 else "\n")
    text += "\n======================================================\n"
    return text + "%11s:%7.3f%%" % ("mIoU", scores["mIoU"])


def log_entry(metric, comment, now=None):
    """The published log-file record: a time stamp and the comment, `key:value  ` pairs, a rule."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    pairs = "".join("%s:%s  " % (key, value) for key, value in metric.items())
    return f"{stamp}\t{comment}\n{pairs}\n=====================================\n"


def append_log(path, metric, comment):
    path = pathlib.Path(path)
    try:
        with open(path, "a") as stream:
            stream.write(log_entry(metric, comment))
    except OSError as error:
        raise StageError(f"{path}: cannot append to the log file ({error.strerror}); pass another --logfile")


def check_log_file(path):
    path = pathlib.Path(path)
    if path.is_dir():
        raise StageError(f"{path}: --logfile is a folder; pass a file name")
    check_writable(path.parent, "pass another --logfile")


def evaluation_cam(args):
    """evaluation_cam.py: the sweep (--curve) or one --t, printed and appended to --logfile as
    published, plus a JSON result in experiments/evaluations/. Returns the result."""
    benchmark = get_dataset(args.dataset)
    data_dir, mask_path = benchmark.ground_truth(args.gt_dir)
    predict_dir = pathlib.Path(args.predict_dir)
    if not predict_dir.is_dir():
        raise StageError(f"{predict_dir}: prediction folder not found; run infer_cam.py first or check --predict_dir")
    if args.type == "npy" and not args.curve and args.t is None:
        raise StageError("--type npy without the curve needs --t, the background score to evaluate")
    check_log_file(args.logfile)
    list_name = pathlib.Path(args.list).stem
    out = ExperimentPaths().evaluation(predict_dir.name, list_name)
    check_writable(out.parent, "make it writable or run from another folder")
    ids = benchmark.image_ids(args.list, data_dir)
    names = ["background"] + list(benchmark.class_names())
    sweep = SWEEP if args.curve else [(None, args.t)]
    scores = evaluate_predictions(predict_dir, mask_path, benchmark, ids, args.type, [t for _, t in sweep],
                                  args.num_workers, args.allow_pickle)
    result = {"list": str(args.list), "predict_dir": str(predict_dir), "type": args.type, "images": len(ids),
              "curve": args.curve}
    if args.curve:
        for (index, threshold), score in zip(sweep, scores):
            print(sweep_line(index, threshold, score["mIoU"]))
        append_log(args.logfile, {"mIoU": [score["mIoU"] for score in scores]}, args.comment)
        best = max(range(len(sweep)), key=lambda position: (scores[position]["mIoU"], -position))
        result["sweep"] = [{"threshold": threshold, "mIoU": score["mIoU"]}
                           for (_, threshold), score in zip(sweep, scores)]
    else:
        best = 0
        print(class_table_text(names, scores[0]))
        append_log(args.logfile, {**dict(zip(names, scores[0]["IoU"])), "mIoU": scores[0]["mIoU"]}, args.comment)
    result.update({"threshold": sweep[best][1], **scores[best]})  # IoU: background, then the dataset's classes in order
    write_json(out, result)
    print(f"results in {out}")
    return result


def export_trunk(checkpoint, out):
    """Write the registered-backbone trunk of a CPN checkpoint (its `model.*` tensors, prefix dropped)
    as a backbone weight file, which --pretrained of train_affinitynet.py and train_segmentation.py
    reads: the toy runs start AffinityNet and DeepLabv3+ from the CAM network's trunk."""
    state = load_checkpoint(checkpoint)
    trunk = {key[len("model."):]: value for key, value in state.items() if key.startswith("model.")}
    if not trunk or "fc8.weight" not in state:
        raise StageError(f"{checkpoint}: not a CPN checkpoint on a registered backbone (no fc8.weight and model.* "
                         "trunk); resnet38d's trunk cannot start AffinityNet or DeepLabv3+")
    save_checkpoint(trunk, out)
    return out
