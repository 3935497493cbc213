"""The optimizer step under torch.distributed: loop, foreach and fused paths under DDP, ZeRO-1 and FSDP2.

    python benchmarks/sharded_step.py                         # 2 CPU processes, optlib.AdamW
    python benchmarks/sharded_step.py --nproc 4 --width 1024 --optimizer NesterovAdamW

Each strategy and path runs in its own set of processes (gloo on 127.0.0.1, as in
``optlib.distributed``): a model of ``--depth`` square linear layers of ``--width``,
wrapped and given its optimizer by ``optlib.distributed.distribute``, takes ``--steps``
training steps on random batches, and each rank times its own ``optimizer.step()``
calls, the backward pass and its communication left out. The table prints the median
over the steps after the first few (the first step creates the state and, on the fused
path, may compile), for the slowest rank, and each path's time over the loop path's under
the same strategy. Under DDP every rank updates the whole model; under ZeRO-1 each rank
the state of its share of the tensors; under FSDP2 each rank its shard of every tensor,
so the fused path runs its compiled kernel on each rank's local shards (DTensors).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

# Time the optlib of this checkout, whatever copy may be installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from optlib.distributed import distribute, run_on_processes  # noqa: E402

STRATEGIES = ("ddp", "zero1", "fsdp")
PATHS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
WARMUP = 5  # steps left out of the median: the first creates the state and may compile


def time_optimizer_steps(rank: int, world_size: int, strategy: str, optimizer: str, path: str, sizes: dict) -> dict:
    """One process's share of a run: its seconds per ``optimizer.step()``, after the warm-up steps."""
    torch.manual_seed(0)
    width, depth, steps = sizes["width"], sizes["depth"], sizes["steps"]
    model = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(depth)])
    model, opt = distribute(model, strategy, optimizer, lr=1e-3, **PATHS[path])
    batch = torch.randn(sizes["batch"], width, generator=torch.Generator().manual_seed(rank))
    seconds = []
    for _ in range(steps):
        model(batch).square().mean().backward()
        start = time.perf_counter()
        opt.step()
        seconds.append(time.perf_counter() - start)
        opt.zero_grad()
    return {"rank": rank, "seconds": seconds[min(WARMUP, steps - 1) :], "threads": torch.get_num_threads()}


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nproc", type=_positive, default=2, help="processes per run (default 2)")
    parser.add_argument("--optimizer", default="AdamW", help="an optlib optimizer with a fused path (default AdamW)")
    parser.add_argument("--width", type=_positive, default=512, help="each linear layer is width x width (default 512)")
    parser.add_argument("--depth", type=_positive, default=8, help="number of linear layers (default 8)")
    parser.add_argument("--batch", type=_positive, default=32, help="samples per rank and step (default 32)")
    parser.add_argument("--steps", type=_positive, default=40, help="steps per run (default 40, the first 5 untimed)")
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--paths", nargs="+", choices=list(PATHS), default=list(PATHS))
    args = parser.parse_args(argv)

    sizes = {"width": args.width, "depth": args.depth, "batch": args.batch, "steps": args.steps}
    n_params = args.depth * (args.width * args.width + args.width)
    table: dict = {}
    for strategy in args.strategies:
        for path in args.paths:
            ranks = run_on_processes(
                time_optimizer_steps, args.nproc, args=(strategy, args.optimizer, path, sizes), timeout_s=600
            )
            table[(strategy, path)] = max(statistics.median(r["seconds"]) for r in ranks)
    timed = args.steps - min(WARMUP, args.steps - 1)
    print(
        f"optlib.{args.optimizer}, {args.depth} x Linear({args.width}, {args.width}) ({n_params:,} parameters), "
        f"{args.nproc} CPU processes ({ranks[0]['threads']} thread(s) each), torch {torch.__version__}: "
        f"median of {timed} optimizer.step() calls, slowest rank, ms"
    )
    print(
        f"{'strategy':<10}"
        + "".join(f"{path:>10}" for path in args.paths)
        + "".join(f"{path + ' / loop':>16}" for path in args.paths if path != "loop" and "loop" in args.paths)
    )
    for strategy in args.strategies:
        row = f"{strategy:<10}" + "".join(f"{1e3 * table[(strategy, path)]:>10.3f}" for path in args.paths)
        if "loop" in args.paths:
            loop = table[(strategy, "loop")]
            row += "".join(f"{table[(strategy, path)] / loop:>15.2f}x" for path in args.paths if path != "loop")
        print(row)
    return table


if __name__ == "__main__":
    main()
