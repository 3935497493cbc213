"""What every optlib optimizer promises, checked across all seven at once.

Bad arguments raise a ValueError that names the argument; an empty parameter
list is refused; parameters without a gradient are left alone; parameter groups
keep their own hyperparameters; every lr scheduler drives the learning rate; the
two update paths agree and a saved state resumes exactly, with several groups.
"""

import math

import pytest
import torch
from optim_harness import (
    NO_GRAD_PARAM,
    PATHS,
    assert_foreach_matches_single,
    assert_matches_torch,
    assert_state_dict_roundtrip,
    make_params,
    param_groups,
    run,
)

import optlib

torch.set_num_threads(1)

NAMES = ["SGD", "GradientDescent", "Adagrad", "RMSprop", "Adam", "AdamW", "NAdam", "NesterovAdamW"]
CLASSES = pytest.mark.parametrize("name", NAMES)

# A setting per optimizer that makes every part of its update do something.
ACTIVE = {
    "SGD": dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    "GradientDescent": dict(lr=0.05, momentum=0.5),
    "Adagrad": dict(lr=0.05, lr_decay=0.01, weight_decay=0.01),
    "RMSprop": dict(lr=0.005, momentum=0.5, centered=True, weight_decay=0.01),
    "Adam": dict(lr=0.01, weight_decay=0.01, amsgrad=True),
    "AdamW": dict(lr=0.01, weight_decay=0.1),
    "NAdam": dict(lr=0.01, weight_decay=0.01),
    "NesterovAdamW": dict(lr=0.01, weight_decay=0.1),
}
TORCH_TWIN = {
    "SGD": "SGD",
    "GradientDescent": "SGD",
    "Adagrad": "Adagrad",
    "RMSprop": "RMSprop",
    "Adam": "Adam",
    "AdamW": "AdamW",
    "NAdam": "NAdam",
}

NAN, INF = float("nan"), float("inf")
LR_CASES = [(dict(lr=-0.1), "lr"), (dict(lr=NAN), "lr"), (dict(lr=INF), "lr"), (dict(lr="fast"), "lr")]
BETAS_CASES = [
    (dict(betas=(1.0, 0.999)), r"betas\[0\]"),
    (dict(betas=(-0.1, 0.999)), r"betas\[0\]"),
    (dict(betas=(0.9, 1.0)), r"betas\[1\]"),
    (dict(betas=(0.9, NAN)), r"betas\[1\]"),
    (dict(betas=0.9), "betas"),
]
NEG = -1e-3
# Values near the defaults of the Adam family, and the malformed betas each class was first tested with.
ADAM_FAMILY_CASES = [
    (dict(lr=-1e-3), "lr"),
    (dict(eps=-1e-8), "eps"),
    (dict(weight_decay=-0.1), "weight_decay"),
    (dict(betas=(0.9, -0.1)), r"betas\[1\]"),
    (dict(betas=(0.9,)), "betas"),
]
BAD_ARGUMENTS = {
    "SGD": LR_CASES
    + [
        (dict(momentum=-0.1), "momentum"),
        (dict(momentum=1.0), "momentum"),
        (dict(momentum=NAN), "momentum"),
        (dict(dampening=-0.1), "dampening"),
        (dict(dampening=1.5), "dampening"),
        (dict(weight_decay=NEG), "weight_decay"),
        (dict(weight_decay=INF), "weight_decay"),
        (dict(nesterov=True), "nesterov"),
        (dict(nesterov=True, momentum=0.9, dampening=0.1), "nesterov"),
        (dict(differentiable=True), "differentiable"),
    ],
    "Adagrad": LR_CASES
    + [
        (dict(lr_decay=NEG), "lr_decay"),
        (dict(weight_decay=NEG), "weight_decay"),
        (dict(initial_accumulator_value=NEG), "initial_accumulator_value"),
        (dict(eps=NEG), "eps"),
        (dict(eps=NAN), "eps"),
        (dict(differentiable=True), "differentiable"),
    ],
    "RMSprop": LR_CASES
    + [
        (dict(alpha=-0.1), "alpha"),
        (dict(alpha=1.0), "alpha"),
        (dict(eps=NEG), "eps"),
        (dict(weight_decay=NEG), "weight_decay"),
        (dict(momentum=-0.1), "momentum"),
        (dict(momentum=1.0), "momentum"),
        (dict(capturable=True), "capturable"),
        (dict(differentiable=True), "differentiable"),
    ],
    "Adam": LR_CASES
    + BETAS_CASES
    + ADAM_FAMILY_CASES
    + [
        (dict(eps=NEG), "eps"),
        (dict(weight_decay=NEG), "weight_decay"),
        (dict(capturable=True), "capturable"),
        (dict(differentiable=True), "differentiable"),
    ],
    "NAdam": LR_CASES
    + BETAS_CASES
    + ADAM_FAMILY_CASES
    + [
        (dict(eps=NEG), "eps"),
        (dict(weight_decay=NEG), "weight_decay"),
        (dict(momentum_decay=NEG), "momentum_decay"),
        (dict(momentum_decay=-4e-3), "momentum_decay"),
        (dict(momentum_decay=NAN), "momentum_decay"),
        (dict(betas=(0.9, -0.5)), r"betas\[1\]"),
        (dict(capturable=True), "capturable"),
        (dict(differentiable=True), "differentiable"),
    ],
    "NesterovAdamW": LR_CASES
    + BETAS_CASES
    + ADAM_FAMILY_CASES
    + [
        (dict(eps=NEG), "eps"),
        (dict(weight_decay=NEG), "weight_decay"),
    ],
}
BAD_ARGUMENTS["GradientDescent"] = BAD_ARGUMENTS["SGD"]
BAD_ARGUMENTS["AdamW"] = BAD_ARGUMENTS["Adam"] + [
    (dict(betas=(0.9, 1.5)), r"betas\[1\]"),
    (dict(weight_decay=INF), "weight_decay"),
]


