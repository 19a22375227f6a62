"""Scoring a folder of predictions against a dataset's ground truth (docs/design.md §6.10), in worker processes."""
import functools

import numpy as np

from wsss.algorithms.cam import maps_to_label
from wsss.data.voc import require_files
from wsss.stages.map_kinds import EVALUATE_MODES
from wsss.utils.errors import StageError
from wsss.utils.files import find_maps, load_label_png, load_maps
from wsss.utils.logs import progress as progress_bar
from wsss.utils.metrics import SegmentationMetric
from wsss.utils.processes import worker_pool


def sweep(start, stop):
    """start, start+0.05, …, up to and including stop (rounded to 2 decimals)."""
    count = int(round((stop - start) / 0.05)) + 1
    return [round(start + 0.05 * index, 2) for index in range(count)]


def prediction_path(pred_dir, image_id, mode):
    if mode in EVALUATE_MODES:
        path = find_maps(pred_dir, image_id)
        if path is not None:
            return path
    path = pred_dir / f"{image_id}.png"
    return path if path.exists() else None


def check_predictions(pred_dir, ids, mode):
    missing = [image_id for image_id in ids if prediction_path(pred_dir, image_id, mode) is None]
    if missing:
        raise StageError(f"{pred_dir / missing[0]}: prediction missing ({len(missing)} of {len(ids)} images "
                         "have none); run the stage that writes them first")


def image_matrices(image_id, predictions_of, mask_path, benchmark):
    """Confusion matrices of one image, one per label map that `predictions_of(image_id, shape)`
    returns as (path, label maps) for the ground truth's `shape`."""
    ground_truth = benchmark.load_mask(mask_path(image_id))
    path, predictions = predictions_of(image_id, ground_truth.shape)
    matrices = []
    for prediction in predictions:
        if prediction.shape != ground_truth.shape:
            raise StageError(f"{path}: prediction is {prediction.shape[0]}×{prediction.shape[1]} but the ground "
                             f"truth is {ground_truth.shape[0]}×{ground_truth.shape[1]}; wrong image or folder")
        metric = SegmentationMetric(benchmark.num_classes_with_background)
        metric.update(prediction, ground_truth)
        matrices.append(metric.matrix)
    return np.stack(matrices)


def check_ground_truth(mask_path, ids, advice="check --gt_dir/--data_dir and --domain"):
    require_files((mask_path(image_id) for image_id in ids), "ground-truth mask",
                  f"every listed image needs one; {advice}")


def score_images(ids, predictions_of, count, mask_path, benchmark, num_workers=1, progress=True):
    """One SegmentationMetric per prediction (`count` per image, aligned) summed over every listed
    image, in `num_workers` processes; `predictions_of` as image_matrices takes it (a picklable
    callable), `mask_path(id)` an image's ground truth, `benchmark` the dataset entry."""
    num_classes = benchmark.num_classes_with_background
    work = functools.partial(image_matrices, predictions_of=predictions_of, mask_path=mask_path, benchmark=benchmark)
    total = np.zeros((count, num_classes, num_classes + 1), dtype=np.int64)
    bar = functools.partial(progress_bar, total=len(ids), desc="evaluate", disable=not progress)
    if num_workers > 1:
        with worker_pool(num_workers) as pool:
            for matrices in bar(pool.imap_unordered(work, ids, chunksize=8)):
                total += matrices
    else:
        for matrices in bar(map(work, ids)):
            total += matrices
    metrics = []
    for matrix in total:
        metric = SegmentationMetric(num_classes)
        metric.matrix = matrix
        metrics.append(metric)
    return metrics


