"""The course's pictures: contour maps with optimizer paths, loss curves, animations.

Every function draws into a matplotlib ``Axes`` (a new one unless ``ax`` is
given) and returns it; none calls ``plt.show()``, so a notebook shows the figure
once, at the end of the cell. Each optimizer keeps one colour throughout the
course (:func:`optimizer_color`), so "Adam is brown" holds from chapter 8 to the
comparison chapter.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import re
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import colors as mcolors
from matplotlib.animation import FuncAnimation
from matplotlib.lines import Line2D

from optlib.problems import Problem
from optlib.trajectory import Trajectory

__all__ = [
    "optimizer_color",
    "OPTIMIZER_COLORS",
    "plot_contour",
    "plot_losses",
    "plot_histories",
    "animate_trajectories",
]

#: The fixed colour of each optimizer of the course (matplotlib's tab10, in course order).
OPTIMIZER_COLORS = {
    "SGD": "#1f77b4",
    "Momentum": "#ff7f0e",
    "Nesterov": "#2ca02c",
    "Adagrad": "#d62728",
    "RMSprop": "#9467bd",
    "Adam": "#8c564b",
    "AdamW": "#e377c2",
    "NAdam": "#bcbd22",
    "NesterovAdamW": "#17becf",
}

# Other names people give the same methods.
_ALIASES = {
    "gd": "SGD",
    "gradient descent": "SGD",
    "sgd": "SGD",
    "heavy ball": "Momentum",
    "heavy-ball": "Momentum",
    "polyak": "Momentum",
    "nag": "Nesterov",
}
_CANONICAL = {name.lower(): name for name in OPTIMIZER_COLORS} | _ALIASES

# For names the course does not fix: dark, saturated colours distinct from tab10.
_EXTRA_COLORS = ["#7f7f7f", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d"]
_extra_assigned: dict[str, str] = {}


def optimizer_color(name: str) -> str:
    """The course's colour for an optimizer, as a hex string.

    ``name`` is matched case-insensitively, ignoring anything from the first
    ``"("`` on, so ``"Adam(lr=0.01)"`` is Adam's colour; ``"GD"`` is SGD's and
    ``"heavy ball"`` is Momentum's. Other names get colours from a fixed cycle
    in the order they are first asked for.
    """
    key = str(name).split("(")[0].strip().lower()
    canonical = _CANONICAL.get(key)
    if canonical is not None:
        return OPTIMIZER_COLORS[canonical]
    if key not in _extra_assigned:
        _extra_assigned[key] = _EXTRA_COLORS[len(_extra_assigned) % len(_EXTRA_COLORS)]
    return _extra_assigned[key]


def _distinct_colors(labels: Sequence[str]) -> list[str]:
    """One colour per label: the optimizer's own colour, unless an earlier label
    already took it (two SGD runs with different learning rates), then the next
    unused colour of the palette."""
    palette = list(OPTIMIZER_COLORS.values()) + _EXTRA_COLORS
    used: set[str] = set()
    result = []
    for label in labels:
        color = optimizer_color(label)
        if color in used:
            color = next((c for c in palette if c not in used), color)
        used.add(color)
        result.append(color)
    return result


def _new_axes(ax, figsize=(6.0, 4.5)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _check_2d(problem: Problem) -> None:
    if not isinstance(problem, Problem) or problem.dim != 2:
        raise ValueError("problem must be a 2-D Problem (dim == 2) to draw a contour map")


def _grid(problem: Problem, resolution: int):
    xs = np.linspace(*problem.xlim, resolution)
    ys = np.linspace(*problem.ylim, resolution)
    xx, yy = np.meshgrid(xs, ys)
    points = torch.from_numpy(np.stack([xx, yy], axis=-1))
    with torch.no_grad():
        zz = problem(points).numpy()
    return xx, yy, zz


# White valley floor to mid blue walls: light enough that every optimizer colour reads on it.
_MAP_COLORS = mcolors.LinearSegmentedColormap.from_list("optlib_map", ["#ffffff", "#c6dbef", "#6baed6"])


def _draw_map(ax, problem: Problem, levels: int, resolution: int = 200, filled: bool = True):
    """Contours of the problem over its window: light filled bands (valley floor
    white, walls blue, so paths stay visible where they end) and thin level lines.
    ``filled=False`` draws the lines only, which compresses far better in PNG
    frames of an animation."""
    xx, yy, zz = _grid(problem, resolution)
    if problem.log_scale:
        # Levels log-spaced in f - f*, so the valley floor shows as much detail as the walls.
        err = zz - problem.min_value
        top = np.max(err)
        low = max(np.min(err[err > 0]), top * 1e-5)
        zz = np.maximum(err, low)
        bounds = np.logspace(np.log10(low), np.log10(top), levels)
        norm = mcolors.LogNorm(vmin=bounds[0], vmax=bounds[-1])
    else:
        bounds = np.linspace(np.min(zz), np.max(zz), levels)
        norm = None
    if filled:
        ax.contourf(xx, yy, zz, levels=bounds, norm=norm, cmap=_MAP_COLORS, alpha=0.7)
    ax.contour(
        xx,
        yy,
        zz,
        levels=bounds,
        norm=norm,
        colors="#5b6b7b" if filled else "#9aa8b5",
        linewidths=0.5 if filled else 0.8,
        alpha=0.6 if filled else 1.0,
    )
    ax.set_xlim(problem.xlim)
    ax.set_ylim(problem.ylim)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(r"$\theta_1$")
    ax.set_ylabel(r"$\theta_2$")


def _draw_minima(ax, problem: Problem) -> None:
    for i, point in enumerate(problem.minima):
        ax.plot(
            *point.numpy(),
            marker="*",
            markersize=14,
            color="gold",
            markeredgecolor="black",
            linestyle="none",
            zorder=5,
            label="minimum" if i == 0 else None,
        )


def _legend_outside(ax, handles=None, labels=None) -> None:
    """A legend beside a tall or square map, below a wide one, so it never hides
    the paths it explains."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    if abs(x1 - x0) >= 1.5 * abs(y1 - y0):
        ax.legend(
            handles, labels, fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, borderaxespad=0
        )
    else:
        ax.legend(handles, labels, fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)


