r"""AdamW: Adam with weight decay decoupled from the adaptive step."""

from __future__ import annotations

from torch import Tensor

from .adam import Adam

__all__ = ["AdamW"]


class AdamW(Adam):
    r"""AdamW: Adam with decoupled weight decay (Loshchilov & Hutter, 2019).

    With gradient :math:`g_t = \nabla f(\theta_{t-1})` (negated when ``maximize``):

    .. math::

        \theta_{t-1} &\leftarrow \theta_{t-1} - \eta\,\lambda\,\theta_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t \\
        v_t &= \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2 \\
        \hat v_t &= \max(\hat v_{t-1}, v_t) \text{ if amsgrad, else } v_t \\
        \theta_t &= \theta_{t-1} - \eta\,\frac{m_t / (1-\beta_1^t)}{\sqrt{\hat v_t / (1-\beta_2^t)} + \varepsilon}

    In :class:`Adam` an L2 penalty :math:`\lambda\theta` is added to the gradient
    and then divided by :math:`\sqrt{\hat v_t}`, so weights with large gradients
    are barely regularised. Here the decay shrinks every weight by the same factor
    :math:`1-\eta\lambda` and never enters the moments. The decay is scaled by the
    current η, so a learning-rate schedule scales it too, as in torch.optim.

    Same arguments, defaults, state and trajectory as ``torch.optim.AdamW``
    (which is ``torch.optim.Adam(decoupled_weight_decay=True)``).

    Source: I. Loshchilov and F. Hutter, "Decoupled Weight Decay Regularization",
    ICLR 2019, https://arxiv.org/abs/1711.05101.

    Args:
        params: an iterable of tensors or of param-group dicts.
        lr: learning rate η, a finite number >= 0 (default 1e-3).
        betas: (β1, β2), each in [0, 1) (default (0.9, 0.999)).
        eps: ε added to the denominator, >= 0 (default 1e-8).
        weight_decay: decoupled decay λ >= 0 (default 1e-2).
        amsgrad: use the running maximum of :math:`v_t` (default False).
        maximize: maximize the objective instead of minimizing it (default False).
        foreach: True for the ``torch._foreach_*`` path, False for the per-parameter
            loop, None to choose the former when every parameter is on CUDA.
        fused: True for the update compiled into one kernel over many parameters (``torch.compile``, CPU
            and CUDA) that reads and writes each tensor once per step; it cannot
            be combined with ``foreach=True`` or ``differentiable=True``.
        capturable, differentiable: accepted for drop-in compatibility with
            torch.optim; optlib does not implement these modes and raises ValueError
            when one is turned on.

    Example: minimise :math:`\lVert w\rVert^2` from :math:`w = (1, -2)`::

        >>> import torch, optlib
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> opt = optlib.AdamW([w], lr=0.1, weight_decay=0.01)
        >>> for _ in range(100):
        ...     opt.zero_grad()
        ...     (w ** 2).sum().backward()
        ...     opt.step()
        >>> bool(w.abs().max() < 0.05)
        True

    A NaN or Inf gradient propagates into the moments and the parameters: optlib
    does not silently skip the step. ``optlib.train`` stops when the loss is not finite.
    """

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-3,
        betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            foreach=foreach,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=True,
        )

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        # Whatever state_dict is loaded (even one saved by Adam), AdamW stays decoupled, as in torch.optim.
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
