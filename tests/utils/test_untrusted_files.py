"""Untrusted files never run code: pickle bombs (files whose unpickling would create a marker
file) in every place a file is read, through the project's readers and through the stage scripts."""
import pathlib
import pickle
import shutil

import numpy as np
import pytest
import torch
import workspace

from wsss.data.voc import read_image_ids
from wsss.models.backbones import load_imagenet_weights
from wsss.models.classifier import Classifier
from wsss.stages.affinity import load_affinitynet
from wsss.utils.errors import StageError
from wsss.utils.files import load_checkpoint, load_maps, load_training_state, load_weights, save_cams


class Bomb:
    """Unpickling calls open(marker, "w"), which creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "bomb_went_off"
    yield path
    assert not path.exists(), "unpickling ran code"


def published_npy(path, payload):
    """The published CAM format: a pickled dict saved with np.save."""
    np.save(path, payload, allow_pickle=True)
    return path


def test_pickled_npy_is_refused_without_the_flag(tmp_path, marker):
    path = published_npy(tmp_path / "a.npy", {"keys": np.array([0, 3]), "hr_cam": Bomb(marker)})
    with pytest.raises(StageError, match="unpickling can run code, pass --allow_pickle True only if you trust"):
        load_maps(path)


def test_object_array_inside_an_npz_is_refused(tmp_path, marker):
    path = tmp_path / "a.npz"
    np.savez(path, keys=np.array([0, 3]), hr_cam=np.array([Bomb(marker)], dtype=object))
    with pytest.raises(StageError, match="unreadable map file"):
        load_maps(path)


def test_a_raw_pickle_named_npz_is_refused(tmp_path, marker):
    path = tmp_path / "a.npz"
    path.write_bytes(pickle.dumps({"keys": Bomb(marker)}))
    with pytest.raises(StageError, match="unreadable map file"):
        load_maps(path)


def test_the_flag_reads_a_trusted_published_file(tmp_path):
    path = published_npy(tmp_path / "a.npy", {"keys": np.array([0, 3]), "cam": torch.ones(1, 2, 2),
                                              "hr_cam": np.zeros((1, 8, 8), np.float32)})
    maps = load_maps(path, allow_pickle=True)
    assert maps["keys"].tolist() == [0, 3] and maps["cam"].shape == (1, 2, 2)


def bomb_checkpoint(path, marker):
    torch.save({"weight": torch.zeros(2), "payload": Bomb(marker)}, path)
    return path


@pytest.mark.parametrize("reader", [
    load_checkpoint,
    lambda path: load_weights(Classifier("resnet_mini", pretrained="none"), path),
    lambda path: load_affinitynet("resnet_mini", path),
    lambda path: load_imagenet_weights(Classifier("resnet_mini", pretrained="none").model, path),
    load_training_state,
], ids=["load_checkpoint", "load_weights", "load_affinitynet", "load_imagenet_weights", "load_training_state"])
def test_malicious_checkpoint_is_refused(tmp_path, marker, reader):
    path = bomb_checkpoint(tmp_path / "evil.pth", marker)
    # model code raises a plain ValueError, which the stages turn into the one-line StageError
    with pytest.raises((StageError, ValueError), match="evil.pth: cannot (load|read)"):
        reader(path)


@pytest.fixture
def ws(toy_voc, tmp_path):
    data = pathlib.Path(shutil.copytree(toy_voc, tmp_path / "voc"))
    return data, workspace.build(data, tmp_path / "root")


def run_error(script, argv, cwd, monkeypatch, capsys):
    status = workspace.run_in_process(script, [str(value) for value in argv], cwd, monkeypatch)
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert status == 2 and len(errors) == 1, errors
    return errors[0]


@pytest.mark.parametrize("script", ["make_affinity_labels.py", "inference_rw.py", "evaluate.py"])
def test_stages_refuse_a_pickle_bomb_cam_file(ws, marker, monkeypatch, capsys, script):
    data, root = ws
    cams = root / "experiments" / "predictions" / workspace.CAMS
    image_id = read_image_ids("train_aug", data)[0]
    (cams / f"{image_id}.npz").unlink()
    published_npy(cams / f"{image_id}.npy", {"keys": np.array([0, 3]), "hr_cam": Bomb(marker), "cam": Bomb(marker)})
    line = run_error(script, workspace.command(script, data), root, monkeypatch, capsys)
    assert f"{image_id}.npy: published pickled .npy format" in line and "--allow_pickle True" in line


def test_stages_refuse_a_malicious_checkpoint(ws, marker, monkeypatch, capsys):
    data, root = ws
    bomb_checkpoint(root / "experiments" / "models" / "evil.pth", marker)
    argv = workspace.command("inference_classification.py", data)
    argv[argv.index("--tag") + 1] = "evil"
    assert "evil.pth: cannot load checkpoint" in run_error("inference_classification.py", argv, root, monkeypatch,
                                                           capsys)
    argv = workspace.command("train_classification.py", data)
    argv[argv.index("--pretrained") + 1] = str(root / "experiments" / "models" / "evil.pth")
    assert "evil.pth: cannot read weight file" in run_error("train_classification.py", argv, root, monkeypatch, capsys)


def test_npz_outputs_hold_no_pickle(tmp_path):
    """What the pipeline writes reads back with allow_pickle=False (plain arrays only)."""
    path = tmp_path / "a.npz"
    save_cams(path, [0, 3], np.ones((1, 2, 2)), np.ones((1, 8, 8)))
    with np.load(path, allow_pickle=False) as data:
        assert {name: data[name].dtype.kind for name in data.files} == {"keys": "i", "cam": "f", "hr_cam": "f"}