def _legend_with_markers(ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], marker="o", color="black", markerfacecolor="white", linestyle="none"))
    labels.append("start")
    handles.append(Line2D([], [], marker="X", color="black", linestyle="none"))
    labels.append("end")
    _legend_outside(ax, handles, labels)


def plot_contour(
    problem: Problem,
    trajectories: Sequence[Trajectory] = (),
    ax=None,
    title: str | None = None,
    levels: int = 30,
    show_minimum: bool = True,
    legend: bool = True,
):
    """A contour map of a 2-D problem with optimizer paths drawn on it.

    The map covers ``problem.xlim x problem.ylim``, with ``levels`` levels
    (log-spaced in ``f - f*`` when ``problem.log_scale``). Each trajectory is a
    line with a dot per iterate in its optimizer's colour; its start is an open
    circle, its end a cross. Paths that leave the window (divergence) are cut by
    the axes. Returns the ``Axes``.
    """
    _check_2d(problem)
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 2:
        raise ValueError(f"levels must be an integer >= 2, got {levels!r}")
    trajectories = list(trajectories)
    ax = _new_axes(ax)
    _draw_map(ax, problem, int(levels))
    many = max((len(t.losses) for t in trajectories), default=0) > 150
    for traj, color in zip(trajectories, _distinct_colors([t.label for t in trajectories])):
        xy = traj.positions
        label = traj.label + (f" (diverged at step {traj.diverged_at})" if traj.diverged else "")
        ax.plot(
            xy[:, 0],
            xy[:, 1],
            "-",
            color=color,
            linewidth=1.6,
            marker=None if many else "o",
            markersize=2.5,
            label=label,
            zorder=3,
        )
        ax.plot(
            *xy[0],
            marker="o",
            markersize=8,
            color=color,
            markerfacecolor="white",
            markeredgewidth=1.8,
            linestyle="none",
            zorder=4,
        )
        ax.plot(
            *xy[-1],
            marker="X",
            markersize=9,
            color=color,
            markeredgecolor="black",
            markeredgewidth=0.8,
            linestyle="none",
            zorder=4,
        )
    if show_minimum:
        _draw_minima(ax, problem)
    ax.set_title(title if title is not None else problem.name)
    if legend and (trajectories or show_minimum):
        _legend_with_markers(ax)
    return ax


