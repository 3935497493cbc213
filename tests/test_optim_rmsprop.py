"""optlib.RMSprop against torch.optim.RMSprop: trajectory, both paths, state_dict, schedulers."""

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

from optlib.optim import RMSprop

torch.set_num_threads(1)


# eps is large in some options so that moving it (inside/outside the root) is visible.
OPTIONS = {
    "plain": dict(lr=0.01),
    "default_lr": dict(),
    "alpha": dict(lr=0.01, alpha=0.9),
    "eps": dict(lr=0.01, eps=0.3),
    "weight_decay": dict(lr=0.01, weight_decay=0.1),
    "momentum": dict(lr=0.01, momentum=0.9),
    "centered": dict(lr=0.01, centered=True),
    "maximize": dict(lr=0.001, maximize=True),
    "centered_momentum": dict(lr=0.005, momentum=0.8, centered=True, eps=0.05),
    "momentum_weight_decay_maximize": dict(lr=0.001, momentum=0.5, weight_decay=0.05, maximize=True),
    "all": dict(lr=0.002, alpha=0.95, eps=0.01, weight_decay=0.05, momentum=0.7, centered=True, maximize=True),
}


@DTYPES
@PATHS
@pytest.mark.parametrize("kwargs", list(OPTIONS.values()), ids=list(OPTIONS))
def test_matches_torch(kwargs, foreach, dtype):
    assert_matches_torch(RMSprop, torch.optim.RMSprop, kwargs, dtype=dtype, foreach=foreach)


@PATHS
def test_matches_torch_when_paths_cross(foreach):
    assert_matches_torch(RMSprop, torch.optim.RMSprop, OPTIONS["all"], foreach=foreach, torch_foreach=not foreach)


GROUPS = [
    dict(lr=0.01, momentum=0.9, centered=True),
    dict(lr=0.002, alpha=0.9, weight_decay=0.1),
    dict(lr=0.005, eps=0.1, maximize=True),
]


@PATHS
def test_param_groups_with_different_hyperparameters_match_torch(foreach):
    assert_matches_torch(RMSprop, torch.optim.RMSprop, dict(lr=0.003), groups=GROUPS, foreach=foreach)


@PATHS
def test_tensor_lr_matches_torch(foreach):
    assert_matches_torch(RMSprop, torch.optim.RMSprop, dict(lr=torch.tensor(0.01), momentum=0.5), foreach=foreach)


SCHEDULERS = {
    "StepLR": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.5),
    "CosineAnnealingLR": lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100),
    # RMSprop has a `momentum` entry, so OneCycleLR can cycle it.
    "OneCycleLR_cycle_momentum": lambda opt: torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=0.02, total_steps=200, cycle_momentum=True
    ),
}


