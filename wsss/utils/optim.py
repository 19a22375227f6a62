"""Poly-decay SGD with the published parameter groups (docs/design.md §5)."""
import torch

POLY_POWER = 0.9


class PolyOptimizer(torch.optim.SGD):
    """SGD whose group learning rates follow initial · (1 − step/max_step)^0.9, set before each step.

    Quirk kept by default: the published optimiser passed weight decay positionally into SGD's
    momentum slot, so momentum = weight decay value, and decay comes only from the groups. Pass
    `momentum` (e.g. 0.9) for true momentum.
    """

    def __init__(self, groups, lr, weight_decay, max_step, nesterov=False, momentum=None):
        momentum = weight_decay if momentum is None else momentum
        super().__init__(groups, lr, momentum=momentum, nesterov=nesterov)
        self.global_step = 0
        self.max_step = max_step
        self.initial_lrs = [group["lr"] for group in self.param_groups]

    def step(self, closure=None):
        if self.global_step < self.max_step:
            factor = (1 - self.global_step / self.max_step) ** POLY_POWER
            for group, initial in zip(self.param_groups, self.initial_lrs):
                group["lr"] = initial * factor
        loss = super().step(closure)
        self.global_step += 1
        return loss

    def state_dict(self):
        state = super().state_dict()
        state["global_step"] = self.global_step
        return state

    def load_state_dict(self, state):
        state = dict(state)
        self.global_step = state.pop("global_step", 0)
        super().load_state_dict(state)


def build_groups(groups, lr, weight_decay):
    """The four published groups: (lr, wd), (2lr, 0), (10lr, wd), (20lr, 0)."""
    return [
        {"params": groups[0], "lr": lr, "weight_decay": weight_decay},
        {"params": groups[1], "lr": 2 * lr, "weight_decay": 0},
        {"params": groups[2], "lr": 10 * lr, "weight_decay": weight_decay},
        {"params": groups[3], "lr": 20 * lr, "weight_decay": 0},
    ]


def training_optimizer(groups, args, iterations_per_epoch):
    """The PolyOptimizer of a trainer from its flags: --lr, --wd, --nesterov, --momentum over
    --max_epoch epochs of `iterations_per_epoch` steps."""
    return PolyOptimizer(groups, args.lr, args.wd, args.max_epoch * iterations_per_epoch, args.nesterov,
                         args.momentum)