def _bad_cases():
    seen = set()
    for name, cases in BAD_ARGUMENTS.items():
        for kwargs, argument in cases:
            case_id = f"{name}-{'-'.join(f'{k}={v!r}' for k, v in kwargs.items())}"
            if case_id not in seen:  # a case listed twice (e.g. lr=nan) runs once
                seen.add(case_id)
                yield pytest.param(name, kwargs, argument, id=case_id)


BAD_CASES = list(_bad_cases())


@pytest.mark.parametrize("name,kwargs,argument", BAD_CASES)
def test_bad_argument_raises_value_error_naming_it(name, kwargs, argument):
    with pytest.raises(ValueError, match=rf"(?<![\w.]){argument}(?!\w)"):
        getattr(optlib, name)(make_params(), **kwargs)


@CLASSES
def test_error_message_gives_the_allowed_range(name):
    with pytest.raises(ValueError, match=r">= 0"):
        getattr(optlib, name)(make_params(), lr=-1.0)


@CLASSES
@pytest.mark.parametrize("empty", [[], (), iter([])], ids=["list", "tuple", "generator"])
def test_empty_params_are_refused(name, empty):
    with pytest.raises(ValueError, match="params"):
        getattr(optlib, name)(empty)


@CLASSES
def test_is_a_torch_optimizer(name):
    cls = getattr(optlib, name)
    assert issubclass(cls, torch.optim.Optimizer)
    assert "NaN" in cls.__doc__, "the docstring must say what a non-finite gradient does"


@CLASSES
@PATHS
def test_params_without_grad_are_untouched(name, foreach):
    params = make_params()
    before = [p.detach().clone() for p in params]
    opt = getattr(optlib, name)(params, foreach=foreach, **ACTIVE[name])
    opt.step()  # no parameter has a gradient yet
    for p, b in zip(params, before):
        assert torch.equal(p, b)
    _, opt, _ = run(None, steps=20, params=params, optimizer=opt)
    assert torch.equal(params[NO_GRAD_PARAM], before[NO_GRAD_PARAM])
    assert not torch.equal(params[0], before[0])


@CLASSES
@PATHS
def test_each_group_uses_its_own_hyperparameters(name, foreach):
    # Group 1 has lr=0: with L2 or decoupled decay alike, nothing may move there.
    params = make_params()
    before = [p.detach().clone() for p in params]
    groups = param_groups(params, [dict(), dict(lr=0.0)])
    opt = getattr(optlib, name)(groups, foreach=foreach, **ACTIVE[name])
    run(None, steps=10, params=params, optimizer=opt)
    for i, (p, b) in enumerate(zip(params, before)):
        if i % 2 == 1:
            assert torch.equal(p, b), f"param {i} in the lr=0 group moved"
    assert not torch.equal(params[0], before[0])


@CLASSES
def test_foreach_matches_single_tensor_with_groups(name):
    groups = [dict(), dict(lr=ACTIVE[name].get("lr", 0.01) / 3, weight_decay=0.0)]
    assert_foreach_matches_single(getattr(optlib, name), ACTIVE[name], steps=30, groups=groups)


@CLASSES
def test_state_dict_roundtrip_with_groups(name):
    groups = [dict(), dict(lr=ACTIVE[name].get("lr", 0.01) / 3)]
    assert_state_dict_roundtrip(getattr(optlib, name), ACTIVE[name], steps=20, groups=groups, via_bytes=True)


