"""CPN (Zhang et al., "Complementary Patch for Weakly Supervised Semantic Segmentation", ICCV 2021):
a CAM network with PCM and PRCM refinement (`wsss.models.cpn`), trained on the triplet of an image
and its two complementary hidden-patch images (`wsss.algorithms.complementary_patch`,
`wsss.algorithms.cpn_losses`); its CAMs come from the refined map over 8 passes
(`wsss.algorithms.cpn_cam`), on half the usual scale.

Trunks: `resnet38d` (the published one, converted ImageNet weights from `--weights`; its frozen
BatchNorm layers become `FrozenBatchNorm2d`, which keep a quarter less activation memory in a
training step), or any registered backbone through `BackboneTrunk` (the toy runs use `resnet_mini`).

CAM files (`keys`, `cam`, `hr_cam`): `hr_cam` is CPN's map at the image size, on its ÷2 scale
(foreground values up to 0.5, as published); `cam`, which the random walk reads at a stride of 4, is
`hr_cam` resized bilinearly to the stride-4 size (same scale).
"""
import argparse
import pathlib
import random

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wsss.algorithms.cam import resize_maps, strided_size
from wsss.algorithms.complementary_patch import draw_superpixels, superpixel_keep_mask, superpixels
from wsss.algorithms.cpn_cam import cpn_cam
from wsss.algorithms.cpn_losses import cpn_loss
from wsss.data.transforms import TrainTransform
from wsss.methods.base import CamMethod
from wsss.models.backbones import BACKBONES, NORM_LAYERS, Backbone, default_weights_dir
from wsss.models.cpn import CPN, cpn_resnet38d
from wsss.models.resnet38d import load_weights
from wsss.utils.cli import add_sync_bn_argument
from wsss.utils.device import autocast

__all__ = ["CPN_METHOD", "RESNET38D", "IMAGENET_WEIGHTS_FILE", "network_name", "build_network", "BackboneTrunk",
           "FrozenBatchNorm2d", "use_frozen_batchnorm", "ComplementaryPatchTransform", "cpn_step_losses",
           "cpn_training_cams", "cpn_image_cams", "half_scale_normalise"]

RESNET38D = "resnet38d"
PUBLISHED_NETWORK = "network.resnet38_CPN"  # the published --network default (a module path)
IMAGENET_WEIGHTS_FILE = "ilsvrc-cls_rna-a1_cls1000_ep-0001.pth"  # the converted MXNet file
NETWORKS = (RESNET38D, *sorted(BACKBONES))

# train_cpn.py's published defaults, set on the shared training flags
PUBLISHED_DEFAULTS = dict(batch_size=4, max_epoch=8, lr=0.01, wd=5e-4, image_size=448, min_image_size=448,
                          max_image_size=768, num_workers=2, nesterov=False, tag="CPN")
# published spellings of shared flags: (published flag, shared destination, type)
PUBLISHED_SPELLINGS = (("--max_epoches", "max_epoch", int), ("--wt_dec", "wd", float),
                       ("--crop_size", "image_size", int), ("--session_name", "tag", str),
                       ("--voc12_root", "data_dir", str))

CHECKPOINT_LAYOUT = ("CPN's state dict as published: the trunk's keys without prefix (resnet38d: conv1a.weight, "
                     "b2.bn_branch2a.weight, …, bn7.running_var), then fc8.weight, f8_3.weight, f8_4.weight, "
                     "f9.weight, f10.weight")


def network_name(text):
    """`--network`: resnet38d (also spelled as the published module, network.resnet38_CPN) or a
    registered backbone."""
    name = RESNET38D if text == PUBLISHED_NETWORK else text
    if name not in NETWORKS:
        raise argparse.ArgumentTypeError(f"unknown network {text!r}; choose from {list(NETWORKS)} "
                                         f"({PUBLISHED_NETWORK} is resnet38d)")
    return name


def add_arguments(parser):
    """CPN's flags: the published names and defaults of train_cpn.py, on top of the shared training
    flags (its spellings --max_epoches, --wt_dec, --crop_size, --session_name, --voc12_root set the
    shared --max_epoch, --wd, --image_size, --tag, --data_dir)."""
    parser.set_defaults(**PUBLISHED_DEFAULTS)
    group = parser.add_argument_group("CPN")
    for flag, destination, kind in PUBLISHED_SPELLINGS:
        group.add_argument(flag, dest=destination, type=kind, default=argparse.SUPPRESS,
                           help=f"the published name of --{destination}")
    group.add_argument("--network", "--architecture", dest="architecture", type=network_name, default=RESNET38D,
                       metavar="NAME",
                       help=f"trunk: resnet38d (the published network; {PUBLISHED_NETWORK} names it too) or a "
                            f"registered backbone ({', '.join(sorted(BACKBONES))})")
    group.add_argument("--weights", "--pretrained", dest="pretrained", type=str, default="imagenet",
                       help="initial trunk weights: imagenet (resnet38d: the converted file "
                            f"{IMAGENET_WEIGHTS_FILE} in the torch hub cache; other backbones: their published "
                            "file), none (scratch) or a weight file path")
    group.add_argument("--train_list", type=str, default="voc12/train_aug.txt",
                       help="training list: a list name or file (plain ids or SEAM's '/JPEGImages/<id>.jpg "
                            "/SegmentationClassAug/<id>.png' lines); voc12/<name>.txt, the published default, "
                            "is looked up as <name> when that file is not here")
    group.add_argument("--val_list", type=str, default="voc12/val.txt",
                       help="the list whose CAMs are scored after every epoch (needs masks; the published "
                            "script parsed it and left it unused)")
    group.add_argument("--mode", type=str, default="fix", choices=sorted(NORM_LAYERS),
                       help="batch norm of a registered backbone: fix (frozen statistics) or normal; resnet38d's "
                            "BatchNorm is always frozen, as published")
    add_sync_bn_argument(group)
    group.add_argument("--augment", type=str, default="colorjitter",
                       help="photometric augmentations joined by '_' (colorjitter, randaugment); the published "
                            "chain has ColorJitter(0.3, 0.3, 0.3, 0.1)")


