"""DeepLabv3+ (docs/design.md §3.3): backbone at output stride 16 → ASPP → decoder with stage2 features.

Module names follow the DeepLabv3+ implementation the published code derives from
(jfzhang95/pytorch-deeplab-xception), so checkpoints hold `aspp.aspp1.atrous_conv.weight`,
`aspp.global_avg_pool.1.weight`, `decoder.classifier.8.bias`, … beside the backbone's
`model.*` and `stage*.*` copies.
"""
import torch
import torch.nn.functional as F
from torch import nn

from wsss.models.backbones import NORM_LAYERS, Backbone

ASPP_CHANNELS = 256
ASPP_DILATIONS = (6, 12, 18)  # output stride 16
LOW_LEVEL_CHANNELS = 48


def initialize(modules):
    """New layers: Kaiming-normal convolution weights; batch norm weight 1, bias 0."""
    for module in modules:
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class ASPPModule(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, dilation, norm_layer):
        super().__init__()
        padding = 0 if kernel_size == 1 else dilation
        self.atrous_conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation,
                                     bias=False)
        self.bn = norm_layer(out_channels)
        self.relu = nn.ReLU(inplace=True)
        initialize(self.modules())

    def forward(self, x):
        return self.relu(self.bn(self.atrous_conv(x)))


class ASPP(nn.Module):
    """Four parallel branches (1×1; 3×3 at dilations 6, 12, 18) and image pooling, fused to 256."""

    def __init__(self, in_channels, norm_layer):
        super().__init__()
        self.aspp1 = ASPPModule(in_channels, ASPP_CHANNELS, 1, 1, norm_layer)
        self.aspp2 = ASPPModule(in_channels, ASPP_CHANNELS, 3, ASPP_DILATIONS[0], norm_layer)
        self.aspp3 = ASPPModule(in_channels, ASPP_CHANNELS, 3, ASPP_DILATIONS[1], norm_layer)
        self.aspp4 = ASPPModule(in_channels, ASPP_CHANNELS, 3, ASPP_DILATIONS[2], norm_layer)
        self.global_avg_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Conv2d(in_channels, ASPP_CHANNELS, 1, bias=False),
            norm_layer(ASPP_CHANNELS),
            nn.ReLU(inplace=True))
        self.conv1 = nn.Conv2d(5 * ASPP_CHANNELS, ASPP_CHANNELS, 1, bias=False)
        self.bn1 = norm_layer(ASPP_CHANNELS)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(0.5)
        initialize(self.modules())

    def forward(self, x):
        branches = [self.aspp1(x), self.aspp2(x), self.aspp3(x), self.aspp4(x)]
        pooled = F.interpolate(self.global_avg_pool(x), size=x.shape[2:], mode="bilinear", align_corners=True)
        x = torch.cat(branches + [pooled], dim=1)
        return self.dropout(self.relu(self.bn1(self.conv1(x))))


class Decoder(nn.Module):
    """Low-level features → 48 channels, joined with the upsampled ASPP output, → class logits."""

    def __init__(self, low_level_channels, num_classes, norm_layer):
        super().__init__()
        self.conv1 = nn.Conv2d(low_level_channels, LOW_LEVEL_CHANNELS, 1, bias=False)
        self.bn1 = norm_layer(LOW_LEVEL_CHANNELS)
        self.relu = nn.ReLU(inplace=True)
        self.classifier = nn.Sequential(
            nn.Conv2d(ASPP_CHANNELS + LOW_LEVEL_CHANNELS, 256, 3, padding=1, bias=False),
            norm_layer(256),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Conv2d(256, 256, 3, padding=1, bias=False),
            norm_layer(256),
            nn.ReLU(inplace=True),
            nn.Dropout(0.1),
            nn.Conv2d(256, num_classes, 1))
        initialize(self.modules())

    def forward(self, x, low_level):
        low_level = self.relu(self.bn1(self.conv1(low_level)))
        x = F.interpolate(x, size=low_level.shape[2:], mode="bilinear", align_corners=True)
        return self.classifier(torch.cat([x, low_level], dim=1))


def group_norm(channels):
    return nn.GroupNorm(4, channels)


class DeepLabv3Plus(Backbone):
    """Class logits at the input size. ASPP and decoder norms: GroupNorm(4, C) with `use_gn`, else
    the backbone's norm layer (frozen-statistics batch norm in `fix` mode, as published)."""

    def __init__(self, backbone, num_classes=21, mode="fix", use_gn=True, pretrained="imagenet"):
        super().__init__(backbone, mode, pretrained)
        norm_layer = group_norm if use_gn else NORM_LAYERS[mode]
        self.aspp = ASPP(self.stage_channels[-1], norm_layer)
        self.decoder = Decoder(self.stage_channels[1], num_classes, norm_layer)

    def forward(self, images):
        stages = self.forward_stages(images)
        logits = self.decoder(self.aspp(stages[-1]), low_level=stages[1])
        return F.interpolate(logits, size=images.shape[2:], mode="bilinear", align_corners=True)

