"""wsss/utils/distributed.py, the training state (wsss/utils/files.py, wsss/utils/training.py), --resume and --amp,
in this process on CPU. The torchrun runs are in tests/scripts/test_distributed_scripts.py."""
import argparse
import json
import math
import random

import numpy as np
import pytest
import torch
import torch.distributed as dist
from PIL import Image
from stage_runner import TINY_TRAINING

import train_classification_with_puzzle as puzzle_script
from wsss.algorithms.cam import multiscale_cams
from wsss.models.classifier import Classifier
from wsss.utils import distributed, training
from wsss.utils.cli import shard_type
from wsss.utils.errors import StageError
from wsss.utils.files import load_training_state, save_checkpoint, save_training_state


@pytest.fixture
def single_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


def as_process(monkeypatch, rank, world_size):
    """The environment torchrun gives process `rank` of `world_size` (no process group needed for shares)."""
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(world_size))
    monkeypatch.setenv("LOCAL_RANK", str(rank))


def test_a_single_process_without_torchrun(single_process):
    assert not distributed.launched() and not distributed.is_distributed()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.share(range(5)) == [0, 1, 2, 3, 4]
    assert distributed.local_batch_size(32) == 32
    value = torch.tensor([1.5, 2.0])
    assert torch.equal(distributed.all_reduce_mean(value), value)
    assert distributed.all_gather_objects("x") == ["x"] and distributed.broadcast_object(3) == 3
    assert distributed.process_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("shards", [1, 2, 4])
def test_shares_of_machines_and_processes_partition_the_list(monkeypatch, world_size, shards):
    ids = [f"2007_{index:06d}" for index in range(23)]
    taken = []
    for shard in range(shards):
        for rank in range(world_size):
            as_process(monkeypatch, rank, world_size)
            taken.append(distributed.share(ids, (shard, shards)))
    assert sorted(sum(taken, [])) == ids  # disjoint, and together the whole list
    assert max(map(len, taken)) - min(map(len, taken)) <= 1


def test_torchrun_gives_each_process_its_gpu_and_part_of_the_batch(monkeypatch):
    as_process(monkeypatch, 3, 4)
    assert distributed.process_device("cuda") == torch.device("cuda", 3)
    assert distributed.process_device("cpu") == torch.device("cpu")
    assert distributed.local_batch_size(32) == 8
    with pytest.raises(StageError, match="divisible"):
        distributed.local_batch_size(30)


