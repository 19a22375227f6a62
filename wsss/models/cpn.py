"""CPN network (Zhang et al., ICCV 2021): a CAM head plus PCM and PRCM refinement on a trunk.

The trunk is any module with `forward_features(x) -> {"conv4", "conv5", "conv6"}` (all three at the
same resolution) and a `feature_channels` dict giving their channel counts; the published one is
ResNet-38 (`cpn_resnet38d`). Per image batch x (N×3×H×W), with h×w the feature resolution:

  cam    = fc8(dropout2d(conv6))                         N×K×h×w (K = 21 on VOC), channel 0 = background
  seed   = seed_map(cam)                                  no gradient
  f      = [x resized to h×w, relu(f8_3(conv4)), relu(f8_4(conv5))]   195 ch, conv4/5 detached
  cam_rv = pcm(seed, f) + prcm(spatial_gather(f, seed), f) ⊙ seed

and both `cam` and `cam_rv` are returned upsampled to H×W (bilinear, align_corners=True).

State-dict keys are the published network's: the trunk's keys without a prefix (`conv1a.weight`,
`b2.bn_branch2a.weight`, …) followed by `fc8.weight`, `f8_3.weight`, `f8_4.weight`, `f9.weight`,
`f10.weight`, so checkpoints interchange with the published class in both directions. The trunk
is held as `self.backbone` (so `named_parameters()` say `backbone.…`); two state-dict hooks drop and
restore that prefix.
"""
import torch
import torch.nn.functional as F
from torch import nn

from wsss.models.resnet38d import CPN_FROZEN_MODULES, ResNet38d

__all__ = ["CPN", "cpn_resnet38d", "seed_map", "spatial_gather", "pcm", "prcm", "NUM_CLASSES"]

NUM_CLASSES = 21  # background + 20 VOC classes, the published count (COCO: 81)
IMAGE_CHANNELS = 3
CONV4_REDUCED = 64
CONV5_REDUCED = 128
FEATURE_CHANNELS = IMAGE_CHANNELS + CONV4_REDUCED + CONV5_REDUCED  # 195
EMBEDDING_CHANNELS = 192
BACKBONE = "backbone"


@torch.no_grad()
def seed_map(cam):
    """Normalised seed of a raw CAM (N×21×h×w), without gradient.

    relu, divide each map by (its max + 1e-5) after subtracting 1e-5 (clamped at 0); background =
    1 − max over the foreground maps; then each foreground map keeps only the pixels where it is
    the largest foreground map (ties keep all tied maps).
    """
    cam = F.relu(cam.detach())
    peak = cam.flatten(2).max(dim=-1)[0][:, :, None, None] + 1e-5
    cam = F.relu(cam - 1e-5) / peak
    foreground = cam[:, 1:]
    strongest = foreground.max(dim=1, keepdim=True)[0]
    foreground = torch.where(foreground < strongest, torch.zeros_like(foreground), foreground)
    return torch.cat([1 - strongest, foreground], dim=1)


def spatial_gather(features, probabilities):
    """Class-region descriptors (OCR's SpatialGather): softmax over pixels of each class map,
    times the features. features N×C×h×w, probabilities N×K×h×w → N×C×K×1."""
    weights = F.softmax(probabilities.flatten(2), dim=2)                      # N×K×hw
    context = torch.matmul(weights, features.flatten(2).transpose(1, 2))      # N×K×C
    return context.permute(0, 2, 1).unsqueeze(3)


def pcm(seed, features, f9):
    """SEAM's pixel correlation module: seed (N×K×h×w) propagated by A = relu(ĝᵀĝ) with columns
    divided by (their sum + 1e-5), ĝ = f9(features) divided by (its channel L2 norm + 1e-5)."""
    n, _, h, w = features.shape
    embedding = f9(features).flatten(2)
    embedding = embedding / (torch.norm(embedding, dim=1, keepdim=True) + 1e-5)
    affinity = F.relu(torch.matmul(embedding.transpose(1, 2), embedding), inplace=True)
    column_sums = affinity.sum(dim=1, keepdim=True) + 1e-5
    # in place when no gradient is recorded: at 2× a 500×375 image A is 11750² floats (0.55 GB)
    affinity = affinity / column_sums if affinity.requires_grad else affinity.div_(column_sums)
    return torch.matmul(seed.flatten(2), affinity).view(n, -1, h, w)


def prcm(context, features, f9, f10):
    """Pixel-region correlation: softmax over pixels of K^-0.5 · key·query, N×K×h×w (K classes with
    background, 21 on VOC; the published code hard-codes 21).

    query = relu(f9(features)) (N×192×hw); key = relu(f10(context)) is N×192×K×1 and is turned into
    N×K×192 by a reshape (the published `view`), not a transpose, so each "class key" is a run of
    192 consecutive values of the 192×K array and mixes channels of several classes. Kept on
    purpose; a test pins it.
    """
    n, _, h, w = features.shape
    num_classes = context.shape[2]
    query = F.relu(f9(features)).flatten(2)
    key = F.relu(f10(context)).reshape(n, num_classes, -1)
    similarity = num_classes ** -0.5 * torch.matmul(key, query)
    return F.softmax(similarity, dim=-1).view(n, -1, h, w)


