"""Run an optimizer on a test function and record the path it takes.

The optimizers of the course act on a list of tensors, exactly like
``torch.optim``; here that list is one tensor, the point ``theta`` of a
:class:`~optlib.problems.Problem`. :func:`run_trajectory` records every iterate
and its loss, so the chapters can draw the path on a contour map and measure
how fast the error falls (:func:`convergence_rate`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from optlib.problems import Problem

__all__ = [
    "Trajectory",
    "run_trajectory",
    "run_trajectories",
    "steps_to_reach",
    "convergence_rate",
    "DIVERGENCE_THRESHOLD",
]

#: A loss above this (or a non-finite one) ends a run as diverged.
DIVERGENCE_THRESHOLD = 1e12


@dataclass
class Trajectory:
    """The path of one optimizer run.

    Attributes:
        label: legend label, e.g. ``"SGD(lr=0.1, momentum=0.9)"``.
        positions: iterates, shape ``(n, dim)``; row ``k`` is ``theta_k`` and row 0
            the start.
        losses: ``f(theta_k)``, shape ``(n,)`` (the exact loss, without gradient noise).
        optimizer: the optimizer's class name.
        hyperparameters: the keyword arguments given to the optimizer.
        diverged: whether the run stopped because the loss became non-finite or
            exceeded :data:`DIVERGENCE_THRESHOLD`.
        diverged_at: the step whose loss was bad (then ``n == diverged_at``:
            that iterate and everything after it is not recorded), else ``None``.
            Without divergence ``n == steps + 1``.
        problem: the problem's name.
        min_value: the problem's minimum value, to turn losses into errors.
        minimum: the problem's known minimiser (``None`` if unknown).
    """

    label: str
    positions: np.ndarray
    losses: np.ndarray
    optimizer: str
    hyperparameters: dict
    diverged: bool = False
    diverged_at: int | None = None
    problem: str = ""
    min_value: float = 0.0
    minimum: np.ndarray | None = field(default=None, repr=False)

    @property
    def steps(self) -> int:
        """Number of optimizer steps recorded (``len(losses) - 1``)."""
        return len(self.losses) - 1

    @property
    def errors(self) -> np.ndarray:
        """``f(theta_k) - f*`` for every recorded step."""
        return self.losses - self.min_value

    @property
    def distances(self) -> np.ndarray:
        """``||theta_k - theta*||`` for every recorded step (needs a known minimiser)."""
        if self.minimum is None:
            raise ValueError(f"trajectory {self.label!r} has no known minimum to measure distances to")
        return np.linalg.norm(self.positions - self.minimum, axis=1)


def _format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "(" + ", ".join(_format_value(v) for v in value) + ")"
    return str(value)


def default_label(optimizer_cls: type, hyperparameters: dict) -> str:
    """``"Name(key=value, ...)"`` in the order the hyperparameters were given."""
    args = ", ".join(f"{k}={_format_value(v)}" for k, v in hyperparameters.items())
    return f"{optimizer_cls.__name__}({args})"


def run_trajectory(
    problem: Problem,
    optimizer_cls: type,
    steps: int = 100,
    start=None,
    label: str | None = None,
    seed: int = 0,
    **hyperparameters,
) -> Trajectory:
    """Run ``optimizer_cls([theta], **hyperparameters)`` on ``problem`` for ``steps`` steps.

    ``theta`` is one float64 tensor initialised at ``start`` (default
    ``problem.start``). Each step computes the exact gradient by autograd, adds
    ``N(0, problem.noise_std^2)`` noise per coordinate when ``noise_std > 0``
    (drawn from a generator seeded with ``seed``, so a run is reproducible and
    different seeds give different paths), then calls ``optimizer.step()``.

    A run whose loss becomes non-finite or exceeds :data:`DIVERGENCE_THRESHOLD`
    stops there: ``diverged`` is set, ``diverged_at`` is that step, and the
    arrays hold only the ``diverged_at`` good iterates before it (so they are
    shorter than ``steps + 1``).

    Any class with ``torch.optim``'s interface works: ``torch.optim.SGD``,
    ``optlib.Adam``, ...
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    if start is None:
        start = problem.start
    theta = torch.as_tensor(np.asarray(start, dtype=np.float64) if not torch.is_tensor(start) else start)
    theta = theta.detach().to(torch.float64).clone()
    if theta.shape != (problem.dim,):
        raise ValueError(f"start must have shape ({problem.dim},), got {tuple(theta.shape)}")
    theta.requires_grad_(True)
    optimizer = optimizer_cls([theta], **hyperparameters)
    generator = torch.Generator().manual_seed(seed)

    positions = [theta.detach().clone()]
    losses: list[float] = []
    diverged_at: int | None = None
    for step in range(steps + 1):
        optimizer.zero_grad(set_to_none=False)
        with torch.enable_grad():
            loss = problem(theta)
        value = loss.item()
        if not math.isfinite(value) or value > DIVERGENCE_THRESHOLD:
            diverged_at = step
            positions.pop()  # the bad iterate is not recorded
            break
        losses.append(value)
        if step == steps:
            break  # the last iterate needs its loss, not another step
        loss.backward()
        if problem.noise_std > 0:
            noise = torch.randn(problem.dim, generator=generator, dtype=torch.float64)
            theta.grad.add_(noise, alpha=problem.noise_std)
        optimizer.step()
        positions.append(theta.detach().clone())

    if diverged_at == 0:
        raise ValueError(f"start must have a finite loss below {DIVERGENCE_THRESHOLD:g}; f(start) = {value}")
    return Trajectory(
        label=label if label is not None else default_label(optimizer_cls, hyperparameters),
        positions=torch.stack(positions).numpy(),
        losses=np.asarray(losses, dtype=np.float64),
        optimizer=optimizer_cls.__name__,
        hyperparameters=dict(hyperparameters),
        diverged=diverged_at is not None,
        diverged_at=diverged_at,
        problem=problem.name,
        min_value=problem.min_value,
        minimum=None if problem.minimum is None else problem.minimum.numpy().copy(),
    )


