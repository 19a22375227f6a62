"""Backbone registry (docs/design.md §3): name → constructor, ImageNet weight files, and the published
module layout that checkpoints depend on.

Every backbone exposes conv1, bn1, relu, maxpool and layer1..layer4, giving stage outputs at
1/4, 1/4, 1/8, 1/16 and 1/16 of the input.
"""
import pathlib

import torch
import torch.nn.functional as F
from torch import nn

from wsss.models.resnet import ResNet
from wsss.utils.files import load_failure

PRETRAINED_CHOICES = "imagenet (default: the published weight file from the torch hub cache), none (train from scratch) or a path to a weight file"


class FixedBatchNorm(nn.BatchNorm2d):
    """`--mode fix`: always normalises with the running statistics; affine parameters still train."""

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, eps=self.eps)


NORM_LAYERS = {"fix": FixedBatchNorm, "normal": nn.BatchNorm2d}


class BackboneSpec:
    def __init__(self, build, weights_file):
        self.build = build
        self.weights_file = weights_file


BACKBONES = {}


def register_backbone(name, weights_file=None):
    def decorator(build):
        BACKBONES[name] = BackboneSpec(build, weights_file)
        return build
    return decorator


def _resnest(name):
    def build(norm_layer):
        from resnest import torch as resnest_models

        model = getattr(resnest_models, name)(pretrained=False, dilated=False, dilation=2, norm_layer=norm_layer)
        del model.avgpool
        del model.fc
        return model
    return build


@register_backbone("resnet50", "resnet50-19c8e357.pth")
def resnet50(norm_layer):
    return ResNet([3, 4, 6, 3], norm_layer=norm_layer)


@register_backbone("resnet101", "resnet101-5d3b4d8f.pth")
def resnet101(norm_layer):
    return ResNet([3, 4, 23, 3], norm_layer=norm_layer)


@register_backbone("resnet_mini")
def resnet_mini(norm_layer):
    """An addition for CPU demos and tests: one narrow Bottleneck block per stage (≈0.5 M parameters),
    stage channels 32/64/128/256/512; no ImageNet weights."""
    return ResNet([1, 1, 1, 1], widths=(16, 32, 64, 128), stem_width=32, norm_layer=norm_layer)


for _name, _hash in (("resnest50", "528c19ca"), ("resnest101", "22405ba7"),
                     ("resnest200", "75117900"), ("resnest269", "0cc87c48")):
    register_backbone(_name, f"{_name}-{_hash}.pth")(_resnest(_name))


def check_architecture(name):
    if name not in BACKBONES:
        raise ValueError(f"unknown architecture {name!r}; choose from {sorted(BACKBONES)}")
    return BACKBONES[name]


def default_weights_dir():
    """Where torch.hub (and so the published code) caches downloaded weight files."""
    return pathlib.Path(torch.hub.get_dir()) / "checkpoints"


def resolve_pretrained(architecture, pretrained):
    """The ImageNet weight file to start from, or None for `--pretrained none`."""
    spec = check_architecture(architecture)
    if pretrained in (None, "none"):
        return None
    if pretrained == "imagenet":
        if spec.weights_file is None:
            raise ValueError(f"{architecture} has no ImageNet weights; pass --pretrained none")
        path = default_weights_dir() / spec.weights_file
        if not path.is_file():
            raise FileNotFoundError(f"{path}: ImageNet weights for {architecture} not found; download "
                                    f"{spec.weights_file} there, pass --pretrained /path/to/{spec.weights_file}, "
                                    "or --pretrained none to train from scratch")
        return path
    path = pathlib.Path(pretrained)
    if path.is_dir():
        path = path / (spec.weights_file or "")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pretrained weight file not found; --pretrained takes {PRETRAINED_CHOICES}")
    return path


def load_imagenet_weights(model, path):
    """Load an ImageNet classification checkpoint into a headless backbone.

    The classifier head (`fc.*`) is dropped; BatchNorm's `num_batches_tracked` counters, absent
    from old torchvision files, may be missing. Anything else missing or unexpected is an error.
    A checkpoint of this pipeline's classifier (`model.*` + `stage*.*` + `classifier.*`, e.g.
    experiments/models/{tag}.pth) gives its backbone, `model.*`: the toy run's stand-in for ImageNet.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{path}: cannot read weight file ({load_failure(error)})")
    if "classifier.weight" in state:
        state = {key[len("model."):]: value for key, value in state.items() if key.startswith("model.")}
    state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    result = model.load_state_dict(state, strict=False)
    missing = [key for key in result.missing_keys if not key.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise ValueError(f"{path}: not the ImageNet weights of this architecture (missing {missing[:3]}, "
                         f"unexpected {result.unexpected_keys[:3]})")


class Backbone(nn.Module):
    """A backbone under the published names: `model` (the network) and `stage1`…`stage5`.

    The same modules are registered under both names on purpose: the published state dicts hold
    every backbone tensor under `model.*` and again under `stage*.*`, and its loader is strict.
    `named_parameters()` lists each parameter once, under `model.` (registered first), which the
    parameter groups rely on (docs/design.md §3.4).
    """

    def __init__(self, architecture, mode="fix", pretrained="imagenet"):
        super().__init__()
        spec = check_architecture(architecture)
        if mode not in NORM_LAYERS:
            raise ValueError(f"unknown --mode {mode!r}; choose from {sorted(NORM_LAYERS)}")
        self.architecture = architecture
        self.mode = mode
        self.model = spec.build(NORM_LAYERS[mode])
        weights = resolve_pretrained(architecture, pretrained)
        if weights is not None:
            load_imagenet_weights(self.model, weights)
        self.stage1 = nn.Sequential(self.model.conv1, self.model.bn1, self.model.relu, self.model.maxpool)
        self.stage2 = nn.Sequential(self.model.layer1)
        self.stage3 = nn.Sequential(self.model.layer2)
        self.stage4 = nn.Sequential(self.model.layer3)
        self.stage5 = nn.Sequential(self.model.layer4)
        self.stage_channels = tuple(_out_channels(stage) for stage in
                                    (self.stage1, self.stage2, self.stage3, self.stage4, self.stage5))

    def stages(self):
        return [self.stage1, self.stage2, self.stage3, self.stage4, self.stage5]

    def forward_stages(self, x):
        """The five stage outputs."""
        outputs = []
        for stage in self.stages():
            x = stage(x)
            outputs.append(x)
        return outputs


def _out_channels(module):
    channels = None
    for sub in module.modules():
        if isinstance(sub, nn.BatchNorm2d):
            channels = sub.num_features
    return channels


def parameter_groups(model):
    """docs/design.md §5.1: (pretrained weights, pretrained others, new weights, new others)."""
    groups = ([], [], [], [])
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        index = (0 if "model" in name else 2) + (0 if "weight" in name else 1)
        groups[index].append(parameter)
    return groups
