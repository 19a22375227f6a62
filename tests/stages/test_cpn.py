"""evaluation_cam.py on hand-made CAM files: the published sweep lines parsed back and checked against
a per-pixel brute force, the log-file record, the per-class table, the `--curve` quirk, the
published pickled dicts behind --allow_pickle, and the JSON result; and the CPN trunk the runner
hands to AffinityNet and DeepLabv3+."""
import ast
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

import evaluation_cam
from wsss.data.voc import load_class_info
from wsss.methods.cpn import build_network
from wsss.models.backbones import Backbone
from wsss.stages.cpn import cams_from_published_dict, export_trunk, log_entry
from wsss.utils.errors import StageError
from wsss.utils.files import save_cams, save_checkpoint

SWEEP_LINE = re.compile(r"^(\d+)/60 background score: (\d\.\d{3})\tmIoU: (\d+\.\d{3})%$")
NAMES = ["background"] + load_class_info()["class_names"]

# two images: ground truth (255 = void) and CPN-scale maps of their present classes
GROUND_TRUTH = {
    "a": np.array([[0, 0, 3, 3], [0, 3, 3, 255], [7, 7, 0, 0]], dtype=np.uint8),
    "b": np.array([[0, 12, 12, 12, 0], [0, 0, 12, 0, 0]], dtype=np.uint8),
}
KEYS = {"a": [0, 3, 7], "b": [0, 12]}
MAPS = {
    "a": np.array([[[0.10, 0.22, 0.45, 0.58], [0.21, 0.33, 0.49, 0.40], [0.05, 0.10, 0.31, 0.27]],
                   [[0.00, 0.05, 0.01, 0.02], [0.15, 0.09, 0.02, 0.00], [0.41, 0.26, 0.36, 0.12]]], np.float32),
    "b": np.array([[[0.24, 0.52, 0.38, 0.29, 0.20], [0.23, 0.27, 0.44, 0.35, 0.25]]], np.float32),
}


def brute_force_miou(threshold):
    """Per pixel: the class of the largest of [threshold, the present maps] (the first on a tie; the
    threshold in float32, as in the published float32 stack); IoU of all 21 classes."""
    tp, total_p, total_t = np.zeros(21), np.zeros(21), np.zeros(21)
    for name, truth in GROUND_TRUTH.items():
        for y in range(truth.shape[0]):
            for x in range(truth.shape[1]):
                if truth[y, x] == 255:
                    continue
                scores = [np.float32(threshold)] + [m[y, x] for m in MAPS[name]]
                predicted = KEYS[name][int(np.argmax(scores))]
                total_p[predicted] += 1
                total_t[truth[y, x]] += 1
                tp[predicted] += predicted == truth[y, x]
    iou = tp / (total_t + total_p - tp + 1e-10)
    return iou * 100, iou.mean() * 100


@pytest.fixture
def folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    gt_dir, cams = tmp_path / "SegmentationClass", tmp_path / "cams"
    gt_dir.mkdir()
    for name, truth in GROUND_TRUTH.items():
        Image.fromarray(truth).save(gt_dir / f"{name}.png")
        save_cams(cams / f"{name}.npz", KEYS[name], MAPS[name][:, ::2, ::2], MAPS[name])
    (tmp_path / "list.txt").write_text("a\r\nb\r\n")
    return tmp_path


def run(argv, capsys):
    args = evaluation_cam.build_parser().parse_args([str(item) for item in argv])
    result = evaluation_cam.main(args)
    return result, capsys.readouterr().out.splitlines()


