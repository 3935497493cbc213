"""Learning-rate schedules the course uses, built from ``torch.optim.lr_scheduler``.

Warm-up followed by cosine decay is the recipe of nanoGPT and of the AlgoPerf
NAdamW baseline: the learning rate rises linearly from ``warmup_start`` × η to η
over the first ``warmup_steps`` steps, then follows half a cosine down to
``final_fraction`` × η at ``total_steps``. For step ``t`` (counted from 0, as
``scheduler.step()`` calls are) the multiplier of η is

    t < W:        warmup_start + (1 - warmup_start) · t / W
    W ≤ t ≤ T:    f + (1 - f) · (1 + cos(π (t - W) / (T - W))) / 2
    t > T:        f

with W = ``warmup_steps``, T = ``total_steps`` and f = ``final_fraction``.
It is one :class:`torch.optim.lr_scheduler.LambdaLR`, so it saves and loads with
the optimizer's ``state_dict`` like any torch scheduler.
"""

from __future__ import annotations

import math

import torch

__all__ = ["warmup_cosine", "warmup_cosine_factor"]


def _check(warmup_steps, total_steps, final_fraction, warmup_start) -> None:
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"Invalid warmup_steps: {warmup_steps!r}; warmup_steps must be an integer >= 0")
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps <= warmup_steps:
        raise ValueError(
            f"Invalid total_steps: {total_steps!r}; total_steps must be an integer > warmup_steps ({warmup_steps})"
        )
    if not 0.0 <= final_fraction <= 1.0:
        raise ValueError(f"Invalid final_fraction: {final_fraction!r}; final_fraction must be in [0, 1]")
    if not 0.0 <= warmup_start <= 1.0:
        raise ValueError(f"Invalid warmup_start: {warmup_start!r}; warmup_start must be in [0, 1]")


def warmup_cosine_factor(
    step: int, warmup_steps: int, total_steps: int, final_fraction: float = 0.0, warmup_start: float = 0.0
) -> float:
    """The multiplier of the base learning rate at ``step`` (see the module docstring)."""
    _check(warmup_steps, total_steps, final_fraction, warmup_start)
    return _factor(step, warmup_steps, total_steps, final_fraction, warmup_start)


def _factor(step: int, warmup_steps: int, total_steps: int, final_fraction: float, warmup_start: float) -> float:
    if step < warmup_steps:
        return warmup_start + (1.0 - warmup_start) * step / warmup_steps
    progress = min(step - warmup_steps, total_steps - warmup_steps) / (total_steps - warmup_steps)
    return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    warmup_steps: int,
    total_steps: int,
    final_fraction: float = 0.0,
    warmup_start: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay, as a ``LambdaLR`` stepped once per optimizer step.

    Example::

        >>> import torch, optlib
        >>> w = torch.zeros(2, requires_grad=True)
        >>> opt = optlib.AdamW([w], lr=1e-3)
        >>> sched = optlib.warmup_cosine(opt, warmup_steps=10, total_steps=100)
        >>> opt.param_groups[0]["lr"]  # step 0 of the warm-up: 0 x lr
        0.0
        >>> for _ in range(10):
        ...     opt.step(); sched.step()
        >>> round(opt.param_groups[0]["lr"], 6)  # warm-up done: the full lr
        0.001
    """
    _check(warmup_steps, total_steps, final_fraction, warmup_start)
    # Checked once here; the scheduler calls the factor at every step.
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _factor(step, warmup_steps, total_steps, final_fraction, warmup_start)
    )
