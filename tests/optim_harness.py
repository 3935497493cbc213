"""Reusable checks for optlib's optimizers: the same problem, the same gradients, compared.

Every optimizer test builds on four questions, each a function here:

* does it follow torch.optim's trajectory?          ``assert_matches_torch``
* do its two paths (loop and foreach) agree?        ``assert_foreach_matches_single``
* does a saved and reloaded run continue exactly?   ``assert_state_dict_roundtrip``
* does its state load into torch.optim and back?    ``assert_state_dict_interop``

The parameters are deliberately awkward (a 0-dim tensor, a transposed and a
strided non-contiguous tensor, one that never gets a gradient, one whose
gradient is missing on some steps), and the gradient at step ``t`` depends
only on the seed, ``t`` and the current parameters, so two runs that reach the
same parameters see the same gradients.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable, Iterable, Sequence

import pytest
import torch
from torch import Tensor

__all__ = [
    "PATHS",
    "DTYPES",
    "PARAM_NAMES",
    "NO_GRAD_PARAM",
    "SOMETIMES_NO_GRAD_PARAM",
    "tolerance",
    "make_params",
    "param_groups",
    "set_grads",
    "run",
    "assert_params_close",
    "assert_states_close",
    "assert_matches_torch",
    "assert_foreach_matches_single",
    "assert_state_dict_roundtrip",
    "assert_state_dict_interop",
]

# The parametrizations every optimizer's tests share, so test ids read alike ([...-float32-loop]).
PATHS = pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])

# Names of the tensors make_params returns, in order, so failures say which tensor broke.
PARAM_NAMES = (
    "matrix",  # (7, 5)
    "bias",  # (5,)
    "scalar",  # 0-dim
    "transposed",  # (4, 6) view of a (6, 4) tensor: non-contiguous but dense
    "strided",  # (3, 4) every other column of a (3, 8) tensor: non-contiguous, with gaps
    "conv",  # (2, 3, 3, 3)
    "frozen",  # (3,) never gets a gradient
    "intermittent",  # (2, 2) has no gradient on every third step
)
NO_GRAD_PARAM = PARAM_NAMES.index("frozen")
SOMETIMES_NO_GRAD_PARAM = PARAM_NAMES.index("intermittent")


def tolerance(dtype: torch.dtype) -> dict:
    """rtol/atol for comparing with torch.optim: 1e-5 relative in float32, 1e-10 in float64."""
    if dtype == torch.float64:
        return {"rtol": 1e-10, "atol": 1e-12}
    if dtype == torch.float32:
        return {"rtol": 1e-5, "atol": 1e-7}
    if dtype in (torch.bfloat16, torch.float16):
        return {"rtol": 1.6e-2, "atol": 1e-5}
    raise ValueError(f"Invalid dtype: {dtype}; tolerance is defined for float64, float32, bfloat16, float16")


def _random(shape: Sequence[int], generator: torch.Generator, dtype: torch.dtype, device) -> Tensor:
    # Drawn in float64 and then rounded, so float32/float64/bfloat16 runs start from the same numbers.
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float64).to(dtype=dtype, device=device)


def make_params(dtype: torch.dtype = torch.float32, device="cpu", seed: int = 0) -> list[Tensor]:
    """Fresh leaf tensors (requires_grad) with the shapes and layouts listed in PARAM_NAMES.

    Calling it twice with the same arguments gives equal values and equal strides,
    which is how tests get "a fresh copy of the model".
    """
    g = torch.Generator().manual_seed(seed)
    tensors = [
        _random((7, 5), g, dtype, device),
        _random((5,), g, dtype, device),
        _random((), g, dtype, device),
        _random((6, 4), g, dtype, device).t(),
        _random((3, 8), g, dtype, device)[:, ::2],
        _random((2, 3, 3, 3), g, dtype, device),
        _random((3,), g, dtype, device),
        _random((2, 2), g, dtype, device),
    ]
    params = [t.detach().requires_grad_(True) for t in tensors]
    assert not params[PARAM_NAMES.index("transposed")].is_contiguous()
    assert not params[PARAM_NAMES.index("strided")].is_contiguous()
    return params


def param_groups(params: list[Tensor], groups: Sequence[dict] | None = None) -> list:
    """params as given (groups=None), or split round-robin into len(groups) groups with those overrides."""
    if not groups:
        return list(params)
    split = [{"params": [], **overrides} for overrides in groups]
    for i, p in enumerate(params):
        split[i % len(groups)]["params"].append(p)
    return split


def set_grads(params: list[Tensor], step: int, seed: int = 0, noise: float = 0.5) -> None:
    """The gradient of 0.5*||theta||^2 plus seeded noise, fresh for each step.

    The quadratic part makes the gradient depend on where the optimizer has got to,
    so a wrong update changes every later gradient instead of washing out.
    """
    g = torch.Generator().manual_seed(1_000_003 * seed + step)
    for i, p in enumerate(params):
        if i == NO_GRAD_PARAM or (i == SOMETIMES_NO_GRAD_PARAM and step % 3 == 2):
            p.grad = None
            continue
        n = _random(p.shape, g, torch.float64, "cpu") * noise
        p.grad = (p.detach().to(torch.float64).cpu() + n).to(dtype=p.dtype, device=p.device)


def run(
    opt_cls,
    kwargs: dict | None = None,
    steps: int = 100,
    *,
    dtype: torch.dtype = torch.float32,
    device="cpu",
    seed: int = 0,
    groups: Sequence[dict] | None = None,
    scheduler: Callable | None = None,
    params: list[Tensor] | None = None,
    optimizer=None,
    first_step: int = 0,
):
    """Run ``steps`` optimizer steps; return (params, optimizer, scheduler).

    Pass ``params``/``optimizer`` to continue an existing run and ``first_step`` so
    the continuation sees the gradients an uninterrupted run would have seen.
    ``scheduler`` is a function optimizer -> lr scheduler, stepped after every step.
    """
    if params is None:
        params = make_params(dtype, device, seed)
    if optimizer is None:
        optimizer = opt_cls(param_groups(params, groups), **(kwargs or {}))
    sched = scheduler(optimizer) if scheduler is not None else None
    for t in range(first_step, first_step + steps):
        set_grads(params, t, seed)
        optimizer.step()
        if sched is not None:
            sched.step()
    return params, optimizer, sched


def _state_of(optimizer, p: Tensor) -> dict:
    return optimizer.state.get(p, {})


def assert_params_close(actual: Iterable[Tensor], expected: Iterable[Tensor], what: str = "", **tol) -> None:
    for name, a, e in zip(PARAM_NAMES, actual, expected, strict=True):
        torch.testing.assert_close(
            a.detach(), e.detach(), msg=lambda m, name=name: f"{what} param {name!r}: {m}", **tol
        )


def assert_states_close(
    opt_a, params_a: list[Tensor], opt_b, params_b: list[Tensor], what: str = "", exact: bool = False, **tol
) -> None:
    """Same state keys for every parameter, and every state tensor equal (exact) or close (tol)."""
    for name, pa, pb in zip(PARAM_NAMES, params_a, params_b, strict=True):
        sa, sb = _state_of(opt_a, pa), _state_of(opt_b, pb)
        assert set(sa) == set(sb), f"{what} param {name!r}: state keys {sorted(sa)} != {sorted(sb)}"
        for key in sa:
            va, vb = sa[key], sb[key]
            if not isinstance(va, Tensor):
                assert va == vb, f"{what} param {name!r} state {key!r}: {va!r} != {vb!r}"
                continue
            assert isinstance(vb, Tensor), f"{what} param {name!r} state {key!r}: tensor vs {type(vb)}"
            assert va.dtype == vb.dtype and va.device == vb.device, (
                f"{what} param {name!r} state {key!r}: {va.dtype}/{va.device} != {vb.dtype}/{vb.device}"
            )
            if exact:
                assert torch.equal(va, vb), f"{what} param {name!r} state {key!r} differs"
            else:
                torch.testing.assert_close(
                    va, vb, msg=lambda m, name=name, key=key: f"{what} param {name!r} state {key!r}: {m}", **tol
                )


def assert_matches_torch(
    optlib_cls,
    torch_cls,
    kwargs: dict | None = None,
    *,
    steps: int = 500,
    dtype: torch.dtype = torch.float32,
    foreach: bool = False,
    torch_foreach: bool | None = None,
    groups: Sequence[dict] | None = None,
    scheduler: Callable | None = None,
    torch_kwargs: dict | None = None,
    seed: int = 0,
) -> None:
    """optlib (path ``foreach``) and torch.optim (``torch_foreach``, default the same) agree on params and state."""
    kwargs = dict(kwargs or {})
    torch_kwargs = dict(kwargs if torch_kwargs is None else torch_kwargs)
    torch_kwargs["foreach"] = foreach if torch_foreach is None else torch_foreach
    params_o, opt_o, _ = run(
        optlib_cls, {**kwargs, "foreach": foreach}, steps, dtype=dtype, seed=seed, groups=groups, scheduler=scheduler
    )
    params_t, opt_t, _ = run(torch_cls, torch_kwargs, steps, dtype=dtype, seed=seed, groups=groups, scheduler=scheduler)
    tol = tolerance(dtype)
    assert_params_close(params_o, params_t, f"optlib {optlib_cls.__name__}(foreach={foreach}) vs torch:", **tol)
    assert_states_close(opt_o, params_o, opt_t, params_t, f"optlib {optlib_cls.__name__} vs torch:", **tol)


def assert_foreach_matches_single(
    opt_cls,
    kwargs: dict | None = None,
    *,
    steps: int = 100,
    dtype: torch.dtype = torch.float32,
    groups: Sequence[dict] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    path: str = "foreach",
) -> None:
    """The loop and the foreach (or fused) path give the same params and state (dtype-default tolerances)."""
    kwargs = dict(kwargs or {})
    params_s, opt_s, _ = run(opt_cls, {**kwargs, "foreach": False}, steps, dtype=dtype, groups=groups)
    params_f, opt_f, _ = run(opt_cls, {**kwargs, path: True}, steps, dtype=dtype, groups=groups)
    tol = {} if rtol is None else {"rtol": rtol, "atol": atol if atol is not None else 0.0}
    what = f"{opt_cls.__name__} single vs {path} ({dtype}):"
    assert_params_close(params_f, params_s, what, **tol)
    assert_states_close(opt_f, params_f, opt_s, params_s, what, **tol)


def _save_load(state_dict: dict, via_bytes: bool) -> dict:
    if not via_bytes:
        return copy.deepcopy(state_dict)
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _fresh_copy(params: list[Tensor], dtype: torch.dtype, seed: int) -> list[Tensor]:
    fresh = make_params(dtype, params[0].device, seed)
    with torch.no_grad():
        for f, p in zip(fresh, params, strict=True):
            f.copy_(p)
    return fresh


def assert_state_dict_roundtrip(
    opt_cls,
    kwargs: dict | None = None,
    *,
    steps: int = 100,
    dtype: torch.dtype = torch.float32,
    groups: Sequence[dict] | None = None,
    via_bytes: bool = False,
    seed: int = 0,
) -> None:
    """steps, save, load into a fresh optimizer over a fresh model copy, steps more == 2*steps straight (bit for bit)."""
    kwargs = dict(kwargs or {})
    params_ref, opt_ref, _ = run(opt_cls, kwargs, 2 * steps, dtype=dtype, groups=groups, seed=seed)

    params_a, opt_a, _ = run(opt_cls, kwargs, steps, dtype=dtype, groups=groups, seed=seed)
    saved = _save_load(opt_a.state_dict(), via_bytes)
    params_b = _fresh_copy(params_a, dtype, seed)
    opt_b = opt_cls(param_groups(params_b, groups), **kwargs)
    opt_b.load_state_dict(saved)
    for p_a, p_b in zip(params_a, params_b):
        for key, value in _state_of(opt_a, p_a).items():
            restored = _state_of(opt_b, p_b)[key]
            if isinstance(value, Tensor):
                assert restored.dtype == value.dtype and restored.device == value.device, (
                    f"state {key!r} restored as {restored.dtype}/{restored.device}, saved {value.dtype}/{value.device}"
                )
    run(opt_cls, kwargs, steps, dtype=dtype, seed=seed, params=params_b, optimizer=opt_b, first_step=steps)

    what = f"{opt_cls.__name__} resumed (via_bytes={via_bytes}) vs uninterrupted:"
    for name, a, e in zip(PARAM_NAMES, params_b, params_ref):
        assert torch.equal(a, e), f"{what} param {name!r} differs"
    assert_states_close(opt_b, params_b, opt_ref, params_ref, what, exact=True)


def assert_state_dict_interop(
    optlib_cls,
    torch_cls,
    kwargs: dict | None = None,
    *,
    steps: int = 50,
    dtype: torch.dtype = torch.float32,
    groups: Sequence[dict] | None = None,
) -> None:
    """A torch.optim state_dict continues in optlib, and an optlib one in torch.optim, as if never switched."""
    kwargs = dict(kwargs or {})
    params_ref, opt_ref, _ = run(torch_cls, kwargs, 2 * steps, dtype=dtype, groups=groups)
    tol = tolerance(dtype)
    for first, second in ((torch_cls, optlib_cls), (optlib_cls, torch_cls)):
        params_a, opt_a, _ = run(first, kwargs, steps, dtype=dtype, groups=groups)
        params_b = _fresh_copy(params_a, dtype, 0)
        opt_b = second(param_groups(params_b, groups), **kwargs)
        opt_b.load_state_dict(_save_load(opt_a.state_dict(), via_bytes=True))
        run(second, kwargs, steps, dtype=dtype, params=params_b, optimizer=opt_b, first_step=steps)
        what = f"{first.__module__}.{first.__name__} -> {second.__module__}.{second.__name__}:"
        assert_params_close(params_b, params_ref, what, **tol)
        assert_states_close(opt_b, params_b, opt_ref, params_ref, what, **tol)
