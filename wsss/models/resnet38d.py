"""ResNet-38 ("resnet38d", Wu et al. 2019, as used by PSA, SEAM and CPN) at output stride 8.

A wide pre-activation ResNet: `conv1a`, then blocks `b2`…`b5_2` of two 3×3 convolutions, then two
bottleneck blocks `b6`, `b7` (1×1 → 3×3 → 1×1, with channel dropout 0.3 and 0.5 before the 3×3 and
the last 1×1 convolution) and a final `bn7` + ReLU. `b2`, `b3` and `b4` halve the resolution; `b5`
onwards keep 1/8 with dilations 2 (b5*) and 4 (b6, b7). Module names are the published ones, so the
converted ImageNet weights and trained SEAM/CPN networks load with exact key matching.

Features (`forward_features`), named as published after the layer they feed:
  conv4 — the batch-normalised, ReLU'd input of `b5` (512 ch), conv5 — the same for `b6` (1024 ch),
  conv6 — relu(bn7(b7 output)) (4096 ch); all at 1/8 of the input (⌈H/8⌉ × ⌈W/8⌉).

Training set-up as published: every BatchNorm is frozen (always in eval mode, affine parameters not
trained) and the listed early modules get no gradient; both are re-applied by every `train()` call.

The ReLUs and the residual sums run in place, on the fresh outputs of a batch norm or a convolution
(whose backward passes do not read those outputs): the same values with about 40% fewer freshly
allocated activation bytes per pass, which on CPU is page-fault time saved.

ImageNet weights: the published file is MXNet's `ilsvrc-cls_rna-a1_cls1000_ep-0001.params`. Convert it
once, on a machine with `mxnet` installed (it is not a dependency of this project):

    import mxnet, torch
    from wsss.models.resnet38d import torch_key_from_mxnet
    params = mxnet.nd.load("ilsvrc-cls_rna-a1_cls1000_ep-0001.params")
    state = {}
    for name, array in params.items():
        key = torch_key_from_mxnet(name)
        if key is not None:                     # the 1000-class classifier is dropped
            state[key] = torch.from_numpy(array.asnumpy())
    torch.save(state, "ilsvrc-cls_rna-a1_cls1000_ep-0001.pth")

and load the `.pth` with `load_weights`. The key mapping is the one of SEAM's converter.
"""
import pathlib
import re

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ResNet38d", "MODULE_NAMES", "CPN_FROZEN_MODULES", "SEAM_FROZEN_MODULES", "load_weights",
           "torch_key_from_mxnet"]

MODULE_NAMES = ("conv1a", "b2", "b2_1", "b2_2", "b3", "b3_1", "b3_2", "b4", "b4_1", "b4_2", "b4_3", "b4_4", "b4_5",
                "b5", "b5_1", "b5_2", "b6", "b7", "bn7")
SEAM_FROZEN_MODULES = ("conv1a",)
CPN_FROZEN_MODULES = ("conv1a", "b2", "b2_1", "b2_2")


class ResBlock(nn.Module):
    """Pre-activation block of two 3×3 convolutions; a 1×1 projection when the shape changes."""

    def __init__(self, in_channels, mid_channels, out_channels, stride=1, first_dilation=None, dilation=1):
        super().__init__()
        first_dilation = dilation if first_dilation is None else first_dilation
        self.same_shape = in_channels == out_channels and stride == 1
        self.bn_branch2a = nn.BatchNorm2d(in_channels)
        self.conv_branch2a = nn.Conv2d(in_channels, mid_channels, 3, stride, padding=first_dilation,
                                       dilation=first_dilation, bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(mid_channels)
        self.conv_branch2b1 = nn.Conv2d(mid_channels, out_channels, 3, padding=dilation, dilation=dilation,
                                        bias=False)
        if not self.same_shape:
            self.conv_branch1 = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x):
        """(block output, relu(bn(x))): the second item is the block's activated input."""
        activated = F.relu(self.bn_branch2a(x), inplace=True)
        shortcut = x if self.same_shape else self.conv_branch1(activated)
        residual = self.conv_branch2a(activated)
        residual = self.conv_branch2b1(F.relu(self.bn_branch2b1(residual), inplace=True))
        return residual.add_(shortcut), activated


