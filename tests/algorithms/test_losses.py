import math

import pytest
import torch

from wsss.algorithms import losses
from wsss.models.classifier import make_cam


def test_class_loss_is_multilabel_soft_margin_by_hand():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.0]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])

    def term(x, y):
        return -(y * math.log(1 / (1 + math.exp(-x))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-x))))

    expected = ((term(2.0, 1) + term(-1.0, 0)) / 2 + (term(0.5, 0) + term(0.0, 1)) / 2) / 2
    assert losses.class_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_re_loss_masking_selection_none_by_hand():
    features = torch.zeros(2, 3, 1, 2)
    re_features = torch.zeros(2, 3, 1, 2)
    re_features[0, 0] = torch.tensor([[1.0, 3.0]])   # present
    re_features[0, 1] = torch.tensor([[10.0, 10.0]])  # absent
    re_features[1, 2] = torch.tensor([[-2.0, 0.0]])  # present
    labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    # masking: sum over present maps / all 12 elements
    assert losses.re_loss(features, re_features, labels, "L1_Loss", "masking").item() == pytest.approx((4 + 2) / 12)
    # selection: image 0 mean |.| over class 0 = 2, image 1 over class 2 = 1 → 1.5
    assert losses.re_loss(features, re_features, labels, "L1_Loss", "selection").item() == pytest.approx(1.5)
    assert losses.re_loss(features, re_features, labels, "L1_Loss", "none").item() == pytest.approx((4 + 20 + 2) / 12)
    assert losses.re_loss(features, re_features, labels, "L2_Loss", "masking").item() == pytest.approx((1 + 9 + 4) / 12)


def test_shannon_entropy_loss_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # sigmoid → 0.5, 0.75
    expected = -(0.5 * math.log(0.5 + 1e-5) + 0.75 * math.log(0.75 + 1e-5))
    assert losses.shannon_entropy_loss(logits).item() == pytest.approx(expected, rel=1e-6)


def test_alpha_schedule_ramps_then_stays():
    assert losses.alpha_at(0, 100, 4.0, 0.5) == 0.0
    assert losses.alpha_at(25, 100, 4.0, 0.5) == pytest.approx(2.0)
    assert losses.alpha_at(50, 100, 4.0, 0.5) == pytest.approx(4.0)
    assert losses.alpha_at(99, 100, 4.0, 0.5) == pytest.approx(4.0)
    assert losses.alpha_at(10, 100, 4.0, 0.0) == 4.0


def test_loss_option_parsing_refuses_unknown_terms():
    assert losses.parse_loss_option("cl_pcl_re_conf") == {"cl", "pcl", "re", "conf"}
    with pytest.raises(ValueError, match="unknown loss term"):
        losses.parse_loss_option("cl_pcl_rex")


def test_make_cam_by_hand():
    features = torch.tensor([[[[-1.0, 2.0], [4.0, 1.0]]]])
    expected = torch.tensor([[[[0.0, (2 - 1e-5) / (4 + 1e-5)], [(4 - 1e-5) / (4 + 1e-5), (1 - 1e-5) / (4 + 1e-5)]]]])
    assert torch.allclose(make_cam(features), expected, atol=1e-7)
    assert torch.equal(make_cam(torch.zeros(1, 2, 3, 3)), torch.zeros(1, 2, 3, 3))