def test_sweep_lines_match_a_brute_force_and_go_to_the_log(folders, capsys):
    result, lines = run(["--list", "list.txt", "--predict_dir", "cams", "--gt_dir", "SegmentationClass",
                         "--num_workers", "1", "--comment", "toy sweep"], capsys)
    parsed = [SWEEP_LINE.match(line) for line in lines[:40]]
    assert all(parsed) and [int(m.group(1)) for m in parsed] == list(range(20, 60))
    expected = [brute_force_miou(index / 100)[1] for index in range(20, 60)]
    assert [m.group(2) for m in parsed] == ["%.3f" % (index / 100) for index in range(20, 60)]
    assert [m.group(3) for m in parsed] == ["%.3f" % value for value in expected]
    assert len(set(m.group(3) for m in parsed)) > 5  # the maps make the score depend on t
    assert lines[40] == "results in experiments/evaluations/cams@list.json"

    record = (folders / "eval.txt").read_text().split("\n")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\ttoy sweep", record[0])
    assert record[1].startswith("mIoU:[") and record[1].endswith("]  ")
    assert ast.literal_eval(record[1][len("mIoU:"):].strip()) == pytest.approx(expected, abs=1e-9)
    assert record[2:] == ["=====================================", ""]

    best = int(np.argmax(expected))
    saved = json.loads((folders / "experiments" / "evaluations" / "cams@list.json").read_text())
    assert saved == result and saved["images"] == 2 and saved["curve"] is True
    assert saved["threshold"] == pytest.approx((20 + best) / 100) and saved["mIoU"] == pytest.approx(expected[best])
    assert [entry["threshold"] for entry in saved["sweep"]] == pytest.approx([i / 100 for i in range(20, 60)])

    run(["--list", "list.txt", "--predict_dir", "cams", "--gt_dir", "SegmentationClass", "--num_workers", "2"],
        capsys)
    assert (folders / "eval.txt").read_text().count("=====================================\n") == 2  # appended


def test_one_threshold_prints_the_published_class_table(folders, capsys):
    result, lines = run(["--list", "list.txt", "--predict_dir", "cams", "--gt_dir", "SegmentationClass",
                         "--curve", "", "--t", "0.3", "--num_workers", "1"], capsys)
    iou, miou = brute_force_miou(0.3)
    assert lines[0] == "%11s:%7.3f%%\t%11s:%7.3f%%" % (NAMES[0], iou[0], NAMES[1], iou[1])
    assert lines[1] == "    bicycle:  0.000%%\t       bird:%7.3f%%" % iou[3]
    assert lines[10] == "  tvmonitor:  0.000%\t"
    assert lines[11:13] == ["======================================================", "       mIoU:%7.3f%%" % miou]
    assert result["threshold"] == 0.3 and result["mIoU"] == pytest.approx(miou) and "sweep" not in result
    assert result["IoU"] == pytest.approx(list(iou)) and result["IoU"][12] > 0  # dog
    record = (folders / "eval.txt").read_text().split("\n")
    pairs = record[1].split("  ")[:-1]
    assert [pair.split(":")[0] for pair in pairs] == NAMES + ["mIoU"]
    assert float(pairs[3].split(":")[1]) == pytest.approx(iou[3]) and float(pairs[-1].split(":")[1]) == pytest.approx(miou)


@pytest.mark.parametrize("text, curve", [("True", True), ("False", True), ("0", True), ("no", True), ("", False)])
def test_curve_is_parsed_with_the_published_type_bool(text, curve):
    args = evaluation_cam.build_parser().parse_args(["--list", "l", "--gt_dir", "g", "--curve", text])
    assert args.curve is curve


def test_published_pickled_dicts_are_read_only_when_allowed(folders, capsys):
    published = folders / "published"
    published.mkdir()
    for name in GROUND_TRUTH:  # CPN's dict: 0-based class index → map
        np.save(published / f"{name}.npy", {key - 1: array for key, array in zip(KEYS[name][1:], MAPS[name])})
    with pytest.raises(StageError, match="published pickled .npy format"):
        run(["--list", "list.txt", "--predict_dir", "published", "--gt_dir", "SegmentationClass",
             "--num_workers", "1"], capsys)
    _, lines = run(["--list", "list.txt", "--predict_dir", "published", "--gt_dir", "SegmentationClass",
                    "--num_workers", "1", "--allow_pickle", "True"], capsys)
    _, ours = run(["--list", "list.txt", "--predict_dir", "cams", "--gt_dir", "SegmentationClass",
                   "--num_workers", "1"], capsys)
    assert lines[:40] == ours[:40]


