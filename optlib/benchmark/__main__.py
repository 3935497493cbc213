"""``python -m optlib.benchmark --size quick``: run the benchmark, print its tables, save its JSON."""

from __future__ import annotations

import argparse
import sys

from . import (
    OPTIMIZERS,
    PROBLEMS,
    SCHEDULES,
    SIZE_SETTINGS,
    BenchmarkResult,
    available_optimizers,
    check_output,
    cpu_full_problems,
    format_table,
    run_benchmark,
    save_benchmark,
)
from ._result import result_name

# What a whole run of each size costs (every problem, optimizer and schedule, one thread
# per run), measured on 2026-11-29 on the course's 2-core x86-64 CPU. Tiny: while other
# jobs kept it busy. Quick: on the idle machine with --jobs 2 (the saved
# benchmark_quick.json records its own wall time). Full: the problems that fit, run with
# --seeds 5 --jobs 2 on the idle machine (benchmark_full.json records its wall time); each
# of the others says why it needs a GPU.
COSTS = {
    "tiny": "about 1 minute (measured: 62 s)",
    "quick": "about 9 minutes with --jobs 2 on an idle machine (measured: 525 s), twice that with one job",
    "full": "on a CPU only the problems that fit: " + ", ".join(cpu_full_problems()) + ", about 32 minutes with "
    "--seeds 5 --jobs 2 on an idle machine (measured: 1885 s); "
    + "; ".join(f"{name} needs a GPU: {p.full_needs_gpu}" for name, p in PROBLEMS.items() if p.full_needs_gpu),
}


def _schedule_help() -> str:
    defaults = ", ".join(f"{size}: {' '.join(s['schedules'])}" for size, s in SIZE_SETTINGS.items())
    return (
        f"learning-rate schedules to run every optimizer with, each tuned on its own (from {', '.join(SCHEDULES)}; "
        f"must include constant, the baseline; default per size: {defaults})"
    )


def main(argv=None) -> int:
    from optlib.device import SIZES, experiment_size
    from optlib.results import results_dir

    sizes = "; ".join(
        f"{size}: {s['grid_points']}+{s['refine_points']} learning rates per optimizer and schedule, "
        f"{s['seeds']} seeds, {COSTS[size]}"
        for size, s in SIZE_SETTINGS.items()
    )
    parser = argparse.ArgumentParser(
        prog="python -m optlib.benchmark",
        description=__doc__,
        epilog=f"Cost of a whole run (all problems, optimizers and schedules) on a 2-core CPU: {sizes}. "
        f"Output: {results_dir()}/benchmark_<size>.json unless --out says otherwise; an existing file is "
        f"never overwritten without --force. Peers (Adan, Schedule-Free, Muon) come with "
        f"pip install 'optlib[benchmark]'.",
    )
    parser.add_argument(
        "--size",
        choices=SIZES,
        default=None,
        help="experiment size (default: optlib.experiment_size(), i.e. $OPTLIB_SIZE or the device); "
        "what each costs is listed below",
    )
    parser.add_argument(
        "--problems",
        nargs="+",
        choices=list(PROBLEMS),
        default=None,
        metavar="PROBLEM",
        help=f"problems to run (default: all): {', '.join(PROBLEMS)}",
    )
    parser.add_argument(
        "--optimizers",
        nargs="+",
        choices=list(OPTIMIZERS),
        default=None,
        metavar="OPTIMIZER",
        help=f"optimizers to run (default: all installed): {', '.join(OPTIMIZERS)}",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        metavar="N",
        help="how many fresh seeds (1..N) rerun each selected learning rate: a count, at least 2 "
        "(a t-test needs two); default per size: "
        + ", ".join(f"{size} {s['seeds']}" for size, s in SIZE_SETTINGS.items()),
    )
    parser.add_argument(
        "--schedules", nargs="+", choices=SCHEDULES, default=None, metavar="SCHEDULE", help=_schedule_help()
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="PATH",
        help=f"JSON file to write (default: {results_dir()}/benchmark_<size>.json, which the chapters read)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="overwrite an existing output file (never one that holds an optimizer this run lacks a package for)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="run N searches at once in worker processes, one thread each (default 1); the numbers are the same, "
        "the seconds to target carry the contention, so use at most one per idle core",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = parser.parse_args(argv)
    size = args.size or experiment_size()
    if args.seeds is not None and args.seeds < 2:
        parser.error(f"argument --seeds: invalid value {args.seeds}; it is a count of seeds, at least 2")
    if args.jobs < 1:
        parser.error(f"argument --jobs: invalid value {args.jobs}; it is a count of processes, at least 1")
    out = args.out if args.out is not None else results_dir() / f"{result_name(size)}.json"
    # Before any training: a refusal after an hour of runs would waste the hour.
    _, skipped = available_optimizers(args.optimizers, verbose=False)
    try:
        check_output(out, args.force, skipped)
    except FileExistsError as err:
        parser.error(str(err))
    try:
        payload = run_benchmark(
            size,
            args.problems,
            args.optimizers,
            args.seeds,
            progress=not args.no_progress,
            schedules=args.schedules,
            jobs=args.jobs,
        )
    except ValueError as err:
        parser.error(str(err))
    result = BenchmarkResult(payload)
    for problem in result.problems:
        for schedule in result.schedules:
            print()
            print(format_table(result, problem, schedule))
    path = save_benchmark(payload, out, force=args.force)
    print(f"\nSaved {path} ({payload['wall_time']:.0f} s in all).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
