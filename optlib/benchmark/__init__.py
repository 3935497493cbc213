"""The course benchmark: every optimizer, fairly tuned, over many seeds, on six problems.

Fair tuning: each optimizer gets the same learning-rate budget, a log grid with
the same number of points spanning the same number of decades, centred on its
own conventional default (SGD 1e-1, Adam 1e-3, ...). Each grid point is trained
once with the search seed; the lowest final validation loss wins (a diverged run
scores +inf, ties go to the smaller learning rate). The winner is then rerun with
fresh seeds (5 at the quick size), and those runs are the ones reported. Only the
learning rate is tuned; every other hyperparameter stays at its default, and the
learning rate is constant.

A difference is called real only when the seeds support it: each optimizer's
final validation losses are compared with the best optimizer's by Welch's t-test
(p < 0.05); otherwise it is "not distinguishable from the best".

Run it with ``python -m optlib.benchmark --size quick``; read it back with
:func:`load_benchmark`.
"""

from __future__ import annotations

from ._optimizers import OPTIMIZERS, OptimizerSpec, available_optimizers
from ._problems import PROBLEMS, BenchmarkProblem
from ._result import BenchmarkResult, format_table, load_benchmark, result_name
from ._runner import SEARCH_SEED, SIZE_SETTINGS, lr_grid, rerun, run_benchmark, select_lr, summarize_problem, tune
from ._stats import mark_significance, mean_std, welch_t_test

__all__ = [
    "OPTIMIZERS",
    "OptimizerSpec",
    "available_optimizers",
    "PROBLEMS",
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


def save_benchmark(payload: dict, out=None):
    """Save ``payload`` as ``data/results/benchmark_<size>.json`` (or to the file ``out``); returns the path.

    Both go through :func:`optlib.results.save_results` (``{"name", "meta",
    "payload"}``, non-finite numbers as ``null``), so :func:`load_benchmark` reads either.
    """
    from optlib.results import save_results

    config = {"grid": payload["grid"], "tuning": payload["tuning"]}
    return save_results(
        result_name(payload["size"]), payload, seeds=payload["seeds"], config=config, size=payload["size"], path=out
    )
