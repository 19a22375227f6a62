"""AffinityNet's supervision: the confident label map made from CAMs (docs/design.md §6.3), the pair labels
it gives on the training path index, and the affinity loss (docs/design.md §6.4).
"""
import numpy as np
import torch

from wsss.algorithms.crf import crf_refined_label
from wsss.utils.labels import IGNORE_LABEL

__all__ = ["make_affinity_label", "affinity_pair_labels", "affinity_loss"]


def make_affinity_label(image, hr_cam, keys, fg_threshold, bg_threshold, crf_iteration=10):
    """The uint8 label map of one image: class ids where the CAMs are confident, IGNORE_LABEL elsewhere.

    fg_conf / bg_conf = crf_refined_label at the high / low background threshold. Label = fg_conf,
    then IGNORE_LABEL where fg_conf is background, then background where bg_conf is background too.
    crf_iteration=0 skips the CRF (the published stage always runs it with t=10).
    """
    fg_conf = crf_refined_label(image, hr_cam, keys, fg_threshold, crf_iteration)
    bg_conf = crf_refined_label(image, hr_cam, keys, bg_threshold, crf_iteration)
    label = fg_conf.copy()
    label[fg_conf == 0] = IGNORE_LABEL
    label[fg_conf + bg_conf == 0] = 0
    return label.astype(np.uint8)


def affinity_pair_labels(label, src_indices, dst_indices):
    """bg-positive, fg-positive and negative pair masks (float32) of label maps.

    label: …×H×W class ids (one map or a batch; array or tensor, whose device the result follows;
    IGNORE_LABEL is invalid: the published test `< 21` on VOC's values 0..20 and 255), on the grid of the training path index whose
    src_indices [n_src] and dst_indices [n_directions, n_src] are given. Returns masks shaped
    …×n_directions×n_src. A pair counts when both labels are valid: bg-positive when both are 0,
    fg-positive when both are the same class > 0, negative when they differ.
    """
    label = torch.as_tensor(label)
    flat = label.reshape(*label.shape[:-2], -1).long()
    src_labels = flat[..., src_indices.to(flat.device)].unsqueeze(-2)
    dst_labels = flat[..., dst_indices.to(flat.device)]
    valid = (src_labels < IGNORE_LABEL) & (dst_labels < IGNORE_LABEL)
    same = src_labels == dst_labels
    bg_pos = same & valid & (src_labels == 0)
    fg_pos = same & valid & (src_labels > 0)
    neg = ~same & valid
    return bg_pos.float(), fg_pos.float(), neg.float()


def affinity_loss(aff, bg_pos, fg_pos, neg):
    """(bg/2 + fg/2 + neg)/2 over the whole batch; returns the loss and its three terms (a dict).

    aff: B × n_directions × n_src pair affinities; the masks of the same shape (one per image).
    pos = −log(aff + 1e-5), neg = −log(1 + 1e-5 − aff); each term is the masked sum over the
    mask's sum + 1e-5.
    """
    positive = -torch.log(aff + 1e-5)
    negative = -torch.log(1 + 1e-5 - aff)
    terms = {
        "bg": (bg_pos * positive).sum() / (bg_pos.sum() + 1e-5),
        "fg": (fg_pos * positive).sum() / (fg_pos.sum() + 1e-5),
        "neg": (neg * negative).sum() / (neg.sum() + 1e-5),
    }
    loss = (terms["bg"] / 2 + terms["fg"] / 2 + terms["neg"]) / 2
    return loss, terms
