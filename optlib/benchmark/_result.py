"""Loading saved benchmark results, and the tables and figures chapter 13 shows."""

from __future__ import annotations

import math

from optlib.plotting import optimizer_color

from ._optimizers import OPTIMIZERS

__all__ = ["BenchmarkResult", "load_benchmark", "format_table", "result_name"]

# plot_summary's colours saturate at this ratio to the best final loss.
SUMMARY_COLOUR_CAP = 10.0


def result_name(size: str) -> str:
    return f"benchmark_{size}"


def _pm(pair, digits=4) -> str:
    mean, std = pair
    if isinstance(mean, float) and math.isnan(mean):
        return "-"
    if math.isinf(mean):
        return "diverged"
    return f"{mean:.{digits}g} ± {std:.2g}"


class BenchmarkResult:
    """A saved benchmark run: ``payload`` is the dict written to JSON; ``note`` says which run it is."""

    def __init__(self, payload: dict, note: str = ""):
        if not isinstance(payload, dict) or "problems" not in payload:
            raise ValueError("Invalid payload: it must be a benchmark payload with a 'problems' entry")
        self.payload = payload
        self.note = note

    @property
    def size(self) -> str:
        return self.payload["size"]

    @property
    def problems(self) -> list[str]:
        return list(self.payload["problems"])

    def optimizers(self, problem: str) -> list[str]:
        return list(self._problem(problem)["results"])

    def _problem(self, problem: str) -> dict:
        if problem not in self.payload["problems"]:
            raise ValueError(f"Invalid problem: {problem!r}; this result holds {', '.join(self.problems)}")
        return self.payload["problems"][problem]

    def table(self, problem: str) -> list[dict]:
        """One row per optimizer, best final validation loss first.

        Each row: optimizer, selected lr, final val loss / train loss / val
        accuracy / wall time as "mean ± std" over the seeds, steps and seconds to
        the target loss (with how many seeds reached it), and the significance mark.
        """
        p = self._problem(problem)
        rows = []
        for name, s in p["summary"]["optimizers"].items():
            rows.append(
                {
                    "optimizer": name,
                    "lr": f"{s['lr']:.3g}",
                    "val loss": _pm(s["val_loss"]),
                    "val acc": _pm(s["val_accuracy"], 3) if p["has_accuracy"] else "-",
                    "train loss": _pm(s["train_loss"]),
                    "steps to target": f"{_pm(s['steps_to_target'], 4)} ({s['reached_target']}/{s['n_seeds']})",
                    "s to target": _pm(s["time_to_target"], 3),
                    "s per run": _pm(s["wall_time"], 3),
                    "vs best": s["mark"],
                    "_sort": s["val_loss"][0],
                }
            )
        rows.sort(key=lambda r: (r["_sort"], r["optimizer"]))
        for r in rows:
            del r["_sort"]
        return rows

    def format_table(self, problem: str) -> str:
        return format_table(self, problem)

    def curves(self, problem: str, optimizer: str, metric: str = "val_loss"):
        """``(steps, mean, std)`` of ``metric`` over the seeds (diverged seeds left out)."""
        import numpy as np

        runs = [r for r in self._problem(problem)["results"][optimizer]["runs"] if not r["diverged"]]
        if metric not in ("train_loss", "val_loss", "val_accuracy", "time"):
            raise ValueError(f"Invalid metric: {metric!r}; metric must be train_loss, val_loss, val_accuracy or time")
        if not runs:
            return np.array([]), np.array([]), np.array([])
        n = min(len(r["curves"]["step"]) for r in runs)
        values = np.array([r["curves"][metric][:n] for r in runs], dtype=float)
        std = values.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(n)
        return np.array(runs[0]["curves"]["step"][:n]), values.mean(axis=0), std

    def plot_curves(self, problem: str, metric: str = "val_loss", ax=None, optimizers=None):
        """Mean ± one standard deviation over seeds of ``metric`` against steps, one line per optimizer."""
        import matplotlib.pyplot as plt

        p = self._problem(problem)
        ax = ax if ax is not None else plt.subplots(figsize=(7, 4.5))[1]
        for name in optimizers or self.optimizers(problem):
            steps, mean, std = self.curves(problem, name, metric)
            if not len(steps):
                continue
            # The course's colour for each optimizer, so every chapter's plots agree; peers dashed.
            spec = OPTIMIZERS.get(name)
            style = "--" if spec is not None and spec.is_peer else "-"
            (line,) = ax.plot(
                steps, mean, style, color=optimizer_color(name), label=f"{name} (lr {p['results'][name]['lr']:.2g})"
            )
            ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        if metric != "val_accuracy":
            ax.set_yscale("log")
        if metric == "val_loss":
            target = p["summary"]["target"]["val_loss"]
            if math.isfinite(target):
                ax.axhline(target, color="grey", ls=":", label="target")
        ref = p.get("reference") or {}
        if ref.get("metric") == metric:
            for label, value in ref["values"].items():
                ax.axhline(value, color="black", ls="--", lw=0.8)
                ax.annotate(label, (ax.get_xlim()[0], value), fontsize=7, va="bottom")
        label = {
            "val_loss": f"validation loss ({p['loss_name']})",
            "train_loss": f"training loss ({p['loss_name']})",
            "val_accuracy": "validation accuracy",
            "time": "wall time (s)",
        }[metric]
        ax.set(
            xlabel="optimizer step",
            ylabel=label,
            title=f"{p['title']}: {label}, mean ± std over {len(self.payload['seeds'])} seeds ({self.size})",
        )
        ax.legend(fontsize=7, ncol=2)
        return ax

    def relative_losses(self):
        """``(problems, optimizers, matrix)``: final val loss mean / best mean per problem (nan if absent)."""
        import numpy as np

        names = []
        for p in self.problems:
            names += [n for n in self.optimizers(p) if n not in names]
        mat = np.full((len(self.problems), len(names)), np.nan)
        for i, p in enumerate(self.problems):
            summary = self._problem(p)["summary"]["optimizers"]
            best = min(s["val_loss"][0] for s in summary.values())
            for j, n in enumerate(names):
                if n in summary:
                    m = summary[n]["val_loss"][0]
                    mat[i, j] = m / best if best > 0 else (1.0 if m == best else np.inf)
        return self.problems, names, mat

    def plot_summary(self, ax=None):
        """Heatmap of each optimizer's final validation loss divided by the best one's, per problem.

        1 is the best; "≈" marks optimizers the seeds cannot tell from the best
        (Welch test, p >= 0.05); "div" marks a divergence.
        """
        import matplotlib.pyplot as plt
        import numpy as np
        from matplotlib.colors import LogNorm

        problems, names, mat = self.relative_losses()
        ax = ax if ax is not None else plt.subplots(figsize=(1 + 0.8 * len(names), 1 + 0.6 * len(problems)))[1]
        shown = np.where(np.isfinite(mat), mat, np.nan)
        finite = shown[np.isfinite(shown)]
        # Ratios on the test functions reach 1e15 while the networks differ by a few
        # per cent: one scale up to the largest ratio would paint every network row
        # alike. Colours saturate at 10x the best; each cell prints its real ratio.
        largest = float(finite.max()) if finite.size else 2.0
        vmax = min(max(largest, 1.01), SUMMARY_COLOUR_CAP)
        im = ax.imshow(shown, cmap="viridis_r", norm=LogNorm(vmin=1.0, vmax=vmax, clip=True), aspect="auto")
        for i, p in enumerate(problems):
            summary = self._problem(p)["summary"]["optimizers"]
            for j, n in enumerate(names):
                if n not in summary:
                    continue
                s = summary[n]
                text = "div" if not math.isfinite(mat[i, j]) else f"{mat[i, j]:.2g}"
                if s["best"] or not s["distinguishable"]:
                    text = ("best" if s["best"] else "≈") + "\n" + text
                # Light text on the dark (far from best) end of viridis_r, dark text on the light end.
                dark_cell = not math.isfinite(mat[i, j]) or mat[i, j] > math.sqrt(vmax)
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if dark_cell else "black")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(problems)), problems)
        ax.set(
            xlabel="optimizer",
            ylabel="problem",
            title=f"Final validation loss / best on each problem ({self.size} size; ≈: not distinguishable)",
        )
        ax.figure.colorbar(
            im,
            ax=ax,
            extend="max" if largest > vmax else "neither",
            label=f"val loss / best (colours capped at {SUMMARY_COLOUR_CAP:g}x)",
        )
        return ax

    def __repr__(self) -> str:
        return f"BenchmarkResult({self.size}: {len(self.problems)} problems, date {self.payload.get('date')})"


