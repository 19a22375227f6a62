"""Puzzle-CAM losses (docs/design.md §4) with registries for the flag values."""
import torch
from torch import nn

RE_LOSSES = {
    "L1_Loss": lambda a, b: torch.abs(a - b),
    "L2_Loss": lambda a, b: torch.pow(a - b, 2),
}


def _masking(elementwise, labels):
    """Zero the absent classes' maps, then mean over all elements (absent zeros included)."""
    return (elementwise * labels[:, :, None, None]).mean()


def _selection(elementwise, labels):
    """Per image, mean over its present classes' maps; then mean over the batch."""
    per_image = [elementwise[index][labels[index] > 0].mean() for index in range(labels.shape[0])]
    return torch.stack(per_image).mean()


def _plain(elementwise, labels):
    return elementwise.mean()


RE_LOSS_OPTIONS = {"masking": _masking, "selection": _selection, "none": _plain}

LOSS_TERMS = ("cl", "pcl", "re", "conf")

_multilabel_soft_margin = nn.MultiLabelSoftMarginLoss(reduction="none")


def class_loss(logits, labels):
    return _multilabel_soft_margin(logits, labels).mean()


def re_loss(features, re_features, labels, kind="L1_Loss", option="masking"):
    return RE_LOSS_OPTIONS[option](RE_LOSSES[kind](features, re_features), labels)


def shannon_entropy_loss(logits, epsilon=1e-5):
    """conf loss: −Σ_c v·log(v + ε) with v = sigmoid(logits), mean over samples."""
    probabilities = torch.sigmoid(logits)
    return -(probabilities * torch.log(probabilities + epsilon)).sum(dim=1).mean()


def parse_loss_option(text):
    terms = text.split("_")
    unknown = [term for term in terms if term not in LOSS_TERMS]
    if unknown:
        raise ValueError(f"unknown loss term(s) {unknown} in {text!r}; terms are {LOSS_TERMS} joined by '_'")
    return set(terms)


def alpha_at(iteration, max_iteration, alpha, alpha_schedule):
    """Constant alpha, or a linear ramp over the first `alpha_schedule` of training."""
    if alpha_schedule == 0:
        return alpha
    return min(alpha * iteration / (max_iteration * alpha_schedule), alpha)
