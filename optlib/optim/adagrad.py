r"""Adagrad: a per-coordinate learning rate from the sum of all past squared gradients."""

from __future__ import annotations

import torch
from torch import Tensor

from ._base import (
    CourseOptimizer,
    as_float,
    check_lr,
    check_non_negative,
    group_by_device_and_dtype,
    new_step_counter,
)
from ._compile import FusedKernel, advance_steps, each_count, fused_buckets, fused_scalars
from ._placement import state_like

__all__ = ["Adagrad"]


def _decayed_lr(lr: float, lr_decay: float, step: float) -> float:
    # eta_t = eta / (1 + (t - 1) * lr_decay), computed in Python floats as torch.optim does.
    return lr / (1 + (step - 1) * lr_decay)


def _sparse_like(grad: Tensor, indices: Tensor, values: Tensor) -> Tensor:
    # The indices come from a coalesced gradient, so they are valid by construction.
    return torch.sparse_coo_tensor(indices, values, grad.size(), check_invariants=False)


def _adagrad_single_tensor(
    params: list[Tensor],
    grads: list[Tensor],
    state_sums: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    lr_decay: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
) -> None:
    """One Adagrad step, one parameter at a time: the readable version of the update."""
    for theta, g, v, step in zip(params, grads, state_sums, state_steps):
        step += 1
        g = -g if maximize else g
        if weight_decay != 0:
            if g.is_sparse:
                # torch.optim raises RuntimeError here too.
                raise RuntimeError(
                    f"Invalid weight_decay: {weight_decay!r}; with sparse gradients weight_decay must be 0"
                )
            g = g.add(theta, alpha=weight_decay)  # g <- g + lambda * theta
        eta_t = _decayed_lr(lr, lr_decay, step.item())

        if g.is_sparse:
            # Only the rows present in the gradient change. The update is not linear in g,
            # so repeated indices must be summed (coalesced) before squaring.
            g = g.coalesce()
            indices, values = g._indices(), g._values()
            v.add_(_sparse_like(g, indices, values.pow(2)))
            std_values = v.sparse_mask(g)._values().sqrt_().add_(eps)
            theta.add_(_sparse_like(g, indices, values / std_values), alpha=-eta_t)
            continue

        v.addcmul_(g, g, value=1)  # v <- v + g^2
        std = v.sqrt().add_(eps)  # sqrt(v) + eps
        theta.addcdiv_(g, std, value=-eta_t)  # theta <- theta - eta_t * g / (sqrt(v) + eps)


def _adagrad_multi_tensor(
    params: list[Tensor],
    grads: list[Tensor],
    state_sums: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    lr_decay: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
) -> None:
    """The same step on whole lists of tensors at once (one ``_foreach`` kernel per operation)."""
    buckets = group_by_device_and_dtype(params, grads, state_sums, state_steps)
    for device_params, device_grads, device_sums, device_steps in buckets.values():
        if any(g.is_sparse for g in device_grads):
            # foreach kernels have no sparse version; the loop handles sparse gradients.
            _adagrad_single_tensor(
                device_params,
                device_grads,
                device_sums,
                device_steps,
                lr=lr,
                lr_decay=lr_decay,
                weight_decay=weight_decay,
                eps=eps,
                maximize=maximize,
            )
            continue
        # The step counters are 0-dim CPU tensors; adding a tensor (not the number 1) keeps
        # foreach from wrapping the scalar once per counter.
        torch._foreach_add_(device_steps, torch.tensor(1.0, device=device_steps[0].device), alpha=1.0)

        owns_grads = False
        if maximize:
            device_grads = torch._foreach_neg(device_grads)
            owns_grads = True
        if weight_decay != 0:
            if owns_grads:
                torch._foreach_add_(device_grads, device_params, alpha=weight_decay)
            else:
                device_grads = torch._foreach_add(device_grads, device_params, alpha=weight_decay)

        torch._foreach_addcmul_(device_sums, device_grads, device_grads, value=1)
        std = torch._foreach_sqrt(device_sums)
        torch._foreach_add_(std, eps)
        if lr_decay == 0:
            torch._foreach_addcdiv_(device_params, device_grads, std, value=-lr)
        else:
            # Parameters that skipped steps (grad None) have their own step count, hence their own eta_t.
            minus_lrs = [-_decayed_lr(lr, lr_decay, s.item()) for s in device_steps]
            torch._foreach_addcdiv_(device_params, device_grads, std, minus_lrs)


def _adagrad_kernel(
    param: Tensor,
    grad: Tensor,
    state_sum: Tensor,
    *,
    lr: Tensor,
    weight_decay: Tensor,
    eps: Tensor,
    decayed_lr: Tensor,
    maximize: bool,
) -> None:
    """The Adagrad update of one parameter, written for torch.compile to fuse into one pass."""
    if maximize:
        grad = -grad
    grad = grad + weight_decay * param
    state_sum.add_(grad * grad)
    param.add_(grad / (state_sum.sqrt() + eps) * -decayed_lr)


_adagrad_fused_kernel = FusedKernel(_adagrad_kernel)