class BottleneckBlock(nn.Module):
    """Pre-activation bottleneck (out/4 → out/2 → out channels) with Dropout2d before the 3×3 and the
    last 1×1 convolution; always projects the shortcut."""

    def __init__(self, in_channels, out_channels, stride=1, dilation=1, dropout=0.0):
        super().__init__()
        self.bn_branch2a = nn.BatchNorm2d(in_channels)
        self.conv_branch2a = nn.Conv2d(in_channels, out_channels // 4, 1, stride, bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(out_channels // 4)
        self.dropout_2b1 = nn.Dropout2d(dropout)
        self.conv_branch2b1 = nn.Conv2d(out_channels // 4, out_channels // 2, 3, padding=dilation,
                                        dilation=dilation, bias=False)
        self.bn_branch2b2 = nn.BatchNorm2d(out_channels // 2)
        self.dropout_2b2 = nn.Dropout2d(dropout)
        self.conv_branch2b2 = nn.Conv2d(out_channels // 2, out_channels, 1, bias=False)
        self.conv_branch1 = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x):
        """(block output, relu(bn(x)))."""
        activated = F.relu(self.bn_branch2a(x), inplace=True)
        shortcut = self.conv_branch1(activated)
        residual = self.conv_branch2a(activated)
        residual = self.conv_branch2b1(self.dropout_2b1(F.relu(self.bn_branch2b1(residual), inplace=True)))
        residual = self.conv_branch2b2(self.dropout_2b2(F.relu(self.bn_branch2b2(residual), inplace=True)))
        return residual.add_(shortcut), activated


class ResNet38d(nn.Module):
    """ResNet-38 trunk. `forward(x)` gives conv6; `forward_features(x)` gives conv4, conv5, conv6.

    frozen_modules: names of modules whose parameters never train (SEAM: conv1a; CPN: conv1a and the
    b2 blocks). freeze_batchnorm: keep every BatchNorm in eval mode with frozen affine parameters.
    """

    feature_channels = {"conv4": 512, "conv5": 1024, "conv6": 4096}

    def __init__(self, frozen_modules=SEAM_FROZEN_MODULES, freeze_batchnorm=True):
        super().__init__()
        unknown = sorted(set(frozen_modules) - set(MODULE_NAMES))
        if unknown:
            raise ValueError(f"unknown ResNet-38 modules to freeze: {unknown}; valid: {list(MODULE_NAMES)}")
        self.conv1a = nn.Conv2d(3, 64, 3, padding=1, bias=False)

        self.b2 = ResBlock(64, 128, 128, stride=2)
        self.b2_1 = ResBlock(128, 128, 128)
        self.b2_2 = ResBlock(128, 128, 128)

        self.b3 = ResBlock(128, 256, 256, stride=2)
        self.b3_1 = ResBlock(256, 256, 256)
        self.b3_2 = ResBlock(256, 256, 256)

        self.b4 = ResBlock(256, 512, 512, stride=2)
        self.b4_1 = ResBlock(512, 512, 512)
        self.b4_2 = ResBlock(512, 512, 512)
        self.b4_3 = ResBlock(512, 512, 512)
        self.b4_4 = ResBlock(512, 512, 512)
        self.b4_5 = ResBlock(512, 512, 512)

        self.b5 = ResBlock(512, 512, 1024, stride=1, first_dilation=1, dilation=2)
        self.b5_1 = ResBlock(1024, 512, 1024, dilation=2)
        self.b5_2 = ResBlock(1024, 512, 1024, dilation=2)

        self.b6 = BottleneckBlock(1024, 2048, stride=1, dilation=4, dropout=0.3)
        self.b7 = BottleneckBlock(2048, 4096, dilation=4, dropout=0.5)
        self.bn7 = nn.BatchNorm2d(4096)

        self.frozen_modules = tuple(frozen_modules)
        self.freeze_batchnorm = freeze_batchnorm
        self.train()

    def forward_features(self, x):
        x = self.conv1a(x)
        for name in MODULE_NAMES[1:MODULE_NAMES.index("b5")]:
            x = getattr(self, name)(x)[0]
        x, conv4 = self.b5(x)
        x = self.b5_1(x)[0]
        x = self.b5_2(x)[0]
        x, conv5 = self.b6(x)
        x = self.b7(x)[0]
        conv6 = F.relu(self.bn7(x), inplace=True)
        return {"conv4": conv4, "conv5": conv5, "conv6": conv6}

    def forward(self, x):
        return self.forward_features(x)["conv6"]

    def train(self, mode=True):
        """Sets the mode, then re-freezes: frozen modules lose their gradients and BatchNorm stays in eval."""
        super().train(mode)
        for name in self.frozen_modules:
            for parameter in getattr(self, name).parameters():
                parameter.requires_grad = False
        if self.freeze_batchnorm:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
                    module.weight.requires_grad = False
                    module.bias.requires_grad = False
        return self


def load_weights(module, path):
    """Load a torch state-dict file into `module` with exact key matching.

    BatchNorm `num_batches_tracked` counters may be absent (the converted ImageNet file has none);
    every other key must match both ways, with equal shapes. Raises FileNotFoundError for a missing
    file and ValueError for a file that is not a state dict or does not match.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weight file not found")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ValueError(f"{path}: not a state dict of tensors")
    expected = module.state_dict()
    optional = {key for key in expected if key.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(state) - optional)
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{path}: keys do not match {type(module).__name__}: missing {len(missing)} "
                         f"(e.g. {missing[:3]}), unexpected {len(unexpected)} (e.g. {unexpected[:3]})")
    mismatched = [key for key in state if state[key].shape != expected[key].shape]
    if mismatched:
        key = mismatched[0]
        raise ValueError(f"{path}: {len(mismatched)} tensors have the wrong shape, e.g. {key} "
                         f"{tuple(state[key].shape)} instead of {tuple(expected[key].shape)}")
    module.load_state_dict(state, strict=False)


_MXNET_BN_PARAMS = {"gamma": "weight", "beta": "bias", "mean": "running_mean", "var": "running_var"}
_MXNET_BLOCK = re.compile(r"(res|bn)(\d)(a|b(\d))$")


def torch_key_from_mxnet(name):
    """State-dict key of one MXNet ResNet-38 parameter name, or None for the dropped classifier.

    `arg:`/`aux:` prefixes are ignored. Blocks: `res<s>a`/`bn<s>a` → `b<s>`, `res<s>b<n>` → `b<s>_<n>`;
    `res…_<branch>_weight` → `conv_<branch>.weight`, `bn…_<branch>_{gamma,beta,moving_mean,moving_var}`
    → `bn_<branch>.{weight,bias,running_mean,running_var}`; `conv1a_weight` → `conv1a.weight`;
    `bn7_*` → `bn7.*`; `linear1000_*` → None.
    """
    bare = name.split(":", 1)[1] if name.startswith(("arg:", "aux:")) else name
    parts = bare.split("_")
    if parts[0] == "conv1a":
        return "conv1a.weight"
    if parts[0].startswith("linear1000"):
        return None
    if parts[0] == "bn7" and parts[-1] in _MXNET_BN_PARAMS:
        return f"bn7.{_MXNET_BN_PARAMS[parts[-1]]}"
    block = _MXNET_BLOCK.search(parts[0])
    if block is None or len(parts) < 3 or not parts[1].startswith("branch"):
        raise ValueError(f"not a ResNet-38 MXNet parameter name: {name!r}")
    kind, stage, position, index = block.groups()
    module = f"b{stage}" if position == "a" else f"b{stage}_{index}"
    if kind == "res":
        return f"{module}.conv_{parts[1]}.weight"
    if parts[-1] not in _MXNET_BN_PARAMS:
        raise ValueError(f"not a ResNet-38 MXNet parameter name: {name!r}")
    return f"{module}.bn_{parts[1]}.{_MXNET_BN_PARAMS[parts[-1]]}"
