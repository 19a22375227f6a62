"""CPN's three scripts on the toy dataset, their command lines parsed and run as a user's would be
(in this process, to keep the tests quick): train_cpn.py → infer_cam.py → evaluation_cam.py →
make_affinity_labels.py, and their bad-input lines."""
import json

import numpy as np
import pytest
import torch
from torch import nn
from workspace import run_in_process

import evaluation_cam
import infer_cam
import train_cpn
from wsss.data.voc import VOCData, read_image_ids
from wsss.methods.cpn import BackboneTrunk
from wsss.utils.files import load_label_png, load_maps, save_checkpoint

HEAD_KEYS = ["fc8.weight", "f8_3.weight", "f8_4.weight", "f9.weight", "f10.weight"]
CAMS = "cpn@train@scale=0.5,1.0,1.5,2.0"
TINY_CPN = ["--network", "resnet_mini", "--weights", "none", "--batch_size", "2", "--max_epoches", "1",
            "--crop_size", "64", "--min_image_size", "48", "--max_image_size", "80"]


def add_published_heads(module, channels):
    """The published Net's layout: CPN's layers registered beside the trunk's, without a prefix."""
    module.fc8 = nn.Conv2d(channels["conv6"], 21, 1, bias=False)
    module.f8_3 = nn.Conv2d(channels["conv4"], 64, 1, bias=False)
    module.f8_4 = nn.Conv2d(channels["conv5"], 128, 1, bias=False)
    module.f9 = nn.Conv2d(195, 192, 1, bias=False)
    module.f10 = nn.Conv2d(195, 192, 1, bias=False)
    return module


@pytest.fixture(scope="module")
def chain(toy_voc, tmp_path_factory):
    """train_cpn.py (one loader worker drawing the masks), then CAMs of train_aug, their sweep on
    train, and affinity labels: once for the module."""
    work = tmp_path_factory.mktemp("cpn")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        stages = [("train_cpn.py", [*TINY_CPN, "--session_name", "cpn", "--voc12_root", toy_voc, "--num_workers", "1"]),
                  ("infer_cam.py", ["--network", "resnet_mini", "--weights", "experiments/models/cpn.pth",
                                    "--infer_list", "train_aug", "--voc12_root", toy_voc, "--out_cam",
                                    f"experiments/predictions/{CAMS}", "--num_workers", "0"]),
                  ("evaluation_cam.py", ["--list", "train", "--predict_dir", f"experiments/predictions/{CAMS}",
                                         "--gt_dir", toy_voc / "SegmentationClass", "--num_workers", "2"]),
                  ("make_affinity_labels.py", ["--experiment_name", CAMS, "--domain", "train_aug", "--fg_threshold",
                                               "0.20", "--bg_threshold", "0.05", "--data_dir", toy_voc,
                                               "--num_workers", "0"])]
        outputs = {}
        for script, argv in stages:
            capture = _Capture()
            patch.setattr("sys.stdout", capture)
            assert run_in_process(script, [str(item) for item in argv], work, patch) == 0, script
            patch.undo()
            outputs[script] = capture.text
    torch.set_num_threads(threads)
    return work, outputs["evaluation_cam.py"]


class _Capture:
    """Stands in for sys.stdout while a stage runs, keeping what it prints."""

    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def flush(self):
        pass

    def isatty(self):
        return False


def test_training_writes_cpn_records_and_a_published_layout_checkpoint(chain):
    work, _ = chain
    experiments = work / "experiments"
    history = json.loads((experiments / "data" / "cpn.json").read_text())
    assert history["args"]["max_epoch"] == 1 and history["args"]["wd"] == 5e-4 and history["finished"]
    assert {"total", "cls", "tcp", "cpcr", "lr"} <= set(history["train"][0]) and len(history["validation"]) == 1
    assert "evaluation iteration=4, epoch=1" in (experiments / "logs" / "cpn.txt").read_text()
    state = torch.load(experiments / "models" / "cpn.pth", weights_only=True)
    assert list(state)[-5:] == HEAD_KEYS and not any(key.startswith("backbone.") for key in state)
    published = add_published_heads(BackboneTrunk("resnet_mini", "fix", "none"), {"conv4": 128, "conv5": 256,
                                                                                  "conv6": 512})
    published.load_state_dict(state, strict=True)
    assert torch.equal(published.fc8.weight, state["fc8.weight"])