@PATHS
@pytest.mark.parametrize("scheduler", list(SCHEDULERS.values()), ids=list(SCHEDULERS))
def test_lr_schedulers_match_torch(scheduler, foreach):
    assert_matches_torch(
        RMSprop,
        torch.optim.RMSprop,
        dict(lr=0.01, momentum=0.9, centered=True),
        steps=200,
        foreach=foreach,
        scheduler=scheduler,
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kwargs", [OPTIONS["plain"], OPTIONS["all"]], ids=["plain", "all"])
def test_foreach_matches_single_tensor(kwargs, dtype):
    assert_foreach_matches_single(RMSprop, kwargs, dtype=dtype)


def test_foreach_matches_single_tensor_with_param_groups():
    assert_foreach_matches_single(RMSprop, dict(lr=0.003), groups=GROUPS)


@pytest.mark.parametrize("via_bytes", [False, True], ids=["deepcopy", "torch.save"])
@pytest.mark.parametrize("kwargs", [OPTIONS["plain"], OPTIONS["all"]], ids=["plain", "all"])
def test_state_dict_roundtrip_is_bit_identical(kwargs, via_bytes):
    assert_state_dict_roundtrip(RMSprop, kwargs, via_bytes=via_bytes)


def test_state_dict_roundtrip_with_param_groups():
    assert_state_dict_roundtrip(RMSprop, dict(lr=0.003), groups=GROUPS, via_bytes=True)


def test_state_dict_interchangeable_with_torch():
    assert_state_dict_interop(RMSprop, torch.optim.RMSprop, OPTIONS["all"])


def test_old_state_dict_with_number_step_and_missing_options():
    params, opt, _ = run(RMSprop, dict(lr=0.01, momentum=0.5), 10)
    saved = opt.state_dict()
    for state in saved["state"].values():
        state["step"] = float(state["step"])
    for group in saved["param_groups"]:
        for key in ("centered", "foreach", "maximize", "differentiable", "capturable"):
            del group[key]
    fresh_params = make_params()
    fresh = RMSprop(fresh_params, lr=0.01, momentum=0.5)
    fresh.load_state_dict(saved)
    group = fresh.param_groups[0]
    assert (group["centered"], group["foreach"], group["maximize"], group["capturable"]) == (False, None, False, False)
    step = fresh.state[fresh_params[0]]["step"]
    assert torch.is_tensor(step) and step.dtype == torch.float32 and step.item() == 10.0


@PATHS
def test_params_without_grad_keep_their_state(foreach):
    params, opt, _ = run(RMSprop, dict(lr=0.01, foreach=foreach), 9)
    assert params[6] not in opt.state or len(opt.state[params[6]]) == 0  # "frozen": never had a gradient
    assert opt.state[params[7]]["step"].item() == 6  # "intermittent": no gradient on every third step
    assert opt.state[params[0]]["step"].item() == 9


@PATHS
def test_momentum_switched_on_later_starts_from_zero(foreach):
    # torch.optim would fail with a KeyError here; optlib starts the buffer at zero.
    p = torch.ones(2, requires_grad=True)
    opt = RMSprop([p], lr=0.1, alpha=0.5, foreach=foreach)
    p.grad = torch.ones(2)
    opt.step()
    opt.param_groups[0]["momentum"] = 0.5
    opt.param_groups[0]["centered"] = True
    before = p.detach().clone()
    opt.step()
    # v = 0.5*0.5 + 0.5*1 = 0.75, m = 0.5, denominator sqrt(0.75 - 0.25) + eps, b = g / denominator
    expected_step = 0.1 / (0.5**0.5 + 1e-8)
    torch.testing.assert_close(before - p.detach(), torch.full((2,), expected_step))


@pytest.mark.parametrize("cls", [torch.optim.RMSprop, RMSprop], ids=["torch", "optlib"])
def test_sparse_gradients_are_refused_with_torchs_error_type(cls):
    emb = torch.nn.Embedding(5, 2, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        cls(emb.parameters()).step()


@PATHS
def test_complex_parameters_match_torch(foreach):
    results = []
    for cls in (RMSprop, torch.optim.RMSprop):
        z = torch.tensor([1 + 2j, -0.5j, 3.0], dtype=torch.complex64, requires_grad=True)
        opt = cls([z], lr=0.01, momentum=0.5, centered=True, weight_decay=0.01, foreach=foreach)
        for _ in range(20):
            opt.zero_grad()
            (z.abs() ** 2 + z.real).sum().backward()
            opt.step()
        results.append((z.detach(), *(opt.state[z][k] for k in ("square_avg", "grad_avg", "momentum_buffer"))))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)


def test_first_step_without_bias_correction():
    # v_1 = (1 - alpha) g^2, so the first step is eta * g / (sqrt(1 - alpha) |g|): larger than eta.
    p = torch.zeros(2, requires_grad=True)
    opt = RMSprop([p], lr=0.01, alpha=0.99, eps=0.0)
    p.grad = torch.tensor([3.0, -0.2])
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([-0.1, 0.1]))
