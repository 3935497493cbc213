"""The course's figures: labelled, titled, coloured consistently, and light to embed."""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from optlib import problems as P  # noqa: E402
from optlib.plotting import (  # noqa: E402
    OPTIMIZER_COLORS,
    animate_trajectories,
    optimizer_color,
    plot_contour,
    plot_histories,
    plot_losses,
)
from optlib.trajectory import run_trajectories, run_trajectory  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def valley_runs():
    problem = P.quadratic(condition_number=10.0)
    runs = run_trajectories(
        problem,
        {
            "SGD": (torch.optim.SGD, {"lr": 0.15}),
            "Momentum": (torch.optim.SGD, {"lr": 0.05, "momentum": 0.8}),
        },
        steps=40,
    )
    return problem, runs


def test_optimizer_colors_are_fixed_and_distinct():
    assert len(set(OPTIMIZER_COLORS.values())) == len(OPTIMIZER_COLORS)
    assert optimizer_color("Adam") == OPTIMIZER_COLORS["Adam"]
    assert optimizer_color("adam(lr=0.01)") == OPTIMIZER_COLORS["Adam"]
    assert optimizer_color("GD") == OPTIMIZER_COLORS["SGD"]
    assert optimizer_color("AdamW") != optimizer_color("Adam")
    unknown = optimizer_color("Lion")
    assert unknown == optimizer_color("Lion")
    assert unknown not in OPTIMIZER_COLORS.values()


@pytest.mark.parametrize("make", [P.quadratic, P.rosenbrock, P.beale, P.himmelblau, P.saddle], ids=lambda f: f.__name__)
def test_contour_map_has_title_labels_window_and_legend(make):
    problem = make()
    run = run_trajectory(problem, torch.optim.Adam, steps=20, lr=0.05)
    ax = plot_contour(problem, [run])
    assert ax.get_title() == problem.name
    assert ax.get_xlabel() == r"$\theta_1$" and ax.get_ylabel() == r"$\theta_2$"
    assert ax.get_xlim() == pytest.approx(problem.xlim)
    assert ax.get_ylim() == pytest.approx(problem.ylim)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["Adam(lr=0.05)", "minimum", "start", "end"]
    path = ax.get_lines()[0]
    np.testing.assert_allclose(np.column_stack(path.get_data()), run.positions)


def test_contour_paths_get_distinct_colors_even_for_one_optimizer():
    problem = P.quadratic()
    runs = [run_trajectory(problem, torch.optim.SGD, steps=5, lr=lr) for lr in (0.05, 0.1, 0.15)]
    ax = plot_contour(problem, runs, title="three learning rates", show_minimum=False)
    assert ax.get_title() == "three learning rates"
    path_colors = [line.get_color() for line in ax.get_lines() if line.get_label().startswith("SGD")]
    assert len(path_colors) == 3 and len(set(path_colors)) == 3
    assert path_colors[0] == OPTIMIZER_COLORS["SGD"]


def test_diverged_run_says_so_in_the_legend():
    problem = P.quadratic(condition_number=10.0)
    run = run_trajectory(problem, torch.optim.SGD, steps=200, lr=0.3)
    ax = plot_contour(problem, [run])
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"SGD(lr=0.3) (diverged at step {run.diverged_at})" in texts
    ax = plot_losses([run])
    assert "diverged" in ax.get_legend().get_texts()[0].get_text()


def test_contour_needs_a_2d_problem():
    with pytest.raises(ValueError, match="problem"):
        plot_contour(P.quadratic_nd(3, 10.0))
    with pytest.raises(ValueError, match="levels"):
        plot_contour(P.quadratic(), levels=1)


def test_plot_losses_from_trajectories_and_arrays(valley_runs):
    problem, runs = valley_runs
    ax = plot_losses(runs, subtract_min=True, title="Error on the valley", ylabel="f - f*")
    assert ax.get_title() == "Error on the valley"
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "f - f*"
    assert ax.get_yscale() == "log"
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), runs[0].losses - problem.min_value)

    ax = plot_losses({"a": [4.0, 2.0, 1.0], "b": np.array([3.0, 1.0])}, subtract_min=1.0, log=False)
    assert ax.get_yscale() == "linear"
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [3.0, 1.0, 0.0])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]


class _History:
    """The shape of optlib.training.History that plot_histories relies on."""

    def __init__(self, val_loss, step_loss):
        self.epochs = {"epoch": [0.5, 1.0, 1.5], "val_loss": list(val_loss), "val_accuracy": [0.5, 0.7, 0.8]}
        self.step_loss = list(step_loss)


def test_plot_histories_mean_and_band_over_seeds():
    seeds = [_History([1.0, 0.5, 0.25], [2.0, 1.0]), _History([3.0, 1.5, 0.75], [2.0, 1.0])]
    ax = plot_histories({"Adam": seeds, "SGD": _History([2.0, 1.0, 0.9], [1.0, 1.0])})
    assert ax.get_title() == "Val loss"
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "val loss"
    assert ax.get_yscale() == "log"
    mean_line = ax.get_lines()[0]
    np.testing.assert_allclose(mean_line.get_ydata(), [2.0, 1.0, 0.5])
    np.testing.assert_allclose(mean_line.get_xdata(), [0.5, 1.0, 1.5])
    assert len(ax.collections) == 1, "one std band, for the label with several seeds"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["Adam (2 seeds)", "SGD"]

    ax = plot_histories({"SGD": seeds[0]}, metric="val_accuracy", title="Accuracy")
    assert ax.get_yscale() == "linear" and ax.get_title() == "Accuracy"
    ax = plot_histories({"SGD": seeds[0]}, metric="step_loss")
    assert ax.get_xlabel() == "step"
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), [1, 2])
    ax = plot_histories({"raw": np.array([3.0, 2.0, 1.0])}, metric="loss")
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [3.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="metric"):
        plot_histories({"SGD": seeds[0]}, metric="nonexistent")
    with pytest.raises(ValueError, match="histories"):
        plot_histories({})


def test_animation_is_a_small_self_contained_jshtml_player(valley_runs):
    problem, runs = valley_runs
    html = animate_trajectories(problem, runs, frames=12, title="GD vs momentum").data
    assert "Animation(" in html and 'type="range"' in html
    assert len(re.findall(r"data:image/png;base64,", html)) == 12
    assert not re.search(r"<script[^>]+src=", html)
    # Nothing from the network, not even the icon font matplotlib's template links.
    assert not re.search(r"(?:href|src)=\"https?://", html)
    assert 'class="fa' not in html and "\u25b6" in html, "the buttons carry their own glyphs"
    assert len(html) < 2_000_000
    assert not plt.get_fignums(), "the figure is closed, so it does not also render statically"
    again = animate_trajectories(problem, runs, frames=12, title="GD vs momentum").data

    def without_id(page):
        # Each player needs its own element id; everything else must be identical run to run.
        return page.replace(re.search(r"_anim_img([0-9a-f]{32})", page).group(1), "ID")

    assert without_id(again) == without_id(html)
    with pytest.raises(ValueError, match="frames"):
        animate_trajectories(problem, runs, frames=61)
    with pytest.raises(ValueError, match="trajectories"):
        animate_trajectories(problem, [])