def folder_predictions(image_id, shape, pred_dir, benchmark, mode, thresholds, allow_pickle):
    """evaluate.py's label maps of one image: its PNG (once per threshold), or its map file
    thresholded at each background threshold."""
    path = prediction_path(pred_dir, image_id, mode)
    if path.suffix == ".png":
        return path, [benchmark.check_class_ids(load_label_png(path), path, void=True)] * len(thresholds)
    maps = load_maps(path, benchmark.num_classes, allow_pickle=allow_pickle)
    kind = EVALUATE_MODES[mode]
    key = kind.label_array
    if key not in maps:
        raise StageError(f"{path}: no '{key}' array (has {sorted(maps)}); --mode {mode} expects {kind.noun} files")
    if maps[key].shape[0] != len(maps["keys"]) - 1:
        raise StageError(f"{path}: {maps[key].shape[0]} maps for {len(maps['keys']) - 1} classes in 'keys'")
    return path, [maps_to_label(maps[key], maps["keys"], threshold) for threshold in thresholds]


def evaluate_folder(pred_dir, mask_path, benchmark, ids, mode, thresholds, num_workers=1, allow_pickle=False,
                    progress=True):
    """One SegmentationMetric per threshold (aligned with `thresholds`) over every listed image;
    `mask_path(id)` is an image's ground truth, `benchmark` the dataset entry (classes, mask reader)."""
    check_ground_truth(mask_path, ids)
    check_predictions(pred_dir, ids, mode)
    predictions_of = functools.partial(folder_predictions, pred_dir=pred_dir, benchmark=benchmark, mode=mode,
                                       thresholds=thresholds, allow_pickle=allow_pickle)
    return score_images(ids, predictions_of, len(thresholds), mask_path, benchmark, num_workers, progress)


def summary_line(threshold, scores):
    """The published one-line result."""
    prefix = "" if threshold is None else f"Th={threshold:.2f}, "
    return f"{prefix}mIoU={scores['mIoU']:.3f}%, FP={scores['FP']:.4f}, FN={scores['FN']:.4f}"


def best_index(values, key):
    """The first index of the largest `key` (numpy's argmax order)."""
    return max(range(len(values)), key=lambda index: (key(values[index]), -index))


def nearest_index(values, target):
    """The first index whose value is closest to `target` (numpy's argmin order)."""
    return min(range(len(values)), key=lambda index: (abs(values[index] - target), index))


def published_printout(mode, thresholds, scores):
    """evaluate.py's published output, line for line, and the chosen thresholds.

    One threshold (or png): its one line. npy sweep: a `Th=…, mIoU=…%, FP=…, FN=…` line per
    threshold, then `Best Th=…, mIoU=…%`. rw sweep: a `Th=…, mIoU=…%, FP=…` line per threshold,
    then `Over FP : …, Under FP : …` (1.6× and 0.6× the best threshold's FP), and the best, over
    and under thresholds (those whose FP is closest to the two targets) in the per-threshold form.
    Returns (lines, {"best": index, "over": index, "under": index} as they apply).
    """
    if len(thresholds) == 1:
        return [summary_line(thresholds[0], scores[0])], {"best": 0}
    best = best_index(scores, lambda s: s["mIoU"])
    if mode != "rw":
        lines = [summary_line(th, s) for th, s in zip(thresholds, scores)]
        return lines + [f"Best Th={thresholds[best]:.2f}, mIoU={scores[best]['mIoU']:.3f}%"], {"best": best}

    def rw_line(index):
        return f"Th={thresholds[index]:.2f}, mIoU={scores[index]['mIoU']:.3f}%, FP={scores[index]['FP']:.4f}"

    false_positives = [s["FP"] for s in scores]
    over_fp, under_fp = false_positives[best] * 1.6, false_positives[best] * 0.6
    chosen = {"best": best, "over": nearest_index(false_positives, over_fp),
              "under": nearest_index(false_positives, under_fp)}
    lines = [rw_line(index) for index in range(len(thresholds))]
    lines.append(f"Over FP : {over_fp:.4f}, Under FP : {under_fp:.4f}")
    lines += [f"{word} {rw_line(chosen[word.lower()])}" for word in ("Best", "Over", "Under")]
    return lines, chosen


def class_table(scores, class_names):
    """Per-class IoU in the paper's layout: background, the classes, then mIoU."""
    names = ["background"] + list(class_names) + ["mIoU"]
    values = list(scores["IoU"]) + [scores["mIoU"]]
    width = max(len(name) for name in names)
    return "\n".join(f"{name:<{width}} {value:6.2f}" for name, value in zip(names, values))
