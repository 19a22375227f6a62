"""train_cpn.py through the shared training loop: two processes under torchrun, and a run stopped in
its second epoch and resumed, which ends with the weights of an uninterrupted run."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch
from stage_runner import REPOSITORY

import train_cpn
from wsss.methods import get_method
from wsss.stages import classification

TINY = ["--network", "resnet_mini", "--weights", "none", "--crop_size", "48", "--min_image_size", "40",
        "--max_image_size", "64", "--num_workers", "0"]
ITERATIONS_PER_EPOCH = 4  # 8 train_aug images of the toy fixture, batch 2


def test_two_processes_under_torchrun(toy_voc, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(REPOSITORY / "train_cpn.py"), *TINY, "--batch_size", "4", "--max_epoches", "1",
               "--session_name", "ddp", "--voc12_root", str(toy_voc)]
    environment = dict(os.environ, PYTHONWARNINGS="ignore", CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    experiments = tmp_path / "experiments"
    log = (experiments / "logs" / "ddp.txt").read_text()
    assert "torchrun: 2 processes, 2 images each per iteration" in log and log.count("arguments: ") == 1
    history = json.loads((experiments / "data" / "ddp.json").read_text())
    assert [record["iteration"] for record in history["train"]] == [1, 2] and history["finished"]
    state = torch.load(experiments / "models" / "ddp.state.pth", weights_only=True)
    assert state["run"]["processes"] == 2 and len(state["rng"]) == 2
    assert list(torch.load(experiments / "models" / "ddp.pth", weights_only=True))[-1] == "f10.weight"


class Interrupted(Exception):
    pass


def run(work, data_dir, monkeypatch, method, *extra):
    monkeypatch.chdir(work)
    args = train_cpn.build_parser().parse_args([*TINY, "--batch_size", "2", "--max_epoches", "2",
                                                "--session_name", "cpn", "--voc12_root", str(data_dir), *extra])
    return classification.train(args, method)


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_run(toy_voc, tmp_path, monkeypatch, one_thread):
    method = get_method("cpn")
    for name in ("whole", "stopped"):
        (tmp_path / name).mkdir()
    run(tmp_path / "whole", toy_voc, monkeypatch, method)

    def stop_in_epoch_two(model, batch, args, schedule):
        if schedule.iteration == ITERATIONS_PER_EPOCH + 1:
            raise Interrupted
        return method.step_losses(model, batch, args, schedule)

    with pytest.raises(Interrupted):
        run(tmp_path / "stopped", toy_voc, monkeypatch, dataclasses.replace(method, step_losses=stop_in_epoch_two))
    run(tmp_path / "stopped", toy_voc, monkeypatch, method, "--resume")
    whole, resumed = (torch.load(tmp_path / name / "experiments" / "models" / "cpn.state.pth", weights_only=True)
                      for name in ("whole", "stopped"))
    assert resumed["epoch"] == 2 and resumed["iteration"] == 2 * ITERATIONS_PER_EPOCH
    for key, tensor in whole["model"].items():
        assert torch.equal(tensor, resumed["model"][key]), key
    history = json.loads((tmp_path / "stopped" / "experiments" / "data" / "cpn.json").read_text())
    assert [record["iteration"] for record in history["train"]][-1] == 2 * ITERATIONS_PER_EPOCH
