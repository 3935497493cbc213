r"""Adam and the Adam-family core that AdamW and NesterovAdamW reuse.

Adam, AdamW and the course's NesterovAdamW are one update rule with three
switches, so they share one implementation here:

* where weight decay enters: added to the gradient (L2 penalty, Adam) or applied
  to the parameters directly (decoupled, AdamW),
* whether the numerator is the first moment :math:`m_t` or its Nesterov
  look-ahead :math:`\bar m_t = \beta_1 m_t + (1-\beta_1) g_t` (NesterovAdamW),
* whether the denominator uses the running maximum of :math:`v_t` (AMSGrad).

The arithmetic follows ``torch.optim.Adam`` operation by operation (``lerp`` for
the first moment, bias corrections as Python floats from the step count, one
``addcdiv`` at the end), so with the same switches optlib and torch.optim
produce the same trajectory up to floating-point rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._base import (
    CourseOptimizer,
    as_float,
    check_betas,
    check_lr,
    check_non_negative,
    foreach_scalar,
    group_by_device_and_dtype,
    new_step_counter,
)
from ._compile import FusedKernel, advance_steps, each_count, fused_buckets, fused_scalars
from ._placement import state_like

__all__ = ["Adam"]


def _adam_single_tensor(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled_weight_decay: bool,
    amsgrad: bool,
    nesterov: bool,
    maximize: bool,
) -> None:
    """One Adam-family step, one parameter at a time: the update as chapters 9-12 write it.

    ``max_exp_avg_sqs`` is aligned with ``params`` when ``amsgrad`` is set and
    empty otherwise.
    """
    for i, param in enumerate(params):
        grad = -grads[i] if maximize else grads[i]
        m, v, step = exp_avgs[i], exp_avg_sqs[i], state_steps[i]

        step += 1
        t = step.item()

        if weight_decay != 0:
            if decoupled_weight_decay:
                param.mul_(1 - lr * weight_decay)  # θ ← θ(1 − ηλ), outside the moments
            else:
                grad = grad.add(param, alpha=weight_decay)  # g ← g + λθ, an L2 penalty seen by m and v

        m.lerp_(grad, 1 - beta1)  # m ← β1·m + (1 − β1)·g
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)  # v ← β2·v + (1 − β2)·g²

        if amsgrad:
            # The denominator never shrinks, which restores Adam's convergence proof.
            torch.maximum(max_exp_avg_sqs[i], v, out=max_exp_avg_sqs[i])
            v = max_exp_avg_sqs[i]

        # Nesterov: step with where the momentum is about to be, β1·m + (1 − β1)·g.
        numerator = m.lerp(grad, 1 - beta1) if nesterov else m

        bias_correction1 = 1 - beta1**t
        bias_correction2 = 1 - beta2**t
        step_size = lr / bias_correction1
        denom = v.sqrt().div_(bias_correction2**0.5).add_(eps)  # √(v / (1 − β2^t)) + ε, in one new tensor
        param.addcdiv_(numerator, denom, value=-step_size)  # θ ← θ − η·(m / (1 − β1^t)) / denom


def _foreach_scale_(tensors: list[Tensor], factor: float) -> None:
    """tensors[i] *= factor in place, rounded as ``Tensor.mul_`` rounds it (see ``foreach_scalar``)."""
    torch._foreach_mul_(tensors, foreach_scalar(factor, tensors[0]))


def _foreach_moments_(
    b_params: list[Tensor],
    b_grads: list[Tensor],
    b_exp_avgs: list[Tensor],
    b_exp_avg_sqs: list[Tensor],
    b_steps: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    decoupled_weight_decay: bool,
    maximize: bool,
) -> list[Tensor]:
    """The part Adam and NAdam share on one bucket: count the step, apply weight decay, update m and v.

    Returns the gradients the moments saw (negated for ``maximize``, plus λθ for
    an L2 penalty), which the caller's numerator may need again.
    """
    if maximize:
        b_grads = torch._foreach_neg(b_grads)

    # One CPU scalar tensor instead of wrapping the Python 1 once per step counter.
    torch._foreach_add_(b_steps, torch.tensor(1.0), alpha=1.0)

    if weight_decay != 0:
        if decoupled_weight_decay:
            _foreach_scale_(b_params, 1 - lr * weight_decay)
        elif maximize:
            # b_grads is already a fresh copy, so it may be updated in place.
            torch._foreach_add_(b_grads, b_params, alpha=weight_decay)
        else:
            b_grads = torch._foreach_add(b_grads, b_params, alpha=weight_decay)

    torch._foreach_lerp_(b_exp_avgs, b_grads, 1 - beta1)  # m ← β1·m + (1 − β1)·g
    _foreach_scale_(b_exp_avg_sqs, beta2)
    torch._foreach_addcmul_(b_exp_avg_sqs, b_grads, b_grads, 1 - beta2)  # v ← β2·v + (1 − β2)·g²
    return b_grads


def _adam_multi_tensor(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled_weight_decay: bool,
    amsgrad: bool,
    nesterov: bool,
    maximize: bool,
) -> None:
    """The same step as :func:`_adam_single_tensor` on ``torch._foreach_*`` ops, one bucket per device and dtype."""
    if len(params) == 0:
        return
    tensor_lists = [params, grads, exp_avgs, exp_avg_sqs, state_steps]
    if amsgrad:
        tensor_lists.append(max_exp_avg_sqs)
    for bucket in group_by_device_and_dtype(*tensor_lists).values():
        b_params, b_grads, b_exp_avgs, b_exp_avg_sqs, b_steps = bucket[:5]

        b_grads = _foreach_moments_(
            b_params,
            b_grads,
            b_exp_avgs,
            b_exp_avg_sqs,
            b_steps,
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
        )

        if amsgrad:
            b_max_exp_avg_sqs = bucket[5]
            torch._foreach_maximum_(b_max_exp_avg_sqs, b_exp_avg_sqs)
            denom = torch._foreach_sqrt(b_max_exp_avg_sqs)
        else:
            denom = torch._foreach_sqrt(b_exp_avg_sqs)

        steps = [step.item() for step in b_steps]
        step_sizes = [(lr / (1 - beta1**t)) * -1 for t in steps]
        bias_correction2_sqrts = [(1 - beta2**t) ** 0.5 for t in steps]

        torch._foreach_div_(denom, bias_correction2_sqrts)
        torch._foreach_add_(denom, eps)
        if nesterov and b_params[0].dtype in (torch.float32, torch.float64):
            # θ −= s·(β1·m + (1 − β1)·g)/denom as two in-place steps, along m and along g:
            # the loop's look-ahead without allocating a list for it (the allocation made
            # NesterovAdamW's step about 1.6 times AdamW's). In bfloat16/float16 the two
            # roundings of θ would lose much of each half-step, so there θ gets one step.
            torch._foreach_addcdiv_(b_params, b_exp_avgs, denom, [beta1 * s for s in step_sizes])
            torch._foreach_addcdiv_(b_params, b_grads, denom, [(1 - beta1) * s for s in step_sizes])
        else:
            numerators = torch._foreach_lerp(b_exp_avgs, b_grads, 1 - beta1) if nesterov else b_exp_avgs
            torch._foreach_addcdiv_(b_params, numerators, denom, step_sizes)


def _decay_flags(decoupled_weight_decay: bool, weight_decay: float) -> dict[str, bool]:
    """Which weight decay a fused kernel compiles in: decoupled, L2, or none (when λ = 0)."""
    return {
        "decoupled": decoupled_weight_decay and weight_decay != 0,
        "l2": not decoupled_weight_decay and weight_decay != 0,
    }


def _kernel_moments_(
    param: Tensor,
    grad: Tensor,
    m: Tensor,
    v: Tensor,
    *,
    decay: Tensor,
    weight_decay: Tensor,
    beta2: Tensor,
    one_minus_beta1: Tensor,
    one_minus_beta2: Tensor,
    decoupled: bool,
    l2: bool,
    maximize: bool,
) -> Tensor:
    """The part of one parameter's update that Adam and NAdam share, inside their compiled kernels.

    Applies the weight decay, updates m and v in place and returns the gradient the
    moments saw (the fused twin of :func:`_foreach_moments_`). The scalars come computed
    (:func:`_moment_scalars`).
    """
    if maximize:
        grad = -grad
    if decoupled:
        param.mul_(decay)  # θ ← (1 − ηλ)·θ
    if l2:
        grad = grad + weight_decay * param
    m.add_((grad - m) * one_minus_beta1)  # m ← β1·m + (1 − β1)·g, the lerp of the loop
    v.mul_(beta2).add_(grad * grad * one_minus_beta2)
    return grad


def _moment_scalars(lr: float, beta1: float, beta2: float, weight_decay: float) -> dict[str, float]:
    """The scalars of :func:`_kernel_moments_`, computed once per step in double precision, as
    the loop computes them: inside the kernel, the C++ loop recomputed 1 − ηλ, 1 − β1 and
    1 − β2 for every vector of 16 elements (2–4 % of the kernel's time, measured)."""
    return dict(
        decay=1 - lr * weight_decay,
        weight_decay=weight_decay,
        beta2=beta2,
        one_minus_beta1=1 - beta1,
        one_minus_beta2=1 - beta2,
    )


def _adam_kernel(
    param: Tensor,
    grad: Tensor,
    m: Tensor,
    v: Tensor,
    v_max: Tensor | None,
    *,
    decay: Tensor,
    weight_decay: Tensor,
    beta2: Tensor,
    one_minus_beta1: Tensor,
    one_minus_beta2: Tensor,
    eps: Tensor,
    step_size: Tensor,
    inverse_bias_correction2_sqrt: Tensor,
    decoupled: bool,
    l2: bool,
    amsgrad: bool,
    nesterov: bool,
    maximize: bool,
) -> None:
    """The Adam-family update of one parameter, written for torch.compile to fuse into one pass."""
    grad = _kernel_moments_(
        param,
        grad,
        m,
        v,
        decay=decay,
        weight_decay=weight_decay,
        beta2=beta2,
        one_minus_beta1=one_minus_beta1,
        one_minus_beta2=one_minus_beta2,
        decoupled=decoupled,
        l2=l2,
        maximize=maximize,
    )
    if amsgrad:
        v_max.copy_(torch.maximum(v_max, v))
        v = v_max
    numerator = m + (grad - m) * one_minus_beta1 if nesterov else m
    # A product, not the loop's quotient: one division per element fewer, in a loop that
    # with two threads is close to bound by the divider (the results differ in the last bit).
    denom = v.sqrt() * inverse_bias_correction2_sqrt + eps
    param.sub_(numerator / denom * step_size)


_adam_fused_kernel = FusedKernel(_adam_kernel)


def _adam_fused(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor | None],
    state_steps: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled_weight_decay: bool,
    amsgrad: bool,
    nesterov: bool,
    maximize: bool,
    optimizer_name: str = "Adam",
    plans: dict | None = None,
) -> None:
    """The same step as :func:`_adam_single_tensor`, compiled kernels over many parameters at once."""
    for (_, dtype), bucket in fused_buckets(
        plans, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps
    ).items():
        *tensors, b_steps = bucket
        scalars = fused_scalars(tensors[0][0], plans, eps=eps, **_moment_scalars(lr, beta1, beta2, weight_decay))
        t = advance_steps(b_steps, dtype, plans)
        if isinstance(t, list):  # the CPU: Python numbers
            step_size = each_count(t, lambda k: lr / (1 - beta1**k))
            inverse_bias_correction2_sqrt = each_count(t, lambda k: (1 - beta2**k) ** -0.5)
        else:  # one vector on the device, in the kernel's scalar dtype
            step_size = lr / (1 - beta1**t)
            inverse_bias_correction2_sqrt = (1 - beta2**t).rsqrt()
        _adam_fused_kernel(
            optimizer_name,
            tensors,
            step_size=step_size,
            inverse_bias_correction2_sqrt=inverse_bias_correction2_sqrt,
            amsgrad=amsgrad,
            nesterov=nesterov,
            maximize=maximize,
            **_decay_flags(decoupled_weight_decay, weight_decay),
            **scalars,
            plans=plans,
        )


