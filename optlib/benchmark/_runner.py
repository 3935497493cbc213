"""Fair tuning and seeded reruns: the same learning-rate budget for every optimizer."""

from __future__ import annotations

import datetime
import math
import platform
import statistics
import time
from collections.abc import Sequence

import torch

from ..device import device_label
from ._optimizers import OptimizerSpec, available_optimizers
from ._problems import FINAL_FRACTION, PROBLEMS, SCHEDULES, WARMUP_FRACTION, BenchmarkProblem
from ._stats import ALPHA, CONFIDENCE, mark_significance, mean_std

__all__ = [
    "SIZE_SETTINGS",
    "SEARCH_SEED",
    "SCHEDULES",
    "lr_grid",
    "refine_points",
    "select_lr",
    "tune",
    "rerun",
    "summarize_problem",
    "run_benchmark",
]

# Per size: the coarse grid (points, and the decades they span, centred on each
# optimizer's default), how many points refine it around the coarse winner, how
# many seeds rerun the selected learning rate, and the schedules every optimizer
# is run with. Quick and full: 9 points over 4 decades (a factor 10^0.5 = 3.2
# apart), then 4 more at 10^(±1/8) and 10^(±1/4) times the coarse winner, so
# that near the selected rate the points are a factor 10^(1/8) = 1.33 apart:
# 3 points within 1.5x of it, where one point per decade had 1.
SIZE_SETTINGS = {
    "tiny": {"grid_points": 3, "grid_decades": 2.0, "refine_points": 2, "seeds": 2, "schedules": ("constant",)},
    "quick": {"grid_points": 9, "grid_decades": 4.0, "refine_points": 4, "seeds": 5, "schedules": SCHEDULES},
    "full": {"grid_points": 9, "grid_decades": 4.0, "refine_points": 4, "seeds": 10, "schedules": SCHEDULES},
}

# The search uses one seed; the reruns use seeds 1..N, never this one, so the
# selected run's lucky draw is not counted again in the reported numbers.
SEARCH_SEED = 0

# Where on the budget the target loss is read: see summarize_problem.
TARGET_FRACTION = 0.5


def lr_grid(default_lr: float, points: int, decades: float) -> list[float]:
    """``points`` learning rates, log-spaced over ``decades`` decades centred on ``default_lr``."""
    if not (isinstance(default_lr, (int, float)) and math.isfinite(default_lr) and default_lr > 0):
        raise ValueError(f"Invalid default_lr: {default_lr!r}; default_lr must be a finite number > 0")
    if not isinstance(points, int) or isinstance(points, bool) or points < 1:
        raise ValueError(f"Invalid points: {points!r}; points must be an integer >= 1")
    if not (isinstance(decades, (int, float)) and math.isfinite(decades) and decades >= 0):
        raise ValueError(f"Invalid decades: {decades!r}; decades must be a finite number >= 0")
    if points == 1:
        return [float(default_lr)]
    centre = math.log10(default_lr)
    return [10 ** (centre - decades / 2 + decades * i / (points - 1)) for i in range(points)]


def refine_points(grid: Sequence[float], winner: float, points: int) -> list[float]:
    """``points`` learning rates around ``winner``, in the gaps to its neighbours on the log grid ``grid``.

    With a grid spacing of s decades, the new points sit at ``winner · 10^(±s·j/points)``
    for j = 1 .. points/2: for 4 points, a quarter and a half of the way to each
    neighbour. A winner at an end of the grid gets the same points, half of them
    beyond that end, so the budget stays the same for everyone.
    """
    if not isinstance(points, int) or isinstance(points, bool) or points < 0 or points % 2:
        raise ValueError(f"Invalid points: {points!r}; points must be an even integer >= 0")
    if points == 0 or len(grid) < 2:
        return []
    spacing = math.log10(grid[1] / grid[0])
    half = points // 2
    out = []
    for j in range(1, half + 1):
        for sign in (-1, 1):
            out.append(winner * 10 ** (sign * spacing * j / points))
    return sorted(out)


def _score(record: dict) -> float:
    loss = record["final"]["val_loss"]
    return math.inf if record["diverged"] or not math.isfinite(loss) else float(loss)


def select_lr(search: Sequence[dict]) -> float:
    """The learning rate with the lowest final validation loss.

    A diverged run (or a non-finite loss) scores ``+inf``; ties go to the smaller
    learning rate, the safer choice. If every point diverged the smallest is
    returned, and the reruns will show the divergence.
    """
    if not search:
        raise ValueError("Invalid search: empty; search must hold at least one run")
    return min(search, key=lambda r: (_score(r), r["lr"]))["lr"]


