r"""NAdam: Adam with Nesterov momentum and Dozat's momentum warm-up schedule."""

from __future__ import annotations

from itertools import chain

import torch
from torch import Tensor

from ._base import (
    CourseOptimizer,
    as_float,
    check_betas,
    check_lr,
    check_non_negative,
    group_by_device_and_dtype,
    new_step_counter,
)
from ._compile import FusedKernel, advance_steps, fused_buckets, fused_scalars
from ._placement import state_like
from .adam import _decay_flags, _foreach_moments_, _kernel_moments_, _moment_scalars

__all__ = ["NAdam"]


def _momentum_coefficient(beta1: float, momentum_decay: float, t: float) -> float:
    # Dozat's warm-up: μ_t rises from β1/2 towards β1, so early steps, whose
    # moments are still mostly the zero initialisation, lean on the gradient.
    return beta1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay))


def _nadam_single_tensor(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    mu_products: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    momentum_decay: float,
    decoupled_weight_decay: bool,
    maximize: bool,
) -> None:
    """One NAdam step, one parameter at a time: the readable version of the update."""
    for i, param in enumerate(params):
        grad = -grads[i] if maximize else grads[i]
        m, v, mu_product, step = exp_avgs[i], exp_avg_sqs[i], mu_products[i], state_steps[i]

        step += 1
        t = step.item()
        bias_correction2 = 1 - beta2**t

        if weight_decay != 0:
            if decoupled_weight_decay:
                param.mul_(1 - lr * weight_decay)  # θ ← θ(1 − ηλ), outside the moments (NAdamW)
            else:
                grad = grad.add(param, alpha=weight_decay)  # g ← g + λθ, an L2 penalty

        mu = _momentum_coefficient(beta1, momentum_decay, t)
        mu_next = _momentum_coefficient(beta1, momentum_decay, t + 1)
        mu_product *= mu  # ∏_{i≤t} μ_i, the bias correction of a momentum with varying μ

        m.lerp_(grad, 1 - beta1)  # m ← β1·m + (1 − β1)·g
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)  # v ← β2·v + (1 − β2)·g²
        denom = v.div(bias_correction2).sqrt().add_(eps)  # √(v / (1 − β2^t)) + ε

        # Nesterov: this step's gradient with weight 1 − μ_t, plus the momentum
        # with the next step's weight μ_{t+1}, each bias-corrected by its own product.
        mu_product_t = mu_product.item()
        mu_product_next = mu_product_t * mu_next
        param.addcdiv_(grad, denom, value=-lr * (1.0 - mu) / (1.0 - mu_product_t))
        param.addcdiv_(m, denom, value=(-lr * mu_next) / (1.0 - mu_product_next))


def _nadam_multi_tensor(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    mu_products: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    momentum_decay: float,
    decoupled_weight_decay: bool,
    maximize: bool,
) -> None:
    """The same step as :func:`_nadam_single_tensor` on ``torch._foreach_*`` ops, one bucket per device and dtype."""
    if len(params) == 0:
        return
    buckets = group_by_device_and_dtype(params, grads, exp_avgs, exp_avg_sqs, mu_products, state_steps)
    for b_params, b_grads, b_exp_avgs, b_exp_avg_sqs, b_mu_products, b_steps in buckets.values():
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

        steps = [step.item() for step in b_steps]
        mus = [_momentum_coefficient(beta1, momentum_decay, t) for t in steps]
        mu_nexts = [_momentum_coefficient(beta1, momentum_decay, t + 1) for t in steps]
        torch._foreach_mul_(b_mu_products, mus)

        # Divide before the square root, as the loop does, so both paths round alike
        # (torch.optim's foreach path takes the root first and differs in the last bit).
        denom = torch._foreach_div(b_exp_avg_sqs, [1 - beta2**t for t in steps])
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, eps)

        mu_product_values = [mu_product.item() for mu_product in b_mu_products]
        grad_step_sizes = [(lr * (1.0 - mu) / (1.0 - prod)) * -1 for mu, prod in zip(mus, mu_product_values)]
        momentum_step_sizes = [
            (lr * mu_next / (1.0 - prod * mu_next)) * -1 for mu_next, prod in zip(mu_nexts, mu_product_values)
        ]
        torch._foreach_addcdiv_(b_params, b_grads, denom, grad_step_sizes)
        torch._foreach_addcdiv_(b_params, b_exp_avgs, denom, momentum_step_sizes)