def _adagrad_fused(
    params: list[Tensor],
    grads: list[Tensor],
    state_sums: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    lr_decay: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
    plans: dict | None = None,
) -> None:
    """The same step as :func:`_adagrad_single_tensor`, compiled kernels over many parameters at once."""
    if any(g.is_sparse for g in grads):
        raise RuntimeError("Invalid fused: `fused` does not support sparse gradients; use foreach=False")
    for (_, dtype), (b_params, b_grads, b_sums, b_steps) in fused_buckets(
        plans, params, grads, state_sums, state_steps
    ).items():
        scalars = fused_scalars(b_params[0], plans, lr=lr, weight_decay=weight_decay, eps=eps)
        t = advance_steps(b_steps, dtype, plans)
        if isinstance(t, list):  # the CPU: Python numbers, as the loop computes them
            decayed_lr = each_count(t, lambda k: lr / (1 + (k - 1) * lr_decay))
        else:
            decayed_lr = scalars["lr"] / (1 + (t - 1) * lr_decay)
        _adagrad_fused_kernel(
            "Adagrad",
            [b_params, b_grads, b_sums],
            decayed_lr=decayed_lr,
            maximize=maximize,
            **scalars,
            plans=plans,
        )


class Adagrad(CourseOptimizer):
    r"""Adagrad: each coordinate's step is divided by the root of its summed squared gradients.

    With gradient :math:`g_t` (:math:`-\nabla` with ``maximize=True``), weight decay
    :math:`\lambda`, learning rate :math:`\eta`, learning-rate decay :math:`\delta`,
    accumulator :math:`v` (started at ``initial_accumulator_value``) and step
    count :math:`t` of this parameter, one step is

    .. math::

        g_t &\leftarrow g_t + \lambda\,\theta_{t-1} \\
        \eta_t &\leftarrow \eta \,/\, (1 + (t-1)\,\delta) \\
        v_t &\leftarrow v_{t-1} + g_t^2 \\
        \theta_t &\leftarrow \theta_{t-1} - \eta_t\, \frac{g_t}{\sqrt{v_t} + \varepsilon}

    (squares, roots and the division taken coordinate by coordinate). Because
    :math:`v` only grows, every coordinate's effective learning rate only shrinks:
    rare features keep large steps, frequent ones get small steps.

    Sparse gradients (e.g. from ``nn.Embedding(sparse=True)``) update only the
    rows they contain, as in torch.optim; they cannot be combined with weight decay.
    Complex parameters are treated as pairs of real coordinates.

    Reference:
        J. Duchi, E. Hazan and Y. Singer, "Adaptive subgradient methods for online
        learning and stochastic optimization", JMLR 12, 2011.

    Args:
        params: parameters (or parameter groups, dicts with ``"params"`` and overrides) to optimize.
        lr: learning rate :math:`\eta`, finite and >= 0 (default 1e-2).
        lr_decay: learning-rate decay :math:`\delta` >= 0 (default 0).
        weight_decay: L2 penalty :math:`\lambda` >= 0, added to the gradient (default 0).
        initial_accumulator_value: starting value of :math:`v`, >= 0 (default 0). A
            parameter group may override it; torch.optim reads only the constructor's
            value, so such an override is where the two differ.
        eps: :math:`\varepsilon` >= 0 added to the denominator (default 1e-10).
        foreach: True for the multi-tensor (``torch._foreach``) path, False for the
            per-parameter loop, None to choose as torch.optim does (multi-tensor when
            every parameter is on CUDA).
        maximize: maximize the objective instead of minimizing it (default False).
        fused: True for the update compiled into one kernel over many parameters (``torch.compile``, CPU
            and CUDA) that reads and writes each tensor once per step; it cannot
            be combined with ``foreach=True`` or ``differentiable=True``.
        differentiable: accepted for compatibility with torch.optim.Adagrad;
            optlib supports only False and raises ValueError otherwise.

    Example: minimise :math:`\lVert w\rVert^2` from :math:`w = (1, -2)`::

        >>> import torch, optlib
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = optlib.Adagrad([w], lr=0.5)
        >>> for _ in range(200):
        ...     opt.zero_grad()
        ...     (w ** 2).sum().backward()
        ...     opt.step()
        >>> bool(w.abs().max() < 0.05)
        True

    Non-finite gradients: a NaN or Inf gradient enters the accumulator :math:`v` for
    good and then the parameters; optlib does not skip the step. ``optlib.train``
    watches the loss and stops, naming the step and learning rate, when it is not finite.

    Parameters whose ``.grad`` is None are skipped: neither their step count nor
    their accumulator changes.
    """

    _single_tensor = staticmethod(_adagrad_single_tensor)
    _multi_tensor = staticmethod(_adagrad_multi_tensor)
    _fused = staticmethod(_adagrad_fused)
    _unsupported = ("differentiable",)
    _sparse_grads = True
    _group_defaults = dict(foreach=None, maximize=False, differentiable=False, fused=None)

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        check_lr(lr)
        check_non_negative("lr_decay", lr_decay)
        check_non_negative("weight_decay", weight_decay)
        check_non_negative("initial_accumulator_value", initial_accumulator_value)
        check_non_negative("eps", eps)
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            eps=eps,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
            fused=fused,
        )
        super().__init__(params, defaults)
        # torch.optim creates the state when the optimizer is built (not at the first
        # step), so a fresh optimizer's state_dict already holds `sum` and `step`.
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p, self.state[p], group)

    def _init_state(self, p: Tensor, state: dict, group: dict) -> None:
        if len(state) == 0:
            value = group["initial_accumulator_value"]
            state["step"] = new_step_counter(p, group)
            state["sum"] = state_like(p, 1, complex(value, value) if torch.is_complex(p) else value)

    def share_memory(self) -> None:
        """Move the accumulators to shared memory (for Hogwild-style multiprocess training)."""
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["sum"].share_memory_()

    def _state_keys(self, group: dict) -> tuple[str, ...]:
        return ("sum", "step")

    def _update_options(self, group: dict) -> dict:
        return dict(
            lr=as_float(group["lr"]),
            lr_decay=group["lr_decay"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=group["maximize"],
        )