def tune(
    problem: BenchmarkProblem,
    spec: OptimizerSpec,
    size: str,
    grid: Sequence[float],
    seed: int = SEARCH_SEED,
    progress=None,
    refine: int = 0,
    schedule: str = "constant",
) -> tuple[float, list[dict]]:
    """Run every grid point once with ``seed``, then ``refine`` points around the winner.

    Returns the selected lr and the search records, sorted by learning rate; the
    refining points are marked ``"refine": True``.
    """
    search = []

    def run(lr, refining):
        record = problem.run(size, spec, lr, seed, schedule)
        search.append(
            {
                "lr": lr,
                "seed": seed,
                "refine": refining,
                "diverged": record["diverged"],
                "final": record["final"],
                "wall_time": record["wall_time"],
            }
        )
        if progress is not None:
            progress.update(1)

    for lr in grid:
        run(lr, False)
    for lr in refine_points(list(grid), select_lr(search), refine):
        run(lr, True)
    search.sort(key=lambda r: r["lr"])
    return select_lr(search), search


def rerun(
    problem: BenchmarkProblem,
    spec: OptimizerSpec,
    size: str,
    lr: float,
    seeds: Sequence[int],
    progress=None,
    schedule: str = "constant",
) -> list[dict]:
    """Train with ``lr`` once per seed; seeds must be distinct."""
    seeds = [int(s) for s in seeds]
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ValueError(f"Invalid seeds: {seeds!r}; seeds must be distinct and non-empty")
    runs = []
    for seed in seeds:
        runs.append(problem.run(size, spec, lr, seed, schedule))
        if progress is not None:
            progress.update(1)
    return runs


def _first_reach(run: dict, target: float) -> tuple[int | None, float | None]:
    for step, loss, t in zip(run["curves"]["step"], run["curves"]["val_loss"], run["curves"]["time"]):
        if loss <= target:
            return step, t
    return None, None


def _mean_curve_at(runs: list[dict], fraction: float) -> float:
    """Mean val loss over seeds at the evaluation nearest ``fraction`` of the budget."""
    values = []
    for run in runs:
        steps, losses = run["curves"]["step"], run["curves"]["val_loss"]
        if run["diverged"] or not steps or steps[-1] < run["steps"]:
            return math.inf
        goal = fraction * run["steps"]
        i = min(range(len(steps)), key=lambda j: (abs(steps[j] - goal), steps[j]))
        values.append(losses[i])
    return sum(values) / len(values)


def summarize_problem(
    results: dict[str, dict], alpha: float = ALPHA, log_scale: bool = False, confidence: float = CONFIDENCE
) -> dict:
    """Target, per-optimizer summary and significance marks for one problem.

    With ``log_scale`` the significance test (and so the choice of "best") runs
    on log10 of the final validation losses, and so do the effect sizes; the
    reported means stay in the loss's own units. The Welch tests against the
    best are Holm-corrected across the optimizers (see :func:`mark_significance`).

    Target loss: for each optimizer, the seed-mean validation loss at 50% of the
    step budget; the target is the median of these over the optimizers. It is a
    loss the typical tuned optimizer reaches halfway, so "steps to target"
    separates the fast from the slow without being out of everyone's reach.
    """
    halfway = [_mean_curve_at(r["runs"], TARGET_FRACTION) for r in results.values()]
    target = statistics.median(halfway) if halfway else math.nan
    finals = {name: [run["final"]["val_loss"] for run in r["runs"]] for name, r in results.items()}
    if log_scale:
        # 1e-300 stands in for an exact zero, which log10 cannot take.
        finals = {name: [math.log10(max(v, 1e-300)) for v in values] for name, values in finals.items()}
    marks = mark_significance(finals, alpha, confidence) if finals else {}
    summary = {}
    for name, r in results.items():
        runs = r["runs"]
        reached = [_first_reach(run, target) for run in runs]
        steps_hit = [s for s, _ in reached if s is not None]
        times_hit = [t for _, t in reached if t is not None]
        row = {
            "lr": r["lr"],
            "n_seeds": len(runs),
            "n_diverged": sum(run["diverged"] for run in runs),
            "reached_target": len(steps_hit),
            **marks[name],
        }
        for key in ("val_loss", "train_loss", "val_accuracy"):
            row[key] = mean_std([run["final"][key] for run in runs])
        row["wall_time"] = mean_std([run["wall_time"] for run in runs])
        row["steps_to_target"] = mean_std(steps_hit) if steps_hit else (math.nan, math.nan)
        row["time_to_target"] = mean_std(times_hit) if times_hit else (math.nan, math.nan)
        summary[name] = row
    return {
        "log_scale": log_scale,
        "target": {
            "val_loss": target,
            "rule": f"median over optimizers of the seed-mean validation loss "
            f"at {TARGET_FRACTION:.0%} of the step budget",
        },
        "optimizers": summary,
        "alpha": alpha,
        "confidence": confidence,
        "effect_scale": "log10 of the final validation loss" if log_scale else "final validation loss",
    }