def _drop_backbone_prefix(module, state_dict, prefix, local_metadata):
    """State-dict post-hook: `backbone.X` → `X`, keeping the order (and the version metadata)."""
    inner = prefix + BACKBONE + "."
    items = list(state_dict.items())
    state_dict.clear()
    for key, value in items:
        state_dict[prefix + key[len(inner):] if key.startswith(inner) else key] = value
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        entries = [(key, value) for key, value in metadata.items() if key != prefix + BACKBONE]
        metadata.clear()
        for key, value in entries:
            metadata[prefix + key[len(inner):] if key.startswith(inner) else key] = value


def _restore_backbone_prefix(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                             error_msgs):
    """Load pre-hook: keys naming a trunk module or tensor (`conv1a.weight`) → `backbone.conv1a.weight`."""
    backbone = getattr(module, BACKBONE)
    trunk_names = set(backbone._modules) | set(backbone._parameters) | set(backbone._buffers)
    for key in [key for key in state_dict if key.startswith(prefix)]:
        if key[len(prefix):].split(".", 1)[0] in trunk_names:
            state_dict[prefix + BACKBONE + "." + key[len(prefix):]] = state_dict.pop(key)


class CPN(nn.Module):
    """CPN on `backbone` for `num_classes` classes with background; `forward(x)` returns (cam, cam_rv),
    both N×num_classes×H×W."""

    def __init__(self, backbone, num_classes=NUM_CLASSES):
        super().__init__()
        channels = backbone.feature_channels
        self.backbone = backbone
        self.dropout7 = nn.Dropout2d(0.5)
        self.fc8 = nn.Conv2d(channels["conv6"], num_classes, 1, bias=False)
        self.f8_3 = nn.Conv2d(channels["conv4"], CONV4_REDUCED, 1, bias=False)
        self.f8_4 = nn.Conv2d(channels["conv5"], CONV5_REDUCED, 1, bias=False)
        self.f9 = nn.Conv2d(FEATURE_CHANNELS, EMBEDDING_CHANNELS, 1, bias=False)
        self.f10 = nn.Conv2d(FEATURE_CHANNELS, EMBEDDING_CHANNELS, 1, bias=False)
        # same initialisers in the same order as published, so one torch seed gives the same weights
        nn.init.xavier_uniform_(self.fc8.weight)
        nn.init.kaiming_normal_(self.f8_3.weight)
        nn.init.kaiming_normal_(self.f8_4.weight)
        nn.init.xavier_uniform_(self.f9.weight, gain=4)
        nn.init.xavier_uniform_(self.f10.weight, gain=4)
        self.register_state_dict_post_hook(_drop_backbone_prefix)
        self.register_load_state_dict_pre_hook(_restore_backbone_prefix)

    def new_layers(self):
        """The layers trained from scratch (the 10×/20× learning-rate groups)."""
        return [self.f8_3, self.f8_4, self.f9, self.fc8, self.f10]

    def forward(self, x):
        height, width = x.shape[2:]
        levels = self.backbone.forward_features(x)
        cam = self.fc8(self.dropout7(levels["conv6"]))
        h, w = cam.shape[2:]
        if levels["conv4"].shape[2:] != (h, w) or levels["conv5"].shape[2:] != (h, w):
            raise ValueError(f"conv4 {tuple(levels['conv4'].shape[2:])}, conv5 {tuple(levels['conv5'].shape[2:])} "
                             f"and conv6 {(h, w)} must have the same size")
        seed = seed_map(cam)
        features = torch.cat([
            F.interpolate(x, (h, w), mode="bilinear", align_corners=True),
            F.relu(self.f8_3(levels["conv4"].detach()), inplace=True),
            F.relu(self.f8_4(levels["conv5"].detach()), inplace=True),
        ], dim=1)
        region = prcm(spatial_gather(features, seed), features, self.f9, self.f10)
        cam_rv = pcm(seed, features, self.f9) + region * seed
        cam_rv = F.interpolate(cam_rv, (height, width), mode="bilinear", align_corners=True)
        cam = F.interpolate(cam, (height, width), mode="bilinear", align_corners=True)
        return cam, cam_rv

    def parameter_groups(self):
        """The four published optimiser groups: trunk weights, trunk biases, new-layer weights,
        new-layer biases (learning rate ×1, ×2, ×10, ×20; decay on the weights only).

        As published, only Conv2d and GroupNorm parameters are collected (ResNet-38's BatchNorm is
        frozen); parameters that do not train are left out (the published code added the frozen
        convolutions too, where SGD skips them for having no gradient). CPN's new layers have no
        bias, so the last group is empty.
        """
        groups = ([], [], [], [])
        new_layers = self.new_layers()
        for module in self.modules():
            if not isinstance(module, (nn.Conv2d, nn.GroupNorm)):
                continue
            is_new = any(module is layer for layer in new_layers)
            if module.weight is not None and module.weight.requires_grad:
                groups[2 if is_new else 0].append(module.weight)
            if module.bias is not None and module.bias.requires_grad:
                groups[3 if is_new else 1].append(module.bias)
        return groups


def cpn_resnet38d(num_classes=NUM_CLASSES):
    """The published CPN: ResNet-38 with frozen BatchNorm and frozen conv1a, b2, b2_1, b2_2."""
    return CPN(ResNet38d(frozen_modules=CPN_FROZEN_MODULES), num_classes)
