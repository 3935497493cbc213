r"""NesterovAdamW, the course's combined method: Adam's scaling, Nesterov momentum, AdamW's decay."""

from __future__ import annotations

from torch import Tensor

from .adam import _AdamFamily, _check_adam_arguments

__all__ = ["NesterovAdamW"]


class NesterovAdamW(_AdamFamily):
    r"""Adam with a Nesterov look-ahead on the first moment and decoupled weight decay.

    With gradient :math:`g_t = \nabla f(\theta_{t-1})` (negated when ``maximize``):

    .. math::

        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t \\
        v_t &= \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2 \\
        \bar m_t &= \beta_1 m_t + (1-\beta_1)\, g_t
            \qquad (\bar m_t = m_t \text{ when } \texttt{nesterov=False}) \\
        \theta_t &= \theta_{t-1} - \eta\,\lambda\,\theta_{t-1}
            - \eta\,\frac{\bar m_t / (1-\beta_1^t)}{\sqrt{v_t / (1-\beta_2^t)} + \varepsilon}

    :math:`\bar m_t` is the momentum one step ahead, had the next gradient equal
    :math:`g_t`: the step uses where the momentum is going rather than where it is,
    as Nesterov's accelerated gradient does for heavy-ball momentum.

    This is the NAdamW of the AlgoPerf training-algorithms benchmark baseline
    (constant :math:`\beta_1`, look-ahead divided by :math:`1-\beta_1^t`). It
    differs slightly from optax's ``nadamw``, which divides the :math:`\beta_1 m_t`
    term by :math:`1-\beta_1^{t+1}`, and from
    ``torch.optim.NAdam(decoupled_weight_decay=True)``, which uses Dozat's
    momentum warm-up schedule :math:`\mu_t` (see :class:`NAdam`). With
    ``nesterov=False`` it is exactly ``torch.optim.AdamW``, and with
    ``weight_decay=0`` as well exactly ``torch.optim.Adam``.

    State per parameter: ``step``, ``exp_avg`` (:math:`m`), ``exp_avg_sq`` (:math:`v`),
    as in torch.optim.Adam.

    Sources: T. Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016
    workshop; I. Loshchilov and F. Hutter, "Decoupled Weight Decay Regularization",
    ICLR 2019; G. E. Dahl et al., "Benchmarking Neural Network Training
    Algorithms", 2023, https://arxiv.org/abs/2306.07179 (the AlgoPerf NAdamW baseline).

    Args:
        params: an iterable of tensors or of param-group dicts.
        lr: learning rate η, a finite number >= 0 (default 1e-3).
        betas: (β1, β2), each in [0, 1) (default (0.9, 0.999)).
        eps: ε added to the denominator, >= 0 (default 1e-8).
        weight_decay: decoupled decay λ >= 0 (default 1e-2).
        nesterov: use the look-ahead :math:`\bar m_t` (default True); False gives AdamW.
        foreach: True for the ``torch._foreach_*`` path, False for the per-parameter
            loop, None to choose the former when every parameter is on CUDA.
        maximize: maximize the objective instead of minimizing it (default False).
        fused: True for the update compiled into one kernel over many parameters (``torch.compile``; CPU
            and CUDA), which reads and writes each tensor once per step.

    Example::

        >>> import torch, optlib
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = optlib.NesterovAdamW([w], lr=0.1, weight_decay=0.0)
        >>> for _ in range(100):
        ...     opt.zero_grad()
        ...     (w ** 2).sum().backward()
        ...     opt.step()
        >>> bool(w.abs().max() < 0.05)
        True

    A NaN or Inf gradient propagates into the moments and the parameters: optlib
    does not silently skip the step. ``optlib.train`` stops when the loss is not finite.
    """

    _group_defaults = dict(maximize=False, foreach=None, nesterov=True, fused=None)

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-3,
        betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        nesterov: bool = True,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        fused: bool | None = None,
    ) -> None:
        _check_adam_arguments(lr, betas, eps, weight_decay, foreach)
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "foreach": foreach,
            "maximize": maximize,
            "fused": fused,
        }
        super().__init__(params, defaults)

    def _variant(self, group: dict) -> dict:
        return {"amsgrad": False, "decoupled_weight_decay": True, "nesterov": group["nesterov"]}
