"""CPN's training losses (Zhang et al., ICCV 2021) for the triplet img, img1 = img·m, img2 = img·(1 − m).

Each image goes through the network, giving (cam, cam_rv), both N×21×H×W (channel 0 = background).
With label21 = [1, label20] (N×21×1×1):

  L_cls  = mean over the triplet of the multilabel soft-margin loss on GAP(cam) of the 20
           foreground channels, + mean over the triplet of the adaptive min-pooling loss of
           (cam_rv · label21) foreground channels;
  maps   = max_norm(·) · label21 for all six maps; img1's maps × c, img2's × uc;
  L_tcp  = mean |(cam1 + cam2).detach() − cam0| + mean |cam_rv0 − cam_rv1 − cam_rv2| (foreground);
  L_cpcr = OHEM(|max_onehot(cam0 − cam1).detach() − cam_rv2|)
           + OHEM(|max_onehot(cam0 − cam2).detach() − cam_rv1|), after setting every map's
           background channel to 1 − max over its foreground channels;
  total  = L_cls + L_tcp + L_cpcr.

The reductions, constants and order of operations are the published ones.
"""
import torch
import torch.nn.functional as F

__all__ = ["max_norm", "adaptive_min_pooling_loss", "max_onehot", "ohem", "with_background", "cpn_loss"]

OHEM_FRACTION = 0.2
MIN_POOLING_FRACTION = 4  # the k = H·W // 4 smallest pixels


def max_norm(maps, eps=1e-5):
    """Per map (N×C×H×W): relu, then relu(x − min − eps) / (max − min + eps)."""
    n, c = maps.shape[:2]
    maps = F.relu(maps)
    flat = maps.reshape(n, c, -1)
    top = flat.max(dim=-1)[0].view(n, c, 1, 1)
    bottom = flat.min(dim=-1)[0].view(n, c, 1, 1)
    return F.relu(maps - bottom - eps) / (top - bottom + eps)


def adaptive_min_pooling_loss(maps):
    """Per pixel the max over channels (N×C×H×W → N×HW); the k = H·W // 4 smallest per image,
    relu, summed and divided by k·N."""
    n, _, h, w = maps.shape
    k = h * w // MIN_POOLING_FRACTION
    lowest = torch.topk(maps.max(dim=1)[0].view(n, -1), k=k, dim=-1, largest=False)[0]
    return torch.sum(F.relu(lowest)) / (k * n)


def max_onehot(maps):
    """Keeps each pixel's channel maximum (its value, all tied channels) and zeroes the rest."""
    peak = maps.max(dim=1, keepdim=True)[0]
    return torch.where(maps != peak, torch.zeros_like(maps), maps)


def ohem(errors):
    """Online hard example mining: the mean of each image's int(C·H·W·0.2) largest values,
    averaged over the batch (one mean over N×k)."""
    n, c, h, w = errors.shape
    k = int(c * h * w * OHEM_FRACTION)
    return torch.mean(torch.topk(errors.reshape(n, -1), k=k, dim=-1)[0])


def with_background(maps):
    """The maps with channel 0 replaced by 1 − max over the foreground channels."""
    return torch.cat([1 - maps[:, 1:].max(dim=1, keepdim=True)[0], maps[:, 1:]], dim=1)


def _as_column(values, reference):
    """Per-image weights (N floats, a tensor or a scalar) as an N×1×1×1 float32 tensor."""
    values = torch.as_tensor(values, dtype=torch.float32, device=reference.device)
    return values.reshape(-1, 1, 1, 1).expand(reference.shape[0], 1, 1, 1)


def cpn_loss(outputs, label, c, uc):
    """CPN's loss for the network outputs of (img, img1, img2).

    outputs: ((cam0, cam_rv0), (cam1, cam_rv1), (cam2, cam_rv2)), each N×21×H×W.
    label: N×20 image-level labels (0/1). c, uc: kept fractions of img1 and img2 (N values or scalars).
    Returns a dict of scalar tensors: total, cls, tcp, cpcr.
    """
    (cam0, rv0), (cam1, rv1), (cam2, rv2) = outputs
    label20 = label.to(cam0.dtype)
    label21 = torch.cat([torch.ones_like(label20[:, :1]), label20], dim=1)[:, :, None, None]
    c, uc = _as_column(c, cam0), _as_column(uc, cam0)

    # the published loss passes the N×20×1×1 pooled maps; its value is the mean over all N·20 terms
    classification = sum(F.multilabel_soft_margin_loss(F.adaptive_avg_pool2d(cam, (1, 1))[:, 1:].flatten(1), label20)
                         for cam in (cam0, cam1, cam2))
    min_pooling = sum(adaptive_min_pooling_loss((rv * label21)[:, 1:]) for rv in (rv0, rv1, rv2))
    loss_cls = classification / 3 + min_pooling / 3

    cam0, rv0 = max_norm(cam0) * label21, max_norm(rv0) * label21
    cam1, rv1 = c * max_norm(cam1) * label21, c * max_norm(rv1) * label21
    cam2, rv2 = uc * max_norm(cam2) * label21, uc * max_norm(rv2) * label21

    loss_tcp = (torch.mean(torch.abs((cam2[:, 1:].detach() + cam1[:, 1:].detach()) - cam0[:, 1:]))
                + torch.mean(torch.abs(rv0[:, 1:] - rv1[:, 1:] - rv2[:, 1:])))

    cam0, cam1, cam2 = with_background(cam0), with_background(cam1), with_background(cam2)
    rv1, rv2 = with_background(rv1), with_background(rv2)
    loss_cpcr = (ohem(torch.abs(max_onehot(cam0.detach() - cam1.detach()) - rv2))
                 + ohem(torch.abs(max_onehot(cam0.detach() - cam2.detach()) - rv1)))

    total = loss_cls + loss_tcp + loss_cpcr
    return {"total": total, "cls": loss_cls, "tcp": loss_tcp, "cpcr": loss_cpcr}
