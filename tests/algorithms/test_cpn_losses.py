import math

import pytest
import torch
import torch.nn.functional as F

from wsss.algorithms.cpn_losses import (adaptive_min_pooling_loss, cpn_loss, max_norm, max_onehot, ohem,
                                        with_background)


def test_max_norm_by_hand():
    maps = torch.tensor([[[[-1.0, 0.0], [2.0, 4.0]], [[1.0, 3.0], [1.0, 1.0]]]])
    e = 1e-5
    expected = torch.tensor([[[[0.0, 0.0], [(2 - e) / (4 + e), (4 - e) / (4 + e)]],
                              [[0.0, (2 - e) / (2 + e)], [0.0, 0.0]]]])
    assert torch.allclose(max_norm(maps), expected, atol=1e-7, rtol=0)


def test_adaptive_min_pooling_by_hand():
    maps = torch.tensor([
        [[[1.0, 2, 3, 4], [5, 6, 7, 8]], [[0.0, 3, 0, 0], [9, 0, 0, 0]]],     # pixel maxima 1 3 3 4 9 6 7 8
        [[[-2.0, -1, 0, 1], [2, 3, 4, 5]], [[-5.0] * 4, [-5.0] * 4]],         # pixel maxima −2 −1 0 1 2 3 4 5
    ])
    # k = 8 // 4 = 2 smallest per image: (1 + 3) and relu(−2) + relu(−1) = 0; divided by k·N = 4
    assert adaptive_min_pooling_loss(maps).item() == pytest.approx(1.0)


def test_max_onehot_keeps_the_maximum_value_and_ties():
    maps = torch.tensor([[[[1.0, -1.0]], [[3.0, -2.0]], [[3.0, -5.0]]]])
    assert max_onehot(maps).flatten().tolist() == [0.0, -1.0, 3.0, 0.0, 3.0, 0.0]


def test_ohem_keeps_the_top_fifth_per_image():
    errors = torch.arange(21.0).view(1, 21, 1, 1)
    assert ohem(errors).item() == pytest.approx(18.5)  # k = int(4.2) = 4: mean of 20, 19, 18, 17
    values = torch.stack([torch.arange(84.0), -torch.arange(84.0)])[:, torch.randperm(84)]
    # k = int(21·2·2·0.2) = int(16.8) = 16: means 75.5 and −7.5, one mean over both images
    assert ohem(values.view(2, 21, 2, 2)).item() == pytest.approx(34.0)


def test_background_is_one_minus_the_strongest_foreground():
    maps = torch.tensor([[[[9.0, 9.0]], [[0.25, 0.5]], [[0.75, 0.0]]]])
    assert with_background(maps).flatten().tolist() == [0.25, 0.5, 0.25, 0.5, 0.75, 0.0]


def test_all_zero_maps_by_hand():
    zeros = torch.zeros(1, 21, 6, 5)
    label = torch.zeros(1, 20)
    label[0, 3] = 1
    losses = cpn_loss(((zeros, zeros), (zeros, zeros), (zeros, zeros)), label, 0.6, 0.4)
    # soft margin at logit 0 is log 2 for every class; min-pooling of zeros is 0; no consistency gap;
    # every background channel becomes 1 − 0 = 1: 30 ones among 630 errors, OHEM mean over the top
    # int(630·0.2) = 126, for each of the two terms
    assert losses["cls"].item() == pytest.approx(math.log(2))
    assert losses["tcp"].item() == 0
    assert losses["cpcr"].item() == pytest.approx(2 * 30 / 126)
    assert losses["total"].item() == pytest.approx(math.log(2) + 60 / 126)


def reference_loss(outputs, label20, c, uc):
    """The published loss sequence, step by step with its in-place writes."""
    n = label20.shape[0]
    label = torch.cat([torch.ones(n, 1), label20], dim=1).view(n, 21, 1, 1)
    weights = [torch.ones(n, 21, 1, 1), c.view(n, 1, 1, 1).repeat(1, 21, 1, 1).float(),
               uc.view(n, 1, 1, 1).repeat(1, 21, 1, 1).float()]

    def normalise(p):
        p = F.relu(p)
        low, high = p.amin(dim=(2, 3), keepdim=True), p.amax(dim=(2, 3), keepdim=True)
        return F.relu(p - low - 1e-5) / (high - low + 1e-5)

    cls_terms, min_terms, cams, rvs = [], [], [], []
    for (cam, rv), weight in zip(outputs, weights):
        cls_terms.append(F.multilabel_soft_margin_loss(cam.mean(dim=(2, 3), keepdim=True)[:, 1:], label[:, 1:]))
        strongest = (rv * label)[:, 1:].amax(dim=1).view(n, -1)
        k = strongest.shape[1] // 4
        min_terms.append(strongest.sort(dim=1)[0][:, :k].clamp(min=0).sum() / (k * n))
        cams.append(weight * normalise(cam) * label)
        rvs.append(weight * normalise(rv) * label)
    loss_cls = sum(cls_terms) / 3 + sum(min_terms) / 3
    loss_tcp = ((cams[1][:, 1:].detach() + cams[2][:, 1:].detach() - cams[0][:, 1:]).abs().mean()
                + (rvs[0][:, 1:] - rvs[1][:, 1:] - rvs[2][:, 1:]).abs().mean())
    for maps in cams + rvs:
        maps[:, 0] = 1 - torch.max(maps[:, 1:], dim=1)[0]

    def hardest(x):
        k = int(21 * x.shape[2] * x.shape[3] * 0.2)
        return x.reshape(n, -1).sort(dim=1, descending=True)[0][:, :k].mean()

    def onehot(x):
        x[x != x.amax(dim=1, keepdim=True)] = 0
        return x

    loss_cpcr = (hardest((onehot(cams[0].detach() - cams[1].detach()) - rvs[2]).abs())
                 + hardest((onehot(cams[0].detach() - cams[2].detach()) - rvs[1]).abs()))
    return loss_cls + loss_tcp + loss_cpcr, loss_cls, loss_tcp, loss_cpcr


def test_total_and_gradients_equal_the_published_sequence():
    torch.manual_seed(0)
    inputs = [torch.randn(2, 21, 8, 6, requires_grad=True) for _ in range(6)]
    outputs = ((inputs[0], inputs[1]), (inputs[2], inputs[3]), (inputs[4], inputs[5]))
    label = torch.zeros(2, 20)
    label[0, [2, 7]] = 1
    label[1, 19] = 1
    c = torch.tensor([0.625, 0.375], dtype=torch.float64)
    ours = cpn_loss(outputs, label, c, 1 - c)
    theirs = reference_loss(outputs, label, c, 1 - c)
    for key, value in zip(("total", "cls", "tcp", "cpcr"), theirs):
        assert torch.allclose(ours[key], value, atol=1e-6), key
    grads = torch.autograd.grad(ours["total"], inputs)
    expected = torch.autograd.grad(theirs[0], inputs)
    for ours_grad, their_grad in zip(grads, expected):
        assert torch.allclose(ours_grad, their_grad, atol=1e-7)
    assert grads[0].abs().sum() > 0 and grads[5].abs().sum() > 0
    # scalar weights mean the same weight for every image
    same = cpn_loss(outputs, label, 0.625, 0.375)["total"]
    assert torch.allclose(same, cpn_loss(outputs, label, torch.tensor([0.625, 0.625]), [0.375, 0.375])["total"])
