"""What a runtime hyperparameter costs inside an Inductor-compiled CPU update, in one run.

    python benchmarks/scalar_loads.py                 # 50M float32 elements, 1 thread
    python benchmarks/scalar_loads.py --threads 2 --elements 10000000

optlib's fused step passes every hyperparameter to its compiled kernel as a 0-dim
tensor, so that a learning-rate schedule changes a value, not the kernel. Inductor's
C++ loop then reads each such scalar from memory in every iteration: the loop's
vector stores may alias any memory, so the compiler cannot keep the scalar in a
register. A constant is compiled into the loop instead. This script compiles the
update of optlib's NesterovAdamW over one tensor with 0, 1, 3 and 7 of its seven
scalars passed as tensors (the rest as constants), and with all seven in one
tensor (as optlib passes them), and times each beside
``torch._fused_adamw_`` on tensors of the same size, in shuffled rounds. On the
course's 2-core CPU (AMD EPYC, AVX-512) with one thread, the first scalars cost the
most: 0 of them 0.99-1.01x torch's kernel, 1 of them 1.02-1.03x, 3 of them 1.05x,
all 7 1.05-1.06x, and all 7 in one tensor 1.01-1.05x (three runs; the machine is
shared). With two threads memory is the bottleneck and every variant ran within
1.5 % of torch's. This is where the fused step's remaining gap to torch's hand-written kernel
comes from on one thread; the scalars cannot become constants without recompiling
whenever the learning rate changes.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from optlib.optim._compile import _INDUCTOR_OPTIONS  # noqa: E402

# The seven scalars of the NesterovAdamW update (lr = 1e-3, λ = 1e-2, β = (0.9, 0.999), step 10).
SCALARS = dict(decay=1 - 1e-5, one_minus_beta1=0.1, beta2=0.999, one_minus_beta2=0.001, eps=1e-8)
SCALARS.update(step_size=1e-3 / (1 - 0.9**10), inverse_bias_correction2_sqrt=(1 - 0.999**10) ** -0.5)
# Which of them each variant passes as a tensor: the lr-dependent ones first.
AS_TENSORS = {0: (), 1: ("step_size",), 3: ("step_size", "decay", "inverse_bias_correction2_sqrt"), 7: tuple(SCALARS)}


def update(p, g, m, v, s: dict) -> None:
    """optlib's NesterovAdamW update of one parameter (``_adam_kernel``), its scalars from ``s``."""
    p.mul_(s["decay"])
    m.add_((g - m) * s["one_minus_beta1"])
    v.mul_(s["beta2"]).add_(g * g * s["one_minus_beta2"])
    numerator = m + (g - m) * s["one_minus_beta1"]
    p.sub_(numerator / (v.sqrt() * s["inverse_bias_correction2_sqrt"] + s["eps"]) * s["step_size"])


def variant(tensor_names: tuple[str, ...]):
    """The update compiled with ``tensor_names`` as 0-dim tensor arguments and the rest as constants."""
    constants = {k: value for k, value in SCALARS.items() if k not in tensor_names}

    def step(p, g, m, v, *tensors):
        update(p, g, m, v, {**constants, **dict(zip(tensor_names, tensors))})

    compiled = torch.compile(step, options=dict(_INDUCTOR_OPTIONS), dynamic=False, fullgraph=True)
    tensors = [torch.tensor(SCALARS[k]) for k in tensor_names]
    return lambda state: compiled(*state, *tensors)


def variant_in_one_tensor():
    """The update compiled with all seven scalars in one 1-D tensor, as optlib's fused step passes them."""

    def step(p, g, m, v, packed):
        update(p, g, m, v, {k: packed[j] for j, k in enumerate(SCALARS)})

    compiled = torch.compile(step, options=dict(_INDUCTOR_OPTIONS), dynamic=False, fullgraph=True)
    packed = torch.tensor(list(SCALARS.values()))
    return lambda state: compiled(*state, packed)


def fresh_state(n: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [
        torch.randn(n, generator=generator),
        torch.randn(n, generator=generator) * 1e-2,
        torch.zeros(n),
        torch.full((n,), 1e-4),
    ]


def torch_fused(state: list[torch.Tensor], step: torch.Tensor) -> None:
    p, g, m, v = state
    torch._fused_adamw_(
        [p], [g], [m], [v], [], [step], lr=1e-3, beta1=0.9, beta2=0.999, weight_decay=1e-2, eps=1e-8,
        amsgrad=False, maximize=False,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--elements", type=int, default=50_000_000, help="float32 elements per tensor")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace) -> dict[str, float]:
    paths = {f"{k} of 7 scalars as tensors": variant(names) for k, names in AS_TENSORS.items()}
    paths["7 scalars in one tensor"] = variant_in_one_tensor()
    step = torch.tensor(10.0)
    paths["torch._fused_adamw_"] = lambda state: torch_fused(state, step)
    states = {name: fresh_state(args.elements) for name in paths}
    times: dict[str, list[float]] = {name: [] for name in paths}
    order = random.Random(0)
    with torch.no_grad():
        for name, run in paths.items():  # compile, and warm up
            run(states[name])
        for _ in range(args.rounds):
            names = list(paths)
            order.shuffle(names)
            for name in names:
                start = time.perf_counter()
                paths[name](states[name])
                times[name].append(time.perf_counter() - start)
    reference = times["torch._fused_adamw_"]
    print(
        f"{args.elements / 1e6:g}M float32 elements, {args.threads} thread(s), median of {args.rounds} shuffled rounds"
    )
    ratios = {}
    for name, values in times.items():
        ratios[name] = statistics.median(a / b for a, b in zip(values, reference))
        print(f"{name:<28}{1e3 * statistics.median(values):9.2f} ms   {ratios[name]:.3f}x torch._fused_adamw_")
    return ratios


if __name__ == "__main__":
    main()
