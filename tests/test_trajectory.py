"""Running optimizers on the test functions: convergence, measured rates, divergence, noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optlib import problems as P
from optlib.trajectory import (
    Trajectory,
    convergence_rate,
    run_trajectories,
    run_trajectory,
    steps_to_reach,
)


@pytest.mark.parametrize("kappa", [4.0, 10.0, 50.0])
def test_gd_at_the_optimal_rate_contracts_by_the_theoretical_factor(kappa):
    problem = P.quadratic(condition_number=kappa, angle=0.3)
    traj = run_trajectory(problem, torch.optim.SGD, steps=60, lr=P.optimal_lr(problem))
    assert not traj.diverged
    assert traj.positions.shape == (61, 2)
    assert traj.losses.shape == (61,)
    assert convergence_rate(traj) == pytest.approx(P.gd_rate(kappa), abs=1e-3)
    assert convergence_rate(traj, quantity="loss") == pytest.approx(P.gd_rate(kappa) ** 2, abs=1e-3)


def test_heavy_ball_with_polyaks_tuning_beats_gd_and_nears_its_rate():
    kappa = 100.0
    problem = P.quadratic(condition_number=kappa)
    momentum = run_trajectory(
        problem, torch.optim.SGD, steps=400, lr=P.optimal_momentum_lr(problem), momentum=P.optimal_momentum(kappa)
    )
    gd = run_trajectory(problem, torch.optim.SGD, steps=400, lr=P.optimal_lr(problem))
    measured = convergence_rate(momentum, skip=50)
    # The optimal tuning has a double eigenvalue: error ~ k r^k, slightly slower than r.
    assert P.momentum_rate(kappa) <= measured < P.momentum_rate(kappa) + 0.02
    assert measured < convergence_rate(gd) - 0.1


def test_recorded_losses_are_the_problem_at_the_recorded_positions():
    problem = P.rosenbrock()
    traj = run_trajectory(problem, torch.optim.Adam, steps=25, lr=0.05)
    np.testing.assert_allclose(traj.losses, problem(torch.from_numpy(traj.positions)).numpy())
    np.testing.assert_array_equal(traj.positions[0], problem.start.numpy())
    assert traj.label == "Adam(lr=0.05)"
    assert traj.optimizer == "Adam"
    assert traj.hyperparameters == {"lr": 0.05}


def test_divergence_above_two_over_L_is_detected_and_truncates_the_arrays():
    problem = P.quadratic(condition_number=10.0)
    traj = run_trajectory(problem, torch.optim.SGD, steps=500, lr=2.5 / problem.smoothness)
    assert traj.diverged
    assert traj.diverged_at is not None and 0 < traj.diverged_at < 500
    assert len(traj.losses) == len(traj.positions) == traj.diverged_at
    assert np.all(np.isfinite(traj.losses)) and traj.losses.max() <= 1e12
    stable = run_trajectory(problem, torch.optim.SGD, steps=500, lr=1.9 / problem.smoothness)
    assert not stable.diverged and stable.diverged_at is None
    assert len(stable.losses) == 501


def test_gradient_noise_is_seeded():
    problem = P.noisy_quadratic(condition_number=10.0, noise_std=0.5)
    first = run_trajectory(problem, torch.optim.SGD, steps=40, seed=7, lr=0.05)
    again = run_trajectory(problem, torch.optim.SGD, steps=40, seed=7, lr=0.05)
    other = run_trajectory(problem, torch.optim.SGD, steps=40, seed=8, lr=0.05)
    exact = run_trajectory(P.quadratic(condition_number=10.0), torch.optim.SGD, steps=40, lr=0.05)
    np.testing.assert_array_equal(first.positions, again.positions)
    assert not np.allclose(first.positions, other.positions)
    assert not np.allclose(first.positions, exact.positions)


def test_run_trajectories_labels_and_start():
    problem = P.himmelblau()
    start = [1.0, -1.0]
    runs = run_trajectories(
        problem, {"GD": (torch.optim.SGD, {"lr": 0.01}), "Adam": (torch.optim.Adam, {"lr": 0.1})}, steps=10, start=start
    )
    assert [t.label for t in runs] == ["GD", "Adam"]
    assert all(isinstance(t, Trajectory) for t in runs)
    for t in runs:
        np.testing.assert_array_equal(t.positions[0], start)
    with pytest.raises(ValueError, match="configs"):
        run_trajectories(problem, {"bad": torch.optim.SGD})


def test_steps_to_reach():
    problem = P.quadratic(condition_number=10.0)
    traj = run_trajectory(problem, torch.optim.SGD, steps=100, lr=P.optimal_lr(problem))
    k = steps_to_reach(traj, 1e-6)
    assert k is not None
    assert traj.errors[k] <= 1e-6 < traj.errors[k - 1]
    assert steps_to_reach(traj, 1e9) == 0
    with pytest.raises(ValueError, match="tolerance"):
        steps_to_reach(traj, -1.0)


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda p: run_trajectory(p, torch.optim.SGD, steps=-1, lr=0.1), "steps"),
        (lambda p: run_trajectory(p, torch.optim.SGD, start=[1.0, 2.0, 3.0], lr=0.1), "start"),
        (lambda p: run_trajectory(p, torch.optim.SGD, start=[1e7, 1e7], lr=0.1), "start"),
        (lambda p: convergence_rate(run_trajectory(p, torch.optim.SGD, steps=5, lr=0.1), skip=10), "skip"),
        (lambda p: convergence_rate(run_trajectory(p, torch.optim.SGD, steps=5, lr=0.1), quantity="x"), "quantity"),
    ],
)
def test_bad_input_names_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call(P.quadratic())