def _start_moments(state: dict, p: Tensor, group: dict) -> None:
    """The state torch.optim.Adam starts a parameter with: step 0, m = v = 0."""
    state["step"] = new_step_counter(p, group)
    state["exp_avg"] = state_like(p, 1)
    state["exp_avg_sq"] = state_like(p, 2)


class _AdamFamily(CourseOptimizer):
    """The state and options shared by Adam, AdamW and NesterovAdamW.

    Subclasses say which variant of the update a param group asks for in
    :meth:`_variant` (amsgrad, decoupled_weight_decay, nesterov).
    """

    _single_tensor = staticmethod(_adam_single_tensor)
    _multi_tensor = staticmethod(_adam_multi_tensor)
    _unsupported = ("capturable", "differentiable")
    # A state_dict saved by torch.optim in a mode optlib cannot run must not load silently.
    _refuse_unsupported_on_load = True

    def _fused(self, *tensor_lists, **options) -> None:
        _adam_fused(*tensor_lists, **options, optimizer_name=type(self).__name__)

    def _variant(self, group: dict) -> dict:
        raise NotImplementedError

    def _state_keys(self, group: dict) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step")

    def _init_state(self, p: Tensor, state: dict, group: dict) -> None:
        if len(state) == 0:
            _start_moments(state, p, group)
        # The group's option, which _variant passes on (NesterovAdamW has none): asked per
        # parameter per step, building _variant's dict each time cost more than the check.
        if group.get("amsgrad") and "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = state_like(p, 3)

    def _update_options(self, group: dict) -> dict:
        beta1, beta2 = group["betas"]
        return dict(
            self._variant(group),
            lr=as_float(group["lr"]),
            beta1=as_float(beta1),
            beta2=as_float(beta2),
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            maximize=group["maximize"],
        )


