import numpy as np
import pytest

from wsss.utils.metrics import SegmentationMetric


def direct_scores(pairs, num_classes=21):
    """Per-class counts by direct comparison, as the published calculator does."""
    tp = np.zeros(num_classes); p = np.zeros(num_classes); t = np.zeros(num_classes)
    for prediction, truth in pairs:
        valid = truth < 255
        for c in range(num_classes):
            p[c] += np.sum((prediction == c) & valid)
            t[c] += np.sum((truth == c) & valid)
            tp[c] += np.sum((prediction == c) & (truth == c) & valid)
    iou = tp / (t + p - tp + 1e-10)
    fp = (p - tp) / (t + p - tp + 1e-10)
    fn = (t - tp) / (t + p - tp + 1e-10)
    return iou.mean() * 100, fp[1:].mean(), fn[1:].mean(), iou * 100


def test_metric_matches_direct_count():
    rng = np.random.default_rng(0)
    metric = SegmentationMetric(21)
    pairs = []
    for _ in range(5):
        truth = rng.integers(0, 6, size=(13, 17))
        truth[rng.random((13, 17)) < 0.1] = 255
        prediction = rng.integers(0, 7, size=(13, 17))
        pairs.append((prediction, truth))
        metric.update(prediction, truth)
    miou, fp, fn, iou = direct_scores(pairs)
    scores = metric.scores()
    assert scores["mIoU"] == pytest.approx(miou)
    assert scores["FP"] == pytest.approx(fp)
    assert scores["FN"] == pytest.approx(fn)
    assert np.allclose(scores["IoU"], iou)


def test_absent_classes_count_with_iou_zero():
    metric = SegmentationMetric(21)
    metric.update(np.array([[0, 1]]), np.array([[0, 1]]))
    assert metric.scores()["mIoU"] == pytest.approx(200 / 21)




def test_prediction_255_predicts_no_class_as_published():
    """A 255 prediction adds to the ground truth's T and to no class's P (the direct count's rule)."""
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 4, size=(9, 11))
    truth[0, :3] = 255
    prediction = rng.integers(0, 4, size=(9, 11))
    prediction[rng.random((9, 11)) < 0.2] = 255
    metric = SegmentationMetric(21)
    metric.update(prediction, truth)
    miou, fp, fn, iou = direct_scores([(prediction, truth)])
    scores = metric.scores()
    assert scores["mIoU"] == pytest.approx(miou) and np.allclose(scores["IoU"], iou)
    assert scores["FP"] == pytest.approx(fp) and scores["FN"] == pytest.approx(fn)
    assert metric.unpredicted_pixels == int(np.sum((prediction == 255) & (truth < 255)))


def test_a_value_that_is_neither_a_class_nor_255_is_refused():
    with pytest.raises(ValueError, match="outside 0..20 and 255"):
        SegmentationMetric(21).update(np.array([[21]]), np.array([[0]]))
