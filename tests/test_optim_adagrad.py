"""optlib.Adagrad against torch.optim.Adagrad: trajectory, both paths, state_dict, schedulers, sparse gradients."""

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
    param_groups,
    run,
)

from optlib.optim import Adagrad

torch.set_num_threads(1)


# eps is large in some options so that moving it (inside/outside the root) is visible.
OPTIONS = {
    "plain": dict(lr=0.1),
    "default_lr": dict(),
    "lr_decay": dict(lr=0.1, lr_decay=0.05),
    "weight_decay": dict(lr=0.1, weight_decay=0.1),
    "initial_accumulator_value": dict(lr=0.1, initial_accumulator_value=0.5),
    "eps": dict(lr=0.1, eps=0.3),
    "maximize": dict(lr=0.01, maximize=True),
    "lr_decay_weight_decay": dict(lr=0.1, lr_decay=0.01, weight_decay=0.05),
    "all": dict(lr=0.05, lr_decay=0.02, weight_decay=0.05, initial_accumulator_value=0.2, eps=0.1, maximize=True),
}


@DTYPES
@PATHS
@pytest.mark.parametrize("kwargs", list(OPTIONS.values()), ids=list(OPTIONS))
def test_matches_torch(kwargs, foreach, dtype):
    assert_matches_torch(Adagrad, torch.optim.Adagrad, kwargs, dtype=dtype, foreach=foreach)


@PATHS
def test_matches_torch_when_paths_cross(foreach):
    assert_matches_torch(Adagrad, torch.optim.Adagrad, OPTIONS["all"], foreach=foreach, torch_foreach=not foreach)


# Not initial_accumulator_value: torch.optim reads it from the constructor only (see the next test).
GROUPS = [dict(lr=0.1, lr_decay=0.05), dict(lr=0.02, weight_decay=0.1, eps=0.2), dict(lr=0.05, maximize=True)]


@PATHS
def test_param_groups_with_different_hyperparameters_match_torch(foreach):
    assert_matches_torch(Adagrad, torch.optim.Adagrad, dict(lr=0.03), groups=GROUPS, foreach=foreach)


def test_group_initial_accumulator_value_is_honoured():
    params = make_params()
    opt = Adagrad(param_groups(params, [dict(initial_accumulator_value=0.5), dict()]), initial_accumulator_value=2.0)
    assert torch.all(opt.state[params[0]]["sum"] == 0.5)
    assert torch.all(opt.state[params[1]]["sum"] == 2.0)


@PATHS
def test_tensor_lr_matches_torch(foreach):
    assert_matches_torch(Adagrad, torch.optim.Adagrad, dict(lr=torch.tensor(0.1), lr_decay=0.01), foreach=foreach)


SCHEDULERS = {
    "StepLR": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.5),
    "CosineAnnealingLR": lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100),
    # Adagrad has no momentum or betas for OneCycleLR to cycle.
    "OneCycleLR": lambda opt: torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=0.2, total_steps=200, cycle_momentum=False
    ),
}