def _nadam_kernel(
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
    eps: Tensor,
    grad_step_size: Tensor,
    momentum_step_size: Tensor,
    bias_correction2: Tensor,
    decoupled: bool,
    l2: bool,
    maximize: bool,
) -> None:
    """The NAdam update of one parameter, written for torch.compile to fuse into one pass."""
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
    denom = (v / bias_correction2).sqrt() + eps
    param.sub_(grad / denom * grad_step_size)
    param.sub_(m / denom * momentum_step_size)


_nadam_fused_kernel = FusedKernel(_nadam_kernel)


def _nadam_fused(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    mu_products: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    momentum_decay: float,
    decoupled_weight_decay: bool,
    maximize: bool,
    plans: dict | None = None,
) -> None:
    """The same step as :func:`_nadam_single_tensor`, compiled kernels over many parameters at once."""
    for (_, dtype), bucket in fused_buckets(
        plans, params, grads, exp_avgs, exp_avg_sqs, mu_products, state_steps
    ).items():
        *tensors, b_mu_products, b_steps = bucket
        scalars = fused_scalars(tensors[0][0], plans, eps=eps, **_moment_scalars(lr, beta1, beta2, weight_decay))
        t = advance_steps(b_steps, dtype, plans)
        if isinstance(t, list):  # the CPU: Python numbers, as the multi-tensor path computes them
            mu = [_momentum_coefficient(beta1, momentum_decay, k) for k in t]
            mu_next = [_momentum_coefficient(beta1, momentum_decay, k + 1) for k in t]
            torch._foreach_mul_(b_mu_products, mu)
            mu_product = torch.stack(b_mu_products).tolist()
            grad_step_size = [lr * (1 - m) / (1 - p) for m, p in zip(mu, mu_product)]
            momentum_step_size = [lr * n / (1 - p * n) for n, p in zip(mu_next, mu_product)]
            bias_correction2 = [1 - beta2**k for k in t]
        else:
            mu = _momentum_coefficient(beta1, momentum_decay, t)
            mu_next = _momentum_coefficient(beta1, momentum_decay, t + 1)
            torch._foreach_mul_(b_mu_products, mu.to(b_mu_products[0].dtype).unbind())
            mu_product = torch.stack(b_mu_products).to(t.dtype)
            grad_step_size = lr * (1 - mu) / (1 - mu_product)
            momentum_step_size = lr * mu_next / (1 - mu_product * mu_next)
            bias_correction2 = 1 - beta2**t
        _nadam_fused_kernel(
            "NAdam",
            tensors,
            grad_step_size=grad_step_size,
            momentum_step_size=momentum_step_size,
            bias_correction2=bias_correction2,
            maximize=maximize,
            **_decay_flags(decoupled_weight_decay, weight_decay),
            **scalars,
            plans=plans,
        )


