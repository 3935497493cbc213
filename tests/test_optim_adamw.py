"""optlib.AdamW against torch.optim.AdamW, and its two paths against each other."""

import pytest
import torch
from optim_harness import (
    DTYPES,
    PATHS,
    assert_foreach_matches_single,
    assert_matches_torch,
    assert_state_dict_interop,
    assert_state_dict_roundtrip,
    make_params,
    run,
)

from optlib.optim import Adam, AdamW

torch.set_num_threads(1)

OPTIONS = {
    "default": {},
    "lr": {"lr": 3e-2},
    "betas": {"betas": (0.5, 0.9)},
    "eps": {"eps": 1e-2},
    "weight_decay": {"weight_decay": 0.3},
    "no weight_decay": {"weight_decay": 0.0},
    "amsgrad": {"amsgrad": True},
    "maximize": {"maximize": True},
    "amsgrad+weight_decay+maximize": {"amsgrad": True, "weight_decay": 0.3, "maximize": True, "lr": 1e-2},
}
GROUPS = [
    {"lr": 1e-2, "betas": (0.8, 0.99), "weight_decay": 0.05},
    {"lr": 1e-3, "amsgrad": True, "eps": 1e-6},
    {"lr": 5e-3, "weight_decay": 0.0, "maximize": True},
]


@PATHS
@DTYPES
@pytest.mark.parametrize("kwargs", OPTIONS.values(), ids=OPTIONS.keys())
def test_matches_torch(kwargs, dtype, foreach):
    assert_matches_torch(AdamW, torch.optim.AdamW, kwargs, dtype=dtype, foreach=foreach)


@PATHS
def test_param_groups_match_torch(foreach):
    assert_matches_torch(AdamW, torch.optim.AdamW, {}, groups=GROUPS, foreach=foreach)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kwargs", OPTIONS.values(), ids=OPTIONS.keys())
def test_foreach_matches_single(kwargs, dtype):
    assert_foreach_matches_single(AdamW, kwargs, dtype=dtype)


def test_foreach_matches_single_with_groups():
    assert_foreach_matches_single(AdamW, {}, groups=GROUPS)


def test_is_adam_with_decoupled_weight_decay():
    expected, _, _ = run(Adam, {"weight_decay": 0.1, "decoupled_weight_decay": True}, 100)
    actual, _, _ = run(AdamW, {"weight_decay": 0.1}, 100)
    for a, e in zip(actual, expected):
        assert torch.equal(a, e)


def test_decay_differs_from_l2_penalty():
    # The point of the chapter: with λ > 0, decoupling changes the trajectory.
    coupled, _, _ = run(Adam, {"weight_decay": 0.1}, 100)
    decoupled, _, _ = run(AdamW, {"weight_decay": 0.1}, 100)
    assert not torch.allclose(coupled[0], decoupled[0], rtol=1e-3)


def test_zero_gradient_only_decays():
    # With g = 0 the moments stay 0 and the update is θ ← θ(1 − ηλ) exactly.
    p = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    opt = AdamW([p], lr=0.1, weight_decay=0.5)
    for _ in range(3):
        p.grad = torch.zeros_like(p)
        opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([1.0, -2.0], dtype=torch.float64) * 0.95**3)


@pytest.mark.parametrize("via_bytes", [False, True], ids=["deepcopy", "torch.save"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_state_dict_roundtrip(dtype, via_bytes):
    assert_state_dict_roundtrip(AdamW, {"amsgrad": True}, dtype=dtype, via_bytes=via_bytes)
    assert_state_dict_roundtrip(AdamW, {}, groups=GROUPS, dtype=dtype, via_bytes=via_bytes)


def test_state_dict_interoperates_with_torch():
    assert_state_dict_interop(AdamW, torch.optim.AdamW, {"amsgrad": True, "weight_decay": 0.1})


def test_loading_an_adam_state_dict_stays_decoupled():
    _, adam, _ = run(Adam, {"weight_decay": 0.1}, 5)
    opt = AdamW(make_params(), weight_decay=0.1)
    opt.load_state_dict(adam.state_dict())
    assert opt.param_groups[0]["decoupled_weight_decay"] is True


SCHEDULERS = {
    "StepLR": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.5),
    "CosineAnnealingLR": lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100, eta_min=1e-4),
    "OneCycleLR": lambda opt: torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=5e-2, total_steps=500, cycle_momentum=True
    ),
}


@PATHS
@pytest.mark.parametrize("scheduler", SCHEDULERS.values(), ids=SCHEDULERS.keys())
def test_lr_schedulers_match_torch(scheduler, foreach):
    assert_matches_torch(AdamW, torch.optim.AdamW, {"weight_decay": 0.1}, scheduler=scheduler, foreach=foreach)
