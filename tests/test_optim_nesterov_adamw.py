"""optlib.NesterovAdamW: the three equations of the course, and AdamW/Adam when its switches are off."""

import math

import numpy as np
import pytest
import torch
from optim_harness import (
    DTYPES,
    PATHS,
    assert_foreach_matches_single,
    assert_matches_torch,
    assert_state_dict_roundtrip,
    make_params,
    run,
    set_grads,
)

from optlib.optim import NesterovAdamW

torch.set_num_threads(1)

LOOK_AHEAD_OPTIONS = {
    "default": {},
    "lr": {"lr": 3e-2},
    "betas": {"betas": (0.5, 0.9)},
    "eps": {"eps": 1e-2},
    "weight_decay": {"weight_decay": 0.3},
    "no weight_decay": {"weight_decay": 0.0},
    "maximize": {"maximize": True},
    "betas+weight_decay+maximize": {"betas": (0.8, 0.95), "weight_decay": 0.2, "maximize": True, "lr": 1e-2},
}
GROUPS = [
    {"lr": 1e-2, "betas": (0.8, 0.99), "weight_decay": 0.05},
    {"lr": 1e-3, "nesterov": False, "eps": 1e-6},
    {"lr": 5e-3, "weight_decay": 0.0, "maximize": True},
]


def reference_trajectory(steps, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, maximize=False, groups=None):
    """The course's three equations in float64 NumPy, fed the harness's gradients.

    torch only supplies the gradients (set_grads needs tensors); every update is
    written here from the equations, independent of optlib.
    """
    tensors = make_params(torch.float64)
    thetas = [t.detach().numpy().copy() for t in tensors]
    overrides = [{}] if not groups else groups
    hyper = {
        i: {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "maximize": maximize,
            "nesterov": True,
            **overrides[i % len(overrides)],
        }
        for i in range(len(tensors))
    }
    m = [np.zeros_like(x) for x in thetas]
    v = [np.zeros_like(x) for x in thetas]
    t = [0] * len(thetas)
    for step in range(steps):
        set_grads(tensors, step)
        for i, p in enumerate(tensors):
            if p.grad is None:
                continue
            h = hyper[i]
            eta, lam, (b1, b2) = h["lr"], h["weight_decay"], h["betas"]
            g = p.grad.numpy() * (-1.0 if h["maximize"] else 1.0)
            t[i] += 1
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g**2
            m_bar = b1 * m[i] + (1 - b1) * g if h["nesterov"] else m[i]
            m_hat = m_bar / (1 - b1 ** t[i])
            v_hat = v[i] / (1 - b2 ** t[i])
            thetas[i] = thetas[i] - eta * lam * thetas[i] - eta * m_hat / (np.sqrt(v_hat) + h["eps"])
            with torch.no_grad():
                p.copy_(torch.from_numpy(np.asarray(thetas[i])))
    return thetas, m, v


@PATHS
@pytest.mark.parametrize("kwargs", LOOK_AHEAD_OPTIONS.values(), ids=LOOK_AHEAD_OPTIONS.keys())
def test_matches_the_course_equations(kwargs, foreach):
    expected, m, v = reference_trajectory(300, **kwargs)
    params, opt, _ = run(NesterovAdamW, {**kwargs, "foreach": foreach}, 300, dtype=torch.float64)
    for i, (p, e) in enumerate(zip(params, expected)):
        np.testing.assert_allclose(p.detach().numpy(), e, rtol=1e-10, atol=1e-12)
        if p in opt.state:
            np.testing.assert_allclose(opt.state[p]["exp_avg"].numpy(), m[i], rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(opt.state[p]["exp_avg_sq"].numpy(), v[i], rtol=1e-10, atol=1e-12)


@PATHS
def test_param_groups_match_the_course_equations(foreach):
    expected, _, _ = reference_trajectory(200, groups=GROUPS)
    params, _, _ = run(NesterovAdamW, {"foreach": foreach}, 200, dtype=torch.float64, groups=GROUPS)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p.detach().numpy(), e, rtol=1e-10, atol=1e-12)


def test_look_ahead_changes_the_trajectory():
    with_look_ahead, _, _ = run(NesterovAdamW, {}, 50)
    without, _, _ = run(NesterovAdamW, {"nesterov": False}, 50)
    assert not torch.allclose(with_look_ahead[0], without[0], rtol=1e-4)


