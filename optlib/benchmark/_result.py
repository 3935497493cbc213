"""Loading saved benchmark results, and the tables and figures chapter 13 shows."""

from __future__ import annotations

import math

from optlib.plotting import optimizer_color

from ._optimizers import OPTIMIZERS

__all__ = ["BenchmarkResult", "load_benchmark", "format_table", "result_name"]

# plot_summary's colours saturate at this ratio to the best final loss.
SUMMARY_COLOUR_CAP = 10.0
# tuning_table counts the searched learning rates within this factor of the selected one.
NEAR_FACTOR = 1.5
SCHEDULE_LABELS = {"constant": "constant lr", "warmup_cosine": "warm-up + cosine"}


def result_name(size: str) -> str:
    return f"benchmark_{size}"


def _pm(pair, digits=4) -> str:
    mean, std = pair
    if isinstance(mean, float) and math.isnan(mean):
        return "-"
    if math.isinf(mean):
        return "diverged"
    return f"{mean:.{digits}g} ± {std:.2g}"


def _interval(value, ci, digits=3) -> str:
    """``+0.12 [+0.05, +0.19]``; "-" when there is no comparison, "diverged" for an infinite difference."""
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "diverged" if value > 0 else "the other diverged"
    if isinstance(value, float) and math.isnan(value):
        return "-"
    lo, hi = ci
    if lo is None or (isinstance(lo, float) and math.isnan(lo)):
        return f"{value:+.{digits}g}"
    return f"{value:+.{digits}g} [{lo:+.{digits}g}, {hi:+.{digits}g}]"


def _reach(runs: list[dict], target: float) -> tuple[str, str]:
    """Steps and seconds to ``target`` as "mean ± std (reached/seeds)" and "mean ± std"."""
    from ._runner import _first_reach
    from ._stats import mean_std

    hits = [_first_reach(run, target) for run in runs]
    steps = [s for s, _ in hits if s is not None]
    seconds = [t for _, t in hits if t is not None]
    if not steps:
        return f"- (0/{len(runs)})", "-"
    return f"{_pm(mean_std(steps), 4)} ({len(steps)}/{len(runs)})", _pm(mean_std(seconds), 3)