def run_trajectories(
    problem: Problem,
    configs: dict[str, tuple[type, dict]],
    steps: int = 100,
    start=None,
    seed: int = 0,
) -> list[Trajectory]:
    """One :func:`run_trajectory` per entry of ``configs``, which maps a label to
    ``(optimizer_cls, hyperparameters)``; all runs share ``start`` and ``seed``,
    so with a noisy problem they see the same noise sequence.

    Example::

        run_trajectories(quadratic(), {
            "GD": (optlib.SGD, {"lr": 0.1}),
            "Momentum": (optlib.SGD, {"lr": 0.1, "momentum": 0.9}),
        })
    """
    trajectories = []
    for label, config in configs.items():
        try:
            optimizer_cls, hyperparameters = config
        except (TypeError, ValueError):
            raise ValueError(f"configs[{label!r}] must be a pair (optimizer_cls, hyperparameters dict)") from None
        trajectories.append(
            run_trajectory(problem, optimizer_cls, steps=steps, start=start, label=label, seed=seed, **hyperparameters)
        )
    return trajectories


def steps_to_reach(trajectory: Trajectory, tolerance: float) -> int | None:
    """The first step ``k`` with ``f(theta_k) - f* <= tolerance``, or ``None`` if the
    run never gets there."""
    if not (tolerance >= 0):
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    hits = np.flatnonzero(trajectory.errors <= tolerance)
    return int(hits[0]) if hits.size else None


def convergence_rate(
    trajectory: Trajectory,
    skip: int = 0,
    quantity: str = "distance",
    floor: float = 1e-10,
) -> float:
    """The measured per-step contraction factor ``r`` of the error, fitted as
    ``error_k ~ C r^k``: ``r = exp(slope)`` of a least-squares line through
    ``log(error_k)`` against ``k``.

    Args:
        quantity: ``"distance"`` fits ``||theta_k - theta*||``; ``"loss"`` fits
            ``f(theta_k) - f*``. On a quadratic the loss error is quadratic in
            the distance, so it contracts at ``r^2`` when the distance contracts
            at ``r``: compare ``"distance"`` with :func:`optlib.gd_rate` and
            ``"loss"`` with its square.
        skip: steps to leave out at the start, to drop a transient (momentum
            methods oscillate before settling to their asymptotic rate).
        floor: the fit stops at the first step whose error has fallen below
            ``floor`` times the error at step ``skip``, because past that the
            float64 round-off, not the optimizer, sets the error.

    A rate below 1 means convergence; above 1, growth. Raises ``ValueError``
    when fewer than two steps are left to fit.
    """
    if quantity == "distance":
        errors = trajectory.distances
    elif quantity == "loss":
        errors = trajectory.errors
    else:
        raise ValueError(f"quantity must be 'distance' or 'loss', got {quantity!r}")
    if isinstance(skip, bool) or not isinstance(skip, (int, np.integer)) or skip < 0:
        raise ValueError(f"skip must be an integer >= 0, got {skip!r}")
    if not (0 < floor < 1):
        raise ValueError(f"floor must be in (0, 1), got {floor}")
    errors = errors[skip:]
    if errors.size and errors[0] > 0:
        below = np.flatnonzero(errors <= floor * errors[0])
        if below.size:
            errors = errors[: below[0]]
    if errors.size < 2 or np.any(errors <= 0):
        raise ValueError(
            f"skip={skip} leaves {errors.size} usable steps of trajectory {trajectory.label!r}; "
            "need at least 2 with a positive error"
        )
    steps = np.arange(errors.size, dtype=np.float64)
    slope = np.polyfit(steps, np.log(errors), 1)[0]
    return float(np.exp(slope))