def _check_adam_arguments(lr, betas, eps, weight_decay, foreach) -> None:
    check_lr(lr)
    check_betas(betas)
    check_non_negative("eps", eps)
    check_non_negative("weight_decay", weight_decay)
    # torch.optim.Adam's rules for tensor hyperparameters, with its exception type.
    if isinstance(betas[0], Tensor) != isinstance(betas[1], Tensor):
        raise ValueError(f"Invalid betas: {betas!r}; betas must be either both floats or both Tensors")
    for name, value in (("lr", lr), ("betas[0]", betas[0]), ("betas[1]", betas[1])):
        if isinstance(value, Tensor) and foreach:
            raise ValueError(
                f"Invalid {name}: a Tensor {name} is not supported with foreach=True "
                "(torch.optim needs capturable=True for it, which optlib does not implement); pass a float"
            )


class Adam(_AdamFamily):
    r"""Adam: adaptive moment estimation (Kingma & Ba, 2015).

    With gradient :math:`g_t = \nabla f(\theta_{t-1})` (negated when ``maximize``):

    .. math::

        g_t &\leftarrow g_t + \lambda\,\theta_{t-1}
            \quad\text{(if } \lambda \ne 0 \text{ and not decoupled)} \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t \\
        v_t &= \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2 \\
        \hat v_t &= \max(\hat v_{t-1}, v_t) \text{ if amsgrad, else } v_t \\
        \theta_t &= \theta_{t-1} - \eta\,\frac{m_t / (1-\beta_1^t)}{\sqrt{\hat v_t / (1-\beta_2^t)} + \varepsilon}

    with :math:`m_0 = v_0 = 0` and :math:`t` counting the steps from 1. With
    ``decoupled_weight_decay=True`` the decay is instead
    :math:`\theta_{t-1} \leftarrow (1-\eta\lambda)\,\theta_{t-1}` before the update,
    which is :class:`AdamW`.

    Same arguments, defaults, state (``step``, ``exp_avg``, ``exp_avg_sq``,
    ``max_exp_avg_sq``) and trajectory as ``torch.optim.Adam``.

    Source: D. P. Kingma and J. Ba, "Adam: A Method for Stochastic Optimization",
    ICLR 2015, https://arxiv.org/abs/1412.6980. AMSGrad: S. J. Reddi, S. Kale and
    S. Kumar, "On the Convergence of Adam and Beyond", ICLR 2018.

    Args:
        params: an iterable of tensors or of param-group dicts.
        lr: learning rate η, a finite number >= 0 (default 1e-3).
        betas: (β1, β2), the decay rates of the first and second moment, each in [0, 1)
            (default (0.9, 0.999)).
        eps: ε added to the denominator for numerical stability, >= 0 (default 1e-8).
        weight_decay: λ >= 0 (default 0), an L2 penalty added to the gradient
            unless ``decoupled_weight_decay``.
        amsgrad: use the running maximum of :math:`v_t` (default False).
        foreach: True for the ``torch._foreach_*`` path, False for the per-parameter
            loop, None to choose the former when every parameter is on CUDA.
        maximize: maximize the objective instead of minimizing it (default False).
        fused: True for the update compiled into one kernel over many parameters (``torch.compile``, CPU
            and CUDA) that reads and writes each tensor once per step; it cannot
            be combined with ``foreach=True`` or ``differentiable=True``.
        capturable, differentiable: accepted for drop-in compatibility with
            torch.optim; optlib does not implement these modes and raises ValueError
            when one is turned on.
        decoupled_weight_decay: apply weight decay to θ directly, as AdamW (default False).

    Example: minimise :math:`\lVert w\rVert^2` from :math:`w = (1, -2)`::

        >>> import torch, optlib
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = optlib.Adam([w], lr=0.1)
        >>> for _ in range(100):
        ...     opt.zero_grad()
        ...     (w ** 2).sum().backward()
        ...     opt.step()
        >>> bool(w.abs().max() < 0.05)
        True

    A NaN or Inf gradient propagates into the moments and the parameters: optlib
    does not silently skip the step. ``optlib.train`` stops when the loss is not finite.
    """

    _group_defaults = dict(
        maximize=False,
        foreach=None,
        amsgrad=False,
        capturable=False,
        differentiable=False,
        fused=None,
        decoupled_weight_decay=False,
    )

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-3,
        betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
    ) -> None:
        _check_adam_arguments(lr, betas, eps, weight_decay, foreach)
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "differentiable": differentiable,
            "fused": fused,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults)

    def _variant(self, group: dict) -> dict:
        return {
            "amsgrad": group["amsgrad"],
            "decoupled_weight_decay": group["decoupled_weight_decay"],
            "nesterov": False,
        }
