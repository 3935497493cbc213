"""``python -m optlib.benchmark --size quick``: run the benchmark, print its tables, save its JSON."""

from __future__ import annotations

import argparse
import sys

from . import OPTIMIZERS, PROBLEMS, BenchmarkResult, format_table, run_benchmark, save_benchmark


def main(argv=None) -> int:
    from optlib.device import SIZES, experiment_size

    parser = argparse.ArgumentParser(prog="python -m optlib.benchmark", description=__doc__)
    parser.add_argument(
        "--size",
        choices=SIZES,
        default=None,
        help="experiment size (default: optlib.experiment_size(), i.e. $OPTLIB_SIZE or the device)",
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
    parser.add_argument("--seeds", type=int, default=None, help="seeds for the reruns (default: per size)")
    parser.add_argument("--out", default=None, help="JSON path (default: data/results/benchmark_<size>.json)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = parser.parse_args(argv)
    size = args.size or experiment_size()
    try:
        payload = run_benchmark(size, args.problems, args.optimizers, args.seeds, progress=not args.no_progress)
    except ValueError as err:
        parser.error(str(err))
    result = BenchmarkResult(payload)
    for problem in result.problems:
        print()
        print(format_table(result, problem))
    path = save_benchmark(payload, args.out)
    print(f"\nSaved {path} ({payload['wall_time']:.0f} s in all).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