def check(args):
    if args.architecture == RESNET38D and args.mode != "fix":
        raise ValueError(f"--mode {args.mode} applies to registered backbones; resnet38d's BatchNorm is always "
                         "frozen, as published (use --mode fix)")


def resnet38d_weights(pretrained):
    """The weight file of `--weights` for resnet38d, or None for `none`."""
    if pretrained in (None, "none"):
        return None
    path = default_weights_dir() / IMAGENET_WEIGHTS_FILE if pretrained == "imagenet" else pathlib.Path(pretrained)
    if path.suffix == ".params":
        raise ValueError(f"{path}: an MXNet parameter file; convert it to a torch file first (README, section "
                         "CPN) and pass that")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ResNet-38 weight file not found; convert the published MXNet file "
                                f"(README, section CPN) to {IMAGENET_WEIGHTS_FILE} in {default_weights_dir()} or "
                                "pass --weights PATH (--weights none: train from scratch)")
    return path


class BackboneTrunk(Backbone):
    """A registered backbone as CPN's trunk (the published trunk is ResNet-38, `resnet38d`).

    The three levels CPN reads must share one size: conv6 = stage 5 (1/16 of the input), conv5 =
    stage 4 (1/16), conv4 = stage 3 (1/8) average-pooled to the size of stage 5 (ResNet-38's conv4 is
    its 1/8 level too, kept at 1/8 by dilation). As in ResNet-38, no BatchNorm affine parameter is
    trained (CPN's optimiser groups hold convolutions only); no layer is frozen otherwise.
    """

    def __init__(self, architecture, mode="fix", pretrained="none"):
        super().__init__(architecture, mode, pretrained)
        self.feature_channels = {"conv4": self.stage_channels[2], "conv5": self.stage_channels[3],
                                 "conv6": self.stage_channels[4]}
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.requires_grad = False
                module.bias.requires_grad = False

    def forward_features(self, x):
        _, _, conv4, conv5, conv6 = self.forward_stages(x)
        return {"conv4": F.adaptive_avg_pool2d(conv4, conv6.shape[2:]), "conv5": conv5, "conv6": conv6}


class _FrozenBatchNormFunction(torch.autograd.Function):
    """Eval-mode batch norm whose backward keeps only the per-channel scale weight/√(var + eps): with
    frozen statistics and affine parameters the input gradient is the output gradient times that
    scale, so the input need not be kept (autograd's batch norm keeps it for every layer)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, eps):
        ctx.save_for_backward(weight / torch.sqrt(running_var + eps))
        return F.batch_norm(x, running_mean, running_var, weight, bias, False, 0.0, eps)

    @staticmethod
    def backward(ctx, grad):
        (scale,) = ctx.saved_tensors
        return grad * scale[None, :, None, None], None, None, None, None, None


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """ResNet-38's frozen BatchNorm (eval mode, affine not trained) with half the activation memory
    of a training step: the same output as nn.BatchNorm2d (F.batch_norm), the input gradient equal
    up to float rounding, the same state-dict entries. Otherwise (training mode or trainable
    affine) it is nn.BatchNorm2d."""

    def forward(self, x):
        if self.training or self.weight.requires_grad or self.bias.requires_grad or not x.requires_grad:
            return super().forward(x)
        return _FrozenBatchNormFunction.apply(x, self.weight, self.bias, self.running_mean, self.running_var, self.eps)


def use_frozen_batchnorm(module):
    """Replace every nn.BatchNorm2d under `module` by a FrozenBatchNorm2d holding the same tensors."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            frozen = FrozenBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                       child.track_running_stats)
            frozen.load_state_dict(child.state_dict())
            frozen.train(child.training)
            frozen.weight.requires_grad_(child.weight.requires_grad)
            frozen.bias.requires_grad_(child.bias.requires_grad)
            setattr(module, name, frozen)
        else:
            use_frozen_batchnorm(child)
    return module


