"""What every optlib optimizer shares: argument checks and the choice of update path.

Each optimizer in this package implements its update rule up to three times:

* a *single-tensor* path, a plain loop over parameters that reads like the maths
  in the chapters;
* a *multi-tensor* path built on ``torch._foreach_*`` ops, which launches one
  kernel for a whole list of tensors instead of one per parameter;
* for SGD, Adagrad and the Adam family, a *fused* path (``fused=True``): the update
  of one parameter compiled by ``torch.compile`` into one kernel over many
  parameters, which reads and writes each number once (:mod:`optlib.optim._compile`).

``foreach=None`` picks the multi-tensor path when every parameter lives on a
CUDA device, as ``torch.optim`` does, because that is where kernel-launch
overhead dominates; on the CPU it picks the loop, which is what a reader sees.
Neither is the fastest on a CPU: the step is memory-bound, and the loop and
foreach paths read and write the same tensors once per operation, so the fused
path, which is never chosen by default (as in torch.optim), is several times
faster there (``benchmarks/step_time.py``).

:class:`CourseOptimizer` holds the mechanics the optimizers share (the closure,
the per-parameter loop, the choice of path, old state_dicts), so that each
optimizer's file holds only what is its own: its checks, its state and its
update functions.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

from . import _compile

__all__ = [
    "CourseOptimizer",
    "as_real",
    "check_lr",
    "check_non_negative",
    "check_unit_interval",
    "check_betas",
    "check_params_not_empty",
    "default_foreach",
    "group_by_device_and_dtype",
    "as_float",
    "step_counter_dtype",
    "reject_unsupported_flags",
    "foreach_scalar",
    "new_step_counter",
]


def _is_finite_number(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def as_float(value) -> float:
    """A Python float from a number or a one-element tensor (lr may be a tensor in torch)."""
    if isinstance(value, Tensor):
        return float(value.item())
    return float(value)


def check_lr(lr) -> None:
    """lr must be a finite number >= 0 (0 freezes the parameters, which schedulers use)."""
    if isinstance(lr, Tensor) and lr.numel() != 1:
        raise ValueError(f"Invalid lr: a tensor lr must have exactly one element, got shape {tuple(lr.shape)}")
    if not _is_finite_number(lr) or as_float(lr) < 0.0:
        raise ValueError(f"Invalid lr: {lr!r}; lr must be a finite number >= 0")


def check_non_negative(name: str, value) -> None:
    """A finite number >= 0, such as eps, weight_decay or lr_decay."""
    if not _is_finite_number(value) or float(value) < 0.0:
        raise ValueError(f"Invalid {name}: {value!r}; {name} must be a finite number >= 0")


def check_unit_interval(name: str, value) -> None:
    """A number in [0, 1), such as a momentum coefficient or an averaging constant."""
    if not _is_finite_number(value) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"Invalid {name}: {value!r}; {name} must be in [0, 1)")


def check_betas(betas) -> None:
    """betas must be a pair (beta1, beta2), each in [0, 1)."""
    try:
        beta1, beta2 = betas
    except (TypeError, ValueError):
        raise ValueError(f"Invalid betas: {betas!r}; betas must be a pair (beta1, beta2), each in [0, 1)") from None
    check_unit_interval("betas[0]", beta1)
    check_unit_interval("betas[1]", beta2)


def check_params_not_empty(params) -> list:
    """Materialise params (it may be a generator) and refuse an empty list early, with a clear message."""
    params = list(params)
    if len(params) == 0:
        raise ValueError(
            "Invalid params: an empty parameter list; params must contain at least one tensor or param group"
        )
    return params


def default_foreach(params: Iterable[Tensor]) -> bool:
    """Multi-tensor path when every parameter is on CUDA, as torch.optim chooses for foreach=None."""
    params = list(params)
    return len(params) > 0 and all(p.is_cuda for p in params)


def group_by_device_and_dtype(*tensor_lists: list[Tensor]) -> dict[tuple, list[list[Tensor]]]:
    """Split parallel tensor lists into buckets of one device and dtype each.

    ``torch._foreach_*`` ops need every tensor in one call to share device and
    dtype, so a model with float32 weights and a bfloat16 embedding becomes two
    buckets. The lists keep their alignment: index i of every returned list
    refers to the same parameter.
    """
    keys = [(p.device, p.dtype) for p in tensor_lists[0]]
    if not keys:
        return {}
    if keys.count(keys[0]) == len(keys):  # the common case, one bucket: no per-tensor appends
        return {keys[0]: [list(lst) for lst in tensor_lists]}
    buckets: dict[tuple, list[list[Tensor]]] = defaultdict(lambda: [[] for _ in tensor_lists])
    for i, key in enumerate(keys):
        for j, lst in enumerate(tensor_lists):
            buckets[key][j].append(lst[i])
    return dict(buckets)


def step_counter_dtype() -> torch.dtype:
    """The dtype torch.optim uses for its ``step`` state tensor (kept on the CPU).

    Matching it keeps state_dicts interchangeable between optlib and torch.optim.
    """
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def reject_unsupported_flags(optimizer_name: str, **flags) -> None:
    """Refuse torch.optim's capturable/differentiable modes, which optlib does not implement.

    The keywords are accepted (with torch's defaults) so that optlib is a drop-in
    replacement; turning one on is an error rather than a silent no-op.
    """
    for name, value in flags.items():
        if value:
            raise ValueError(
                f"Invalid {name}: {value!r}; optlib.{optimizer_name} does not support {name}=True "
                f"(allowed: False); use torch.optim.{optimizer_name} for it"
            )


def new_step_counter(p: Tensor, group: dict) -> Tensor:
    """A step count of 0 where the update reads it: the CPU, or p's device for the fused path.

    The loop and foreach paths read the count as a Python number (no device sync on
    the CPU); the compiled path reads it inside the kernel, so it lives with the
    parameter, as torch.optim keeps it for its own fused path.
    """
    device = p.device if group.get("fused") else torch.device("cpu")
    return torch.zeros((), dtype=step_counter_dtype(), device=device)


def foreach_scalar(value: float, like: Tensor):
    """``value`` in the form that keeps ``torch._foreach_mul_``/``_foreach_add_`` as exact as the loop.

    On the CPU, ``torch._foreach_mul_(bfloat16_list, 0.99)`` rounds the number to
    bfloat16 first (0.98828125), while ``t.mul_(0.99)`` multiplies in float32; a
    0-dim float64 tensor takes the second route. That rounding would shorten an
    averaging horizon such as RMSprop's alpha = 0.99 from 100 to 85 steps (and turn
    Adam's 0.999 into 1.0). On CUDA, and for float32/float64, the plain number is
    already exact and avoids a host-to-device copy, so it is returned unchanged.
    """
    if like.device.type == "cpu" and like.dtype in (torch.bfloat16, torch.float16):
        return torch.tensor(value, dtype=torch.float64)
    return value


def as_real(t: Tensor | None) -> Tensor | None:
    """A complex tensor as a real view of its (real, imaginary) pairs; anything else unchanged.

    torch.optim updates a complex number as two real coordinates, each with its own
    moments, and so does optlib. The view shares storage, so in-place updates of it
    update the complex tensor.
    """
    if t is None or t.is_sparse or not torch.is_complex(t):
        return t
    return torch.view_as_real(t)


class CourseOptimizer(Optimizer):
    """What every optlib optimizer does the same way: check, gather, dispatch, load old state.

    :meth:`step` owns the per-parameter loop: it skips parameters whose ``.grad`` is
    None, refuses sparse gradients where the method has no sparse update (with the
    RuntimeError torch.optim raises), creates missing state through the
    :meth:`_init_state` hook, views complex tensors as pairs of reals (torch.optim
    updates a complex number as two real coordinates), and hands the tensor lists
    to one of three update functions of the same rule:

    * ``_single_tensor``: a plain loop over parameters, the readable version;
    * ``_multi_tensor``: ``torch._foreach_*`` ops, one kernel per operation for a
      whole list of tensors;
    * ``_fused``: one compiled kernel over many parameters that reads and writes each
      tensor once (see :mod:`optlib.optim._compile`), or None where there is none.

    A subclass says what is its own: its argument checks, ``_state_keys(group)``
    (the state entries its update functions take, in order, after the parameters
    and gradients), ``_init_state(p, state, group)``, ``_update_options(group)`` (the
    keyword options), and optionally ``_store_state`` for state the update
    functions create themselves (SGD's momentum buffer).
    """

    _single_tensor: Callable[..., None]
    _multi_tensor: Callable[..., None]
    _fused: Callable[..., None] | None = None
    # torch.optim's modes that optlib accepts as keywords only.
    _unsupported: tuple[str, ...] = ()
    # Whether the method has an update for sparse gradients (torch: SGD and Adagrad).
    _sparse_grads: bool = False
    _group_defaults: dict = {}
    _scalar_state: tuple[str, ...] = ("step",)
    # Whether loading a state_dict saved in a mode optlib cannot run fails at once
    # (rather than at the next step).
    _refuse_unsupported_on_load: bool = False

    def __init__(self, params, defaults: dict) -> None:
        """Call after the subclass's own argument checks, as torch.optim orders them."""
        if isinstance(params, Tensor):
            # Iterating a tensor yields its rows, which are not leaves to optimize.
            raise TypeError(
                "Invalid params: an iterable of tensors or of param-group dicts is required, "
                f"got a single tensor ({torch.typename(params)}); pass [tensor] instead"
            )
        self._check_flags(defaults)
        super().__init__(check_params_not_empty(params), defaults)

    def _check_flags(self, options: dict) -> None:
        # The fused conflicts first: torch.optim raises RuntimeError for them even where
        # the other flag (differentiable) would be refused on its own.
        if options.get("fused"):
            name = type(self).__name__
            if self._fused is None:
                raise RuntimeError(f"Invalid fused: optlib.{name} has no fused path; use foreach=True")
            if options.get("foreach"):
                raise RuntimeError("Invalid fused: `fused` and `foreach` cannot be `True` together.")
            if options.get("differentiable"):
                raise RuntimeError("Invalid fused: `fused` does not support `differentiable`")
        reject_unsupported_flags(type(self).__name__, **{name: options.get(name) for name in self._unsupported})

    # The hooks a subclass fills in.
    def _state_keys(self, group: dict) -> tuple[str, ...]:
        raise NotImplementedError

    def _init_state(self, p: Tensor, state: dict, group: dict) -> None:
        """Create the entries ``p``'s ``state`` lacks (called before every update of ``p``)."""
        raise NotImplementedError

    def _update_options(self, group: dict) -> dict:
        raise NotImplementedError

    def _store_state(self, params: list[Tensor], tensor_lists: tuple[list, ...]) -> None:
        """Keep state the update functions created (by default they only update it in place)."""

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            # State dicts saved by older torch/optlib versions lack the newer options.
            for name, value in self._group_defaults.items():
                group.setdefault(name, value)
            if self._refuse_unsupported_on_load:
                self._check_flags(group)
            for p in group["params"]:
                p_state = self.state.get(p, {})
                for key in self._scalar_state:
                    if key in p_state and not torch.is_tensor(p_state[key]):
                        p_state[key] = torch.tensor(float(p_state[key]), dtype=step_counter_dtype())

    @property
    def _plans(self) -> dict:
        """What the fused path prepared for the next step: not state, so a copy or a pickle starts without it."""
        return self.__dict__.setdefault("_fused_plans", {})

    def _params_with_grad(self, group: dict) -> tuple[list[Tensor], list[Tensor], list[dict]]:
        """The parameters that have a gradient, their gradients, and their state (completed)."""
        params, grads, states = [], [], []
        # Looked up once per parameter per step: a tensor's hash is a Python call.
        state_of = self.state.__getitem__
        for p in group["params"]:
            grad = p.grad
            if grad is None:
                continue
            if grad.is_sparse and not self._sparse_grads:
                raise RuntimeError(f"optlib.{type(self).__name__} does not support sparse gradients")
            state = state_of(p)
            self._init_state(p, state, group)
            params.append(p)
            grads.append(grad)
            states.append(state)
        return params, grads, states

    def _gather(self, group: dict, params: list[Tensor], grads: list[Tensor], states: list[dict]) -> tuple[list, ...]:
        """The parameters, their gradients and each state entry, as aligned lists of real views."""
        lists = [params, grads]
        lists += [[state.get(key) for state in states] for key in self._state_keys(group)]
        # A real parameter has a real gradient and real state: then there is nothing to view,
        # and skipping as_real saves a call per tensor per step.
        if any(map(Tensor.is_complex, params)):
            lists = [[as_real(t) for t in tensors] for tensors in lists]
        return tuple(lists)

    def _update_function(self, group: dict, params: list[Tensor]) -> Callable[..., None]:
        if group.get("fused"):
            return self._fused
        foreach = group["foreach"]
        if foreach is None:
            foreach = default_foreach(params)
        return self._multi_tensor if foreach else self._single_tensor

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        """Take one step; ``closure`` (optional) re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            self._check_flags(group)
            params, grads, states = self._params_with_grad(group)
            if not params:
                continue
            update = self._update_function(group, params)
            options = self._update_options(group)
            if group.get("fused"):
                # The compiled path keeps what it prepares for the next step (see _compile).
                plans = options["plans"] = self._plans
                # Refuse before any state changes where nothing can compile (once per device:
                # asking Inductor's config every step costs more than a small update).
                if ("compiles on", params[0].device) not in plans:
                    _compile.check_fused_device(type(self).__name__, params[0].device)
                    plans[("compiles on", params[0].device)] = True
            tensor_lists = self._gather(group, params, grads, states)
            update(*tensor_lists, **options)
            self._store_state(params, tensor_lists)
        return loss
