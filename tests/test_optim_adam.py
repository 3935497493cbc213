"""optlib.Adam against torch.optim.Adam, and its two paths against each other."""

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
    set_grads,
)

import optlib.optim.adam as adam_module
from optlib.optim import Adam

torch.set_num_threads(1)

OPTIONS = {
    "default": {},
    "lr": {"lr": 3e-2},
    "betas": {"betas": (0.5, 0.9)},
    "eps": {"eps": 1e-2},
    "weight_decay": {"weight_decay": 0.1},
    "amsgrad": {"amsgrad": True},
    "maximize": {"maximize": True},
    "decoupled": {"weight_decay": 0.1, "decoupled_weight_decay": True},
    "amsgrad+weight_decay+maximize": {"amsgrad": True, "weight_decay": 0.1, "maximize": True},
    "decoupled+amsgrad+maximize": {
        "weight_decay": 0.1,
        "decoupled_weight_decay": True,
        "amsgrad": True,
        "maximize": True,
    },
}
GROUPS = [
    {"lr": 1e-2, "betas": (0.8, 0.99), "weight_decay": 0.05},
    {"lr": 1e-3, "amsgrad": True, "eps": 1e-6},
    {"lr": 5e-3, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True},
]


@PATHS
@DTYPES
@pytest.mark.parametrize("kwargs", OPTIONS.values(), ids=OPTIONS.keys())
def test_matches_torch(kwargs, dtype, foreach):
    assert_matches_torch(Adam, torch.optim.Adam, kwargs, dtype=dtype, foreach=foreach)


@PATHS
def test_param_groups_match_torch(foreach):
    assert_matches_torch(Adam, torch.optim.Adam, {}, groups=GROUPS, foreach=foreach)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kwargs", OPTIONS.values(), ids=OPTIONS.keys())
def test_foreach_matches_single(kwargs, dtype):
    assert_foreach_matches_single(Adam, kwargs, dtype=dtype)


def test_foreach_matches_single_with_groups():
    assert_foreach_matches_single(Adam, {}, groups=GROUPS)


@pytest.mark.parametrize("via_bytes", [False, True], ids=["deepcopy", "torch.save"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_state_dict_roundtrip(dtype, via_bytes):
    assert_state_dict_roundtrip(Adam, {"amsgrad": True, "weight_decay": 0.1}, dtype=dtype, via_bytes=via_bytes)
    assert_state_dict_roundtrip(Adam, {}, groups=GROUPS, dtype=dtype, via_bytes=via_bytes)


def test_state_dict_interoperates_with_torch():
    assert_state_dict_interop(Adam, torch.optim.Adam, {"amsgrad": True, "weight_decay": 0.1})


def test_old_state_dict_gets_defaults_and_tensor_step():
    params, opt, _ = run(Adam, {"lr": 1e-2}, 5)
    saved = opt.state_dict()
    for group in saved["param_groups"]:
        for key in (
            "foreach",
            "maximize",
            "amsgrad",
            "decoupled_weight_decay",
            "capturable",
            "differentiable",
            "fused",
        ):
            del group[key]
    for state in saved["state"].values():
        state["step"] = float(state["step"])
    fresh = Adam(make_params(), lr=1e-2)
    fresh.load_state_dict(saved)
    group = fresh.param_groups[0]
    assert group["foreach"] is None and group["maximize"] is False and group["amsgrad"] is False
    assert group["decoupled_weight_decay"] is False
    steps = [s["step"] for s in fresh.state.values()]
    assert all(torch.is_tensor(s) and s.dtype == torch.float32 and s.device.type == "cpu" for s in steps)
    assert {s.item() for s in steps} == {5.0, 4.0}  # "intermittent" misses a gradient on step 2


SCHEDULERS = {
    "StepLR": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.5),
    "CosineAnnealingLR": lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100, eta_min=1e-4),
    "OneCycleLR": lambda opt: torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=5e-2, total_steps=500, cycle_momentum=True
    ),
    "ReduceLROnPlateau-free LinearLR": lambda opt: torch.optim.lr_scheduler.LinearLR(
        opt, start_factor=0.1, total_iters=50
    ),
}