def build_network(architecture, mode="fix", pretrained="none", num_classes=20):
    """CPN on `architecture` for `num_classes` foreground classes: resnet38d with its weight file (see
    resnet38d_weights) or a registered backbone (`pretrained` as the other trainers read it). Plain
    exceptions for a bad name or file."""
    if architecture == RESNET38D:
        path = resnet38d_weights(pretrained)
        network = cpn_resnet38d(num_classes + 1)
        use_frozen_batchnorm(network.backbone)
        if path is not None:
            load_weights(network.backbone, path)
        return network
    if architecture not in BACKBONES:
        raise ValueError(f"unknown network {architecture!r}; choose from {list(NETWORKS)}")
    return CPN(BackboneTrunk(architecture, mode, pretrained), num_classes + 1)


def build_model(args, pretrained, num_classes):
    return build_network(args.architecture, args.mode, pretrained, num_classes)


def cpn_parameter_groups(model):
    return model.parameter_groups()


class ComplementaryPatchTransform:
    """The published training chain (random long side in [min, max], bicubic; horizontal flip;
    ColorJitter(0.3, 0.3, 0.3, 0.1); ImageNet normalisation; random crop with zero padding), then the
    complementary pair's mask on the normalised crop (SLIC superpixels, `hide_patch_ss`).

    Returns (crop C×H×W float32, (keep H×W float32, c float64)): img1 = crop·keep, img2 =
    crop·(1 − keep), c the kept fraction. The superpixel draw uses a NumPy generator made for
    each image from Python's `random` module, which PyTorch seeds in every loader worker (and
    `SampleSeededDataset` per image under torchrun): never NumPy's global generator, which the
    published loop shared between workers.
    """

    def __init__(self, image_size, min_image_size, max_image_size, augment):
        self.chain = TrainTransform(image_size, min_image_size, max_image_size, augment)

    def __call__(self, image):
        crop, _ = self.chain(image)
        rng = np.random.default_rng(random.getrandbits(64))
        labels = superpixels(torch.from_numpy(crop))
        keep, kept = superpixel_keep_mask(labels, draw_superpixels(int(labels.max()), rng))
        return crop, (keep, np.float64(kept))


def cpn_step_losses(model, batch, args, schedule):
    """CPN's losses of one batch (image, label, keep mask, c): the triplet image, image·keep,
    image·(1 − keep) through the network in one forward (same weights; ResNet-38's frozen BatchNorm
    makes this the published three passes), then `cpn_loss` in float32."""
    images, labels, keep, kept = batch
    mask = keep[:, None].to(images.dtype)
    cams, refined = model(torch.cat([images, images * mask, images * (1 - mask)]))
    outputs = list(zip(cams.float().chunk(3), refined.float().chunk(3)))
    return cpn_loss(outputs, labels, kept, 1 - kept)


def half_scale_normalise(maps):
    """infer_cam's normalisation of summed maps (N×C×H×W): clamp at 0; per map lo = min, hi = max;
    values below lo + 1e-5 set to 0; (x − lo − 1e-5) / (hi − lo + 1e-5) / 2."""
    maps = maps.clamp(min=0)
    flat = maps.flatten(2)
    top = flat.max(dim=-1)[0][..., None, None]
    bottom = flat.min(dim=-1)[0][..., None, None]
    maps = torch.where(maps < bottom + 1e-5, torch.zeros_like(maps), maps)
    return (maps - bottom - 1e-5) / (top - bottom + 1e-5) / 2


def cpn_training_cams(model, images):
    """The refined foreground maps of one pass, normalised as infer_cam does (÷2 scale), at the
    input size: the per-epoch CAM evaluation then scores CPN's maps on their own scale."""
    return half_scale_normalise(model(images)[1][:, 1:].float())


@torch.no_grad()
def cpn_image_cams(model, image, label, scales, device, amp="off"):
    """(keys, cam, hr_cam) of one image: CPN's 8-pass routine (`cpn_cam`, ÷2 scale) gives hr_cam;
    cam is hr_cam resized (bilinear) to the stride-4 size that the random walk reads."""
    def network(batch):
        with autocast(device, amp):
            cam, refined = model(batch)
        return cam.float(), refined.float()

    keys, hr_cam = cpn_cam(network, image, label, scales, device)
    height, width = hr_cam.shape[1:]
    size = strided_size(height, width)
    if len(hr_cam) == 0:
        return keys, np.zeros((0, *size), np.float32), hr_cam
    return keys, resize_maps(torch.from_numpy(hr_cam), size).numpy(), hr_cam


CPN_METHOD = CamMethod(
    name="cpn", title="CPN", tag_word="CPN", train_script="train_cpn.py", add_arguments=add_arguments, check=check,
    build_model=build_model, step_losses=cpn_step_losses, training_cams=cpn_training_cams,
    image_cams=cpn_image_cams, checkpoint_layout=CHECKPOINT_LAYOUT, training_transform=ComplementaryPatchTransform,
    parameter_groups=cpn_parameter_groups)
