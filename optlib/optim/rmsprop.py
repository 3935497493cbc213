r"""RMSprop: divide each coordinate's step by a running root-mean-square of its gradients."""

from __future__ import annotations

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
    new_step_counter,
)
from ._placement import state_like

__all__ = ["RMSprop"]


def _rmsprop_single_tensor(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    grad_avgs: list[Tensor],
    momentum_buffers: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    maximize: bool,
) -> None:
    """One RMSprop step, one parameter at a time: the readable version of the update.

    ``grad_avgs`` is aligned with ``params`` when ``centered``, ``momentum_buffers``
    when ``momentum > 0``; otherwise they are empty.
    """
    for i, theta in enumerate(params):
        g = -grads[i] if maximize else grads[i]
        v = square_avgs[i]
        state_steps[i] += 1
        if weight_decay != 0:
            g = g.add(theta, alpha=weight_decay)  # g <- g + lambda * theta

        v.mul_(alpha).addcmul_(g, g, value=1 - alpha)  # v <- alpha * v + (1 - alpha) * g^2
        if centered:
            m = grad_avgs[i]
            m.lerp_(g, 1 - alpha)  # m <- alpha * m + (1 - alpha) * g
            denom = v.addcmul(m, m, value=-1).sqrt_()  # sqrt(v - m^2): the gradient's standard deviation
        else:
            denom = v.sqrt()
        denom.add_(eps)

        if momentum > 0:
            b = momentum_buffers[i]
            b.mul_(momentum).addcdiv_(g, denom)  # b <- beta * b + g / (sqrt(v) + eps)
            theta.add_(b, alpha=-lr)  # theta <- theta - eta * b
        else:
            theta.addcdiv_(g, denom, value=-lr)  # theta <- theta - eta * g / (sqrt(v) + eps)


def _rmsprop_multi_tensor(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    grad_avgs: list[Tensor],
    momentum_buffers: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    maximize: bool,
) -> None:
    """The same step on whole lists of tensors at once (one ``_foreach`` kernel per operation)."""
    n = len(params)
    # Absent lists are replaced by placeholders so every bucket has the same shape of lists.
    grad_avgs = grad_avgs if centered else [None] * n
    momentum_buffers = momentum_buffers if momentum > 0 else [None] * n
    buckets = group_by_device_and_dtype(params, grads, square_avgs, grad_avgs, momentum_buffers, state_steps)
    for device_params, device_grads, device_vs, device_ms, device_bufs, device_steps in buckets.values():
        owns_grads = False
        if maximize:
            device_grads = torch._foreach_neg(device_grads)
            owns_grads = True
        # The step counters are 0-dim CPU tensors; adding a tensor (not the number 1) keeps
        # foreach from wrapping the scalar once per counter.
        torch._foreach_add_(device_steps, torch.tensor(1.0, device=device_steps[0].device), alpha=1.0)
        if weight_decay != 0:
            if owns_grads:
                torch._foreach_add_(device_grads, device_params, alpha=weight_decay)
            else:
                device_grads = torch._foreach_add(device_grads, device_params, alpha=weight_decay)

        torch._foreach_mul_(device_vs, foreach_scalar(alpha, device_params[0]))
        torch._foreach_addcmul_(device_vs, device_grads, device_grads, value=1 - alpha)
        if centered:
            torch._foreach_lerp_(device_ms, device_grads, 1 - alpha)
            denom = torch._foreach_addcmul(device_vs, device_ms, device_ms, value=-1)
            torch._foreach_sqrt_(denom)
        else:
            denom = torch._foreach_sqrt(device_vs)
        torch._foreach_add_(denom, eps)

        if momentum > 0:
            torch._foreach_mul_(device_bufs, foreach_scalar(momentum, device_params[0]))
            torch._foreach_addcdiv_(device_bufs, device_grads, denom)
            torch._foreach_add_(device_params, device_bufs, alpha=-lr)
        else:
            torch._foreach_addcdiv_(device_params, device_grads, denom, value=-lr)


