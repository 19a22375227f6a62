"""The one metric over COCO's 81 classes (background + 80), on maps whose values are worked out by hand."""
import numpy as np
import pytest

from wsss.utils.metrics import SegmentationMetric

TRUTH = np.array([[0, 80, 80], [40, 40, 255]])
PREDICTION = np.array([[0, 80, 40], [40, 0, 80]])


def test_scores_over_81_classes_by_hand():
    metric = SegmentationMetric(81)
    metric.update(PREDICTION, TRUTH)
    scores = metric.scores()
    # scored pixels: the five whose truth is not 255
    # class 0:  T=1 P=2 TP=1 → IoU 1/2;  class 40: T=2 P=2 TP=1 → 1/3;  class 80: T=2 P=1 TP=1 → 1/2
    iou = np.zeros(81)
    iou[0], iou[40], iou[80] = 1 / 2, 1 / 3, 1 / 2
    np.testing.assert_allclose(scores["IoU"], iou * 100, rtol=1e-9)
    assert len(scores["IoU"]) == 81
    assert scores["mIoU"] == pytest.approx((1 / 2 + 1 / 3 + 1 / 2) / 81 * 100)
    assert scores["mIoU_foreground"] == pytest.approx((1 / 3 + 1 / 2) / 80 * 100)
    # FP = (P − TP)/union, FN = (T − TP)/union, averaged over the 80 foreground classes
    assert scores["FP"] == pytest.approx((1 / 3 + 0) / 80)
    assert scores["FN"] == pytest.approx((1 / 3 + 1 / 2) / 80)


def test_unpredicted_pixels_and_class_range_over_81_classes():
    metric = SegmentationMetric(81)
    metric.update(np.array([[255, 80]]), np.array([[80, 80]]))
    assert metric.unpredicted_pixels == 1
    assert metric.scores()["IoU"][80] == pytest.approx(50.0)  # T=2 P=1 TP=1
    with pytest.raises(ValueError, match="outside 0..80"):
        metric.update(np.array([[81]]), np.array([[0]]))
    with pytest.raises(ValueError, match="outside 0..20"):
        SegmentationMetric(21).update(PREDICTION, TRUTH)