def _curves_from(curves) -> list[tuple[str, np.ndarray, Trajectory | None]]:
    if isinstance(curves, Trajectory):
        curves = [curves]
    if isinstance(curves, Mapping):
        items = []
        for label, value in curves.items():
            if isinstance(value, Trajectory):
                items.append((str(label), value.losses, value))
            else:
                items.append((str(label), np.asarray(value, dtype=np.float64).ravel(), None))
        return items
    items = []
    for value in curves:
        if not isinstance(value, Trajectory):
            raise ValueError("curves must be a list of Trajectory or a dict label -> 1-D array")
        items.append((value.label, value.losses, value))
    return items


def plot_losses(
    curves,
    ax=None,
    title: str = "Loss",
    xlabel: str = "step",
    ylabel: str = "loss",
    log: bool = True,
    subtract_min: float | bool | None = None,
):
    """Loss against step for several runs.

    Args:
        curves: a list of :class:`Trajectory`, or a dict mapping a label to a 1-D
            array of losses (or to a Trajectory).
        log: logarithmic y axis, where geometric convergence is a straight line.
        subtract_min: plot ``loss - subtract_min`` (the error). ``True`` uses each
            trajectory's own ``min_value``. Non-positive errors (a run that hit
            the minimum to round-off) are not drawn on a log axis.

    A diverged trajectory ends with a cross and says so in the legend.
    Returns the ``Axes``.
    """
    items = _curves_from(curves)
    ax = _new_axes(ax, figsize=(6.0, 4.0))
    for (label, values, traj), color in zip(items, _distinct_colors([i[0] for i in items])):
        if subtract_min is True:
            if traj is None:
                raise ValueError("subtract_min=True needs Trajectory curves; give the minimum as a number")
            values = values - traj.min_value
        elif subtract_min is not None and subtract_min is not False:
            values = values - float(subtract_min)
        if log:
            values = np.where(values > 0, values, np.nan)
        if traj is not None and traj.diverged:
            label = f"{label} (diverged at step {traj.diverged_at})"
        steps = np.arange(len(values))
        ax.plot(steps, values, color=color, linewidth=1.8, label=label)
        if traj is not None and traj.diverged and len(values):
            ax.plot(steps[-1], values[-1], marker="X", markersize=9, color=color, markeredgecolor="black")
    if log:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)
    if items:
        ax.legend(fontsize="small")
    return ax


def _metric_values(history, metric: str) -> np.ndarray:
    """One run's ``metric`` as a 1-D array, from a History-like object or an array."""
    epochs = getattr(history, "epochs", None)
    if isinstance(epochs, Mapping) and metric in epochs:
        return np.asarray(epochs[metric], dtype=np.float64)
    if isinstance(history, Mapping):
        if metric in history:
            return np.asarray(history[metric], dtype=np.float64)
        raise ValueError(f"metric {metric!r} is not in the history; it has {sorted(history)}")
    if hasattr(history, metric) and not callable(getattr(history, metric)):
        return np.asarray(getattr(history, metric), dtype=np.float64)
    if isinstance(history, (np.ndarray, torch.Tensor, list, tuple)):
        return np.asarray(history, dtype=np.float64).ravel()
    available = sorted(epochs) if isinstance(epochs, Mapping) else []
    raise ValueError(f"metric {metric!r} not found in {type(history).__name__}; per-epoch metrics: {available}")


def _x_values(history, metric: str, length: int) -> np.ndarray:
    """Epochs completed at each evaluation when the history records them (they are
    fractional when a run evaluates within an epoch), else 1, 2, ...; steps from 1
    for the per-step loss."""
    epochs = getattr(history, "epochs", None)
    if metric != "step_loss" and isinstance(epochs, Mapping) and len(epochs.get("epoch", ())) >= length:
        return np.asarray(epochs["epoch"][:length], dtype=np.float64)
    steps = np.arange(1, length + 1, dtype=np.float64)
    every = getattr(history, "steps_per_loss", 1)
    if metric == "step_loss" and every > 1:  # a thinned history: each value is the mean of `every` steps
        return np.minimum(steps * every, history.n_steps)
    return steps


