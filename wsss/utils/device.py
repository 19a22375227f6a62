"""Device selection, the published multi-GPU wrapping and mixed precision (`--amp`)."""
import contextlib

import torch
from torch import nn

AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


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


def autocast(device, amp="off"):
    """The autocast context of `--amp` (off: float32 as published; bf16 or fp16) on `device`."""
    dtype = AMP_DTYPES[amp]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device, amp="off"):
    """A gradient scaler for float16 on CUDA, where small gradients underflow; None otherwise
    (bfloat16 has float32's range)."""
    if amp == "fp16" and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None
