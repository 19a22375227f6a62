import pytest
import torch

from wsss.utils.optim import PolyOptimizer, build_groups


def make_optimizer(momentum=None, nesterov=True):
    weight = torch.nn.Parameter(torch.ones(1))
    groups = build_groups(([weight], [], [], []), lr=0.1, weight_decay=1e-4)
    return weight, PolyOptimizer(groups, 0.1, 1e-4, max_step=10, nesterov=nesterov, momentum=momentum)


def test_group_learning_rates_and_decay():
    groups = build_groups(([1], [2], [3], [4]), lr=0.1, weight_decay=1e-4)
    assert [g["lr"] for g in groups] == pytest.approx([0.1, 0.2, 1.0, 2.0])
    assert [g["weight_decay"] for g in groups] == [1e-4, 0, 1e-4, 0]


def test_poly_learning_rate_curve():
    weight, optimizer = make_optimizer()
    seen = []
    for _ in range(12):
        weight.grad = torch.zeros(1)
        optimizer.step()
        seen.append(optimizer.param_groups[0]["lr"])
    expected = [0.1 * (1 - step / 10) ** 0.9 for step in range(10)]
    assert seen[:10] == pytest.approx(expected)
    assert seen[10] == seen[11] == pytest.approx(expected[-1])  # frozen once step >= max_step


def test_published_quirk_momentum_equals_weight_decay():
    _, optimizer = make_optimizer()
    assert optimizer.param_groups[0]["momentum"] == 1e-4
    assert optimizer.param_groups[0]["nesterov"] is True


def test_effective_momentum_in_the_update():
    # Two steps with grad 1, no decay on this param, lr frozen by max_step=1 after the first step.
    for momentum in (None, 0.9):
        weight = torch.nn.Parameter(torch.zeros(1))
        optimizer = PolyOptimizer([{"params": [weight], "lr": 1.0, "weight_decay": 0}], 1.0, 1e-4,
                                  max_step=1000, nesterov=False, momentum=momentum)
        for _ in range(2):
            weight.grad = torch.ones(1)
            optimizer.step()
        mu = 1e-4 if momentum is None else 0.9
        lr1 = (1 - 1 / 1000) ** 0.9
        # buffer: 1 then mu*1 + 1; update: -1*1 then -lr1*(1 + mu)
        assert weight.item() == pytest.approx(-1 - lr1 * (1 + mu), rel=1e-6)
