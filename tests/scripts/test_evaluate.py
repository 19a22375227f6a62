"""evaluate.py prints what the published script prints, line for line, on hand-made maps whose
scores are counted here directly; predictions holding 255 score as predicting no class; --data_dir
is the ground-truth folder or the dataset folder above it."""
import re

import numpy as np
import pytest
from PIL import Image

import workspace
from wsss.utils.files import save_cams, save_rw

TRUTH = {
    "a": np.array([[0, 0, 3, 3, 3, 0], [0, 3, 3, 3, 0, 0], [0, 0, 3, 255, 0, 0], [0, 0, 0, 0, 0, 7]]),
    "b": np.array([[7, 7, 0, 0, 0, 0], [7, 7, 7, 0, 0, 0], [0, 7, 0, 0, 3, 3], [0, 0, 0, 0, 3, 3]]),
}
rng = np.random.default_rng(0)
MAPS = {image_id: (np.array([0, 4, 8]), rng.random((2, 4, 6)).astype(np.float32)) for image_id in TRUTH}


@pytest.fixture
def root(tmp_path):
    data = tmp_path / "data"
    (data / "SegmentationClass").mkdir(parents=True)
    (data / "ImageSets" / "Segmentation").mkdir(parents=True)
    (data / "ImageSets" / "Segmentation" / "train.txt").write_text("a\nb\n")
    for image_id, mask in TRUTH.items():
        Image.fromarray(mask.astype(np.uint8), mode="L").save(data / "SegmentationClass" / f"{image_id}.png")
    predictions = tmp_path / "experiments" / "predictions"
    for folder in ("cams", "rw"):
        (predictions / folder).mkdir(parents=True)
    for image_id, (keys, maps) in MAPS.items():
        save_cams(predictions / "cams" / f"{image_id}.npz", keys, maps[:, ::4, ::4], maps)
        save_rw(predictions / "rw" / f"{image_id}.npz", keys, maps)
    return tmp_path


def direct_scores(predictions):
    """mIoU (%), FP and FN (foreground means) over 21 classes by counting each class directly."""
    tp, p, t = np.zeros(21), np.zeros(21), np.zeros(21)
    for image_id, prediction in predictions.items():
        truth = TRUTH[image_id]
        valid = truth < 255
        for c in range(21):
            p[c] += np.sum((prediction == c) & valid)
            t[c] += np.sum((truth == c) & valid)
            tp[c] += np.sum((prediction == c) & (truth == c) & valid)
    union = t + p - tp + 1e-10
    return (tp / union).mean() * 100, ((p - tp) / union)[1:].mean(), ((t - tp) / union)[1:].mean()


def thresholded(threshold):
    """Background at `threshold`, then the larger map: the first of equal values wins, as argmax does."""
    result = {}
    for image_id, (keys, maps) in MAPS.items():
        stacked = np.concatenate([np.full((1, 4, 6), threshold, np.float32), maps])
        result[image_id] = keys[np.argmax(stacked, axis=0)]
    return result


def evaluate(root, monkeypatch, capsys, *argv, data_dir=None):
    data_dir = data_dir or root / "data" / "SegmentationClass"
    status = workspace.run_in_process("evaluate.py", ["--domain", "train", "--num_workers", "1", "--data_dir",
                                                      str(data_dir), *map(str, argv)], root, monkeypatch)
    assert status == 0
    return capsys.readouterr().out.splitlines()


SWEEP_LINE = re.compile(r"^Th=(\d\.\d\d), mIoU=(\d+\.\d{3})%, FP=(\d\.\d{4}), FN=(\d\.\d{4})$")
RW_LINE = re.compile(r"^(Best |Over |Under )?Th=(\d\.\d\d), mIoU=(\d+\.\d{3})%, FP=(\d\.\d{4})$")


def test_npy_sweep_prints_every_threshold_then_the_best(root, monkeypatch, capsys):
    lines = evaluate(root, monkeypatch, capsys, "--experiment_name", "cams")
    rows = [SWEEP_LINE.match(line) for line in lines[:15]]
    assert all(rows), lines[:16]
    thresholds = [round(0.05 * (index + 1), 2) for index in range(15)]
    assert [float(row.group(1)) for row in rows] == thresholds
    expected = [direct_scores(thresholded(th)) for th in thresholds]
    for row, (miou, fp, fn) in zip(rows, expected):
        assert float(row.group(2)) == pytest.approx(miou, abs=5e-4)
        assert float(row.group(3)) == pytest.approx(fp, abs=5e-5) and float(row.group(4)) == pytest.approx(fn, abs=5e-5)
    best = int(np.argmax([miou for miou, _, _ in expected]))
    assert lines[15] == f"Best Th={thresholds[best]:.2f}, mIoU={expected[best][0]:.3f}%"


def test_rw_sweep_prints_the_published_fp_matched_thresholds(root, monkeypatch, capsys):
    lines = evaluate(root, monkeypatch, capsys, "--experiment_name", "rw", "--mode", "rw", "--max_th", "0.50")
    thresholds = [round(0.05 * (index + 1), 2) for index in range(10)]
    rows = [RW_LINE.match(line) for line in lines[:10]]
    assert all(rows) and [float(row.group(2)) for row in rows] == thresholds
    expected = [direct_scores(thresholded(th)) for th in thresholds]
    fps = [fp for _, fp, _ in expected]
    best = int(np.argmax([miou for miou, _, _ in expected]))
    over, under = (int(np.argmin(np.abs(np.array(fps) - fps[best] * factor))) for factor in (1.6, 0.6))
    assert lines[10] == f"Over FP : {fps[best] * 1.6:.4f}, Under FP : {fps[best] * 0.6:.4f}"
    for line, word, index in zip(lines[11:14], ("Best", "Over", "Under"), (best, over, under)):
        assert line == f"{word} Th={thresholds[index]:.2f}, mIoU={expected[index][0]:.3f}%, FP={fps[index]:.4f}"


def test_fixed_threshold_prints_one_line(root, monkeypatch, capsys):
    lines = evaluate(root, monkeypatch, capsys, "--experiment_name", "cams", "--threshold", "0.20")
    miou, fp, fn = direct_scores(thresholded(0.20))
    assert lines[0] == f"Th=0.20, mIoU={miou:.3f}%, FP={fp:.4f}, FN={fn:.4f}"


def test_png_prediction_with_255_predicts_no_class(root, monkeypatch, capsys):
    folder = root / "experiments" / "predictions" / "labels"
    folder.mkdir()
    predictions = {image_id: np.where(truth == 255, 0, truth) for image_id, truth in TRUTH.items()}
    predictions["a"][0, :3] = 255  # two background pixels and one class-3 pixel predict nothing
    predictions["b"][3, 5] = 255
    for image_id, label in predictions.items():
        Image.fromarray(label.astype(np.uint8), mode="L").save(folder / f"{image_id}.png")
    lines = evaluate(root, monkeypatch, capsys, "--experiment_name", "labels", "--mode", "png")
    miou, fp, fn = direct_scores(predictions)
    assert lines[0] == f"mIoU={miou:.3f}%, FP={fp:.4f}, FN={fn:.4f}"
    assert lines[1] == "note: 4 scored prediction pixels hold 255 (void); as published, they predict no class"


def test_data_dir_is_the_ground_truth_folder_or_the_dataset_folder(root, monkeypatch, capsys):
    published = evaluate(root, monkeypatch, capsys, "--experiment_name", "cams")
    dataset_root = evaluate(root, monkeypatch, capsys, "--experiment_name", "cams", data_dir=root / "data")
    assert published == dataset_root and published[0].startswith("Th=0.05")