@PATHS
@pytest.mark.parametrize("scheduler", list(SCHEDULERS.values()), ids=list(SCHEDULERS))
def test_lr_schedulers_match_torch(scheduler, foreach):
    assert_matches_torch(
        Adagrad, torch.optim.Adagrad, dict(lr=0.1, lr_decay=0.01), steps=200, foreach=foreach, scheduler=scheduler
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kwargs", [OPTIONS["plain"], OPTIONS["all"]], ids=["plain", "all"])
def test_foreach_matches_single_tensor(kwargs, dtype):
    assert_foreach_matches_single(Adagrad, kwargs, dtype=dtype)


def test_foreach_matches_single_tensor_with_param_groups():
    assert_foreach_matches_single(Adagrad, dict(lr=0.03), groups=GROUPS)


@pytest.mark.parametrize("via_bytes", [False, True], ids=["deepcopy", "torch.save"])
@pytest.mark.parametrize("kwargs", [OPTIONS["plain"], OPTIONS["all"]], ids=["plain", "all"])
def test_state_dict_roundtrip_is_bit_identical(kwargs, via_bytes):
    assert_state_dict_roundtrip(Adagrad, kwargs, via_bytes=via_bytes)


def test_state_dict_roundtrip_with_param_groups():
    assert_state_dict_roundtrip(Adagrad, dict(lr=0.03), groups=GROUPS, via_bytes=True)


def test_state_dict_interchangeable_with_torch():
    assert_state_dict_interop(Adagrad, torch.optim.Adagrad, OPTIONS["all"])


def test_state_exists_before_the_first_step_as_in_torch():
    ours = Adagrad(make_params(), initial_accumulator_value=0.1).state_dict()
    theirs = torch.optim.Adagrad(make_params(), initial_accumulator_value=0.1).state_dict()
    assert ours["param_groups"] == theirs["param_groups"]
    for i, state in theirs["state"].items():
        assert set(ours["state"][i]) == set(state)
        for key, value in state.items():
            assert torch.equal(ours["state"][i][key], value) and ours["state"][i][key].dtype == value.dtype


def test_old_state_dict_with_number_step_and_missing_options():
    params, opt, _ = run(Adagrad, dict(lr=0.1), 10)
    saved = opt.state_dict()
    for state in saved["state"].values():
        state["step"] = float(state["step"])
    for group in saved["param_groups"]:
        for key in ("foreach", "maximize", "differentiable", "fused"):
            del group[key]
    fresh_params = make_params()
    fresh = Adagrad(fresh_params, lr=0.1)
    fresh.load_state_dict(saved)
    assert fresh.param_groups[0]["foreach"] is None and fresh.param_groups[0]["maximize"] is False
    step = fresh.state[fresh_params[0]]["step"]
    assert torch.is_tensor(step) and step.dtype == torch.float32 and step.item() == 10.0


@PATHS
def test_params_without_grad_keep_their_step_count(foreach):
    params, opt, _ = run(Adagrad, dict(lr=0.1, foreach=foreach), 9)
    assert opt.state[params[6]]["step"].item() == 0  # "frozen": never had a gradient
    assert opt.state[params[7]]["step"].item() == 6  # "intermittent": no gradient on every third step
    assert opt.state[params[0]]["step"].item() == 9


def test_param_added_later_gets_state():
    first, later = torch.ones(2, requires_grad=True), torch.ones(3, requires_grad=True)
    opt = Adagrad([first], lr=0.1, initial_accumulator_value=0.25)
    opt.add_param_group({"params": [later]})
    later.grad = torch.ones(3)
    opt.step()
    assert opt.state[later]["step"].item() == 1
    torch.testing.assert_close(opt.state[later]["sum"], torch.full((3,), 1.25))


def _sparse_run(cls, foreach, **kwargs):
    torch.manual_seed(0)
    emb = torch.nn.Embedding(20, 4, sparse=True)
    dense = torch.nn.Parameter(torch.randn(4))
    opt = cls([emb.weight, dense], foreach=foreach, **kwargs)
    for t in range(40):
        idx = torch.randint(0, 20, (6,), generator=torch.Generator().manual_seed(t))  # repeated rows included
        opt.zero_grad()
        ((emb(idx) * dense).sum() ** 2 * 1e-2).backward()
        assert emb.weight.grad.is_sparse
        opt.step()
    return emb.weight.detach(), dense.detach(), opt.state[emb.weight]["sum"]


@pytest.mark.filterwarnings("ignore:Sparse invariant checks")  # raised inside torch.optim.Adagrad
@PATHS
@pytest.mark.parametrize(
    "kwargs", [dict(lr=0.1), dict(lr=0.1, lr_decay=0.1, maximize=True)], ids=["plain", "decay_max"]
)
def test_sparse_gradients_match_torch(kwargs, foreach):
    ours = _sparse_run(Adagrad, foreach, **kwargs)
    theirs = _sparse_run(torch.optim.Adagrad, foreach, **kwargs)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_sparse_gradients_with_weight_decay_are_refused():
    # RuntimeError, as torch.optim.Adagrad raises for the same input.
    with pytest.raises(RuntimeError):
        _sparse_run(torch.optim.Adagrad, False, lr=0.1, weight_decay=0.1)
    with pytest.raises(RuntimeError, match="weight_decay"):
        _sparse_run(Adagrad, False, lr=0.1, weight_decay=0.1)


@PATHS
def test_complex_parameters_match_torch(foreach):
    results = []
    for cls in (Adagrad, torch.optim.Adagrad):
        z = torch.tensor([1 + 2j, -0.5j, 3.0], dtype=torch.complex64, requires_grad=True)
        opt = cls([z], lr=0.1, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1, foreach=foreach)
        for _ in range(20):
            opt.zero_grad()
            (z.abs() ** 2 + z.real).sum().backward()
            opt.step()
        results.append((z.detach(), opt.state[z]["sum"]))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)


def test_first_step_is_sign_times_lr():
    # v_1 = g^2, so theta_1 = theta_0 - eta * g / (|g| + eps): a step of eta in every coordinate.
    p = torch.zeros(3, requires_grad=True)
    opt = Adagrad([p], lr=0.5, eps=0.0)
    p.grad = torch.tensor([4.0, -0.01, 1e3])
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([-0.5, 0.5, -0.5]))
