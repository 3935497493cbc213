r"""Stochastic gradient descent, with heavy-ball or Nesterov momentum.

The first method of the course, and the one every later method modifies.
``GradientDescent`` is the same optimizer under the name the first chapter uses
for full-batch training.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._base import (
    CourseOptimizer,
    as_float,
    check_lr,
    check_non_negative,
    check_unit_interval,
    foreach_scalar,
    group_by_device_and_dtype,
)
from ._compile import FusedKernel, fused_buckets, fused_scalars
from ._placement import state_like

__all__ = ["SGD", "GradientDescent"]


def _sgd_single_tensor(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
) -> None:
    """One SGD step, one parameter at a time: the readable version of the update.

    ``momentum_buffers[i]`` is None before a parameter's first step with momentum;
    it is filled in here so the caller can store it in the optimizer state.
    """
    for i, theta in enumerate(params):
        g = -grads[i] if maximize else grads[i]
        if weight_decay != 0:
            g = g.add(theta, alpha=weight_decay)  # g <- g + lambda * theta   (L2 penalty)

        if momentum != 0:
            b = momentum_buffers[i]
            if b is None:
                # torch.optim starts the buffer at the first gradient, not at zero, so the
                # first step is a plain SGD step (and dampening only acts from step 2 on).
                b = g.detach().clone()
                momentum_buffers[i] = b
            else:
                b.mul_(momentum).add_(g, alpha=1 - dampening)  # b <- beta * b + (1 - tau) * g
            if nesterov:
                g = g.add(b, alpha=momentum)  # look ahead: g <- g + beta * b
            else:
                g = b

        theta.add_(g, alpha=-lr)  # theta <- theta - eta * g


def _sgd_multi_tensor(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
) -> None:
    """The same step on whole lists of tensors at once (one ``_foreach`` kernel per operation)."""
    buckets = group_by_device_and_dtype(params, grads, list(range(len(params))))
    for device_params, device_grads, indices in buckets.values():
        if any(g.is_sparse for g in device_grads):
            # foreach kernels have no sparse version; the loop handles sparse gradients.
            device_bufs = [momentum_buffers[i] for i in indices] if momentum != 0 else []
            _sgd_single_tensor(
                device_params,
                device_grads,
                device_bufs,
                lr=lr,
                momentum=momentum,
                dampening=dampening,
                weight_decay=weight_decay,
                nesterov=nesterov,
                maximize=maximize,
            )
            for i, b in zip(indices, device_bufs):
                momentum_buffers[i] = b
            continue

        # `owns_grads`: device_grads are temporaries we may overwrite, not the users' .grad tensors.
        owns_grads = False
        if maximize:
            device_grads = torch._foreach_neg(device_grads)
            owns_grads = True
        if weight_decay != 0:
            if owns_grads:
                torch._foreach_add_(device_grads, device_params, alpha=weight_decay)
            else:
                device_grads = torch._foreach_add(device_grads, device_params, alpha=weight_decay)
                owns_grads = True

        if momentum != 0:
            device_bufs = [momentum_buffers[i] for i in indices]
            if all(b is not None for b in device_bufs):
                torch._foreach_mul_(device_bufs, foreach_scalar(momentum, device_params[0]))
                torch._foreach_add_(device_bufs, device_grads, alpha=1 - dampening)
            else:
                # First step for some parameters (e.g. newly unfrozen ones): start those buffers at g.
                for j, b in enumerate(device_bufs):
                    if b is None:
                        device_bufs[j] = momentum_buffers[indices[j]] = device_grads[j].detach().clone()
                    else:
                        b.mul_(momentum).add_(device_grads[j], alpha=1 - dampening)
            if nesterov:
                if owns_grads:
                    torch._foreach_add_(device_grads, device_bufs, alpha=momentum)
                else:
                    device_grads = torch._foreach_add(device_grads, device_bufs, alpha=momentum)
            else:
                device_grads = device_bufs

        torch._foreach_add_(device_params, device_grads, alpha=-lr)


def _sgd_kernel(
    param: Tensor,
    grad: Tensor,
    buffer: Tensor | None,
    *,
    lr: Tensor,
    momentum: Tensor,
    dampening: Tensor,
    weight_decay: Tensor,
    first_step: bool,
    nesterov: bool,
    maximize: bool,
) -> None:
    """The SGD update of one parameter, written for torch.compile to fuse into one pass."""
    if maximize:
        grad = -grad
    grad = grad + weight_decay * param
    if buffer is not None:
        if first_step:
            buffer.copy_(grad)
        else:
            buffer.mul_(momentum).add_(grad * (1 - dampening))
        grad = grad + momentum * buffer if nesterov else buffer
    param.add_(grad * -lr)


_sgd_fused_kernel = FusedKernel(_sgd_kernel)


def _sgd_fused(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
    plans: dict | None = None,
) -> None:
    """The same step as :func:`_sgd_single_tensor`, compiled kernels over many parameters at once."""
    if any(g.is_sparse for g in grads):
        raise RuntimeError("Invalid fused: `fused` does not support sparse gradients; use foreach=False")
    # A parameter's first momentum step copies g into a new buffer, as the loop starts it.
    first_step = [momentum != 0 and b is None for b in momentum_buffers]
    for i, p in enumerate(params):
        if first_step[i]:
            momentum_buffers[i] = state_like(p, 1)
    buffers = momentum_buffers if momentum != 0 else [None] * len(params)
    for b_params, b_grads, b_buffers, b_first in fused_buckets(plans, params, grads, buffers, first_step).values():
        _sgd_fused_kernel(
            "SGD",
            [b_params, b_grads, b_buffers],
            first_step=b_first,
            nesterov=nesterov,
            maximize=maximize,
            **fused_scalars(
                b_params[0], plans, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay
            ),
            plans=plans,
        )


class SGD(CourseOptimizer):
    r"""Stochastic gradient descent, optionally with heavy-ball or Nesterov momentum.

    With gradient :math:`g_t = \nabla_\theta f_t(\theta_{t-1})` of the loss on the
    current mini-batch (:math:`-\nabla` with ``maximize=True``), weight decay
    :math:`\lambda`, momentum :math:`\beta`, dampening :math:`\tau` and learning
    rate :math:`\eta`, one step is

    .. math::

        g_t &\leftarrow g_t + \lambda\,\theta_{t-1} \\
        b_t &\leftarrow \begin{cases} g_t & t = 1 \\
                        \beta\, b_{t-1} + (1-\tau)\, g_t & t > 1 \end{cases} \\
        d_t &\leftarrow \begin{cases} g_t + \beta\, b_t & \text{nesterov} \\
                        b_t & \text{otherwise} \end{cases} \\
        \theta_t &\leftarrow \theta_{t-1} - \eta\, d_t

    With ``momentum=0`` the middle lines drop out and this is the stochastic
    approximation method of Robbins & Monro (1951): :math:`\theta_t = \theta_{t-1} - \eta g_t`.
    With momentum it is Polyak's (1964) heavy-ball method, written as torch.optim
    writes it: the buffer :math:`b` accumulates gradients and the learning rate
    multiplies the whole buffer (Sutskever et al. scale each gradient by
    :math:`\eta` before accumulating; the two agree while :math:`\eta` is constant),
    and :math:`b_1 = g_1` rather than 0.

    *Nesterov momentum.* Nesterov (1983) evaluates the gradient at the look-ahead
    point :math:`\theta_{t-1} - \eta\beta b_{t-1}`; Sutskever et al. (2013) wrote it
    as a momentum method. Storing the look-ahead point as the parameter turns it
    into the two-step form above, which needs only the gradient at the current
    parameters: first update the buffer :math:`b_t = \beta b_{t-1} + g_t`, then step
    along :math:`g_t + \beta b_t`, the gradient plus the momentum the *next* step
    will carry. (It requires ``momentum > 0`` and ``dampening = 0``.)

    References:
        H. Robbins and S. Monro, "A stochastic approximation method", Ann. Math. Statist. 22(3), 1951.
        B. T. Polyak, "Some methods of speeding up the convergence of iteration methods",
        USSR Comput. Math. Math. Phys. 4(5), 1964.
        Y. Nesterov, "A method for solving the convex programming problem with convergence
        rate O(1/k^2)", Soviet Math. Dokl. 27, 1983.
        I. Sutskever, J. Martens, G. Dahl and G. Hinton, "On the importance of initialization
        and momentum in deep learning", ICML 2013.

    Args:
        params: parameters (or parameter groups, dicts with ``"params"`` and overrides) to optimize.
        lr: learning rate :math:`\eta`, finite and >= 0 (default 1e-3).
        momentum: momentum factor :math:`\beta` in [0, 1) (default 0: plain SGD).
        dampening: dampening :math:`\tau` of the momentum, in [0, 1] (default 0).
        weight_decay: L2 penalty :math:`\lambda` >= 0, added to the gradient (default 0).
        nesterov: use Nesterov momentum (default False).
        maximize: maximize the objective instead of minimizing it (default False).
        foreach: True for the multi-tensor (``torch._foreach``) path, False for the
            per-parameter loop, None to choose as torch.optim does (multi-tensor when
            every parameter is on CUDA).
        fused: True for the update compiled into one kernel over many parameters (``torch.compile``, CPU
            and CUDA) that reads and writes each tensor once per step; it cannot
            be combined with ``foreach=True`` or ``differentiable=True``.
        differentiable: accepted for compatibility with torch.optim.SGD; optlib
            supports only False and raises ValueError otherwise.

    Example: minimise :math:`\lVert w\rVert^2` from :math:`w = (1, -2)`::

        >>> import torch, optlib
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = optlib.SGD([w], lr=0.1, momentum=0.9)
        >>> for _ in range(100):
        ...     opt.zero_grad()
        ...     (w ** 2).sum().backward()
        ...     opt.step()
        >>> bool(w.abs().max() < 0.05)
        True

    Non-finite gradients: a NaN or Inf in a gradient propagates into the momentum
    buffer and the parameters; optlib does not skip the step. ``optlib.train``
    watches the loss and stops, naming the step and learning rate, when it is not finite.

    Parameters whose ``.grad`` is None are skipped, and their momentum buffer is left
    as it was.
    """

    _single_tensor = staticmethod(_sgd_single_tensor)
    _multi_tensor = staticmethod(_sgd_multi_tensor)
    _fused = staticmethod(_sgd_fused)
    _unsupported = ("differentiable",)
    _sparse_grads = True
    _group_defaults = dict(nesterov=False, maximize=False, foreach=None, differentiable=False, fused=None)

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float | Tensor = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        check_lr(lr)
        check_unit_interval("momentum", momentum)
        _check_dampening(dampening)
        check_non_negative("weight_decay", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                f"Invalid nesterov: True with momentum={momentum!r}, dampening={dampening!r}; "
                "nesterov requires momentum in (0, 1) and dampening = 0"
            )
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
            foreach=foreach,
            differentiable=differentiable,
            fused=fused,
        )
        super().__init__(params, defaults)

    def _state_keys(self, group: dict) -> tuple[str, ...]:
        return ("momentum_buffer",)

    def _init_state(self, p: Tensor, state: dict, group: dict) -> None:
        """Nothing to create in advance: the update starts the momentum buffer at the first gradient."""

    def _update_options(self, group: dict) -> dict:
        return dict(
            lr=as_float(group["lr"]),
            momentum=group["momentum"],
            dampening=group["dampening"],
            weight_decay=as_float(group["weight_decay"]),
            nesterov=group["nesterov"],
            maximize=group["maximize"],
        )

    def _store_state(self, params: list[Tensor], tensor_lists) -> None:
        for p, b in zip(params, tensor_lists[2]):
            # With momentum=0 there is no buffer: torch.optim stores no state at all; neither do we.
            if b is not None and "momentum_buffer" not in self.state[p]:
                # The update saw a complex tensor as real pairs; the state keeps p's own dtype.
                self.state[p]["momentum_buffer"] = torch.view_as_complex(b) if torch.is_complex(p) else b


def _check_dampening(dampening) -> None:
    try:
        ok = math.isfinite(float(dampening)) and 0.0 <= float(dampening) <= 1.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"Invalid dampening: {dampening!r}; dampening must be in [0, 1]")


class GradientDescent(SGD):
    r"""Gradient descent: :math:`\theta_t = \theta_{t-1} - \eta\, \nabla f(\theta_{t-1})`.

    The same optimizer as :class:`SGD`, with the same arguments and trajectory,
    under the name the course uses when every step sees the *full* training set
    (full-batch gradient descent): the method is the same, only the gradient fed
    to it is exact rather than a mini-batch estimate. See :class:`SGD` for the
    momentum, Nesterov and weight-decay options and the references
    (Robbins & Monro 1951; Polyak 1964; Nesterov 1983; Sutskever et al. 2013).

    Example: :math:`f(w) = (w - 3)^2` has :math:`\nabla f = 2(w - 3)`, so with
    :math:`\eta = 0.25` each step halves the distance to the minimum::

        >>> import torch, optlib
        >>> w = torch.nn.Parameter(torch.tensor(1.0))
        >>> opt = optlib.GradientDescent([w], lr=0.25)
        >>> for _ in range(3):
        ...     opt.zero_grad()
        ...     ((w - 3) ** 2).backward()
        ...     opt.step()
        ...     print(w.item())
        2.0
        2.5
        2.75

    Non-finite gradients: a NaN or Inf gradient propagates into the parameters, as
    in :class:`SGD`; ``optlib.train`` stops when the loss is not finite.
    """
