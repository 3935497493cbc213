"""The course benchmark: every optimizer, fairly tuned, over many seeds, on six problems.

Fair tuning: each optimizer gets the same learning-rate budget: a log grid with
the same number of points spanning the same number of decades, centred on its
own conventional default (SGD 1e-1, Adam 1e-3, ...), then the same number of
refining points around the best of them. Each point is trained once with the
search seed; the lowest final validation loss wins (a diverged run scores +inf,
ties go to the smaller learning rate). The winner is then rerun with fresh
seeds (5 at the quick size), and those runs are the ones reported. Only the
learning rate is tuned; every other hyperparameter stays at its default. Every
optimizer runs with a constant learning rate and, as a second table, with
warm-up + cosine decay (tuned again, with the same budget).

A difference is called real only when the seeds support it: each optimizer's
final validation losses are compared with the best optimizer's by Welch's
t-test, Holm-corrected across the optimizers, and every verdict comes with the
difference of the means and Hedges' g, each with a 95% confidence interval.

Run it with ``python -m optlib.benchmark --size quick``; read it back with
:func:`load_benchmark`.
"""

from __future__ import annotations

from ._optimizers import OPTIMIZERS, MuonWithAdamW, OptimizerSpec, available_optimizers, hidden_matrices
from ._problems import PROBLEMS, SCHEDULES, BenchmarkProblem, cpu_full_problems
from ._result import BenchmarkResult, format_table, load_benchmark, result_name
from ._runner import (
    SEARCH_SEED,
    SIZE_SETTINGS,
    lr_grid,
    refine_points,
    rerun,
    run_benchmark,
    select_lr,
    summarize_problem,
    tune,
)
from ._stats import (
    compare_pairs,
    compare_samples,
    hedges_g,
    holm,
    mark_significance,
    mean_difference_ci,
    mean_std,
    welch_t_test,
)

__all__ = [
    "OPTIMIZERS",
    "OptimizerSpec",
    "available_optimizers",
    "MuonWithAdamW",
    "hidden_matrices",
    "SCHEDULES",
    "refine_points",
    "holm",
    "mean_difference_ci",
    "hedges_g",
    "compare_samples",
    "compare_pairs",
    "check_output",
    "PROBLEMS",
    "cpu_full_problems",
    "BenchmarkProblem",
    "BenchmarkResult",
    "load_benchmark",
    "format_table",
    "SIZE_SETTINGS",
    "SEARCH_SEED",
    "lr_grid",
    "select_lr",
    "tune",
    "rerun",
    "summarize_problem",
    "run_benchmark",
    "save_benchmark",
    "mean_std",
    "welch_t_test",
    "mark_significance",
]


def check_output(path, force: bool = False, skipped=None) -> None:
    """Refuse to overwrite saved results by accident; raises ``FileExistsError`` with what to do.

    An existing file at ``path`` is overwritten only with ``force``. Even then, a run
    that skipped an optimizer because its package is missing (``skipped``, a
    collection of names) never replaces a file that has that optimizer: the
    saved comparison would silently lose it.
    """
    import json
    from pathlib import Path

    from ._optimizers import PEERS_EXTRA

    path = Path(path)
    if not path.exists():
        return
    if not force:
        raise FileExistsError(
            f"{path} exists (saved benchmark results); pass --force (force=True) to overwrite it, or --out another path"
        )
    try:
        saved = json.loads(path.read_text())["payload"]["optimizers"]
    except (ValueError, KeyError, TypeError):
        return  # not a benchmark file: force means force
    lost = sorted(set(skipped or ()) & set(saved))
    if lost:
        raise FileExistsError(
            f"Refusing to overwrite {path}: it holds {', '.join(lost)}, which this run skipped because "
            f"{'its package is' if len(lost) == 1 else 'their packages are'} missing; {PEERS_EXTRA}, "
            f"or write to another file with --out"
        )


def save_benchmark(payload: dict, out=None, force: bool = False):
    """Save ``payload`` as ``data/results/benchmark_<size>.json`` (or to the file ``out``); returns the path.

    Both go through :func:`optlib.results.save_results` (``{"name", "meta",
    "payload"}``, non-finite numbers as ``null``), so :func:`load_benchmark` reads
    either. An existing file is replaced only with ``force``, and never by a run
    that lacks one of its optimizers for want of a package (:func:`check_output`).
    """
    from optlib.results import results_dir, save_results

    path = out if out is not None else results_dir() / f"{result_name(payload['size'])}.json"
    check_output(path, force, payload.get("skipped"))
    config = {"grid": payload["grid"], "tuning": payload["tuning"], "schedules": payload.get("schedules")}
    return save_results(
        result_name(payload["size"]), payload, seeds=payload["seeds"], config=config, size=payload["size"], path=out
    )
