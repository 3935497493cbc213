"""The test functions: their minima, gradients, Hessians, batching and the rate formulas."""

from __future__ import annotations

import math

import pytest
import torch

from optlib import problems as P

TWO_D = [P.quadratic, P.rosenbrock, P.beale, P.himmelblau, P.saddle, P.noisy_quadratic]


@pytest.mark.parametrize("make", TWO_D, ids=lambda f: f.__name__)
def test_every_known_minimiser_has_the_min_value_and_zero_gradient(make):
    problem = make()
    assert problem.dim == 2
    assert problem.minima, "each 2-D problem knows at least one minimiser"
    for point in problem.minima:
        assert problem(point).item() == pytest.approx(problem.min_value, abs=1e-10)
        torch.testing.assert_close(problem.grad(point), torch.zeros(2, dtype=torch.float64), atol=1e-6, rtol=0)


@pytest.mark.parametrize("make", TWO_D, ids=lambda f: f.__name__)
def test_start_is_inside_the_window_and_worse_than_the_minimum(make):
    problem = make()
    x, y = problem.start.tolist()
    assert problem.xlim[0] < x < problem.xlim[1]
    assert problem.ylim[0] < y < problem.ylim[1]
    assert problem(problem.start).item() > problem.min_value + 1e-3


@pytest.mark.parametrize("make", TWO_D, ids=lambda f: f.__name__)
def test_batched_evaluation_matches_pointwise(make):
    problem = make()
    points = torch.randn(4, 3, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    values = problem(points)
    assert values.shape == (4, 3)
    assert problem(points[2, 1]).shape == ()
    assert values[2, 1].item() == pytest.approx(problem(points[2, 1]).item())
    grads = problem.grad(points)
    assert grads.shape == (4, 3, 2)
    torch.testing.assert_close(grads[2, 1], problem.grad(points[2, 1]))


def test_quadratic_gradient_and_hessian_are_the_closed_form():
    angle = 0.7
    problem = P.quadratic(condition_number=25.0, angle=angle)
    c, s = math.cos(angle), math.sin(angle)
    rotation = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    matrix = rotation @ torch.diag(torch.tensor([1.0, 25.0], dtype=torch.float64)) @ rotation.T
    x = torch.tensor([0.3, -1.2], dtype=torch.float64)
    torch.testing.assert_close(problem.hessian(), matrix)
    torch.testing.assert_close(problem.grad(x), matrix @ x)
    assert problem(x).item() == pytest.approx(0.5 * (x @ matrix @ x).item())
    assert problem.condition_number == pytest.approx(25.0)
    assert (problem.strong_convexity, problem.smoothness) == pytest.approx((1.0, 25.0))


def test_rosenbrock_gradient_is_the_closed_form():
    a, b = 1.5, 50.0
    problem = P.rosenbrock(a, b)
    x, y = 0.4, -0.3
    expected = torch.tensor([-2 * (a - x) - 4 * b * x * (y - x * x), 2 * b * (y - x * x)], dtype=torch.float64)
    torch.testing.assert_close(problem.grad([x, y]), expected)
    torch.testing.assert_close(problem.minimum, torch.tensor([a, a * a], dtype=torch.float64))


def test_saddle_has_a_saddle_at_the_origin():
    problem = P.saddle()
    origin = torch.zeros(2, dtype=torch.float64)
    torch.testing.assert_close(problem.grad(origin), origin)
    torch.testing.assert_close(problem.hessian(origin), torch.diag(torch.tensor([2.0, -2.0], dtype=torch.float64)))
    assert problem(origin).item() > problem.min_value


def test_autograd_hessian_of_non_quadratic_needs_a_point():
    with pytest.raises(ValueError, match="x is required"):
        P.beale().hessian()
    assert P.beale().condition_number is None


def test_quadratic_nd_has_the_requested_spectrum_and_is_seeded():
    problem = P.quadratic_nd(20, condition_number=1000.0, seed=3)
    eigenvalues = torch.linalg.eigvalsh(problem.hessian())
    torch.testing.assert_close(eigenvalues, problem.eigenvalues)
    assert problem.eigenvalues[0].item() == pytest.approx(1.0)
    assert problem.eigenvalues[-1].item() == pytest.approx(1000.0)
    ratios = problem.eigenvalues[1:] / problem.eigenvalues[:-1]
    torch.testing.assert_close(ratios, torch.full_like(ratios, ratios[0].item()))
    assert problem.condition_number == pytest.approx(1000.0)
    x = torch.randn(20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(problem.grad(x), problem.hessian() @ x)
    torch.testing.assert_close(P.quadratic_nd(20, 1000.0, seed=3).hessian(), problem.hessian())
    assert not torch.allclose(P.quadratic_nd(20, 1000.0, seed=4).hessian(), problem.hessian())


def test_noisy_quadratic_is_the_quadratic_with_noise():
    noisy = P.noisy_quadratic(condition_number=5.0, noise_std=0.3)
    plain = P.quadratic(condition_number=5.0)
    assert noisy.noise_std == 0.3
    assert plain.noise_std == 0.0
    torch.testing.assert_close(noisy.hessian(), plain.hessian())


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: P.quadratic(condition_number=0.5), "condition_number"),
        (lambda: P.quadratic(condition_number=float("nan")), "condition_number"),
        (lambda: P.noisy_quadratic(noise_std=-1.0), "noise_std"),
        (lambda: P.noisy_quadratic(condition_number=0.0), "condition_number"),
        (lambda: P.quadratic_nd(0, 10.0), "dim"),
        (lambda: P.quadratic_nd(1, 10.0), "condition_number"),
        (lambda: P.quadratic_nd(5, 0.9), "condition_number"),
        (lambda: P.rosenbrock(b=-1.0), "b"),
        (lambda: P.gd_rate(0.0), "condition_number"),
        (lambda: P.optimal_momentum(-2.0), "condition_number"),
        (lambda: P.optimal_lr(P.beale()), "problem"),
        (lambda: P.quadratic()(torch.zeros(3)), "x"),
    ],
)
def test_bad_input_names_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


def test_rate_formulas():
    problem = P.quadratic(condition_number=9.0)
    assert P.optimal_lr(problem) == pytest.approx(0.2)
    assert P.gd_rate(9.0) == pytest.approx(0.8)
    assert P.momentum_rate(9.0) == pytest.approx(0.5)
    assert P.optimal_momentum(9.0) == pytest.approx(0.25)
    assert P.optimal_momentum_lr(problem) == pytest.approx(0.25)
    assert P.gd_rate(1.0) == 0.0
