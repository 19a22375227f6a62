"""Device selection and the published multi-GPU wrapping."""
import torch
from torch import nn


def select_device(name=None):
    """The given device, else CUDA when available, else CPU."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def wrap_data_parallel(model, device):
    """DataParallel over the visible GPUs when there are several (as published), else the model."""
    if device.type == "cuda" and torch.cuda.device_count() > 1:
        return nn.DataParallel(model)
    return model


def unwrap(model):
    return model.module if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else model
