"""The scripts under torchrun (gloo on CPU) and sharded over --shard i/n, as a user runs them."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from stage_runner import REPOSITORY, TINY_TRAINING, run_stage

import inference_classification
from wsss.data.voc import read_image_ids
from wsss.models.classifier import Classifier
from wsss.utils.files import load_maps, save_checkpoint


def start_torchrun(script, *args, processes, cwd):
    """`python -m torch.distributed.run --standalone` (a free port) with `processes` CPU processes."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               str(REPOSITORY / script), *map(str, args)]
    environment = dict(os.environ, PYTHONWARNINGS="ignore", CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    return subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=environment)


def finish(run, timeout=300):
    stdout, stderr = run.communicate(timeout=timeout)
    if run.returncode != 0:
        raise AssertionError(f"{' '.join(run.args)} failed ({run.returncode}):\n{stdout[-3000:]}\n{stderr[-3000:]}")


@pytest.fixture(scope="module")
def puzzle_runs(toy_voc, tmp_path_factory):
    """The puzzle classifier under torchrun with 1 and with 2 processes: global batch 4, 2 epochs of
    2 iterations, --mode fix (batch statistics per process would differ from one process's)."""
    flags = ["--architecture", "resnet_mini", "--data_dir", toy_voc, *TINY_TRAINING, "--batch_size", "4",
             "--max_epoch", "2", "--mode", "fix", "--print_ratio", "0.5", "--tag", "puzzle"]
    runs = {processes: tmp_path_factory.mktemp(f"torchrun{processes}") for processes in (1, 2)}
    started = [start_torchrun("train_classification_with_puzzle.py", *flags, processes=processes, cwd=work)
               for processes, work in runs.items()]  # side by side: mostly start-up time
    for run in started:
        finish(run)
    return runs


def history(work):
    return json.loads((work / "experiments" / "data" / "puzzle.json").read_text())


def test_two_processes_train_like_one_with_the_same_global_batch(puzzle_runs):
    one, two = history(puzzle_runs[1]), history(puzzle_runs[2])
    assert len(one["train"]) == len(two["train"]) == 4
    for single, double in zip(one["train"], two["train"]):
        assert single["iteration"] == double["iteration"] and single["lr"] == pytest.approx(double["lr"])
        for name in ("total", "class_loss", "p_class_loss", "re_loss"):
            assert double[name] == pytest.approx(single[name], rel=1e-4, abs=1e-6), (single["iteration"], name)
    weights = [torch.load(puzzle_runs[n] / "experiments" / "models" / "puzzle.state.pth", weights_only=True)["model"]
               for n in (1, 2)]
    for name, tensor in weights[0].items():
        assert torch.allclose(tensor.float(), weights[1][name].float(), atol=1e-4), name


def test_only_rank_0_writes_logs_and_checkpoints(puzzle_runs):
    experiments = puzzle_runs[2] / "experiments"
    assert sorted(path.name for path in (experiments / "models").iterdir()) == ["puzzle.pth", "puzzle.state.pth"]
    log = (experiments / "logs" / "puzzle.txt").read_text()
    assert log.count("arguments: ") == 1 and log.count("evaluation iteration=") == 2
    assert "torchrun: 2 processes, 2 images each per iteration" in log
    assert len(history(puzzle_runs[2])["validation"]) == 2 and history(puzzle_runs[2])["finished"]
    assert len(list((experiments / "tensorboards" / "puzzle").iterdir())) == 1
    state = torch.load(experiments / "models" / "puzzle.state.pth", weights_only=True)
    assert state["epoch"] == 2 and len(state["rng"]) == 2 and state["run"]["processes"] == 2


def test_sharded_cam_inference_is_the_single_run(toy_voc, tmp_path, monkeypatch, one_thread):
    """The whole list and the first share in this process (quicker), the second share as a command."""
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    weights = Classifier("resnet_mini", mode="normal", pretrained="none").state_dict()
    for tag in ("whole", "sharded"):
        save_checkpoint(weights, tmp_path / "experiments" / "models" / f"{tag}.pth")
    flags = ["--architecture", "resnet_mini", "--domain", "train", "--scales", "0.5,1.0", "--data_dir", toy_voc,
             "--num_workers", "0"]
    parse = inference_classification.build_parser().parse_args
    inference_classification.main(parse(list(map(str, [*flags, "--tag", "whole"]))))
    predictions = tmp_path / "experiments" / "predictions"
    ids = read_image_ids("train", toy_voc)
    whole, sharded = predictions / "whole@train@scale=0.5,1.0", predictions / "sharded@train@scale=0.5,1.0"
    inference_classification.main(parse(list(map(str, [*flags, "--tag", "sharded", "--shard", "0/2"]))))
    assert sorted(path.stem for path in sharded.iterdir()) == sorted(ids[0::2])  # the first of two shares
    run_stage("inference_classification.py", *flags, "--tag", "sharded", "--shard", "1/2", cwd=tmp_path)
    assert sorted(path.name for path in sharded.iterdir()) == sorted(path.name for path in whole.iterdir())
    assert len(list(whole.iterdir())) == len(ids)
    for image_id in ids:
        expected, actual = load_maps(whole / f"{image_id}.npz"), load_maps(sharded / f"{image_id}.npz")
        for name in ("keys", "cam", "hr_cam"):
            assert np.array_equal(expected[name], actual[name]), (image_id, name)