@PATHS
@pytest.mark.parametrize("scheduler", SCHEDULERS.values(), ids=SCHEDULERS.keys())
def test_lr_schedulers_match_torch(scheduler, foreach):
    assert_matches_torch(Adam, torch.optim.Adam, {"weight_decay": 0.1}, scheduler=scheduler, foreach=foreach)


def test_one_cycle_moves_beta1():
    _, opt, _ = run(Adam, {}, 100, scheduler=SCHEDULERS["OneCycleLR"])
    assert opt.param_groups[0]["betas"][0] != 0.9


def test_tensor_lr_matches_float_lr():
    expected, _, _ = run(Adam, {"lr": 1e-2}, 50)
    actual, _, _ = run(Adam, {"lr": torch.tensor(1e-2, dtype=torch.float64)}, 50)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e)


@PATHS
def test_complex_params_match_torch(foreach):
    def complex_run(cls):
        g = torch.Generator().manual_seed(0)
        p = torch.randn(4, 3, dtype=torch.complex64, generator=g).requires_grad_()
        opt = cls([p], lr=1e-2, amsgrad=True, weight_decay=0.1, foreach=foreach)
        for _ in range(50):
            p.grad = torch.randn(4, 3, dtype=torch.complex64, generator=g) + p.detach()
            opt.step()
        return p

    torch.testing.assert_close(complex_run(Adam), complex_run(torch.optim.Adam), rtol=1e-5, atol=1e-7)


def test_first_step_moves_each_weight_by_lr():
    # With m and v bias-corrected, step 1 is -lr * g / (|g| + eps): a move of lr against the gradient's sign.
    p = torch.tensor([2.0, -3.0, 0.5], requires_grad=True)
    p.grad = torch.tensor([4.0, -0.25, 1e-3])
    Adam([p], lr=0.1, eps=0.0).step()
    torch.testing.assert_close(p.detach(), torch.tensor([1.9, -2.9, 0.4]))


def test_foreach_none_uses_the_loop_on_cpu(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the foreach path ran for CPU parameters")

    assert Adam._multi_tensor is adam_module._adam_multi_tensor
    monkeypatch.setattr(Adam, "_multi_tensor", staticmethod(fail))
    run(Adam, {}, 2)


def test_params_without_grad_keep_value_and_get_no_state():
    params, opt, _ = run(Adam, {}, 10)
    frozen = make_params()[6]
    assert torch.equal(params[6], frozen)
    assert params[6] not in opt.state


def test_closure_returns_loss():
    p = torch.ones(3, requires_grad=True)
    opt = Adam([p])

    def closure():
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == 3.0
    assert (p < 1).all()


def test_state_dict_in_an_unsupported_mode_is_refused():
    saved = torch.optim.Adam(make_params(), capturable=True).state_dict()
    with pytest.raises(ValueError, match="capturable"):
        Adam(make_params()).load_state_dict(saved)


def test_sparse_gradient_is_refused():
    p = torch.zeros(3, requires_grad=True)
    p.grad = torch.zeros(3).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        Adam([p]).step()


def test_zero_lr_freezes_params_but_counts_steps():
    params, opt, _ = run(Adam, {"lr": 0.0}, 5)
    for p, start in zip(params, make_params()):
        assert torch.equal(p, start)
    assert opt.state[params[0]]["step"].item() == 5.0


def test_set_grads_is_deterministic():
    # The harness's gradients are what every comparison here relies on.
    a, b = make_params(), make_params()
    set_grads(a, 3)
    set_grads(b, 3)
    assert all((x.grad is None and y.grad is None) or torch.equal(x.grad, y.grad) for x, y in zip(a, b))
