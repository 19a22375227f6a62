"""The segmentation metric shared by training-time evaluation and evaluate.py (docs/design.md §6.10)."""
import numpy as np

from wsss.utils.labels import IGNORE_LABEL


class SegmentationMetric:
    """A confusion matrix accumulated by one bincount per image.

    Rows: ground-truth classes; columns: predicted classes, plus a last column for prediction
    pixels that hold IGNORE_LABEL (a label map with void or unsure pixels): as published, such a
    pixel predicts no class, so it adds to the ground truth's T and to no class's P.
    IoU_c = TP/(T+P−TP+1e-10); FP_c = (P−TP)/(…); FN_c = (T−TP)/(…). mIoU is the mean over all
    classes, including (quirk) classes absent from both prediction and ground truth, which score 0.
    FP and FN are reported as the mean over the foreground classes.
    """

    def __init__(self, num_classes):
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes + 1), dtype=np.int64)

    def update(self, prediction, ground_truth):
        """Count the pixels whose ground truth is < 255."""
        prediction = np.asarray(prediction).astype(np.int64).ravel()
        ground_truth = np.asarray(ground_truth).astype(np.int64).ravel()
        if prediction.shape != ground_truth.shape:
            raise ValueError(f"prediction has {prediction.size} pixels, ground truth {ground_truth.size}")
        valid = ground_truth < IGNORE_LABEL
        prediction, ground_truth = prediction[valid], ground_truth[valid]
        unpredicted = prediction == IGNORE_LABEL
        if np.any((prediction < 0) | ((prediction >= self.num_classes) & ~unpredicted)):
            raise ValueError(f"prediction values outside 0..{self.num_classes - 1} and {IGNORE_LABEL}")
        prediction = np.where(unpredicted, self.num_classes, prediction)
        columns = self.num_classes + 1
        codes = ground_truth * columns + prediction
        self.matrix += np.bincount(codes, minlength=self.num_classes * columns).reshape(self.num_classes, columns)

    @property
    def unpredicted_pixels(self):
        """Scored pixels whose prediction held IGNORE_LABEL."""
        return int(self.matrix[:, -1].sum())

    def scores(self):
        classes = self.matrix[:, :-1]
        true_positive = np.diag(classes).astype(np.float64)
        target = self.matrix.sum(axis=1).astype(np.float64)
        predicted = classes.sum(axis=0).astype(np.float64)
        union = target + predicted - true_positive + 1e-10
        iou = true_positive / union
        false_positive = (predicted - true_positive) / union
        false_negative = (target - true_positive) / union
        return {
            "mIoU": float(iou.mean() * 100),
            "mIoU_foreground": float(iou[1:].mean() * 100),
            "FP": float(false_positive[1:].mean()),
            "FN": float(false_negative[1:].mean()),
            "IoU": (iou * 100).tolist(),
        }