# (setting, keyword arguments, gradient, the state entry the non-finite value must reach too)
NON_FINITE = {name: [("active", ACTIVE[name], [1.0, NAN, 1.0], None)] for name in NAMES}
NON_FINITE["SGD"].append(("momentum", dict(lr=0.1, momentum=0.9), [1.0, NAN, 1.0], None))
NON_FINITE["Adagrad"].append(("plain", dict(lr=0.1), [1.0, NAN, 1.0], "sum"))
NON_FINITE["RMSprop"].append(("plain", dict(lr=0.1), [1.0, NAN, 1.0], "square_avg"))
NON_FINITE["Adam"].append(("default", dict(), [1.0, NAN, 1.0], None))
NON_FINITE["AdamW"].append(("default_inf", dict(), [INF, 1.0], None))
NON_FINITE["NAdam"].append(("default", dict(), [NAN, 1.0], None))
NON_FINITE["NesterovAdamW"].append(("default", dict(), [NAN, 1.0], None))
NON_FINITE_CASES = [
    pytest.param(name, kwargs, grad, key, id=f"{name}-{setting}")
    for name, cases in NON_FINITE.items()
    for setting, kwargs, grad, key in cases
]


@PATHS
@pytest.mark.parametrize("name,kwargs,grad,state_key", NON_FINITE_CASES)
def test_non_finite_gradient_is_not_skipped(name, kwargs, grad, state_key, foreach):
    p = torch.ones(len(grad), requires_grad=True)
    opt = getattr(optlib, name)([p], foreach=foreach, **kwargs)
    p.grad = torch.tensor(grad)
    opt.step()
    for i, g in enumerate(grad):
        if math.isfinite(g):
            assert math.isfinite(p[i].item()), f"coordinate {i} with a finite gradient became {p[i].item()}"
        else:
            assert not math.isfinite(p[i].item())
            if math.isnan(g):
                assert math.isnan(p[i].item())
            if state_key is not None:
                assert math.isnan(opt.state[p][state_key][i].item())


def _has_momentum_or_betas(optimizer) -> bool:
    group = optimizer.param_groups[0]
    return "betas" in group or group.get("momentum", 0) > 0


SCHEDULERS = {
    "LambdaLR": lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + 0.1 * s)),
    "MultiplicativeLR": lambda opt: torch.optim.lr_scheduler.MultiplicativeLR(opt, lambda s: 0.98),
    "StepLR": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.5),
    "MultiStepLR": lambda opt: torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[10, 25], gamma=0.3),
    "ConstantLR": lambda opt: torch.optim.lr_scheduler.ConstantLR(opt, factor=0.5, total_iters=10),
    "LinearLR": lambda opt: torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.2, total_iters=20),
    "ExponentialLR": lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.95),
    "PolynomialLR": lambda opt: torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=30, power=2.0),
    "CosineAnnealingLR": lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20),
    "CosineAnnealingWarmRestarts": lambda opt: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=8),
    "CyclicLR": lambda opt: torch.optim.lr_scheduler.CyclicLR(
        opt, base_lr=0.001, max_lr=0.02, step_size_up=5, cycle_momentum=_has_momentum_or_betas(opt)
    ),
    "OneCycleLR": lambda opt: torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=0.02, total_steps=40, cycle_momentum=_has_momentum_or_betas(opt)
    ),
    "SequentialLR": lambda opt: torch.optim.lr_scheduler.SequentialLR(
        opt,
        [
            torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=5),
            torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9),
        ],
        milestones=[5],
    ),
}


@pytest.mark.parametrize("scheduler", list(SCHEDULERS.values()), ids=list(SCHEDULERS))
@pytest.mark.parametrize("name", [n for n in NAMES if n in TORCH_TWIN])
def test_every_lr_scheduler_drives_it_as_it_drives_torch(name, scheduler):
    kwargs = dict(ACTIVE[name])
    if name == "RMSprop":  # CyclicLR needs the momentum entry present when cycling it
        kwargs["momentum"] = 0.5
    assert_matches_torch(
        getattr(optlib, name),
        getattr(torch.optim, TORCH_TWIN[name]),
        kwargs,
        steps=40,
        foreach=True,
        torch_foreach=False,
        scheduler=scheduler,
    )


@PATHS
def test_scheduler_that_zeroes_lr_freezes_nesterov_adamw(foreach):
    params = make_params()
    opt = optlib.NesterovAdamW(params, foreach=foreach, **ACTIVE["NesterovAdamW"])
    run(None, steps=5, params=params, optimizer=opt)
    frozen = [p.detach().clone() for p in params]
    zero = lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda s: 0.0)  # noqa: E731
    run(None, steps=5, params=params, optimizer=opt, scheduler=zero, first_step=5)
    for p, f in zip(params, frozen):
        assert torch.equal(p, f)


def test_reduce_lr_on_plateau_lowers_the_lr_the_optimizer_reads():
    params = make_params()
    opt = optlib.RMSprop(params, lr=0.01)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.1)
    plateau.step(1.0)
    plateau.step(1.0)  # no improvement: lr 0.01 -> 0.001
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)
    run(None, steps=3, params=params, optimizer=opt)