WITHOUT_LOOK_AHEAD = {
    "default": {},
    "betas": {"betas": (0.5, 0.9)},
    "weight_decay": {"weight_decay": 0.3},
    "maximize": {"maximize": True},
    "weight_decay+maximize+eps": {"weight_decay": 0.3, "maximize": True, "eps": 1e-3},
}


@PATHS
@DTYPES
@pytest.mark.parametrize("kwargs", WITHOUT_LOOK_AHEAD.values(), ids=WITHOUT_LOOK_AHEAD.keys())
def test_without_look_ahead_is_torch_adamw(kwargs, dtype, foreach):
    assert_matches_torch(
        NesterovAdamW,
        torch.optim.AdamW,
        {**kwargs, "nesterov": False},
        torch_kwargs=kwargs,
        dtype=dtype,
        foreach=foreach,
    )


@PATHS
@DTYPES
@pytest.mark.parametrize("maximize", [False, True], ids=["minimize", "maximize"])
def test_without_look_ahead_or_decay_is_torch_adam(maximize, dtype, foreach):
    kwargs = {"weight_decay": 0.0, "maximize": maximize}
    assert_matches_torch(
        NesterovAdamW,
        torch.optim.Adam,
        {**kwargs, "nesterov": False},
        torch_kwargs=kwargs,
        dtype=dtype,
        foreach=foreach,
    )


@PATHS
def test_schedulers_without_look_ahead_match_torch_adamw(foreach):
    def one_cycle(opt):
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-2, total_steps=500, cycle_momentum=True)

    assert_matches_torch(
        NesterovAdamW, torch.optim.AdamW, {"nesterov": False}, torch_kwargs={}, scheduler=one_cycle, foreach=foreach
    )


@PATHS
def test_cosine_schedule_matches_the_course_equations(foreach):
    # The lr read from the group each step, by a reference that recomputes it from the schedule's formula.
    steps, base_lr, t_max = 120, 1e-2, 60
    params = make_params(torch.float64)
    opt = NesterovAdamW(params, lr=base_lr, foreach=foreach)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max)
    reference = make_params(torch.float64)
    m = [torch.zeros_like(p) for p in reference]
    v = [torch.zeros_like(p) for p in reference]
    counts = [0] * len(reference)
    for step in range(steps):
        eta = base_lr * (1 + math.cos(math.pi * step / t_max)) / 2
        set_grads(params, step)
        set_grads(reference, step)
        opt.step()
        sched.step()
        with torch.no_grad():
            for i, p in enumerate(reference):
                if p.grad is None:
                    continue
                counts[i] += 1
                g = p.grad
                m[i] = 0.9 * m[i] + 0.1 * g
                v[i] = 0.999 * v[i] + 0.001 * g * g
                m_hat = (0.9 * m[i] + 0.1 * g) / (1 - 0.9 ** counts[i])
                v_hat = v[i] / (1 - 0.999 ** counts[i])
                p.copy_(p - eta * 1e-2 * p - eta * m_hat / (v_hat.sqrt() + 1e-8))
    for p, r in zip(params, reference):
        torch.testing.assert_close(p, r, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kwargs", LOOK_AHEAD_OPTIONS.values(), ids=LOOK_AHEAD_OPTIONS.keys())
def test_foreach_matches_single(kwargs, dtype):
    assert_foreach_matches_single(NesterovAdamW, kwargs, dtype=dtype)


def test_foreach_matches_single_with_groups():
    assert_foreach_matches_single(NesterovAdamW, {}, groups=GROUPS)


@pytest.mark.parametrize("via_bytes", [False, True], ids=["deepcopy", "torch.save"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_state_dict_roundtrip(dtype, via_bytes):
    assert_state_dict_roundtrip(NesterovAdamW, {"weight_decay": 0.1}, dtype=dtype, via_bytes=via_bytes)
    assert_state_dict_roundtrip(NesterovAdamW, {}, groups=GROUPS, dtype=dtype, via_bytes=via_bytes)


def test_old_state_dict_gets_defaults():
    _, opt, _ = run(NesterovAdamW, {}, 5)
    saved = opt.state_dict()
    for group in saved["param_groups"]:
        del group["foreach"], group["maximize"], group["nesterov"]
    for state in saved["state"].values():
        state["step"] = float(state["step"])
    fresh = NesterovAdamW(make_params())
    fresh.load_state_dict(saved)
    group = fresh.param_groups[0]
    assert group["foreach"] is None and group["maximize"] is False and group["nesterov"] is True
    assert all(torch.is_tensor(s["step"]) for s in fresh.state.values())