def _loss_ratio(search: list[dict], j: int, chosen: int) -> str:
    """Final loss of search point ``j`` over that of the selected point ``chosen``, as text."""
    if not 0 <= j < len(search):
        return "-"
    loss, best = search[j]["final"]["val_loss"], search[chosen]["final"]["val_loss"]
    if search[j]["diverged"] or not math.isfinite(loss):
        return "diverged"
    return f"{loss / best:.3g}" if math.isfinite(best) and best > 0 else "-"


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

    def problem_size(self, problem: str) -> str:
        """The size ``problem`` was run at: the file's, unless :func:`load_benchmark` filled it in from a smaller one."""
        return self._problem(problem).get("size", self.size)

    @property
    def sizes(self) -> dict[str, list[str]]:
        """``{size: [problems]}``: one entry for a single run, two when quick results fill in for full ones."""
        out: dict[str, list[str]] = {}
        for p in self.problems:
            out.setdefault(self.problem_size(p), []).append(p)
        return out

    @property
    def problems(self) -> list[str]:
        return list(self.payload["problems"])

    def optimizers(self, problem: str, schedule: str = "constant") -> list[str]:
        return list(self.results(problem, schedule))

    @property
    def schedules(self) -> list[str]:
        """The schedules run: ``["constant"]`` for files saved before schedules were an option."""
        return list(self.payload.get("schedules", ["constant"]))

    def not_applicable(self, problem: str) -> dict[str, str]:
        """``{optimizer: why}`` for the optimizers that cannot run on ``problem`` (Muon without hidden matrices)."""
        return dict(self._problem(problem).get("not_applicable", {}))

    def _problem(self, problem: str) -> dict:
        if problem not in self.payload["problems"]:
            raise ValueError(f"Invalid problem: {problem!r}; this result holds {', '.join(self.problems)}")
        return self.payload["problems"][problem]

    def _variant(self, problem: str, schedule: str) -> dict:
        """``{"results", "summary"}`` of ``problem`` under ``schedule``."""
        p = self._problem(problem)
        if schedule == "constant":
            return p
        if schedule not in p.get("schedules", {}):
            raise ValueError(f"Invalid schedule: {schedule!r}; this result holds {', '.join(self.schedules)}")
        return p["schedules"][schedule]

    def results(self, problem: str, schedule: str = "constant") -> dict:
        """``{optimizer: {"lr", "search", "runs", ...}}`` of ``problem`` under ``schedule``: every run, as saved."""
        return self._variant(problem, schedule)["results"]

    def summary(self, problem: str, schedule: str = "constant") -> dict:
        """The summary of ``problem`` under ``schedule``: target, per-optimizer rows, alpha."""
        return self._variant(problem, schedule)["summary"]

    def table(self, problem: str, schedule: str = "constant") -> list[dict]:
        """One row per optimizer, best final validation loss first.

        Each row: optimizer, selected lr, final val loss / train loss / val
        accuracy / wall time as "mean ± std" over the seeds, steps and seconds to
        the target loss (with how many seeds reached it), the verdict against the
        best (Welch, Holm-corrected), and next to it the two effect sizes with
        their 95% confidence intervals: the difference of the mean final
        validation losses (of their log10 on the test functions) from the best's,
        and Hedges' g. Positive = worse than the best.
        """
        p = self._problem(problem)
        summary = self.summary(problem, schedule)
        delta = "Δ log10 loss" if summary.get("log_scale") else "Δ loss"
        level = f"{summary.get('confidence', 0.95):.0%}"
        rows = []
        for name, s in summary["optimizers"].items():
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
                    f"{delta} vs best [{level} CI]": _interval(s.get("diff"), s.get("diff_ci") or (None, None)),
                    f"Hedges' g [{level} CI]": _interval(s.get("g"), s.get("g_ci") or (None, None), 2),
                    "_sort": s["val_loss"][0],
                }
            )
        rows.sort(key=lambda r: (r["_sort"], r["optimizer"]))
        for r in rows:
            del r["_sort"]
        return rows

    def dataframe(self, problem: str, schedule: str = "constant"):
        """:meth:`table` as a pandas DataFrame indexed by optimizer, for ``display()`` in a notebook."""
        import pandas as pd

        return pd.DataFrame(self.table(problem, schedule)).set_index("optimizer")

    def _finals(self, problem: str, name: str, schedule: str) -> list[float]:
        """Final validation losses over the seeds, on the scale the benchmark tests them."""
        values = [run["final"]["val_loss"] for run in self.results(problem, schedule)[name]["runs"]]
        if self._problem(problem).get("log_scale"):
            values = [math.log10(max(v, 1e-300)) if math.isfinite(v) else v for v in values]
        return values

    def compare(self, problem: str, optimizer: str, others, schedule: str = "constant") -> list[dict]:
        """``optimizer`` against each of ``others`` on ``problem``: one Holm-corrected family of Welch tests.

        One row per other optimizer: verdict ("better", "worse", "not
        distinguishable", for ``optimizer``; lower loss is better), Holm-adjusted and
        raw p, the difference of the means (``optimizer`` minus the other; log10
        losses on the test functions) and Hedges' g, each with its 95% interval.
        """
        from ._stats import compare_pairs

        others = [others] if isinstance(others, str) else list(others)
        results = self.results(problem, schedule)
        for name in [optimizer, *others]:
            if name not in results:
                raise ValueError(f"Invalid optimizer: {name!r}; {problem} holds {', '.join(results)}")
        pairs = {o: (self._finals(problem, optimizer, schedule), self._finals(problem, o, schedule)) for o in others}
        out = compare_pairs(pairs)
        return [{"optimizer": optimizer, "versus": o, **out[o]} for o in others]

    def schedule_table(self, problem: str, schedule: str = "warmup_cosine") -> list[dict]:
        """Each optimizer with a constant learning rate and with ``schedule``, each tuned on its own grid.

        One row per optimizer run under both: the selected lr and mean ± std final
        validation loss of each, then the verdict for the schedule (Welch,
        Holm-corrected across the optimizers of the problem): "better", "worse" or
        "not distinguishable", with the difference of the means (schedule minus
        constant; log10 losses on the test functions) and Hedges' g, each with its
        95% confidence interval, and the steps and seconds each takes to reach the
        constant-rate table's target loss (one target for both columns, so they compare).
        """
        from ._stats import compare_pairs

        const, sched = self.summary(problem, "constant"), self.summary(problem, schedule)
        names = [n for n in const["optimizers"] if n in sched["optimizers"]]
        pairs = {n: (self._finals(problem, n, schedule), self._finals(problem, n, "constant")) for n in names}
        verdicts = compare_pairs(pairs)
        delta = "Δ log10 loss" if self._problem(problem).get("log_scale") else "Δ loss"
        label = SCHEDULE_LABELS.get(schedule, schedule)
        target = const["target"]["val_loss"]
        rows = []
        for n in names:
            c, s, v = const["optimizers"][n], sched["optimizers"][n], verdicts[n]
            reach = {k: _reach(self.results(problem, k)[n]["runs"], target) for k in ("constant", schedule)}
            rows.append(
                {
                    "optimizer": n,
                    "lr (constant)": f"{c['lr']:.3g}",
                    "val loss (constant)": _pm(c["val_loss"]),
                    f"lr ({label})": f"{s['lr']:.3g}",
                    f"val loss ({label})": _pm(s["val_loss"]),
                    f"{label} vs constant": v["verdict"],
                    "Holm p": "-" if v.get("p_holm") is None else f"{v['p_holm']:.2g}",
                    f"{delta} [95% CI]": _interval(v.get("diff"), v.get("diff_ci") or (None, None)),
                    "Hedges' g [95% CI]": _interval(v.get("g"), v.get("g_ci") or (None, None), 2),
                    "steps to target (constant)": reach["constant"][0],
                    f"steps to target ({label})": reach[schedule][0],
                    "s to target (constant)": reach["constant"][1],
                    f"s to target ({label})": reach[schedule][1],
                }
            )
        return rows

    def tuning_table(self, problem: str, schedule: str = "constant") -> list[dict]:
        """How well the search pinned down each optimizer's learning rate.

        Per optimizer: the selected lr, the number of learning rates searched, how
        many lie within a factor 1.5 of the selected one (itself included), the
        final loss of the nearest searched neighbour below and above as a multiple
        of the selected one's (close to 1: a flat optimum, the exact lr matters
        little), and whether the selection is at an end of the searched range
        (then the best lr may lie outside it).
        """
        rows = []
        for name, r in self.results(problem, schedule).items():
            search = sorted(r["search"], key=lambda x: x["lr"])
            lrs = [x["lr"] for x in search]
            i = min(range(len(lrs)), key=lambda j: abs(math.log(lrs[j] / r["lr"])))
            rows.append(
                {
                    "optimizer": name,
                    "selected lr": f"{r['lr']:.3g}",
                    "lrs searched": len(lrs),
                    f"within {NEAR_FACTOR:g}x": sum(1 for lr in lrs if max(lr / r["lr"], r["lr"] / lr) <= NEAR_FACTOR),
                    "loss below / selected": _loss_ratio(search, i - 1, i),
                    "loss above / selected": _loss_ratio(search, i + 1, i),
                    "at an end of the range": i in (0, len(lrs) - 1),
                }
            )
        return rows

    def plot_lr_sensitivity(self, problem: str, ax=None, optimizers=None, schedule: str = "constant"):
        """Each optimizer's final validation loss (search seed) against the learning rate, log-log.

        Every searched learning rate is a marker (refining points too); a diverged
        run is an "x" at the top of the axes; the selected learning rate is a star.
        """
        import matplotlib.pyplot as plt
        import numpy as np

        p = self._problem(problem)
        results = self.results(problem, schedule)
        ax = ax if ax is not None else plt.subplots(figsize=(7, 4.5))[1]
        finite = [
            x["final"]["val_loss"]
            for r in results.values()
            for x in r["search"]
            if not x["diverged"] and math.isfinite(x["final"]["val_loss"])
        ]
        top = max(finite) * 2 if finite else 1.0
        for name in optimizers or list(results):
            r = results[name]
            search = sorted(r["search"], key=lambda x: x["lr"])
            lrs = np.array([x["lr"] for x in search])
            losses = np.array(
                [np.nan if x["diverged"] else x["final"]["val_loss"] for x in search],
                dtype=float,
            )
            spec = OPTIMIZERS.get(name)
            style = "--" if spec is not None and spec.is_peer else "-"
            colour = optimizer_color(name)
            ax.plot(lrs, losses, style, marker="o", ms=3, color=colour, lw=1.2, label=name)
            bad = ~np.isfinite(losses)
            if bad.any():
                ax.plot(lrs[bad], np.full(bad.sum(), top), "x", color=colour, ms=6)
            chosen = min(range(len(lrs)), key=lambda j: abs(math.log(lrs[j] / r["lr"])))
            if np.isfinite(losses[chosen]):
                ax.plot([lrs[chosen]], [losses[chosen]], "*", color=colour, ms=12, mec="black", mew=0.5)
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="learning rate",
            ylabel=f"final validation loss ({p['loss_name']}), search seed",
            title=f"{p['title']}\nfinal loss against learning rate "
            f"({SCHEDULE_LABELS.get(schedule, schedule)}, {self.problem_size(problem)}; ★ selected, x diverged)",
        )
        ax.legend(fontsize=7, ncol=2)
        return ax

    def format_table(self, problem: str) -> str:
        return format_table(self, problem)

    def _seed_values(self, problem: str, optimizer: str, metric: str, schedule: str):
        """``(steps, values)``: ``metric`` of each seed that did not diverge, one row per seed, cut to the shortest."""
        import numpy as np

        if metric not in ("train_loss", "val_loss", "val_accuracy", "time", "lr"):
            raise ValueError(
                f"Invalid metric: {metric!r}; metric must be train_loss, val_loss, val_accuracy, time or lr"
            )
        runs = [r for r in self.results(problem, schedule)[optimizer]["runs"] if not r["diverged"]]
        if metric == "lr" and any(metric not in r["curves"] for r in runs):
            raise ValueError("Invalid metric: 'lr'; this file was saved before the learning rate was recorded")
        if not runs:
            return np.array([]), np.empty((0, 0))
        n = min(len(r["curves"]["step"]) for r in runs)
        values = np.array([r["curves"][metric][:n] for r in runs], dtype=float)
        return np.array(runs[0]["curves"]["step"][:n]), values

    def curves(self, problem: str, optimizer: str, metric: str = "val_loss", schedule: str = "constant"):
        """``(steps, mean, std)`` of ``metric`` over the seeds (diverged seeds left out)."""
        import numpy as np

        steps, values = self._seed_values(problem, optimizer, metric, schedule)
        if not len(steps):
            return steps, np.array([]), np.array([])
        std = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(len(steps))
        return steps, values.mean(axis=0), std

    def curve_band(self, problem: str, optimizer: str, metric: str = "val_loss", schedule: str = "constant"):
        """``(steps, median, lowest, highest)`` of ``metric`` over the seeds (diverged seeds left out).

        The band to draw on a log scale: mean − std goes negative wherever one seed's loss
        is orders of magnitude above the others' (a spike, or a test function whose seeds
        converge at different rates), and the band would fall off the axis; the range of
        the seeds stays positive, and the median is the typical seed.
        """
        import numpy as np

        steps, values = self._seed_values(problem, optimizer, metric, schedule)
        if not len(steps):
            return steps, np.array([]), np.array([]), np.array([])
        return steps, np.median(values, axis=0), values.min(axis=0), values.max(axis=0)

    def plot_curves(self, problem: str, metric: str = "val_loss", ax=None, optimizers=None, schedule: str = "constant"):
        """The median over seeds of ``metric`` against steps, one line per optimizer, with the seeds' range as a band."""
        import matplotlib.pyplot as plt

        p = self._problem(problem)
        variant = self._variant(problem, schedule)
        ax = ax if ax is not None else plt.subplots(figsize=(7, 4.5))[1]
        for name in optimizers or self.optimizers(problem, schedule):
            steps, median, lowest, highest = self.curve_band(problem, name, metric, schedule)
            if not len(steps):
                continue
            # The course's colour for each optimizer, so every chapter's plots agree; peers dashed.
            spec = OPTIMIZERS.get(name)
            style = "--" if spec is not None and spec.is_peer else "-"
            (line,) = ax.plot(
                steps,
                median,
                style,
                color=optimizer_color(name),
                label=f"{name} (lr {variant['results'][name]['lr']:.2g})",
            )
            ax.fill_between(steps, lowest, highest, color=line.get_color(), alpha=0.2)
        if metric not in ("val_accuracy", "lr"):
            ax.set_yscale("log")
        if metric == "val_loss":
            target = variant["summary"]["target"]["val_loss"]
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
            "time": "training time (s)",
            "lr": "learning rate",
        }[metric]
        ax.set(
            xlabel="optimizer step",
            ylabel=label,
            title=f"{p['title']}\n{label}, median and range of {len(self.payload['seeds'])} seeds "
            f"({SCHEDULE_LABELS.get(schedule, schedule)}, {self.problem_size(problem)})",
        )
        ax.legend(fontsize=7, ncol=2)
        return ax

    def relative_losses(self, schedule: str = "constant"):
        """``(problems, optimizers, matrix)``: final val loss mean / best mean per problem (nan if absent)."""
        import numpy as np

        names = []
        for p in self.problems:
            names += [n for n in self.optimizers(p, schedule) if n not in names]
        mat = np.full((len(self.problems), len(names)), np.nan)
        for i, p in enumerate(self.problems):
            summary = self.summary(p, schedule)["optimizers"]
            best = min(s["val_loss"][0] for s in summary.values())
            for j, n in enumerate(names):
                if n in summary:
                    m = summary[n]["val_loss"][0]
                    mat[i, j] = m / best if best > 0 else (1.0 if m == best else np.inf)
        return self.problems, names, mat

    def plot_summary(self, ax=None, schedule: str = "constant"):
        """Heatmap of each optimizer's final validation loss divided by the best one's, per problem.

        1 is the best; "≈" marks optimizers the seeds cannot tell from the best
        (Welch test, Holm-corrected, p >= 0.05); "div" marks a divergence; "n/a" an
        optimizer that does not apply to the problem (Muon without hidden matrices).
        """
        import matplotlib.pyplot as plt
        import numpy as np
        from matplotlib.colors import LogNorm

        problems, names, mat = self.relative_losses(schedule)
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
            summary = self.summary(p, schedule)["optimizers"]
            for j, n in enumerate(names):
                if n not in summary:
                    if n in self.not_applicable(p):
                        ax.text(j, i, "n/a", ha="center", va="center", fontsize=7, color="grey")
                    continue
                s = summary[n]
                text = "div" if not math.isfinite(mat[i, j]) else f"{mat[i, j]:.2g}"
                if s["best"] or not s["distinguishable"]:
                    text = ("best" if s["best"] else "≈") + "\n" + text
                # Light text on the dark (far from best) end of viridis_r, dark text on the light end
                # and on a diverged cell, which has no colour (white).
                dark_cell = math.isfinite(mat[i, j]) and mat[i, j] > math.sqrt(vmax)
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if dark_cell else "black")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(problems)), [self.problem_label(p) for p in problems])
        ax.set(
            xlabel="optimizer",
            ylabel="problem",
            title=f"Final validation loss / best on each problem ({SCHEDULE_LABELS.get(schedule, schedule)}, "
            f"{' + '.join(self.sizes)} size; ≈: not distinguishable)",
        )
        ax.figure.colorbar(
            im,
            ax=ax,
            extend="max" if largest > vmax else "neither",
            label=f"val loss / best (colours capped at {SUMMARY_COLOUR_CAP:g}x)",
        )
        return ax

    def problem_label(self, problem: str) -> str:
        """The problem's name, with its size when the result mixes sizes."""
        return problem if len(self.sizes) == 1 else f"{problem} ({self.problem_size(problem)})"

    def __repr__(self) -> str:
        return f"BenchmarkResult({self.size}: {len(self.problems)} problems, date {self.payload.get('date')})"


