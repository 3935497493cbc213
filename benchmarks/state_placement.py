"""Where the optimizer state lies in memory, and what it costs a fused step on the CPU.

    python benchmarks/state_placement.py            # two 4096 x 4096 float32 parameters (64 MB each)

A block of memory as large as a model's big matrices comes straight from the operating
system in whole pages (with glibc, every block of 32 MB or more), so such a parameter θ,
its gradient g and the m and v that torch.optim creates for it all start at the same
offset within a 4 KiB page. Element i of the four then shares its lowest 12 address bits,
the only bits a core compares to decide whether a load waits for an earlier store ("4K
aliasing"). optlib starts each state tensor of a large CPU parameter 1, 2 or 3 KiB past
θ's offset (optlib/optim/_placement.py). This script times, in one run and in rounds
shuffled each time, torch's fused AdamW, optlib's fused AdamW and NesterovAdamW,
optlib's fused AdamW with its state moved back to θ's offset, and torch's with its
state placed as optlib's: the last two separate the placement from the kernel. Each
path steps its own copies, several of them, since where a copy lands moves its time too.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch

# Time the optlib of this checkout, whatever copy may be installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import optlib  # noqa: E402
from optlib.optim._placement import PAGE_BYTES, state_like  # noqa: E402

MOMENTS = ("exp_avg", "exp_avg_sq")


def move_moments(optimizer: torch.optim.Optimizer, staggered: bool) -> None:
    """Move the optimizer's moments to start at their parameter's offset in the page (as
    torch.optim's land for parameters this large), or 1 and 2 KiB past it (as optlib's)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state[p]
            for slot, key in enumerate(MOMENTS, start=1):
                state[key] = state_like(p, slot if staggered else 0).copy_(state[key])


PATHS = {
    "torch AdamW fused": lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True),
    "optlib AdamW fused": lambda ps: optlib.AdamW(ps, lr=1e-3, fused=True),
    "optlib NesterovAdamW fused": lambda ps: optlib.NesterovAdamW(ps, lr=1e-3, fused=True),
    "optlib AdamW fused, state at θ's offset": lambda ps: optlib.AdamW(ps, lr=1e-3, fused=True),
    "torch AdamW fused, state placed as optlib's": lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True),
}
MOVED = {"optlib AdamW fused, state at θ's offset": False, "torch AdamW fused, state placed as optlib's": True}


def offsets(optimizer: torch.optim.Optimizer) -> str:
    """Where g, m and v start in their pages, relative to θ (the first parameter's)."""
    p = optimizer.param_groups[0]["params"][0]
    state = optimizer.state[p]
    tensors = {"g": p.grad, "m": state["exp_avg"], "v": state["exp_avg_sq"]}
    return " ".join(f"{k} +{(t.data_ptr() - p.data_ptr()) % PAGE_BYTES:#x}" for k, t in tensors.items())


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--cols", type=int, default=4096)
    parser.add_argument("--tensors", type=int, default=2, help="parameters per optimizer (default 2)")
    parser.add_argument("--copies", type=int, default=3, help="copies of each path, each allocated anew (default 3)")
    parser.add_argument("--rounds", type=int, default=12, help="timed steps of each copy (default 12)")
    args = parser.parse_args(argv)

    shape = (args.rows, args.cols)
    megabytes = args.rows * args.cols * 4 / 2**20
    print(
        f"{args.tensors} float32 parameters of {args.rows} x {args.cols} ({megabytes:.0f} MB each) per optimizer, "
        f"{args.copies} copies of each path, median of {args.rounds} steps; CPU, {torch.get_num_threads()} threads; "
        f"torch {torch.__version__}"
    )
    order = random.Random(0)
    keys = [(path, copy) for copy in range(args.copies) for path in PATHS]
    order.shuffle(keys)  # the allocation order: no path always first
    optimizers, where = {}, {}
    for path, copy in keys:
        params = [torch.nn.Parameter(torch.randn(shape)) for _ in range(args.tensors)]
        for p in params:
            p.grad = torch.randn(shape) * 1e-2
        optimizer = PATHS[path](params)
        optimizer.step()  # creates the state (and compiles a fused kernel once)
        if path in MOVED:
            move_moments(optimizer, staggered=MOVED[path])
        optimizer.step()  # optlib's fused path plans anew for moved state
        optimizers[path, copy] = optimizer
        where.setdefault(path, offsets(optimizer))
    times: dict = {key: [] for key in optimizers}
    for _ in range(args.rounds):
        order.shuffle(keys)
        for key in keys:
            start = time.perf_counter()
            optimizers[key].step()
            times[key].append(time.perf_counter() - start)

    per_copy = {path: [statistics.median(times[path, c]) for c in range(args.copies)] for path in PATHS}
    medians = {path: statistics.median(sum((times[path, c] for c in range(args.copies)), [])) for path in PATHS}
    reference = medians["torch AdamW fused"]
    width = max(map(len, PATHS))
    print(
        f"{'path':<{width}}  {'where g, m, v start (vs θ)':<28}{'ms per step, each copy':>26}{'median':>10}{'/ torch':>9}"
    )
    for path in PATHS:
        copies = " ".join(f"{1e3 * t:6.2f}" for t in per_copy[path])
        print(
            f"{path:<{width}}  {where[path]:<28}{copies:>26}{1e3 * medians[path]:>10.2f}{medians[path] / reference:>8.3f}x"
        )
    return {path: medians[path] / reference for path in PATHS}


if __name__ == "__main__":
    main()