def test_published_dict_conversion_and_its_errors():
    keys, maps = cams_from_published_dict({11: np.ones((2, 3)), 2: np.zeros((2, 3))}, "f.npy", (2, 3))
    assert keys.tolist() == [0, 3, 12] and maps.shape == (2, 2, 3) and maps[1].sum() == 6
    keys, maps = cams_from_published_dict({}, "f.npy", (4, 5))
    assert keys.tolist() == [0] and maps.shape == (0, 4, 5)
    with pytest.raises(StageError, match=r"class indices \[20\] outside 0-19"):
        cams_from_published_dict({20: np.ones((2, 3))}, "f.npy", (2, 3))
    with pytest.raises(StageError, match="differ in shape"):
        cams_from_published_dict({1: np.ones((2, 3)), 2: np.ones((3, 2))}, "f.npy", (2, 3))
    with pytest.raises(StageError, match="neither a CAM file"):
        cams_from_published_dict({"cam": np.ones((2, 3))}, "f.npy", (2, 3))


def test_seam_lists_png_labels_and_bad_input(folders, capsys):
    (folders / "seam.txt").write_text("/JPEGImages/a.jpg /SegmentationClassAug/a.png\n"
                                      "/JPEGImages/b.jpg /SegmentationClassAug/b.png\n")
    labels = folders / "labels"
    labels.mkdir()
    for name, truth in GROUND_TRUTH.items():  # the ground truth itself as a prediction: mIoU over 3 of 21 classes
        Image.fromarray(truth).save(labels / f"{name}.png")
    result, lines = run(["--list", "seam.txt", "--predict_dir", "labels", "--gt_dir", "SegmentationClass",
                         "--type", "png", "--num_workers", "1"], capsys)
    assert result["images"] == 2 and len(set(lines[:40])) == 40  # one line per t, the same mIoU
    assert {SWEEP_LINE.match(line).group(3) for line in lines[:40]} == {"%.3f" % (4 / 21 * 100)}
    with pytest.raises(StageError, match="needs --t"):
        run(["--list", "list.txt", "--predict_dir", "cams", "--gt_dir", "SegmentationClass", "--curve", ""], capsys)
    with pytest.raises(StageError, match=r"cams/c\.npz \(or the published \.npy\): prediction missing \(1 of 3"):
        (folders / "more.txt").write_text("a\nb\nc\n")
        Image.fromarray(GROUND_TRUTH["a"]).save(folders / "SegmentationClass" / "c.png")
        run(["--list", "more.txt", "--predict_dir", "cams", "--gt_dir", "SegmentationClass"], capsys)


def test_log_entry_layout():
    text = log_entry({"mIoU": [1.5, 2.25]}, "note", now=0)
    assert text.split("\n")[1:] == ["mIoU:[1.5, 2.25]  ", "=====================================", ""]
    assert text.split("\n")[0].endswith("\tnote")


def test_exported_trunk_starts_a_backbone_with_the_cpn_weights(tmp_path):
    torch.manual_seed(0)
    network = build_network("resnet_mini", "fix", "none")
    save_checkpoint(network.state_dict(), tmp_path / "cpn.pth")
    export_trunk(tmp_path / "cpn.pth", tmp_path / "cpn.trunk.pth")
    backbone = Backbone("resnet_mini", mode="fix", pretrained=str(tmp_path / "cpn.trunk.pth"))
    for name, tensor in network.backbone.model.state_dict().items():
        assert torch.equal(backbone.model.state_dict()[name], tensor), name
    save_checkpoint({"conv1a.weight": torch.zeros(1), "fc8.weight": torch.zeros(1)}, tmp_path / "r38.pth")
    with pytest.raises(StageError, match="not a CPN checkpoint on a registered backbone"):
        export_trunk(tmp_path / "r38.pth", tmp_path / "r38.trunk.pth")