def run_benchmark(
    size: str,
    problems: Sequence[str] | None = None,
    optimizers: Sequence[str] | None = None,
    seeds: int | None = None,
    progress: bool = True,
    verbose: bool = True,
    schedules: Sequence[str] | None = None,
    jobs: int = 1,
) -> dict:
    """Tune and rerun every optimizer on every problem, once per schedule; the payload saved as JSON.

    ``schedules`` (default: the size's, see :data:`SIZE_SETTINGS`) must include
    ``"constant"``, the baseline: its results are ``payload["problems"][p]["results"]``
    and ``["summary"]``; every other schedule's are under ``["schedules"][name]``,
    tuned with the same budget. ``jobs`` > 1 runs that many (optimizer, problem,
    schedule) searches at once in worker processes, one thread each; every run is
    seeded on its own, so the numbers are the same as with ``jobs=1`` (the seconds
    are not: parallel jobs share the memory bus).
    """
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"Invalid jobs: {jobs!r}; jobs must be an integer >= 1")
    if size not in SIZE_SETTINGS:
        raise ValueError(f"Invalid size: {size!r}; size must be one of {', '.join(SIZE_SETTINGS)}")
    problems = list(PROBLEMS) if problems is None else list(problems)
    unknown = [p for p in problems if p not in PROBLEMS]
    if unknown or not problems:
        raise ValueError(f"Invalid problems: {unknown or problems!r}; choose from {', '.join(PROBLEMS)}")
    settings = dict(SIZE_SETTINGS[size])
    if seeds is not None:
        if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 2:
            raise ValueError(f"Invalid seeds: {seeds!r}; seeds must be an integer >= 2 (a t-test needs two)")
        settings["seeds"] = seeds
    schedules = list(settings["schedules"] if schedules is None else schedules)
    if (
        "constant" not in schedules
        or any(s not in SCHEDULES for s in schedules)
        or len(set(schedules)) != len(schedules)
    ):
        raise ValueError(
            f"Invalid schedules: {schedules!r}; schedules must be distinct names from {', '.join(SCHEDULES)} "
            f"and include 'constant', the baseline the others are compared with"
        )
    schedules = ["constant"] + [s for s in schedules if s != "constant"]
    settings["schedules"] = schedules
    specs, skipped = available_optimizers(optimizers, verbose=verbose)
    rerun_seeds = list(range(SEARCH_SEED + 1, SEARCH_SEED + 1 + settings["seeds"]))
    grids = {s.name: lr_grid(s.default_lr, settings["grid_points"], settings["grid_decades"]) for s in specs}

    from optlib.device import pick_device

    device = pick_device()
    threads = torch.get_num_threads()
    if device.type == "cpu":
        # These models are far too small to gain from intra-op threads; on a shared
        # 2-core machine extra threads only contend, making runs ~5x slower and
        # their timings noisy. One thread keeps "seconds to target" meaningful.
        torch.set_num_threads(1)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        out_problems, wall = _run_problems(problems, specs, size, settings, grids, rerun_seeds, progress, jobs)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    return {
        "size": size,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": str(device),
        "device_name": device_label(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": 1 if device.type == "cpu" else threads,
        "jobs": jobs,
        "search_seed": SEARCH_SEED,
        "seeds": rerun_seeds,
        "grid": {
            "points": settings["grid_points"],
            "decades": settings["grid_decades"],
            "refine_points": settings["refine_points"],
            "centre": {s.name: s.default_lr for s in specs},
            "lrs": grids,
        },
        "tuning": f"learning rate only: {settings['grid_points']} points log-spaced over "
        f"{settings['grid_decades']:g} decades centred on each optimizer's default, then "
        f"{settings['refine_points']} more in the gaps around the best of them (see refine_points); one run "
        "each with the search seed; the lowest final validation loss wins (diverged = +inf, ties -> smaller "
        "lr); every other hyperparameter at its default; the same budget for every optimizer and schedule.",
        "schedules": schedules,
        "schedule_settings": {
            "warmup_cosine": {
                "warmup_fraction": WARMUP_FRACTION,
                "final_fraction": FINAL_FRACTION,
                "rule": f"optlib.warmup_cosine: linear warm-up from 0 over the first {WARMUP_FRACTION:.0%} of "
                f"the steps, then a cosine down to {FINAL_FRACTION:g} x lr at the last step, stepped per "
                "optimizer step (the AlgoPerf baseline's recipe)",
            }
        },
        "optimizers": {
            s.name: {
                "source": s.source,
                "class": s.attr,
                "kwargs": s.kwargs,
                "note": s.note,
                # The class that actually ran, so a reader can check the JSON against the code.
                "loaded": f"{s.load_class().__module__}.{s.load_class().__qualname__}",
                **({"aux": "torch.optim.AdamW", "aux_kwargs": s.aux_kwargs} if s.hidden_matrices_only else {}),
            }
            for s in specs
        },
        "skipped": skipped,
        "significance": f"Welch t-test on the final validation loss of each optimizer vs the best, "
        f"Holm-corrected across the optimizers of a problem, family-wise alpha = {ALPHA}; effect sizes "
        f"(difference of means, Hedges' g) with {CONFIDENCE:.0%} confidence intervals",
        "problems": out_problems,
        "wall_time": wall,
    }


def _search(problem_name, spec, size, schedule, grid, refine, rerun_seeds, progress=None) -> dict:
    """One optimizer on one problem under one schedule: the search, then the reruns."""
    problem = PROBLEMS[problem_name]
    lr, search = tune(problem, spec, size, grid, progress=progress, refine=refine, schedule=schedule)
    runs = rerun(problem, spec, size, lr, rerun_seeds, progress=progress, schedule=schedule)
    return {"lr": lr, "grid": list(grid), "search": search, "runs": runs}


def _worker_init() -> None:
    # The same settings as the parent's run: one thread, deterministic kernels.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _run_problems(problems, specs, size, settings, grids, rerun_seeds, progress, jobs=1):
    from tqdm.auto import tqdm

    started = time.perf_counter()
    schedules = settings["schedules"]
    refine = settings["refine_points"]
    per_spec = settings["grid_points"] + (refine if settings["grid_points"] > 1 else 0) + settings["seeds"]
    not_applicable = {
        pname: {s.name: why for s in specs if (why := PROBLEMS[pname].not_applicable(size, s)) is not None}
        for pname in problems
    }
    tasks = [
        (pname, schedule, spec)
        for pname in problems
        for schedule in schedules
        for spec in specs
        if spec.name not in not_applicable[pname]
    ]
    done = {}
    if jobs == 1:
        for pname in problems:
            mine = [t for t in tasks if t[0] == pname]
            bar = tqdm(total=len(mine) * per_spec, desc=f"{pname} ({size})", disable=not progress, leave=True)
            for _, schedule, spec in mine:
                bar.set_postfix_str(f"{spec.name}, {schedule}")
                done[pname, schedule, spec.name] = _search(
                    pname, spec, size, schedule, grids[spec.name], refine, rerun_seeds, progress=bar
                )
            bar.close()
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        bar = tqdm(total=len(tasks) * per_spec, desc=f"{size}, {jobs} jobs", disable=not progress, leave=True)
        # spawn, not fork: a forked child of a process that has run torch can hang in its thread pools.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_worker_init) as pool:
            futures = {
                pool.submit(_search, pname, spec, size, schedule, grids[spec.name], refine, rerun_seeds): (
                    pname,
                    schedule,
                    spec.name,
                )
                for pname, schedule, spec in tasks
            }
            for future in as_completed(futures):
                done[futures[future]] = future.result()
                bar.update(per_spec)
                bar.set_postfix_str(" ".join(futures[future]))
        bar.close()

    out_problems = {}
    for pname in problems:
        problem = PROBLEMS[pname]
        by_schedule = {}
        for schedule in schedules:
            results = {s.name: done[pname, schedule, s.name] for s in specs if (pname, schedule, s.name) in done}
            by_schedule[schedule] = {
                "results": results,
                "summary": summarize_problem(results, log_scale=problem.log_scale),
            }
        out_problems[pname] = {
            "title": problem.title,
            "config": problem.config(size),
            "loss_name": problem.loss_name,
            "has_accuracy": problem.has_accuracy,
            "reference": problem.reference,
            "log_scale": problem.log_scale,
            "not_applicable": not_applicable[pname],
            **by_schedule.pop("constant"),
            "schedules": by_schedule,
        }
    return out_problems, time.perf_counter() - started
