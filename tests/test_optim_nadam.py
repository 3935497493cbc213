"""optlib.NAdam against torch.optim.NAdam, and its two paths against each other."""

import math

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

from optlib.optim import NAdam

torch.set_num_threads(1)

OPTIONS = {
    "default": {},
    "lr": {"lr": 3e-2},
    "betas": {"betas": (0.5, 0.9)},
    "eps": {"eps": 1e-2},
    "weight_decay": {"weight_decay": 0.1},
    "momentum_decay": {"momentum_decay": 0.1},
    "no momentum_decay": {"momentum_decay": 0.0},
    "decoupled": {"weight_decay": 0.1, "decoupled_weight_decay": True},
    "maximize": {"maximize": True},
    "weight_decay+maximize": {"weight_decay": 0.1, "maximize": True},
    "decoupled+maximize+momentum_decay": {
        "weight_decay": 0.1,
        "decoupled_weight_decay": True,
        "maximize": True,
        "momentum_decay": 0.02,
    },
}
GROUPS = [
    {"lr": 1e-2, "betas": (0.8, 0.99), "weight_decay": 0.05},
    {"lr": 1e-3, "momentum_decay": 0.01, "eps": 1e-6},
    {"lr": 5e-3, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True},
]


@PATHS
@DTYPES
@pytest.mark.parametrize("kwargs", OPTIONS.values(), ids=OPTIONS.keys())
def test_matches_torch(kwargs, dtype, foreach):
    # optlib's foreach path divides v by 1 - β2^t before the square root, as torch's
    # loop does (torch's foreach path roots first), so both optlib paths are held to torch's loop.
    assert_matches_torch(NAdam, torch.optim.NAdam, kwargs, dtype=dtype, foreach=foreach, torch_foreach=False)


@PATHS
def test_param_groups_match_torch(foreach):
    assert_matches_torch(NAdam, torch.optim.NAdam, {}, groups=GROUPS, foreach=foreach, torch_foreach=False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kwargs", OPTIONS.values(), ids=OPTIONS.keys())
def test_foreach_matches_single(kwargs, dtype):
    assert_foreach_matches_single(NAdam, kwargs, dtype=dtype)


def test_foreach_matches_single_with_groups():
    assert_foreach_matches_single(NAdam, {}, groups=GROUPS)


def test_mu_product_is_the_product_of_the_schedule():
    params, opt, _ = run(NAdam, {"momentum_decay": 0.05}, 30, dtype=torch.float64)
    beta1, psi = 0.9, 0.05
    expected = math.prod(beta1 * (1 - 0.5 * 0.96 ** (t * psi)) for t in range(1, 31))
    assert opt.state[params[0]]["mu_product"].item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("via_bytes", [False, True], ids=["deepcopy", "torch.save"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_state_dict_roundtrip(dtype, via_bytes):
    # float64 and bfloat16 check that mu_product keeps its saved dtype through load_state_dict.
    assert_state_dict_roundtrip(NAdam, {"weight_decay": 0.1}, dtype=dtype, via_bytes=via_bytes)
    assert_state_dict_roundtrip(NAdam, {}, groups=GROUPS, dtype=dtype, via_bytes=via_bytes)


def test_state_dict_interoperates_with_torch():
    assert_state_dict_interop(NAdam, torch.optim.NAdam, {"weight_decay": 0.1, "momentum_decay": 0.01})


def test_old_state_dict_gets_defaults_and_tensor_scalars():
    _, opt, _ = run(NAdam, {}, 5)
    saved = opt.state_dict()
    for group in saved["param_groups"]:
        for key in ("foreach", "maximize", "decoupled_weight_decay", "capturable", "differentiable"):
            del group[key]
    for state in saved["state"].values():
        state["step"] = float(state["step"])
        state["mu_product"] = float(state["mu_product"])
    fresh = NAdam(make_params())
    fresh.load_state_dict(saved)
    group = fresh.param_groups[0]
    assert group["foreach"] is None and group["maximize"] is False and group["decoupled_weight_decay"] is False
    for state in fresh.state.values():
        assert torch.is_tensor(state["step"]) and torch.is_tensor(state["mu_product"])
        assert state["mu_product"].dtype == torch.float32


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
    assert_matches_torch(
        NAdam, torch.optim.NAdam, {"weight_decay": 0.1}, scheduler=scheduler, foreach=foreach, torch_foreach=False
    )
