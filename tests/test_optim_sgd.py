"""optlib.SGD against torch.optim.SGD: trajectory, both paths, state_dict, schedulers, sparse gradients."""

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

import optlib.optim.sgd as sgd_module
from optlib.optim import SGD, GradientDescent

torch.set_num_threads(1)


# One option at a time, then the combinations that interact (weight decay feeds the
# momentum buffer, maximize flips what both see, nesterov reads the buffer back).
OPTIONS = {
    "plain": dict(lr=0.05),
    "default_lr": dict(),
    "momentum": dict(lr=0.05, momentum=0.9),
    "dampening": dict(lr=0.05, momentum=0.9, dampening=0.3),
    "nesterov": dict(lr=0.05, momentum=0.9, nesterov=True),
    "weight_decay": dict(lr=0.05, weight_decay=0.1),
    "maximize": dict(lr=0.01, maximize=True),
    "momentum_weight_decay": dict(lr=0.05, momentum=0.8, weight_decay=0.1),
    "nesterov_weight_decay_maximize": dict(lr=0.01, momentum=0.7, nesterov=True, weight_decay=0.05, maximize=True),
    "all_but_nesterov": dict(lr=0.02, momentum=0.6, dampening=0.5, weight_decay=0.02, maximize=True),
}


@DTYPES
@PATHS
@pytest.mark.parametrize("kwargs", list(OPTIONS.values()), ids=list(OPTIONS))
def test_matches_torch(kwargs, foreach, dtype):
    assert_matches_torch(SGD, torch.optim.SGD, kwargs, dtype=dtype, foreach=foreach)


@PATHS
def test_matches_torch_loop_when_paths_cross(foreach):
    # optlib's foreach path against torch's loop (and the other way): both follow the same maths.
    assert_matches_torch(
        SGD, torch.optim.SGD, OPTIONS["nesterov_weight_decay_maximize"], foreach=foreach, torch_foreach=not foreach
    )


GROUPS = [
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.01, momentum=0.5, dampening=0.2, weight_decay=0.1),
    dict(lr=0.02),
]


@PATHS
def test_param_groups_with_different_hyperparameters_match_torch(foreach):
    assert_matches_torch(SGD, torch.optim.SGD, dict(lr=0.03), groups=GROUPS, foreach=foreach)


@PATHS
def test_tensor_lr_matches_torch(foreach):
    assert_matches_torch(SGD, torch.optim.SGD, dict(lr=torch.tensor(0.05), momentum=0.9), foreach=foreach)


SCHEDULERS = {
    "StepLR": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.5),
    "CosineAnnealingLR": lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100),
    "OneCycleLR_cycle_momentum": lambda opt: torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=0.1, total_steps=200, cycle_momentum=True
    ),
    "LinearLR": lambda opt: torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=50),
}


@PATHS
@pytest.mark.parametrize("scheduler", list(SCHEDULERS.values()), ids=list(SCHEDULERS))
def test_lr_schedulers_match_torch(scheduler, foreach):
    assert_matches_torch(
        SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9), steps=200, foreach=foreach, scheduler=scheduler
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize(
    "kwargs",
    [OPTIONS["plain"], OPTIONS["nesterov_weight_decay_maximize"], OPTIONS["all_but_nesterov"]],
    ids=["plain", "nesterov_all", "dampening_all"],
)
def test_foreach_matches_single_tensor(kwargs, dtype):
    assert_foreach_matches_single(SGD, kwargs, dtype=dtype)


def test_foreach_matches_single_tensor_with_param_groups():
    assert_foreach_matches_single(SGD, dict(lr=0.03), groups=GROUPS)


@pytest.mark.parametrize("via_bytes", [False, True], ids=["deepcopy", "torch.save"])
@pytest.mark.parametrize(
    "kwargs", [OPTIONS["momentum"], OPTIONS["nesterov_weight_decay_maximize"]], ids=["momentum", "nesterov_all"]
)
def test_state_dict_roundtrip_is_bit_identical(kwargs, via_bytes):
    assert_state_dict_roundtrip(SGD, kwargs, via_bytes=via_bytes)


def test_state_dict_roundtrip_with_param_groups():
    assert_state_dict_roundtrip(SGD, dict(lr=0.03), groups=GROUPS, via_bytes=True)


def test_state_dict_interchangeable_with_torch():
    assert_state_dict_interop(SGD, torch.optim.SGD, OPTIONS["nesterov_weight_decay_maximize"])