class RMSprop(CourseOptimizer):
    r"""RMSprop: each coordinate's step is divided by a running RMS of its recent gradients.

    With gradient :math:`g_t` (:math:`-\nabla` with ``maximize=True``), weight decay
    :math:`\lambda`, smoothing constant :math:`\alpha`, learning rate :math:`\eta`,
    momentum :math:`\beta`, one step is

    .. math::

        g_t &\leftarrow g_t + \lambda\,\theta_{t-1} \\
        v_t &\leftarrow \alpha\, v_{t-1} + (1-\alpha)\, g_t^2 \\
        \tilde v_t &\leftarrow \begin{cases} v_t - m_t^2,\;\;
            m_t \leftarrow \alpha\, m_{t-1} + (1-\alpha)\, g_t & \text{centered} \\
            v_t & \text{otherwise} \end{cases} \\
        d_t &\leftarrow \frac{g_t}{\sqrt{\tilde v_t} + \varepsilon} \\
        \theta_t &\leftarrow \begin{cases} \theta_{t-1} - \eta\, b_t,\;\;
            b_t \leftarrow \beta\, b_{t-1} + d_t & \beta > 0 \\
            \theta_{t-1} - \eta\, d_t & \text{otherwise} \end{cases}

    with :math:`v_0 = m_0 = b_0 = 0` (no bias correction, unlike Adam). Where Adagrad
    sums every past :math:`g^2`, RMSprop forgets old gradients at rate
    :math:`\alpha`, so the step size can recover after a steep stretch. The centered
    form divides by an estimate of the gradient's standard deviation instead of its
    root mean square.

    References:
        T. Tieleman and G. Hinton, "Lecture 6.5 - RMSprop: divide the gradient by a running
        average of its recent magnitude", COURSERA: Neural Networks for Machine Learning, 2012.
        A. Graves, "Generating sequences with recurrent neural networks", arXiv:1308.0850,
        2013 (the centered form, Eqs. 38-41).

    Args:
        params: parameters (or parameter groups, dicts with ``"params"`` and overrides) to optimize.
        lr: learning rate :math:`\eta`, finite and >= 0 (default 1e-2).
        alpha: smoothing constant :math:`\alpha` in [0, 1) (default 0.99).
        eps: :math:`\varepsilon` >= 0 added to the denominator (default 1e-8).
        weight_decay: L2 penalty :math:`\lambda` >= 0, added to the gradient (default 0).
        momentum: momentum factor :math:`\beta` in [0, 1) (default 0).
        centered: use the centered form (default False).
        capturable: accepted for compatibility with torch.optim.RMSprop; only False is supported.
        foreach: True for the multi-tensor (``torch._foreach``) path, False for the
            per-parameter loop, None to choose as torch.optim does (multi-tensor when
            every parameter is on CUDA).
        maximize: maximize the objective instead of minimizing it (default False).
        differentiable: accepted for compatibility with torch.optim.RMSprop; only False is supported.

    RMSprop has no fused path, as in torch.optim (``fused=True`` is a TypeError there too).

    Example: minimise :math:`\lVert w\rVert^2` from :math:`w = (1, -2)`::

        >>> import torch, optlib
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = optlib.RMSprop([w], lr=0.01)
        >>> for _ in range(300):
        ...     opt.zero_grad()
        ...     (w ** 2).sum().backward()
        ...     opt.step()
        >>> bool(w.abs().max() < 0.05)
        True

    Non-finite gradients: a NaN or Inf gradient enters the running averages and then
    the parameters; optlib does not skip the step. ``optlib.train`` watches the loss
    and stops, naming the step and learning rate, when it is not finite.

    Parameters whose ``.grad`` is None are skipped: their averages and step count
    stay as they were. Sparse gradients are refused, as in torch.optim.
    """

    _single_tensor = staticmethod(_rmsprop_single_tensor)
    _multi_tensor = staticmethod(_rmsprop_multi_tensor)
    _unsupported = ("capturable", "differentiable")
    _group_defaults = dict(
        momentum=0, centered=False, foreach=None, maximize=False, differentiable=False, capturable=False
    )

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        check_lr(lr)
        check_unit_interval("alpha", alpha)
        check_non_negative("eps", eps)
        check_non_negative("weight_decay", weight_decay)
        check_unit_interval("momentum", momentum)
        defaults = dict(
            lr=lr,
            momentum=momentum,
            alpha=alpha,
            eps=eps,
            centered=centered,
            weight_decay=weight_decay,
            capturable=capturable,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
        )
        super().__init__(params, defaults)

    def _init_state(self, p: Tensor, state: dict, group: dict) -> None:
        if len(state) == 0:
            state["step"] = new_step_counter(p, group)
            state["square_avg"] = state_like(p, 1)
        # momentum or centered may be switched on after the first step (a scheduler that
        # cycles momentum, or a user editing the group); their averages then start at zero.
        if group["momentum"] > 0 and "momentum_buffer" not in state:
            state["momentum_buffer"] = state_like(p, 2)
        if group["centered"] and "grad_avg" not in state:
            state["grad_avg"] = state_like(p, 3)

    def _state_keys(self, group: dict) -> tuple[str, ...]:
        return ("square_avg", "grad_avg", "momentum_buffer", "step")

    def _update_options(self, group: dict) -> dict:
        return dict(
            lr=as_float(group["lr"]),
            alpha=group["alpha"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            momentum=group["momentum"],
            centered=group["centered"],
            maximize=group["maximize"],
        )
