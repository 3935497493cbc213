"""Regenerate every saved full-size result with one command.

::

    python -m optlib.results regenerate --device cpu --jobs 2 # what fits on a CPU (about 45 min on 2 cores)
    python -m optlib.results regenerate --device cuda         # everything, the GPU-only runs included
    python -m optlib.results regenerate --list                # the plan and its estimated time, nothing run

Each chapter's closing experiment is defined once, in the chapter: the same cell runs at the
quick size on the website and at full size here. So regenerating a result means executing its
chapter's notebook with ``OPTLIB_SIZE=full`` (the notebook's experiment code saves the results
under ``data/results/``); the executed copies go to ``build/regenerate/`` for inspection, never
over the stored notebooks. Runs that a CPU cannot afford (a transformer at nanoGPT's size) are
marked ``gpu_only`` with the reason; their pages say so. The full benchmark runs on a CPU for the
problems that fit there, and on a GPU for all of them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FULL_SIZE_RUNS", "FullSizeRun", "missing_note", "plan", "main"]


@dataclass(frozen=True)
class FullSizeRun:
    """A notebook whose execution at full size writes the result files ``names`` (or a command that does)."""

    notebook: str
    names: tuple[str, ...]
    # Measured: the notebook's wall time at full size on a 2-core AMD EPYC with --jobs 2 (one
    # thread per kernel), rounded up; what fits on a CPU takes about 45 minutes that way, 32 of
    # them the full benchmark.
    cpu_minutes: float
    gpu_only: str | None = None  # why a CPU cannot afford it, if it cannot
    # Run this module (python -m ...) instead of executing the notebook: ``command`` on a GPU,
    # ``cpu_command`` (the part that fits) on a CPU. Commands run before the notebooks, which read them.
    command: tuple[str, ...] = ()
    cpu_command: Callable[[], tuple[str, ...]] | None = None

    def argv(self, device: str, jobs: int) -> tuple[str, ...]:
        """The module and arguments to run on ``device`` (empty for a notebook)."""
        if device == "cpu" and self.cpu_command is not None:
            return (*self.cpu_command(), "--jobs", str(jobs))
        return self.command

    @property
    def chapter(self) -> str:
        return Path(self.notebook).stem


def _cpu_benchmark() -> tuple[str, ...]:
    """The full benchmark of the problems that fit on a CPU (each of the others says why it does not), 5 seeds."""
    from optlib.benchmark import cpu_full_problems

    return ("optlib.benchmark", "--size", "full", "--seeds", "5", "--force", "--problems", *cpu_full_problems())


FULL_SIZE_RUNS: tuple[FullSizeRun, ...] = (
    FullSizeRun("chapters/01_optimization_problem.ipynb", ("ch01_gd_baseline",), 1.0),
    FullSizeRun("chapters/02_gradient_descent.ipynb", ("ch02_gd_learning_rates",), 3.0),
    FullSizeRun("chapters/03_sgd.ipynb", ("ch03_sgd",), 1.0),
    FullSizeRun("chapters/04_minibatch.ipynb", ("ch04_throughput", "ch04_minibatch"), 1.0),
    FullSizeRun("chapters/05_momentum.ipynb", ("ch05_momentum",), 0.5),
    FullSizeRun("chapters/06_nesterov.ipynb", ("ch06_nesterov",), 0.5),
    FullSizeRun("chapters/07_adagrad.ipynb", ("ch07_adagrad",), 3.0),
    FullSizeRun("chapters/08_rmsprop.ipynb", ("ch08_rmsprop",), 2.0),
    FullSizeRun("chapters/09_adam.ipynb", ("ch09_adam",), 2.0),
    FullSizeRun("chapters/10_adamw.ipynb", ("ch10_adamw",), 1.0),
    FullSizeRun(
        "chapters/11_schedules.ipynb",
        ("ch11_schedules",),
        9 * 5000 * 40 / 60,
        gpu_only="nanoGPT's shakespeare-char transformer takes about 40 s per step on a 2-core CPU, "
        "so the 9 runs of 5,000 steps (3 arms, 3 seeds) would take about three weeks",
    ),
    FullSizeRun("chapters/12_combined.ipynb", ("ch12_combined",), 3.0),
    # Chapter 13 reads the benchmark (its MNIST-1D section trains at the learning rates the
    # benchmark tuned), so the benchmark, a command of its own, runs first. On a CPU: the problems
    # whose full size fits, 5 seeds (measured: 31.4 min with --jobs 2); the rest need a GPU.
    FullSizeRun(
        "chapters/13_comparison.ipynb",
        ("benchmark_full",),
        64.0,
        command=("optlib.benchmark", "--size", "full", "--force"),
        cpu_command=_cpu_benchmark,
    ),
    FullSizeRun("chapters/13_comparison.ipynb", ("ch13_mnist1d_paper",), 3.0),
    # 268M parameters: about 4.3 GB per optimizer path (parameters, gradients, m, v), one path at a time;
    # then the MNIST MLP trained along each path, five seeds.
    FullSizeRun("chapters/14_fast_and_at_scale.ipynb", ("ch14_step_time", "ch14_training_paths"), 4.0),
)


# A cell that runs longer than this has hung (the longest full-size cell takes minutes).
CELL_TIMEOUT_S = 3 * 3600


def _by_name() -> dict[str, FullSizeRun]:
    return {name: run for run in FULL_SIZE_RUNS for name in run.names}


def missing_note(name: str) -> str:
    """What a page says when ``name`` has no saved full-size results: why, and the command that makes them."""
    run = _by_name().get(name)
    if run is None:
        return f"No saved full-size results for {name!r}."
    command = f"python -m optlib.results regenerate --only {name}"
    if run.gpu_only:
        return (
            f"No saved full-size results for {name!r}: the full size needs a GPU ({run.gpu_only}), and none was "
            f"available when the results were regenerated. On a machine with one: `{command} --device cuda`."
        )
    return (
        f"No saved full-size results for {name!r} yet: `{command}` makes them "
        f"(about {run.cpu_minutes:.0f} min on a 2-core CPU)."
    )


def plan(device: str, only: list[str] | None = None) -> tuple[list[FullSizeRun], list[FullSizeRun]]:
    """The runs to do on ``device`` and those skipped (GPU-only on a CPU), optionally only some chapters."""
    runs = list(FULL_SIZE_RUNS)
    if only:
        matches = lambda run, o: run.chapter.startswith(o) or o in run.names
        unknown = [o for o in only if not any(matches(r, o) for r in runs)]
        if unknown:
            raise ValueError(
                f"Invalid --only: {unknown} match no chapter; use chapter files such as '05_momentum' "
                f"or result names such as 'ch05_momentum' (see --list)"
            )
        runs = [r for r in runs if any(matches(r, o) for o in only)]
    skipped = [r for r in runs if device == "cpu" and r.gpu_only]
    return [r for r in runs if r not in skipped], skipped


def _repo_root() -> Path:
    root = Path(__file__).resolve().parents[1]
    if not (root / "chapters").is_dir():
        raise RuntimeError(
            f"regenerate runs the chapters' notebooks and needs a clone of the course; {root} has no chapters/ folder"
        )
    return root


def _execute(
    run: FullSizeRun, root: Path, out_dir: Path, env: dict, command: tuple[str, ...] = ()
) -> tuple[FullSizeRun, float, str | None]:
    """Execute one notebook in a fresh kernel (or run ``command``); return the wall time and an error summary, if any."""
    started = time.perf_counter()
    output = out_dir / Path(run.notebook).name
    if command:
        argv, where = [sys.executable, "-m", *command], ""
    else:
        script = (
            "import sys, nbformat\n"
            "from nbclient import NotebookClient\n"
            "nb = nbformat.read(sys.argv[1], as_version=4)\n"
            f"client = NotebookClient(nb, timeout={CELL_TIMEOUT_S}, kernel_name='python3', "
            "resources={'metadata': {'path': sys.argv[3]}})\n"
            "try:\n"
            "    client.execute()\n"
            "finally:\n"
            "    nbformat.write(nb, sys.argv[2])\n"
        )
        argv = [sys.executable, "-c", script, str(root / run.notebook), str(output), str(root / "chapters")]
        where = f"\n(executed copy with the traceback: {output})"
    done = subprocess.run(argv, env=env, cwd=root, capture_output=True, text=True)
    error = None
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        error = "\n".join(lines[-6:]) + where
    return run, time.perf_counter() - started, error


def main(argv: list[str] | None = None) -> int:
    from tqdm.auto import tqdm

    from .device import usable_cores
    from .results import results_dir

    parser = argparse.ArgumentParser(
        prog="python -m optlib.results",
        description="Regenerate the saved full-size results under data/results/ by running each chapter's "
        "notebook at full size (OPTLIB_SIZE=full).",
    )
    parser.add_argument("command", choices=["regenerate"], help="the only command")
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cuda" if _cuda_available() else "cpu",
        help="where to run; cpu skips the GPU-only runs (the default: cuda if there is one)",
    )
    parser.add_argument("--only", nargs="+", metavar="CHAPTER", help="chapters (e.g. 05_momentum) or result names")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="notebooks run at the same time, each with cores/jobs threads (cpu); on a CPU also the benchmark's "
        "parallel searches (one thread each)",
    )
    parser.add_argument("--list", action="store_true", help="print the plan and its estimated time, run nothing")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be an integer >= 1, got {args.jobs}")
    try:
        todo, skipped = plan(args.device, args.only)
    except ValueError as err:
        parser.error(str(err))

    estimate = sum(r.cpu_minutes for r in todo)
    if args.device == "cpu":
        print(
            f"{len(todo)} runs at full size on the CPU: about {estimate:.0f} core-minutes "
            f"(measured), so about {estimate / min(args.jobs, 2):.0f} min with --jobs {args.jobs} on 2 cores"
        )
    else:
        print(f"{len(todo)} runs at full size on CUDA (the CPU estimate is {estimate:.0f} min; a GPU is faster)")
    for run in todo:
        print(f"  {_what(run):28s} -> {', '.join(run.names):38s} ~{run.cpu_minutes:.0f} min on a CPU")
    for run in skipped:
        print(f"  {_what(run):28s} skipped on a CPU: {run.gpu_only}")
    if args.device == "cpu" and any(run.cpu_command for run in todo):
        from optlib.benchmark import PROBLEMS

        for name, problem in PROBLEMS.items():
            if problem.full_needs_gpu:
                print(f"  {'benchmark problem ' + name:28s} skipped on a CPU: {problem.full_needs_gpu}")
    if args.list or not todo:
        return 0

    try:
        import nbclient  # noqa: F401
    except ImportError:
        parser.error("regenerate executes the chapters with nbclient: pip install -e '.[book,test]' first")
    root = _repo_root()
    out_dir = root / "build" / "regenerate"
    out_dir.mkdir(parents=True, exist_ok=True)
    # Static widgets, as in the book build: live ipywidgets wait for a front end that nbclient is not,
    # and the kernel would sit idle after the first slider.
    env = dict(os.environ, OPTLIB_SIZE="full", OPTLIB_STATIC="1", TQDM_MININTERVAL="5")
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # a GPU machine can still make (and label) CPU results
        env["OMP_NUM_THREADS"] = str(max(1, usable_cores() // args.jobs))
    elif not _cuda_available():
        parser.error("--device cuda: no CUDA device is visible")
    started = time.time()
    failures = []
    bar = tqdm(
        total=round(estimate, 1), unit="min", desc="regenerate", bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} est. min"
    )

    def report(run, seconds, error):
        bar.update(run.cpu_minutes)
        written = [n for n in run.names if _written_since(results_dir() / f"{n}.json", started)]
        status = "ok" if error is None and len(written) == len(run.names) else "FAILED"
        tqdm.write(f"{_what(run)}: {status} in {seconds / 60:.1f} min, wrote {written or 'nothing'}")
        if error is not None:
            tqdm.write(error)
        if status != "ok":
            failures.append(run.chapter)

    # Commands first, one at a time with every job (they parallelise themselves): notebooks read their results.
    commands = [(run, run.argv(args.device, args.jobs)) for run in todo]
    for run, command in commands:
        if command:
            report(*_execute(run, root, out_dir, env, command))
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        notebooks = [run for run, command in commands if not command]
        for future in as_completed([pool.submit(_execute, run, root, out_dir, env) for run in notebooks]):
            report(*future.result())
    bar.close()
    print(f"done in {(time.time() - started) / 60:.1f} min; results in {results_dir()}")
    if failures:
        print(f"failed: {failures}", file=sys.stderr)
        return 1
    return 0


def _what(run: FullSizeRun) -> str:
    return f"python -m {run.command[0]}" if run.command else run.chapter


def _written_since(path: Path, started: float) -> bool:
    return path.is_file() and path.stat().st_mtime >= started


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