def test_old_state_dict_without_newer_options_gets_defaults():
    params, opt, _ = run(SGD, dict(lr=0.05, momentum=0.9), 10)
    saved = opt.state_dict()
    for group in saved["param_groups"]:
        for key in ("nesterov", "maximize", "foreach", "differentiable", "fused"):
            del group[key]
    fresh = SGD(make_params(), lr=0.05, momentum=0.9)
    fresh.load_state_dict(saved)
    group = fresh.param_groups[0]
    assert (group["nesterov"], group["maximize"], group["foreach"]) == (False, False, None)
    set_grads(fresh.param_groups[0]["params"], 10)
    fresh.step()


def test_gradient_descent_is_sgd_under_its_full_batch_name():
    params_gd, _, _ = run(GradientDescent, dict(lr=0.05, momentum=0.5), 50)
    params_sgd, _, _ = run(SGD, dict(lr=0.05, momentum=0.5), 50)
    for a, b in zip(params_gd, params_sgd):
        assert torch.equal(a, b)
    assert issubclass(GradientDescent, SGD) and GradientDescent.__doc__ != SGD.__doc__


@PATHS
@pytest.mark.parametrize(
    "kwargs",
    [dict(lr=0.1), dict(lr=0.1, momentum=0.9, nesterov=True), dict(lr=0.1, maximize=True)],
    ids=["plain", "nesterov", "maximize"],
)
def test_sparse_gradients_match_torch(kwargs, foreach):
    results = []
    for cls, path in ((SGD, foreach), (torch.optim.SGD, False)):
        torch.manual_seed(0)
        emb = torch.nn.Embedding(20, 4, sparse=True)
        dense = torch.nn.Parameter(torch.randn(4))
        opt = cls([emb.weight, dense], foreach=path, **kwargs)
        for t in range(30):
            idx = torch.randint(0, 20, (6,), generator=torch.Generator().manual_seed(t))
            opt.zero_grad()
            ((emb(idx) * dense).sum() ** 2 * 1e-2).backward()
            assert emb.weight.grad.is_sparse
            opt.step()
        results.append((emb.weight.detach(), dense.detach()))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "foreach,path",
    [(None, "_sgd_single_tensor"), (False, "_sgd_single_tensor"), (True, "_sgd_multi_tensor")],
    ids=["None", "False", "True"],
)
def test_foreach_chooses_the_path(monkeypatch, foreach, path):
    calls = []
    original = getattr(sgd_module, path)
    # The class dispatches to the module's functions; record each call on the way.
    attribute = "_multi_tensor" if path == "_sgd_multi_tensor" else "_single_tensor"
    assert getattr(SGD, attribute) is original
    monkeypatch.setattr(SGD, attribute, staticmethod(lambda *a, **k: calls.append(path) or original(*a, **k)))
    run(SGD, dict(lr=0.1, foreach=foreach), 2)  # CPU parameters: foreach=None means the loop
    assert calls == [path, path]


@PATHS
def test_momentum_buffer_starts_at_first_gradient_and_skips_missing_grads(foreach):
    p = torch.zeros(3, requires_grad=True)
    q = torch.zeros(2, requires_grad=True)
    opt = SGD([p, q], lr=1.0, momentum=0.5, dampening=0.5, foreach=foreach)
    p.grad = torch.tensor([1.0, 2.0, 3.0])
    opt.step()
    assert q not in opt.state or "momentum_buffer" not in opt.state[q]
    torch.testing.assert_close(opt.state[p]["momentum_buffer"], torch.tensor([1.0, 2.0, 3.0]))
    p.grad = torch.tensor([1.0, 1.0, 1.0])
    opt.step()
    # b = 0.5 * b + (1 - 0.5) * g: dampening applies from the second step on.
    torch.testing.assert_close(opt.state[p]["momentum_buffer"], torch.tensor([1.0, 1.5, 2.0]))
    torch.testing.assert_close(p.detach(), -torch.tensor([2.0, 3.5, 5.0]))


def test_closure_result_is_returned():
    w = torch.ones(2, requires_grad=True)
    opt = SGD([w], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(2.0)
    torch.testing.assert_close(w.detach(), torch.full((2,), 0.8))


@PATHS
def test_complex_parameters_match_torch(foreach):
    results = []
    for cls in (SGD, torch.optim.SGD):
        z = torch.tensor([1 + 2j, -0.5j, 3.0], dtype=torch.complex64, requires_grad=True)
        opt = cls([z], lr=0.1, momentum=0.9, weight_decay=0.01, foreach=foreach)
        for _ in range(20):
            opt.zero_grad()
            (z.abs() ** 2).sum().backward()
            opt.step()
        results.append(z.detach())
    torch.testing.assert_close(*results)
