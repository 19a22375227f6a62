"""Batch-norm helpers of the network tests: layers with non-trivial statistics and affine
parameters, and the layer's function written out."""
import torch.nn.functional as F
from torch import nn


def randomise_batchnorm(module, trainable=False):
    """Random running statistics and affine parameters for every BatchNorm2d of `module`; the affine
    parameters train only when `trainable`."""
    for layer in module.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.running_mean.uniform_(-0.5, 0.5)
            layer.running_var.uniform_(0.5, 2)
            layer.weight.data.uniform_(0.5, 1.5)
            layer.bias.data.uniform_(-0.5, 0.5)
            layer.requires_grad_(trainable)


def batch_norm(layer, x, training=False):
    """`layer` applied to `x` as F.batch_norm (batch statistics when `training`; the layer's running
    statistics are left as they are)."""
    return F.batch_norm(x, layer.running_mean.clone(), layer.running_var.clone(), layer.weight, layer.bias,
                        training, 0.0, layer.eps)
