"""Segmentation model registry: `--architecture` name → model class.

Each class takes (backbone, num_classes, mode, use_gn, pretrained). The published code also had
`Seg_Model` and `CSeg_Model`; they are not implemented here, and adding one is a file and a line.
"""
from wsss.models.deeplab import DeepLabv3Plus

SEGMENTATION_MODELS = {"DeepLabv3+": DeepLabv3Plus}


def build_segmentation_model(architecture, backbone, num_classes=21, mode="fix", use_gn=True, pretrained="imagenet"):
    if architecture not in SEGMENTATION_MODELS:
        raise ValueError(f"unknown segmentation architecture {architecture!r}; choose from {sorted(SEGMENTATION_MODELS)}")
    return SEGMENTATION_MODELS[architecture](backbone, num_classes=num_classes, mode=mode, use_gn=use_gn,
                                             pretrained=pretrained)