class NAdam(CourseOptimizer):
    r"""NAdam: Adam with Nesterov momentum (Dozat, 2016), as in ``torch.optim.NAdam``.

    With gradient :math:`g_t = \nabla f(\theta_{t-1})` (negated when ``maximize``)
    and momentum decay :math:`\psi`:

    .. math::

        g_t &\leftarrow g_t + \lambda\,\theta_{t-1}
            \quad\text{(or } \theta_{t-1} \leftarrow (1-\eta\lambda)\,\theta_{t-1}
            \text{ if decoupled)} \\
        \mu_t &= \beta_1\left(1 - \tfrac12\, 0.96^{t\psi}\right) \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t \\
        v_t &= \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2 \\
        \hat m_t &= \frac{\mu_{t+1}\, m_t}{1-\prod_{i=1}^{t+1}\mu_i}
            + \frac{(1-\mu_t)\, g_t}{1-\prod_{i=1}^{t}\mu_i} \\
        \theta_t &= \theta_{t-1} - \eta\,\frac{\hat m_t}{\sqrt{v_t / (1-\beta_2^t)} + \varepsilon}

    The momentum coefficient :math:`\mu_t` warms up from :math:`\beta_1/2` to
    :math:`\beta_1`; the running product :math:`\prod_i \mu_i` is kept in the state
    as ``mu_product`` next to ``step``, ``exp_avg`` (:math:`m`) and ``exp_avg_sq`` (:math:`v`).
    With ``decoupled_weight_decay=True`` this is NAdamW; the course's
    :class:`NesterovAdamW` is the simpler variant with a constant :math:`\beta_1`.

    Same arguments, defaults, state and trajectory as ``torch.optim.NAdam``.
    Unlike torch.optim, :meth:`load_state_dict` keeps ``mu_product`` in the dtype
    it was saved in (torch.optim casts it to the parameter's dtype, which in
    bfloat16 rounds away most of its digits), so a resumed run continues exactly.

    Source: T. Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016
    workshop, https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ.

    Args:
        params: an iterable of tensors or of param-group dicts.
        lr: learning rate η, a finite number >= 0 (default 2e-3).
        betas: (β1, β2), each in [0, 1) (default (0.9, 0.999)).
        eps: ε added to the denominator, >= 0 (default 1e-8).
        weight_decay: λ >= 0 (default 0).
        momentum_decay: ψ >= 0, how fast μ_t approaches β1 (default 4e-3).
        decoupled_weight_decay: apply weight decay to θ directly, as AdamW (default False).
        foreach: True for the ``torch._foreach_*`` path, False for the per-parameter
            loop, None to choose the former when every parameter is on CUDA.
        maximize: maximize the objective instead of minimizing it (default False).
        fused: True for the update compiled into one kernel over many parameters (``torch.compile``, CPU
            and CUDA) that reads and writes each tensor once per step; it cannot
            be combined with ``foreach=True`` or ``differentiable=True``.
        capturable, differentiable: accepted for drop-in compatibility with
            torch.optim; optlib does not implement these modes and raises ValueError
            when one is turned on.

    Example: minimise :math:`\lVert w\rVert^2` from :math:`w = (1, -2)`::

        >>> import torch, optlib
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = optlib.NAdam([w], lr=0.1)
        >>> for _ in range(100):
        ...     opt.zero_grad()
        ...     (w ** 2).sum().backward()
        ...     opt.step()
        >>> bool(w.abs().max() < 0.05)
        True

    A NaN or Inf gradient propagates into the moments and the parameters: optlib
    does not silently skip the step. ``optlib.train`` stops when the loss is not finite.
    """

    _single_tensor = staticmethod(_nadam_single_tensor)
    _multi_tensor = staticmethod(_nadam_multi_tensor)
    _fused = staticmethod(_nadam_fused)
    _unsupported = ("capturable", "differentiable")
    _group_defaults = dict(
        maximize=False,
        foreach=None,
        capturable=False,
        differentiable=False,
        decoupled_weight_decay=False,
        fused=None,
    )
    # Old state_dicts stored the running product, like the step, as a Python number.
    _scalar_state = ("step", "mu_product")
    # A state_dict saved by torch.optim in a mode optlib cannot run must not load silently.
    _refuse_unsupported_on_load = True

    def __init__(
        self,
        params,
        lr: float | Tensor = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        check_lr(lr)
        check_betas(betas)
        check_non_negative("eps", eps)
        check_non_negative("weight_decay", weight_decay)
        check_non_negative("momentum_decay", momentum_decay)
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum_decay": momentum_decay,
            "decoupled_weight_decay": decoupled_weight_decay,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "differentiable": differentiable,
            "fused": fused,
        }
        super().__init__(params, defaults)

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        # torch's loader casts every floating state tensor except `step` to the
        # parameter's dtype; mu_product is a running product like step and must keep its own.
        saved_state = state_dict["state"]
        saved_ids = chain.from_iterable(g["params"] for g in state_dict["param_groups"])
        params = chain.from_iterable(g["params"] for g in self.param_groups)
        for param_id, p in zip(saved_ids, params):
            saved = saved_state.get(param_id, {}).get("mu_product")
            if torch.is_tensor(saved):
                self.state[p]["mu_product"] = saved.detach().clone()

    def _state_keys(self, group: dict) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq", "mu_product", "step")

    def _init_state(self, p: Tensor, state: dict, group: dict) -> None:
        if len(state) == 0:
            # The running product sits beside the step count (on the CPU unless fused).
            state["step"] = new_step_counter(p, group)
            state["mu_product"] = torch.ones_like(state["step"])
            state["exp_avg"] = state_like(p, 1)
            state["exp_avg_sq"] = state_like(p, 2)

    def _update_options(self, group: dict) -> dict:
        beta1, beta2 = group["betas"]
        return dict(
            lr=as_float(group["lr"]),
            beta1=as_float(beta1),
            beta2=as_float(beta2),
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            momentum_decay=group["momentum_decay"],
            decoupled_weight_decay=group["decoupled_weight_decay"],
            maximize=group["maximize"],
        )