def test_shard_flag_parses_i_of_n():
    assert shard_type("0/4") == (0, 4) and shard_type("3/4") == (3, 4)
    for text in ("4/4", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(argparse.ArgumentTypeError):
            shard_type(text)


def test_process_batches_together_are_the_one_process_batches(monkeypatch):
    """Batch k of every process together = batch k of a single process (same seed and epoch)."""
    items, seed, epoch = list(range(11)), 5, 3

    def batches(rank, world_size, batch):
        as_process(monkeypatch, rank, world_size)
        sampler = distributed.distributed_sampler(items, seed)
        sampler.set_epoch(epoch)
        order = list(sampler)
        return [order[index:index + batch] for index in range(0, len(order) - batch + 1, batch)]

    single = batches(0, 1, 4)
    parts = [batches(rank, 2, 2) for rank in range(2)]
    assert len(single) == len(parts[0]) == len(parts[1]) == 2
    for step, batch in enumerate(single):
        assert sorted(batch) == sorted(parts[0][step] + parts[1][step])


class RandomItems(torch.utils.data.Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, index):
        return random.random(), float(np.random.rand())


def test_augmentation_of_an_image_does_not_depend_on_who_draws_it():
    dataset = distributed.SampleSeededDataset(RandomItems(), seed=0)
    dataset.set_epoch(1)
    forward = {index: dataset[index] for index in range(6)}
    backward = {index: dataset[index] for index in reversed(range(6))}
    assert forward == backward and len(set(forward.values())) == 6
    dataset.set_epoch(2)
    assert dataset[0] != forward[0]


@pytest.fixture
def process_group_of_one():
    """A gloo process group of one process, in this process."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_in_a_process_group_the_model_is_wrapped_in_ddp(process_group_of_one):
    assert distributed.is_distributed() and distributed.is_main()
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    wrapped = distributed.wrap_model(model, torch.device("cpu"))
    assert isinstance(wrapped, torch.nn.parallel.DistributedDataParallel)
    with pytest.raises(StageError, match="CUDA"):
        distributed.wrap_model(model, torch.device("cpu"), sync_bn=True)
    assert torch.equal(distributed.all_reduce_mean(torch.tensor([2.0, 4.0])), torch.tensor([2.0, 4.0]))
    assert distributed.all_gather_objects({"a": 1}) == [{"a": 1}] and distributed.broadcast_object([7]) == [7]


def test_training_state_round_trip_restores_every_generator(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.randn()  # a cached Gaussian is part of NumPy's state
    rng = training.capture_rng()
    expected = (random.random(), random.gauss(0, 1), np.random.randn(), torch.rand(3))
    path = tmp_path / "run.state.pth"
    save_training_state({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": [rng],
                         "epoch": 1, "best_mIoU": None}, path)
    state = load_training_state(path)  # weights_only=True inside
    training.restore_rng(state["rng"][0])
    drawn = (random.random(), random.gauss(0, 1), np.random.randn(), torch.rand(3))
    assert drawn[:3] == expected[:3] and torch.equal(drawn[3], expected[3])
    assert torch.equal(state["optimizer"]["state"][0]["momentum_buffer"],
                       optimizer.state_dict()["state"][0]["momentum_buffer"])


def test_a_missing_or_foreign_training_state_is_refused(tmp_path):
    with pytest.raises(StageError, match="no training state"):
        load_training_state(tmp_path / "none.state.pth")
    save_checkpoint({"weight": torch.zeros(1)}, tmp_path / "weights.pth")
    with pytest.raises(StageError, match="not a training state"):
        load_training_state(tmp_path / "weights.pth")


def train_puzzle(*flags):
    return puzzle_script.main(puzzle_script.build_parser().parse_args(list(map(str, flags))))


class Stopped(Exception):
    pass


def test_resume_reaches_the_weights_of_an_uninterrupted_run(toy_voc, tmp_path, monkeypatch, single_process,
                                                           one_thread):
    monkeypatch.chdir(tmp_path)
    flags = ["--architecture", "resnet_mini", "--data_dir", toy_voc, *TINY_TRAINING, "--max_epoch", "2",
             "--batch_size", "4"]
    train_puzzle(*flags, "--tag", "whole")

    save = training.save_training_state

    def save_then_stop(state, path):
        save(state, path)
        if state["epoch"] == 1:
            raise Stopped()

    monkeypatch.setattr(training, "save_training_state", save_then_stop)
    with pytest.raises(Stopped):
        train_puzzle(*flags, "--tag", "cut")
    monkeypatch.setattr(training, "save_training_state", save)
    with pytest.raises(StageError, match="max_epoch 2 → 3"):
        train_puzzle(*flags, "--tag", "cut", "--resume", "--max_epoch", "3")
    train_puzzle(*flags, "--tag", "cut", "--resume")

    models = tmp_path / "experiments" / "models"
    whole, cut = (load_training_state(models / f"{tag}.state.pth") for tag in ("whole", "cut"))
    assert whole["epoch"] == cut["epoch"] == 2 and whole["iteration"] == cut["iteration"] == 4
    for name, tensor in whole["model"].items():
        assert torch.equal(tensor, cut["model"][name]), name
    best_whole, best_cut = (torch.load(models / f"{tag}.pth", weights_only=True) for tag in ("whole", "cut"))
    assert all(torch.equal(best_whole[name], best_cut[name]) for name in best_whole)
    history = {tag: json.loads((tmp_path / "experiments" / "data" / f"{tag}.json").read_text())
               for tag in ("whole", "cut")}
    assert [r["mIoU"] for r in history["cut"]["validation"]] == [r["mIoU"] for r in history["whole"]["validation"]]
    assert [r["total"] for r in history["cut"]["train"]] == [r["total"] for r in history["whole"]["train"]]
    assert history["cut"]["finished"]

    with pytest.raises(StageError, match="no training state"):
        train_puzzle(*flags, "--tag", "never", "--resume")


def test_bf16_autocast_training_on_cpu_keeps_the_loss_finite(toy_voc, tmp_path, monkeypatch, single_process,
                                                             one_thread):
    monkeypatch.chdir(tmp_path)
    train_puzzle("--architecture", "resnet_mini", "--data_dir", toy_voc, *TINY_TRAINING, "--batch_size", "4",
                 "--print_ratio", "0.5", "--tag", "amp", "--amp", "bf16")
    history = json.loads((tmp_path / "experiments" / "data" / "amp.json").read_text())
    assert history["args"]["amp"] == "bf16" and history["train"]
    assert all(math.isfinite(record[name]) for record in history["train"]
               for name in ("total", "class_loss", "p_class_loss", "re_loss"))


def test_bf16_cams_stay_float32_and_close_to_float32_cams():
    torch.manual_seed(0)
    model = Classifier("resnet_mini", mode="normal", pretrained="none").eval()
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (40, 52, 3), dtype=np.uint8))
    label = np.zeros(20, np.float32)
    label[[1, 4]] = 1
    device = torch.device("cpu")
    keys, cam, hr_cam = multiscale_cams(model, image, label, [0.5, 1.0], device)
    keys16, cam16, hr_cam16 = multiscale_cams(model, image, label, [0.5, 1.0], device, amp="bf16")
    assert np.array_equal(keys, keys16) and cam16.dtype == hr_cam16.dtype == np.float32
    assert np.abs(cam16 - cam).max() < 0.1 and np.abs(hr_cam16 - hr_cam).max() < 0.1