def test_cam_files_are_cpn_scale_and_feed_make_affinity_labels(chain, toy_voc):
    work, _ = chain
    predictions = work / "experiments" / "predictions"
    ids = read_image_ids("train_aug", toy_voc)
    data = VOCData(toy_voc)
    assert sorted(path.stem for path in (predictions / CAMS).glob("*.npz")) == sorted(ids)
    for image_id in ids:
        maps = load_maps(predictions / CAMS / f"{image_id}.npz", 20)
        height, width = np.asarray(data.image(image_id)).shape[:2]
        assert maps["keys"].tolist() == [0, *(np.flatnonzero(data.label(image_id)) + 1)]
        assert maps["hr_cam"].shape == (len(maps["keys"]) - 1, height, width)
        assert maps["cam"].shape[1:] == ((height - 1) // 4 + 1, (width - 1) // 4 + 1)
        assert maps["hr_cam"].max() < 0.5 and maps["cam"].max() < 0.5  # the ÷2 scale
        label = load_label_png(predictions / f"{CAMS}@aff_fg=0.20_bg=0.05" / f"{image_id}.png")
        assert label.shape == (height, width) and set(np.unique(label)) <= {0, 255, *maps["keys"][1:]}


def test_sweep_prints_forty_published_lines(chain):
    work, stdout = chain
    lines = stdout.splitlines()
    assert [line.split("/")[0] for line in lines[:40]] == [str(i) for i in range(20, 60)]
    assert lines[0].startswith("20/60 background score: 0.200\tmIoU: ") and lines[0].endswith("%")
    saved = json.loads((work / "experiments" / "evaluations" / f"{CAMS}@train.json").read_text())
    assert len(saved["sweep"]) == 40 and saved["images"] == 4
    assert "mIoU:[" in (work / "eval.txt").read_text()


def test_infer_cam_names_the_keys_of_a_wrong_checkpoint(toy_voc, tmp_path, monkeypatch, capsys):
    save_checkpoint({"conv.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    status = run_in_process("infer_cam.py", ["--network", "resnet_mini", "--weights", "wrong.pth", "--infer_list",
                                             "train", "--voc12_root", str(toy_voc), "--num_workers", "0"],
                            tmp_path, monkeypatch)
    assert status == 2 and "wrong.pth: checkpoint does not match the model" in capsys.readouterr().err
    assert not (tmp_path / "out_cam").exists() or not any((tmp_path / "out_cam").iterdir())


def test_help_lists_the_published_flags():
    expected = {train_cpn: ["--batch_size", "--max_epoches", "--network", "--lr", "--num_workers", "--wt_dec",
                            "--weights", "--train_list", "--val_list", "--session_name", "--crop_size", "--voc12_root",
                            "--data_dir", "--amp", "--resume", "--device", "--tag"],
                infer_cam: ["--weights", "--network", "--infer_list", "--num_workers", "--voc12_root", "--out_cam",
                            "--data_dir", "--domain", "--shard", "--amp", "--device"],
                evaluation_cam: ["--list", "--predict_dir", "--gt_dir", "--logfile", "--comment", "--type", "--t",
                                 "--curve", "--allow_pickle"]}
    for script, flags in expected.items():
        text = script.build_parser().format_help()
        assert all(flag in text for flag in flags), script.__name__


def test_a_missing_weight_file_is_one_line(toy_voc, tmp_path, monkeypatch, capsys):
    status = run_in_process("train_cpn.py", ["--weights", str(tmp_path / "absent.pth"), "--voc12_root", str(toy_voc)],
                            tmp_path, monkeypatch)
    assert status == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {tmp_path / 'absent.pth'}: ResNet-38 weight file not found; convert the published MXNet file "
        f"(README, section CPN) to ilsvrc-cls_rna-a1_cls1000_ep-0001.pth in {torch.hub.get_dir()}/checkpoints or "
        "pass --weights PATH (--weights none: train from scratch)"]
    assert not (tmp_path / "experiments" / "models").exists()


def test_inference_classification_with_method_cpn_equals_infer_cam(chain, toy_voc, monkeypatch):
    work, _ = chain
    common = ["--data_dir", str(toy_voc), "--num_workers", "0"]
    assert run_in_process("inference_classification.py", ["--method", "cpn", "--architecture", "resnet_mini",
                                                          "--tag", "cpn", "--domain", "val", "--scales", "1.0",
                                                          *common], work, monkeypatch) == 0
    assert run_in_process("infer_cam.py", ["--network", "resnet_mini", "--weights", "experiments/models/cpn.pth",
                                           "--domain", "val", "--scales", "1.0", "--out_cam", "val_cams", *common],
                          work, monkeypatch) == 0
    for image_id in read_image_ids("val", toy_voc):
        ours = load_maps(work / "experiments" / "predictions" / "cpn@val@scale=1.0" / f"{image_id}.npz")
        theirs = load_maps(work / "val_cams" / f"{image_id}.npz")
        for name in ("keys", "cam", "hr_cam"):
            assert np.array_equal(ours[name], theirs[name]), (image_id, name)
