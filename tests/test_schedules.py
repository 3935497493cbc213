"""optlib.warmup_cosine against the same schedule composed from torch.optim.lr_scheduler."""

import math

import pytest
import torch

import optlib


def _lrs(scheduler_factory, steps, lr=0.1):
    w = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([w], lr=lr)
    sched = scheduler_factory(opt)
    seen = []
    for _ in range(steps):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return seen


def test_matches_torch_linear_warmup_then_cosine():
    warmup, total = 7, 40

    def composed(opt):
        # LinearLR from 0 is not allowed (start_factor > 0), so start it at 1/warmup of lr, as
        # warmup_start = 1/warmup does.
        return torch.optim.lr_scheduler.SequentialLR(
            opt,
            [
                torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / warmup, end_factor=1.0, total_iters=warmup),
                torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=0.0),
            ],
            milestones=[warmup],
        )

    ours = _lrs(lambda opt: optlib.warmup_cosine(opt, warmup, total, warmup_start=1 / warmup), total + 1)
    theirs = _lrs(composed, total + 1)
    # LinearLR interpolates between start_factor and 1 over `warmup` steps, exactly the linear warm-up.
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)


def test_endpoints_and_floor():
    lrs = _lrs(lambda opt: optlib.warmup_cosine(opt, 4, 20, final_fraction=0.1), 30, lr=2.0)
    assert lrs[0] == 0.0
    assert lrs[4] == pytest.approx(2.0)
    assert lrs[12] == pytest.approx(2.0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))))
    assert lrs[20:] == pytest.approx([0.2] * 10)


def test_state_dict_round_trip():
    w = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([w], lr=1.0)
    sched = optlib.warmup_cosine(opt, 3, 10)
    for _ in range(5):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched2 = optlib.warmup_cosine(opt2, 3, 10)
    sched2.load_state_dict(state)
    assert sched2.last_epoch == 5


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"warmup_steps": -1, "total_steps": 10}, "warmup_steps"),
        ({"warmup_steps": 2.5, "total_steps": 10}, "warmup_steps"),
        ({"warmup_steps": 10, "total_steps": 10}, "total_steps"),
        ({"warmup_steps": 1, "total_steps": 10, "final_fraction": 1.5}, "final_fraction"),
        ({"warmup_steps": 1, "total_steps": 10, "warmup_start": -0.1}, "warmup_start"),
    ],
)
def test_bad_input_names_the_argument(kwargs, name):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    with pytest.raises(ValueError, match=name):
        optlib.warmup_cosine(opt, **kwargs)