def format_table(result: BenchmarkResult, problem: str, schedule: str = "constant") -> str:
    """The table of :meth:`BenchmarkResult.table` as aligned text, with its target and reference."""
    rows = result.table(problem, schedule)
    p = result._problem(problem)
    summary = result.summary(problem, schedule)
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    lines = [
        f"== {p['title']} [{problem}, {result.size}, {SCHEDULE_LABELS.get(schedule, schedule)}] ==",
        f"target val loss {summary['target']['val_loss']:.4g} ({summary['target']['rule']})",
        "  ".join(c.ljust(widths[c]) for c in cols),
    ]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in cols) for r in rows]
    lines.append(
        "vs best: Welch t-test against the best, Holm-corrected across the optimizers; Δ and g: this optimizer "
        "minus the best (positive = worse), with 95% confidence intervals (unadjusted)."
    )
    for name, why in p.get("not_applicable", {}).items():
        lines.append(f"{name}: {why}.")
    ref = p.get("reference") or {}
    if ref:
        values = ", ".join(f"{k} {v}" for k, v in ref["values"].items())
        lines.append(f"reference ({ref['metric']}): {values}. Source: {ref['source']}. {ref['caveat']}")
    return "\n".join(lines)


def load_benchmark(size: str = "full", path=None, fill: bool = True) -> BenchmarkResult:
    """The saved benchmark of ``size``; ``"full"`` falls back to ``"quick"`` with a note saying so.

    A full-size file may hold only some problems: on a CPU, the ones whose full size
    fits (the rest need a GPU). With ``fill``, the problems it lacks are taken from
    the quick-size file, each marked with its size (:meth:`BenchmarkResult.problem_size`),
    so a page shows every problem and says which size each number comes from. Every
    verdict compares optimizers within one problem, so the sizes never meet in a test.

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
    for i, candidate in enumerate(order):
        record = load_results(result_name(candidate))
        if record is None:
            continue
        payload = _restore(record["payload"])
        note = f"Benchmark results: {candidate} size, run on {payload.get('device_name')} on {payload.get('date')}."
        if candidate != size:
            note += f" No {size}-size results are saved, so these are the {candidate}-size ones."
        smaller = load_results(result_name(order[i + 1])) if fill and i + 1 < len(order) else None
        if smaller is not None:
            note += _fill_missing(payload, _restore(smaller["payload"]))
        print(note)
        return BenchmarkResult(payload, note)
    raise FileNotFoundError(f"No saved benchmark for size {size!r}; run: python -m optlib.benchmark --size {size}")


def _fill_missing(payload: dict, smaller: dict) -> str:
    """Copy into ``payload`` the problems only ``smaller`` has, marked with its size; the note's sentence."""
    missing = [p for p in smaller["problems"] if p not in payload["problems"]]
    if not missing:
        return ""
    filled = {**payload["problems"], **{p: dict(smaller["problems"][p], size=smaller["size"]) for p in missing}}
    order = list(smaller["problems"]) + [p for p in payload["problems"] if p not in smaller["problems"]]
    payload["problems"] = {p: filled[p] for p in order if p in filled}
    return (
        f" It holds {', '.join(p for p in order if p in payload['problems'] and p not in missing)} only; "
        f"{', '.join(missing)} come from the {smaller['size']}-size results "
        f"(run on {smaller.get('device_name')} on {smaller.get('date')})."
    )


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
        # Files saved before problems carried log_scale take it from the registry.
        log_scale = p.get("log_scale", name in PROBLEMS and PROBLEMS[name].log_scale)
        p["log_scale"] = log_scale
        for variant in [p, *p.get("schedules", {}).values()]:
            for r in variant["results"].values():
                for record in [*r["runs"], *r["search"]]:
                    record["final"] = _nan(record["final"])
                    if record["diverged"]:
                        record["final"]["val_loss"] = record["final"]["train_loss"] = math.inf
                for run in r["runs"]:
                    run["curves"] = _nan(run["curves"])
            alpha = variant["summary"].get("alpha") or 0.05
            variant["summary"] = summarize_problem(variant["results"], alpha, log_scale=log_scale)
    return payload