def _is_several_runs(value) -> bool:
    """A list of histories (several seeds), not one history given as a list of numbers."""
    if isinstance(value, (list, tuple)) and value:
        first = value[0]
        return not isinstance(first, (int, float, np.floating, np.integer))
    return False


def plot_histories(
    histories: Mapping[str, object],
    metric: str = "val_loss",
    ax=None,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    log: bool | None = None,
):
    """Training curves of several runs, one line per label.

    ``histories`` maps a label to one run or to a list of runs (several seeds).
    A run is an ``optlib.training.History`` (its per-epoch ``history.epochs[metric]``,
    or an attribute such as ``history.step_loss``), a dict of metric -> values, or
    a 1-D array. For several runs the line is their mean and the band the mean
    +- one standard deviation, over the common length of the runs (a run that
    diverged early shortens it). The x axis is ``history.epochs["epoch"]`` when
    recorded, else 1, 2, ...; for ``"step_loss"`` it is the step, from 1.

    ``xlabel`` defaults to "step" for ``metric="step_loss"`` and "epoch"
    otherwise; ``log`` defaults to a log y axis for metrics whose name contains
    "loss". Returns the ``Axes``.
    """
    if not isinstance(histories, Mapping) or not histories:
        raise ValueError("histories must be a non-empty dict label -> history (or list of histories)")
    ax = _new_axes(ax, figsize=(6.0, 4.0))
    if log is None:
        log = "loss" in metric
    labels = [str(k) for k in histories]
    for (label, value), color in zip(histories.items(), _distinct_colors(labels)):
        runs = (
            [_metric_values(h, metric) for h in value] if _is_several_runs(value) else [_metric_values(value, metric)]
        )
        length = min(len(r) for r in runs)
        stacked = np.stack([r[:length] for r in runs])
        mean = stacked.mean(axis=0)
        x = _x_values(value[0] if len(runs) > 1 else value, metric, length)
        name = f"{label} ({len(runs)} seeds)" if len(runs) > 1 else str(label)
        ax.plot(x, mean, color=color, linewidth=1.8, label=name)
        if len(runs) > 1:
            std = stacked.std(axis=0)
            lower = mean - std
            if log:
                lower = np.where(lower > 0, lower, mean / 10)  # a band into log(0) would swallow the plot
            ax.fill_between(x, lower, mean + std, color=color, alpha=0.2, linewidth=0)
    if log:
        ax.set_yscale("log")
    ax.set_title(title if title is not None else metric.replace("_", " ").capitalize())
    ax.set_xlabel(xlabel if xlabel is not None else ("step" if metric == "step_loss" else "epoch"))
    ax.set_ylabel(ylabel if ylabel is not None else metric.replace("_", " "))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return ax


def animate_trajectories(
    problem: Problem,
    trajectories: Sequence[Trajectory],
    interval: int = 60,
    title: str | None = None,
    frames: int | None = None,
):
    """An animation of the paths growing over the contour map, as HTML with its own
    player (matplotlib's ``to_jshtml``): it plays on the static website with no
    kernel.

    ``frames`` (default and maximum 60) frames spread evenly over the longest
    run, each shown for ``interval`` milliseconds. The figure is closed, so the
    notebook shows only the player. Returns ``IPython.display.HTML``.
    """
    from IPython.display import HTML

    _check_2d(problem)
    trajectories = list(trajectories)
    if not trajectories:
        raise ValueError("trajectories must hold at least one Trajectory")
    if isinstance(interval, bool) or not isinstance(interval, (int, np.integer)) or interval < 1:
        raise ValueError(f"interval must be an integer number of milliseconds >= 1, got {interval!r}")
    longest = max(len(t.losses) for t in trajectories)
    if frames is None:
        frames = min(60, longest)
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or not 1 <= frames <= 60:
        raise ValueError(f"frames must be an integer in [1, 60], got {frames!r}")
    # Frame i shows the first ends[i] iterates; the last frame shows whole paths.
    ends = np.unique(np.linspace(1, longest, int(frames)).round().astype(int))

    with plt.rc_context({"figure.dpi": 72}):
        fig, ax = plt.subplots(figsize=(5.5, 4.2), layout="constrained")
        try:
            _draw_map(ax, problem, 20, resolution=120, filled=False)
            lines, heads = [], []
            for traj, color in zip(trajectories, _distinct_colors([t.label for t in trajectories])):
                ax.plot(
                    *traj.positions[0],
                    marker="o",
                    markersize=7,
                    color=color,
                    markerfacecolor="white",
                    markeredgewidth=1.6,
                    linestyle="none",
                    zorder=4,
                )
                (line,) = ax.plot([], [], "-", color=color, linewidth=1.6, label=traj.label, zorder=3)
                (head,) = ax.plot(
                    [], [], marker="o", markersize=7, color=color, markeredgecolor="black", linestyle="none", zorder=5
                )
                lines.append(line)
                heads.append(head)
            _draw_minima(ax, problem)
            _legend_outside(ax)
            base_title = title if title is not None else problem.name
            ax.set_title(base_title)

            def update(i):
                end = ends[i]
                for traj, line, head in zip(trajectories, lines, heads):
                    xy = traj.positions[:end]
                    line.set_data(xy[:, 0], xy[:, 1])
                    head.set_data([xy[-1, 0]], [xy[-1, 1]])
                ax.set_title(f"{base_title} — step {end - 1}")
                return (*lines, *heads)

            animation = FuncAnimation(fig, update, frames=len(ends), interval=interval, blit=False)
            html = animation.to_jshtml(default_mode="once")
        finally:
            plt.close(fig)
    return HTML(_compact_jshtml(html))


