"""Test functions on which the course watches optimizers move.

Each constructor returns a :class:`Problem`: a torch function of a point
``theta`` that also knows where its minimum is, where a run should start and
which window of the plane shows it best. Every problem evaluates a whole batch
of points in one call (the last axis is the coordinate), so a contour map of a
200 x 200 grid is a single call.

The quadratics are the workhorse of the theory chapters: on
``f(theta) = 1/2 theta^T A theta`` gradient descent and momentum have closed-form
convergence rates (:func:`gd_rate`, :func:`momentum_rate`), which the chapters
draw beside the rates they measure. The non-convex classics (Rosenbrock, Beale,
Himmelblau, a saddle) show what the theory leaves out.

All problems compute in ``float64`` unless given a tensor of another dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "Problem",
    "quadratic",
    "noisy_quadratic",
    "quadratic_nd",
    "rosenbrock",
    "beale",
    "himmelblau",
    "saddle",
    "optimal_lr",
    "gd_rate",
    "momentum_rate",
    "optimal_momentum",
    "optimal_momentum_lr",
]

_DTYPE = torch.float64


@dataclass(eq=False)
class Problem:
    """A named objective ``f: R^dim -> R`` with what the plots and analyses need.

    Attributes:
        name: shown in plot titles, e.g. ``"Rosenbrock (a=1, b=100)"``.
        dim: number of coordinates.
        fn: the function itself, mapping a tensor ``(..., dim)`` to ``(...)``.
            Call the problem rather than ``fn``: the call checks the shape.
        start: a start point that shows the problem's difficulty.
        minimum: a known global minimiser, or ``None`` if there is none.
        min_value: the minimum value (the infimum for an unbounded problem is not
            allowed: every problem here is bounded below).
        minima: all known global minimisers (Himmelblau has four); defaults to
            ``[minimum]``.
        xlim, ylim: the plot window (only meaningful for ``dim == 2``).
        log_scale: draw contour levels log-spaced in ``f - min_value``; right for
            functions whose values span many orders of magnitude (Rosenbrock).
        noise_std: standard deviation of the Gaussian noise that
            :func:`optlib.run_trajectory` adds to each gradient coordinate, a
            model of the minibatch noise of SGD. ``0.0`` means exact gradients.
        matrix: for a quadratic ``1/2 theta^T A theta`` the matrix ``A``
            (its exact Hessian), else ``None``.
        eigenvalues: for a quadratic, the eigenvalues of ``A`` in increasing
            order, else ``None``.
    """

    name: str
    dim: int
    fn: Callable[[Tensor], Tensor] = field(repr=False)
    start: Tensor
    minimum: Tensor | None = None
    min_value: float = 0.0
    minima: list[Tensor] = field(default_factory=list, repr=False)
    xlim: tuple[float, float] = (-2.0, 2.0)
    ylim: tuple[float, float] = (-2.0, 2.0)
    log_scale: bool = False
    noise_std: float = 0.0
    matrix: Tensor | None = field(default=None, repr=False)
    eigenvalues: Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError(f"dim must be >= 1, got {self.dim}")
        _check_noise(self.noise_std)
        self.start = torch.as_tensor(self.start, dtype=_DTYPE)
        if self.minimum is not None:
            self.minimum = torch.as_tensor(self.minimum, dtype=_DTYPE)
        if not self.minima and self.minimum is not None:
            self.minima = [self.minimum]
        self.minima = [torch.as_tensor(m, dtype=_DTYPE) for m in self.minima]

    def __call__(self, x) -> Tensor:
        """``f(x)`` for a point of shape ``(dim,)`` (returns shape ``()``) or a
        batch of shape ``(..., dim)`` (returns shape ``(...)``)."""
        x = _as_points(x, self.dim)
        return self.fn(x)

    def grad(self, x) -> Tensor:
        """The gradient ``grad f(x)`` by autograd, same shape as ``x``.

        Batches work because the points of a batch do not interact, so the
        gradient of the summed loss is each point's own gradient.
        """
        x = _as_points(x, self.dim).detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(self.fn(x).sum(), x)
        return g

    def hessian(self, x=None) -> Tensor:
        """The Hessian at the point ``x`` (shape ``(dim, dim)``).

        For a quadratic it is the constant matrix ``A`` and ``x`` may be omitted;
        otherwise it is computed by autograd.
        """
        if self.matrix is not None:
            return self.matrix.clone()
        if x is None:
            raise ValueError(f"x is required: {self.name} is not a quadratic")
        x = _as_points(x, self.dim)
        if x.dim() != 1:
            raise ValueError(f"x must be a single point of shape ({self.dim},), got {tuple(x.shape)}")
        return torch.autograd.functional.hessian(self.fn, x)

    @property
    def is_quadratic(self) -> bool:
        return self.matrix is not None

    @property
    def smoothness(self) -> float:
        """``L``, the largest Hessian eigenvalue of a quadratic."""
        return float(self._quadratic_eigenvalues()[-1])

    @property
    def strong_convexity(self) -> float:
        """``mu``, the smallest Hessian eigenvalue of a quadratic."""
        return float(self._quadratic_eigenvalues()[0])

    @property
    def condition_number(self) -> float | None:
        """``kappa = L / mu`` for a quadratic, ``None`` for other problems."""
        if self.eigenvalues is None:
            return None
        return self.smoothness / self.strong_convexity

    def _quadratic_eigenvalues(self) -> Tensor:
        if self.eigenvalues is None:
            raise ValueError(f"problem must be a quadratic; {self.name} is not")
        return self.eigenvalues


def _as_points(x, dim: int) -> Tensor:
    x = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x), dtype=_DTYPE)
    if x.dim() == 0 or x.shape[-1] != dim:
        raise ValueError(f"x must have shape ({dim},) or (..., {dim}), got {tuple(x.shape)}")
    return x


def _check_condition_number(condition_number: float) -> float:
    if not (math.isfinite(condition_number) and condition_number >= 1.0):
        raise ValueError(f"condition_number must be a finite number >= 1, got {condition_number}")
    return float(condition_number)


def _check_noise(noise_std: float) -> float:
    if not (math.isfinite(noise_std) and noise_std >= 0.0):
        raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std}")
    return float(noise_std)


def _rotation(angle: float) -> Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s], [s, c]], dtype=_DTYPE)


def _quadratic_fn(matrix: Tensor) -> Callable[[Tensor], Tensor]:
    def fn(x: Tensor) -> Tensor:
        a = matrix.to(x.dtype)
        return 0.5 * ((x @ a) * x).sum(-1)

    return fn


def _fmt(value: float) -> str:
    return f"{value:g}"


def quadratic(condition_number: float = 10.0, angle: float = 0.0) -> Problem:
    r"""The ill-conditioned valley ``f(theta) = 1/2 theta^T A theta``.

    ``A = R diag(1, kappa) R^T`` with ``R`` the rotation by ``angle`` radians, so
    the Hessian has eigenvalues ``mu = 1`` (along the rotated first axis, the
    valley floor) and ``L = kappa`` (across the valley). Minimiser ``0``,
    minimum ``0``.

    Why it is in the course: every smooth function looks like this near a
    minimum, and here the behaviour of gradient descent is exactly solvable.
    With learning rate ``2/(L+mu)`` the distance to the minimum shrinks by
    ``(kappa-1)/(kappa+1)`` per step; above ``2/L`` the iterates diverge. A large
    ``kappa`` makes the valley narrow and steep-sided: the zigzag that momentum
    (chapter 5) and per-coordinate scaling (chapters 7-9) fix. Rotating the
    valley (``angle``) shows that per-coordinate methods only help when the
    valley is aligned with the axes.

    The default start ``R (-3, 1)`` has a component along both eigenvectors, so
    both the slow and the fast direction show.
    """
    kappa = _check_condition_number(condition_number)
    if not math.isfinite(angle):
        raise ValueError(f"angle must be a finite number of radians, got {angle}")
    rot = _rotation(angle)
    eigenvalues = torch.tensor([1.0, kappa], dtype=_DTYPE)
    matrix = rot @ torch.diag(eigenvalues) @ rot.T
    aligned = math.isclose(math.sin(2 * angle), 0.0, abs_tol=1e-12)
    if aligned and math.isclose(math.cos(angle) ** 2, 1.0, abs_tol=1e-12):
        xlim, ylim = (-3.5, 3.5), (-1.75, 1.75)
    elif aligned:
        xlim, ylim = (-1.75, 1.75), (-3.5, 3.5)
    else:
        xlim, ylim = (-3.5, 3.5), (-3.5, 3.5)
    name = f"Quadratic (κ={_fmt(kappa)}" + (f", angle={angle:.2f})" if angle else ")")
    return Problem(
        name=name,
        dim=2,
        fn=_quadratic_fn(matrix),
        start=rot @ torch.tensor([-3.0, 1.0], dtype=_DTYPE),
        minimum=torch.zeros(2, dtype=_DTYPE),
        min_value=0.0,
        xlim=xlim,
        ylim=ylim,
        matrix=matrix,
        eigenvalues=eigenvalues,
    )


def noisy_quadratic(condition_number: float = 10.0, noise_std: float = 1.0, angle: float = 0.0) -> Problem:
    """:func:`quadratic` whose gradients carry Gaussian noise: the model of SGD.

    Same ``f``, minimiser ``0`` and minimum ``0``; only the gradients that
    :func:`optlib.run_trajectory` feeds the optimizer are perturbed, by
    independent ``N(0, noise_std^2)`` noise per coordinate and step (the losses
    it records are the exact ``f``).

    Why it is in the course: with a constant learning rate, noisy gradient
    descent does not converge but hovers in a ball around the minimum whose
    size grows with the learning rate (chapter 3); averaging (minibatches,
    chapter 4) and decaying rates shrink it.
    """
    noise = _check_noise(noise_std)
    problem = quadratic(condition_number, angle)
    problem.noise_std = noise
    problem.name = problem.name[:-1] + f", noise σ={_fmt(noise)})"
    return problem


def quadratic_nd(dim: int, condition_number: float = 100.0, seed: int = 0) -> Problem:
    """A quadratic ``1/2 theta^T A theta`` in ``dim`` dimensions.

    ``A = Q diag(lambda) Q^T`` with ``Q`` a random rotation (seeded, from the QR
    decomposition of a Gaussian matrix) and eigenvalues ``lambda`` log-spaced
    from ``1`` to ``kappa`` (exposed as ``problem.eigenvalues``). Minimiser
    ``0``, minimum ``0``. The start ``Q (1, ..., 1)`` puts the same error in
    every eigen-direction, so the slowest direction decides the rate.

    Why it is in the course: the 2-D valley has one slow and one fast direction;
    real networks have a whole spectrum. Here one sees that a method's rate is
    set by the extremes of the spectrum, and that adaptive methods cannot undo
    a rotation that mixes the coordinates.

    ``dim = 1`` has a single eigenvalue, so it needs ``condition_number = 1``.
    """
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
    kappa = _check_condition_number(condition_number)
    if dim == 1 and kappa != 1.0:
        raise ValueError(f"condition_number must be 1 when dim=1 (one eigenvalue), got {kappa}")
    dim = int(dim)
    generator = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(dim, dim, generator=generator, dtype=_DTYPE)
    q, r = torch.linalg.qr(gaussian)
    # Fixing the signs by diag(R) makes Q uniformly distributed (Haar), not biased by QR's convention.
    q = q * torch.sign(torch.diagonal(r))
    eigenvalues = torch.logspace(0.0, math.log10(kappa), dim, dtype=_DTYPE)
    matrix = q @ torch.diag(eigenvalues) @ q.T
    matrix = 0.5 * (matrix + matrix.T)
    return Problem(
        name=f"Quadratic in {dim}-D (κ={_fmt(kappa)})",
        dim=dim,
        fn=_quadratic_fn(matrix),
        start=q @ torch.ones(dim, dtype=_DTYPE),
        minimum=torch.zeros(dim, dtype=_DTYPE),
        min_value=0.0,
        xlim=(-2.0, 2.0),
        ylim=(-2.0, 2.0),
        matrix=matrix,
        eigenvalues=eigenvalues,
    )


def rosenbrock(a: float = 1.0, b: float = 100.0) -> Problem:
    """Rosenbrock's banana ``f(x, y) = (a - x)^2 + b (y - x^2)^2``.

    Minimiser ``(a, a^2)``, minimum ``0``; ``b > 0`` is the steepness of the
    curved valley walls. Start ``(-1.5, 2)``.

    Why it is in the course: the valley is easy to find and hard to follow,
    because it bends: the best direction keeps changing and the conditioning
    along the floor is poor. It separates methods that build speed along a
    consistent direction from those that need one.
    """
    if not math.isfinite(a):
        raise ValueError(f"a must be a finite number, got {a}")
    if not (math.isfinite(b) and b > 0):
        raise ValueError(f"b must be a finite number > 0, got {b}")

    def fn(x: Tensor) -> Tensor:
        u, v = x[..., 0], x[..., 1]
        return (a - u) ** 2 + b * (v - u**2) ** 2

    return Problem(
        name=f"Rosenbrock (a={_fmt(a)}, b={_fmt(b)})",
        dim=2,
        fn=fn,
        start=[-1.5, 2.0],
        minimum=[a, a * a],
        min_value=0.0,
        xlim=(min(-2.0, a - 3.0), max(2.0, a + 1.0)),
        ylim=(min(-1.0, a * a - 2.0), max(3.0, a * a + 2.0)),
        log_scale=True,
    )


def beale() -> Problem:
    """Beale's function
    ``f(x, y) = (1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2``.

    Minimiser ``(3, 0.5)``, minimum ``0``; start ``(1, 1.5)``, window
    ``[-4.5, 4.5]^2``.

    Why it is in the course: flat plateaus next to walls whose gradients are
    thousands of times larger. A learning rate safe on the walls crawls on the
    plateau; adaptive methods (Adagrad, RMSprop, Adam) rescale each coordinate
    and cross it.
    """

    def fn(x: Tensor) -> Tensor:
        u, v = x[..., 0], x[..., 1]
        return (1.5 - u + u * v) ** 2 + (2.25 - u + u * v**2) ** 2 + (2.625 - u + u * v**3) ** 2

    return Problem(
        name="Beale",
        dim=2,
        fn=fn,
        start=[1.0, 1.5],
        minimum=[3.0, 0.5],
        min_value=0.0,
        xlim=(-4.5, 4.5),
        ylim=(-4.5, 4.5),
        log_scale=True,
    )


def himmelblau() -> Problem:
    """Himmelblau's function ``f(x, y) = (x^2 + y - 11)^2 + (x + y^2 - 7)^2``.

    Four global minimisers, all with ``f = 0``: ``(3, 2)`` (the one in
    ``problem.minimum``), ``(-2.805118, 3.131312)``, ``(-3.779310, -3.283186)``
    and ``(3.584428, -1.848126)`` (all in ``problem.minima``). Start
    ``(-0.5, -0.5)``, near the local maximum at ``(-0.2708, -0.9230)``;
    window ``[-5, 5]^2``.

    Why it is in the course: which minimum a run ends in depends on the
    optimizer and its hyperparameters, not only on the start, a small picture
    of why the optimizer shapes the solution a network finds.
    """

    def fn(x: Tensor) -> Tensor:
        u, v = x[..., 0], x[..., 1]
        return (u**2 + v - 11.0) ** 2 + (u + v**2 - 7.0) ** 2

    return Problem(
        name="Himmelblau",
        dim=2,
        fn=fn,
        start=[-0.5, -0.5],
        minimum=[3.0, 2.0],
        min_value=0.0,
        minima=[
            [3.0, 2.0],
            [-2.805118086952745, 3.131312518250573],
            [-3.779310253377747, -3.283185991286170],
            [3.584428340330492, -1.848126526964404],
        ],
        xlim=(-5.0, 5.0),
        ylim=(-5.0, 5.0),
        log_scale=True,
    )


def saddle() -> Problem:
    """A saddle point with minima beyond it: ``f(x, y) = x^2 - y^2 + y^4 / 4``.

    The origin is a saddle (Hessian ``diag(2, -2)``). The quartic term bounds
    ``f`` below far away: the minimisers are ``(0, +-sqrt(2))`` with ``f = -1``
    (``problem.minimum`` is ``(0, sqrt(2))``). Start ``(-2, 0.01)``, almost
    on the ridge ``y = 0`` that leads into the saddle; window
    ``[-2.5, 2.5] x [-2.25, 2.25]``.

    Why it is in the course: in high dimensions saddle points, not bad local
    minima, are what slows training. Gradient descent started near the ridge
    spends many steps near the saddle, where the gradient is tiny, before the
    small ``y`` component grows enough to escape; momentum and noise escape
    sooner.
    """

    def fn(x: Tensor) -> Tensor:
        u, v = x[..., 0], x[..., 1]
        return u**2 - v**2 + 0.25 * v**4

    root2 = math.sqrt(2.0)
    return Problem(
        name="Saddle",
        dim=2,
        fn=fn,
        start=[-2.0, 0.01],
        minimum=[0.0, root2],
        min_value=-1.0,
        minima=[[0.0, root2], [0.0, -root2]],
        xlim=(-2.5, 2.5),
        ylim=(-2.25, 2.25),
        log_scale=False,
    )


def optimal_lr(problem: Problem) -> float:
    """The learning rate ``2 / (L + mu)`` that makes gradient descent fastest on a
    quadratic, where ``mu`` and ``L`` are the extreme Hessian eigenvalues.

    At this rate the slowest and the fastest directions contract equally, by
    ``(kappa - 1) / (kappa + 1)`` per step (:func:`gd_rate`).
    """
    if not isinstance(problem, Problem) or problem.eigenvalues is None:
        raise ValueError("problem must be a quadratic Problem (quadratic, noisy_quadratic, quadratic_nd)")
    return 2.0 / (problem.smoothness + problem.strong_convexity)


def gd_rate(condition_number: float) -> float:
    """``(kappa - 1) / (kappa + 1)``: the factor by which gradient descent with
    learning rate ``2/(L+mu)`` shrinks the distance ``||theta - theta*||`` to the
    minimum of a quadratic, per step. The loss error ``f - f*`` shrinks by its
    square. Nesterov (1983; *Introductory Lectures*, 2004, Thm 2.1.15).
    """
    kappa = _check_condition_number(condition_number)
    return (kappa - 1.0) / (kappa + 1.0)


def momentum_rate(condition_number: float) -> float:
    """``(sqrt(kappa) - 1) / (sqrt(kappa) + 1)``: the asymptotic factor by which
    heavy-ball momentum with Polyak's tuning (:func:`optimal_momentum`,
    :func:`optimal_momentum_lr`) shrinks the distance to the minimum of a
    quadratic, per step (Polyak, 1964). Compare :func:`gd_rate`: ``kappa``
    becomes ``sqrt(kappa)``. At this tuning the two eigenvalues of each
    mode's iteration matrix coincide, so the error falls like ``k r^k``: a
    rate measured over a finite run comes out slightly above ``r``.
    """
    root = math.sqrt(_check_condition_number(condition_number))
    return (root - 1.0) / (root + 1.0)


def optimal_momentum(condition_number: float) -> float:
    """Polyak's momentum ``beta = ((sqrt(kappa) - 1) / (sqrt(kappa) + 1))^2`` for a
    quadratic with condition number ``kappa`` (Polyak, 1964), used with the
    learning rate :func:`optimal_momentum_lr`. In ``torch.optim.SGD`` terms this
    is ``momentum=beta`` (torch's ``v <- beta v + g; theta <- theta - lr v`` is the
    heavy-ball update).
    """
    return momentum_rate(condition_number) ** 2


def optimal_momentum_lr(problem: Problem) -> float:
    """Polyak's learning rate ``4 / (sqrt(L) + sqrt(mu))^2`` for heavy-ball
    momentum on a quadratic, paired with :func:`optimal_momentum`."""
    if not isinstance(problem, Problem) or problem.eigenvalues is None:
        raise ValueError("problem must be a quadratic Problem (quadratic, noisy_quadratic, quadratic_nd)")
    return 4.0 / (math.sqrt(problem.smoothness) + math.sqrt(problem.strong_convexity)) ** 2
