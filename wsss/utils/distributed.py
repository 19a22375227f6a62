"""Several processes and machines: DistributedDataParallel training under `torchrun`, and the
split of per-image stages over processes (`torchrun`) and machines (`--shard i/n`).

Without torchrun (no `WORLD_SIZE` in the environment) every function here describes a single
process: rank 0 of 1, no process group, barriers and reductions do nothing, and training keeps
the published DataParallel path.
"""
import atexit
import hashlib
import os
import random

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from wsss.utils.device import select_device, wrap_data_parallel
from wsss.utils.errors import StageError

__all__ = ["launched", "is_distributed", "rank", "world_size", "local_rank", "is_main", "setup", "process_device",
           "share", "local_batch_size", "barrier", "all_reduce_mean", "all_gather_objects", "broadcast_object",
           "wrap_model", "SampleSeededDataset", "distributed_sampler", "set_epoch"]


def launched():
    """True in a process started by torchrun (or another launcher that sets RANK and WORLD_SIZE)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def is_distributed():
    """True once this process has joined a process group (training under torchrun)."""
    return dist.is_available() and dist.is_initialized()


def rank():
    if is_distributed():
        return dist.get_rank()
    return int(os.environ.get("RANK", 0)) if launched() else 0


def world_size():
    if is_distributed():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", 1)) if launched() else 1


def local_rank():
    """The process's index on its machine (torchrun's LOCAL_RANK): its GPU."""
    return int(os.environ.get("LOCAL_RANK", 0)) if launched() else 0


def is_main():
    """Rank 0 writes logs, TensorBoard, metric histories and checkpoints."""
    return rank() == 0


def process_device(name=None):
    """`--device` as given, else CUDA when available (cuda:LOCAL_RANK under torchrun), else CPU.

    A bare `--device cuda` under torchrun also means this process's own GPU, cuda:LOCAL_RANK.
    """
    device = select_device(name)
    if launched() and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank())
    return device


def setup(device_name=None):
    """This process's device; under torchrun the process also joins the process group (backend
    nccl on CUDA, gloo on CPU), which is left again when the process exits."""
    device = process_device(device_name)
    if launched() and not is_distributed():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(_leave)
    return device


def _leave():
    if is_distributed():
        dist.destroy_process_group()


def share(items, shard=None):
    """This process's share of `items` (an image list): every (shards × processes)-th item.

    `shard` = (i, n) from `--shard i/n` splits the list over n machines; under torchrun each
    machine's share is split again over its processes. The shares of all shards and processes
    are disjoint and their union is `items`. Select the share from the full list before skipping
    finished outputs, so that the split does not move while other processes write.
    """
    index, count = shard if shard is not None else (0, 1)
    processes = world_size()
    return list(items)[index * processes + rank()::count * processes]


def local_batch_size(batch_size):
    """Images per process per iteration: `--batch_size` is the global batch of all processes."""
    processes = world_size()
    if batch_size % processes:
        raise StageError(f"--batch_size {batch_size} is the global batch of all {processes} processes "
                         f"and must be divisible by their number")
    return batch_size // processes


def all_reduce_mean(tensor):
    """The mean of `tensor` over all processes (the tensor itself in a single process)."""
    if not is_distributed():
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / world_size()


def all_gather_objects(obj):
    """[the object of rank 0, of rank 1, …] on every process ([obj] in a single process)."""
    if not is_distributed():
        return [obj]
    gathered = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj):
    """Rank 0's `obj` on every process."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def wrap_model(model, device, sync_bn=False):
    """DistributedDataParallel under torchrun (with SyncBatchNorm when `sync_bn`), else the
    published DataParallel over the visible GPUs."""
    if not is_distributed():
        return wrap_data_parallel(model, device)
    if sync_bn:
        if device.type != "cuda":
            raise StageError("--sync_bn True needs CUDA devices (torch's SyncBatchNorm does not run on CPU)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


class SampleSeededDataset(Dataset):
    """Seeds Python's and NumPy's generators from (seed, epoch, index) before each item, so the
    random augmentation of an image does not depend on the process or loader worker that draws it:
    any number of processes trains on the same augmented global batches."""

    def __init__(self, dataset, seed):
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        digest = hashlib.sha256(f"{self.seed}:{self.epoch}:{index}".encode()).digest()
        sample_seed = int.from_bytes(digest[:4], "little")
        random.seed(sample_seed)
        np.random.seed(sample_seed)
        return self.dataset[index]


def distributed_sampler(dataset, seed):
    """This process's part of each epoch: one permutation seeded with seed + epoch, cut to a
    multiple of the process count, every world_size-th item (so the processes' batches together
    are the global batch of the permutation)."""
    return DistributedSampler(dataset, num_replicas=world_size(), rank=rank(), shuffle=True, seed=seed,
                              drop_last=True)


def set_epoch(loader, epoch):
    """Tell the sampler and the dataset of a distributed loader which epoch starts."""
    for part in (loader.sampler, loader.dataset):
        if hasattr(part, "set_epoch"):
            part.set_epoch(epoch)