_FRAME = re.compile(r'"data:image/png;base64,((?:[A-Za-z0-9+/=]|\\\n)+)"')
_ANIMATION_ID = re.compile(r"_anim_img([0-9a-f]{32})")


def _compact_jshtml(html: str) -> str:
    """Shrink the PNG frames of a ``to_jshtml`` player and make its ids deterministic.

    Contour lines and a few paths need few colours, so a 256-colour palette PNG
    is about a quarter of matplotlib's RGBA one and looks the same. The player's
    element id is a random uuid; replacing it by a hash of the frames makes two
    runs of a notebook produce identical output.
    """

    def quantize(match: re.Match) -> str:
        png = _compact_png(base64.b64decode(match.group(1).replace("\\\n", "")))
        return '"data:image/png;base64,' + base64.b64encode(png).decode("ascii") + '"'

    html = _FRAME.sub(quantize, html)
    html = _without_icon_font(html)
    found = _ANIMATION_ID.search(html)
    if found:
        digest = hashlib.sha1(html.replace(found.group(1), "").encode()).hexdigest()[:24]
        html = html.replace(found.group(1), f"{next(_animation_ids):08x}{digest}")
    return html


_animation_ids = itertools.count()

# matplotlib's player links Font Awesome from a CDN for its button icons; the
# course site must work offline, so the buttons get Unicode glyphs instead.
_ICON_FONT_LINK = re.compile(r'<link rel="stylesheet"\s+href="https?://[^"]*font-awesome[^"]*">\s*')
_BUTTON_GLYPHS = {  # from common font blocks: the media-control symbols (U+23EE...) often lack a glyph
    "fa fa-minus": "\u2212",  # slower
    "fa fa-fast-backward": "\u21e4",  # first frame
    "fa fa-step-backward": "\u2039",  # previous frame
    "fa fa-play fa-flip-horizontal": "\u25c0",  # play backwards
    "fa fa-pause": "||",
    "fa fa-play": "\u25b6",
    "fa fa-step-forward": "\u203a",  # next frame
    "fa fa-fast-forward": "\u21e5",  # last frame
    "fa fa-plus": "+",  # faster
}


def _without_icon_font(html: str) -> str:
    html = _ICON_FONT_LINK.sub("", html)
    for icon, glyph in _BUTTON_GLYPHS.items():
        html = html.replace(f'<i class="{icon}"></i>', glyph)
    return html


def _compact_png(png: bytes) -> bytes:
    """The same picture as a 256-colour palette PNG: plots have few colours, so it
    looks the same at a quarter to a half of the size."""
    from PIL import Image  # Pillow is a dependency of matplotlib

    image = Image.open(io.BytesIO(png)).convert("RGB")
    image = image.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    image.save(buffer, format="png")
    return buffer.getvalue()