def format_table(result: BenchmarkResult, problem: str) -> str:
    """The table of :meth:`BenchmarkResult.table` as aligned text, with its target and reference."""
    rows = result.table(problem)
    p = result._problem(problem)
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    lines = [
        f"== {p['title']} [{problem}, {result.size}] ==",
        f"target val loss {p['summary']['target']['val_loss']:.4g} ({p['summary']['target']['rule']})",
        "  ".join(c.ljust(widths[c]) for c in cols),
    ]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in cols) for r in rows]
    ref = p.get("reference") or {}
    if ref:
        values = ", ".join(f"{k} {v}" for k, v in ref["values"].items())
        lines.append(f"reference ({ref['metric']}): {values}. Source: {ref['source']}. {ref['caveat']}")
    return "\n".join(lines)


def load_benchmark(size: str = "full", path=None) -> BenchmarkResult:
    """The saved benchmark of ``size``; ``"full"`` falls back to ``"quick"`` with a note saying so.

    ``path`` reads a file written with ``--out`` instead of ``data/results/``.
    """
    import json
    from pathlib import Path

    from optlib.results import load_results

    if size not in ("full", "quick", "tiny"):
        raise ValueError(f"Invalid size: {size!r}; size must be 'full', 'quick' or 'tiny'")
    if path is not None:
        record = json.loads(Path(path).read_text())
        payload = _restore(record["payload"])
        return BenchmarkResult(payload, f"Benchmark results from {path} ({payload['size']} size).")
    order = [size] + (["quick"] if size == "full" else [])
    for candidate in order:
        record = load_results(result_name(candidate))
        if record is None:
            continue
        payload = _restore(record["payload"])
        note = f"Benchmark results: {candidate} size, run on {payload.get('device_name')} on {payload.get('date')}."
        if candidate != size:
            note += f" No {size}-size results are saved, so these are the {candidate}-size ones."
        print(note)
        return BenchmarkResult(payload, note)
    raise FileNotFoundError(f"No saved benchmark for size {size!r}; run: python -m optlib.benchmark --size {size}")


def _nan(value):
    if isinstance(value, dict):
        return {k: _nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan(v) for v in value]
    return math.nan if value is None else value


def _restore(payload: dict) -> dict:
    """Undo JSON's loss of non-finite numbers: null was NaN, or +inf for a diverged run's loss.

    The summaries are then recomputed from the runs, so they carry the same
    infinities and NaNs as the ones printed when the benchmark ran.
    """
    from ._problems import PROBLEMS
    from ._runner import summarize_problem

    for name, p in payload["problems"].items():
        for r in p["results"].values():
            for record in [*r["runs"], *r["search"]]:
                record["final"] = _nan(record["final"])
                if record["diverged"]:
                    record["final"]["val_loss"] = record["final"]["train_loss"] = math.inf
            for run in r["runs"]:
                run["curves"] = _nan(run["curves"])
        # Files saved before problems carried log_scale take it from the registry.
        log_scale = p.get("log_scale", name in PROBLEMS and PROBLEMS[name].log_scale)
        p["summary"] = summarize_problem(p["results"], p["summary"].get("alpha") or 0.05, log_scale=log_scale)
    return payload
