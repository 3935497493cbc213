"""Time per optimizer step against the memory-bandwidth limit, optlib beside torch.optim, in one run.

    python benchmarks/step_time.py                  # CPU: 10M and 50M parameters
    python benchmarks/step_time.py --device cuda    # GPU: 10M, 50M and 1B parameters

An optimizer step is memory-bound: AdamW reads θ, g, m, v and writes θ, m, v,
28 bytes per float32 parameter, and does a few flops on each. So the fastest a
step can be on a machine is (bytes per parameter × parameters) ÷ memory
bandwidth. This script measures the bandwidth in the same rounds as the steps (a
triad a = b + s·c and an in-place a += b·c over arrays as large as the model, timed
among the optimizers), prints that limit for each method, and times six paths of
each method side by side:
torch.optim's for-loop, foreach and fused paths, and optlib's. Each time is given
as a ratio to the limit (limit ÷ time: the fraction of the bandwidth the path
reaches) and to ``torch.optim.AdamW(fused=True)``, today's fastest AdamW step.

The parameters have the shapes of a four-block transformer (51 tensors), because
the number of tensors, not only the total, decides what the multi-tensor and
fused paths save. The gradients are fixed random tensors, so only the optimizer
is timed. The implementations are timed in turn, one step each, round after
round, in an order shuffled every round, so a change in machine load, and the
state the step before leaves in the caches, affect them all alike. Where the
allocator puts a model's tensors also moves its time, by up to a quarter here,
and the same way for every step on those tensors: so the rounds are split among
``--trials`` sets of freshly allocated copies, allocated in a new order each
trial (in a fixed order one path kept the same placement, good or bad, in every
trial); and torch's fused AdamW, the yardstick of every ratio, is timed on two copies
where its method allows. The table's few trials leave a ratio near 1 uncertain by
about ±10 %, so goal 1 (optlib's fused NesterovAdamW no slower than torch's fused
AdamW) is measured after each model's table head to head: the three fused paths
alone, over many trials, with a confidence interval over the trials (the unit whose
ratios are independent), and torch's kernel against its own second copy beside it,
which shows how far noise alone moves such a ratio. optlib's fused path compiles its
kernel on the first step; that time is printed separately (it is paid once per
process, less when Inductor's on-disk cache already holds it).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path

import torch

# Time the optlib of this checkout, whatever copy may be installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import optlib  # noqa: E402
from optlib.device import synchronize  # noqa: E402
from optlib.optim._compile import compile_seconds  # noqa: E402

FLOAT32 = 4
ADAMW_OPTIONS = dict(lr=1e-3, weight_decay=1e-2)
# (label, optlib name, torch.optim twin, keyword arguments for both, float32 tensors read + written per parameter)
METHODS = [
    ("AdamW", "AdamW", "AdamW", ADAMW_OPTIONS, 4 + 3),
    ("NesterovAdamW", "NesterovAdamW", "AdamW", ADAMW_OPTIONS, 4 + 3),
    ("SGD momentum", "SGD", "SGD", dict(lr=1e-3, momentum=0.9), 3 + 2),
    ("Adam", "Adam", "Adam", dict(lr=1e-3), 4 + 3),
]
PATHS = ["loop", "foreach", "fused"]
# Every method's round also times torch.optim.AdamW(fused=True) on its own copy of the
# parameters: each ratio divides by the reference timed in the same rounds, under the
# same machine load (a reference from another method's rounds, seconds earlier, differed
# by up to a third on a shared machine). In the rounds of AdamW and NesterovAdamW, whose
# torch column is that reference already, the copy is timed too: the ratio of torch's
# kernel to itself shows how far this run's noise alone moves a ratio.
REFERENCE = ("torch", "AdamW fused")


def transformer_shapes(d: int, layers: int, target: int) -> list[tuple[int, ...]]:
    """Shapes of a `layers`-block transformer of width d, with the embedding sized to reach about `target`."""
    block = [
        (d,),
        (d,),  # layer norm 1
        (3 * d, d),
        (3 * d,),  # q, k, v projection
        (d, d),
        (d,),  # attention output
        (d,),
        (d,),  # layer norm 2
        (4 * d, d),
        (4 * d,),  # MLP up
        (d, 4 * d),
        (d,),  # MLP down
    ]
    per_block = sum(torch.Size(s).numel() for s in block)
    vocab = max(1, (target - layers * per_block) // d)
    return [(vocab, d)] + block * layers + [(d,), (d,)]


MODELS = {
    # Small enough for the test suite to run the whole script; too small to say anything
    # about bandwidth (its tensors stay in cache) or per-step overhead.
    "100K": transformer_shapes(d=32, layers=2, target=100_000),
    "10M": transformer_shapes(d=384, layers=4, target=10_000_000),
    "50M": transformer_shapes(d=896, layers=4, target=50_000_000),
    "1B": transformer_shapes(d=4096, layers=4, target=1_000_000_000),
}
CPU_MODELS = ["10M", "50M"]


class BandwidthProbe:
    """A kernel that only moves memory, timed in the rounds like one more optimizer (its ``step``).

    Two probes over float32 arrays of n elements: the triad a = b + s·c (read b, c, write
    a: 12 bytes per element) and its in-place form a += b·c (read a, b, c, write a: 16
    bytes), which moves memory the way an optimizer step does. Each method's limit comes
    from the better of the two in that method's own rounds, so the limit is the stricter
    one and was measured under the same load as the steps it bounds: on a shared machine
    the bandwidth changed by half between one method's rounds and the next, and a probe
    run apart once read 110 GB/s where the steps that followed moved at most 70.
    """

    def __init__(self, in_place: bool, n: int, device: torch.device) -> None:
        a, b, c = (torch.rand(n, device=device) for _ in range(3))
        self.step = (lambda: a.addcmul_(b, c, value=1e-6)) if in_place else (lambda: torch.add(b, c, alpha=0.5, out=a))


# Each probe's key among the rounds' entries: whether it runs in place, and the bytes it moves per element.
PROBES = {("probe", "triad a = b + s*c"): (False, 3 * FLOAT32), ("probe", "in place a += b*c"): (True, 4 * FLOAT32)}


def _load_note(when: str) -> str:
    """The machine's load beside the times: other processes on a shared machine slow every path,
    the multi-threaded kernels most (an OpenMP thread that waits for a busy core)."""
    if not hasattr(os, "getloadavg"):
        return f"load average {when}: not available on this platform"
    one, five, _ = os.getloadavg()
    return f"load average {when}: {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} logical CPUs"


@functools.lru_cache(maxsize=1)
def model_values(shapes: tuple) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The parameters' values and gradients every path and trial copies, drawn once per model:
    drawing them took 0.6 s per trial at 50M on the course's CPU, so about 10 s at 1B."""
    generator = torch.Generator().manual_seed(0)
    values = [torch.randn(s, generator=generator) for s in shapes]
    grads = [torch.randn(s, generator=generator) * 1e-2 for s in shapes]
    return values, grads


def make_optimizers(
    opt_name: str, ref_name: str, kwargs: dict, shapes, device, order: random.Random, only: tuple | None = None
) -> dict:
    """One optimizer per (library, path), each over its own copy of the same parameters and
    gradients, and the bandwidth probes timed among them, allocated in an order shuffled by
    ``order`` (and their state, on the first step, in the same order); with ``only``, just
    the entries whose keys it names."""
    values, grads = model_values(tuple(shapes))

    def copy():
        # copy=True: on the CPU .to(device) returns the very tensor, and every path would then
        # update one shared set of parameters and read one set of gradients.
        params = [v.to(device, copy=True).requires_grad_(True) for v in values]
        for p, g in zip(params, grads):
            p.grad = g.to(device, copy=True)
        return params

    n = sum(v.numel() for v in values)
    makers = {REFERENCE: lambda: torch.optim.AdamW(copy(), **ADAMW_OPTIONS, fused=True)}
    makers.update(
        {key: functools.partial(BandwidthProbe, in_place, n, device) for key, (in_place, _) in PROBES.items()}
    )
    for library, cls in (("torch", getattr(torch.optim, ref_name)), ("optlib", getattr(optlib, opt_name))):
        for path in PATHS:
            options = (
                dict(foreach=False) if path == "loop" else dict(foreach=True) if path == "foreach" else dict(fused=True)
            )
            makers[(library, path)] = lambda cls=cls, options=options: cls(copy(), **kwargs, **options)
    keys = [key for key in makers if only is None or key in only]
    order.shuffle(keys)
    optimizers = {}
    for key in keys:
        library, path = key
        try:
            optimizers[key] = makers[key]()
        except (RuntimeError, ValueError, TypeError) as err:  # e.g. a torch.optim without a fused path
            print(f"  ({library} {ref_name if library == 'torch' else opt_name} {path}: not available: {err})")
    return optimizers


def reference_key(ref_name: str, kwargs: dict) -> tuple[str, str]:
    """Where a method's rounds keep the reference time: its torch twin's fused column when
    that twin is the reference itself (AdamW, NesterovAdamW), else a copy timed alongside."""
    return ("torch", "fused") if ref_name == "AdamW" and kwargs == ADAMW_OPTIONS else REFERENCE


def time_steps(
    optimizers: dict, device: torch.device, warmup: int, repeats: int, order: random.Random
) -> tuple[dict, dict]:
    """Every round's seconds per step of each optimizer (one step each per round, in an
    order shuffled by ``order``), and the first step's seconds."""
    first = {}
    for key, opt in optimizers.items():
        synchronize(device)
        start = time.perf_counter()
        opt.step()
        synchronize(device)
        first[key] = time.perf_counter() - start
        for _ in range(warmup):
            opt.step()
    synchronize(device)
    samples: dict = {key: [] for key in optimizers}
    keys = list(optimizers)
    for _ in range(repeats):
        order.shuffle(keys)
        for key in keys:
            opt = optimizers[key]
            synchronize(device)
            start = time.perf_counter()
            opt.step()
            synchronize(device)
            samples[key].append(time.perf_counter() - start)
    return samples, first


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """The median of ``values`` and a distribution-free confidence interval for it.

    The interval runs between the k-th smallest and k-th largest value, k the largest
    for which a binomial(n, 1/2) count falls below k with probability at most
    (1 - confidence) / 2: no assumption about how the times are distributed.
    """
    ordered = sorted(values)
    n = len(ordered)
    k, below = 0, 0.0
    while k < n // 2:
        below += math.comb(n, k) / 2**n  # P(count <= k)
        if below > (1 - confidence) / 2:
            break
        k += 1
    if k == 0:  # too few rounds for this confidence: the full range
        return statistics.median(ordered), ordered[0], ordered[-1]
    return statistics.median(ordered), ordered[k - 1], ordered[n - k]


def yardstick(samples: dict, key: tuple) -> tuple[float, list[float]]:
    """torch's fused AdamW, kept under ``key``: its median step and its time in each round.

    Where a second copy was timed too (REFERENCE, in the rounds of AdamW and NesterovAdamW),
    both count, each round's time the mean of the two: the copies sit where the allocator put
    them, and that alone moved one copy's time by up to a quarter against the other (see
    trial_ratios).
    """
    times = samples[key]
    if key == REFERENCE or REFERENCE not in samples:
        return statistics.median(times), times
    twin = samples[REFERENCE]
    return statistics.median(times + twin), [(a + b) / 2 for a, b in zip(times, twin)]


def trial_ratios(ours: list[float], theirs: list[float], trials: int) -> list[float]:
    """Trial by trial, the ratio of the medians of its rounds.

    A trial, not a round, is the unit whose ratios are independent: its rounds share one
    placement of the tensors in memory, which moved a kernel's time against a copy of
    itself by up to a quarter here (0.84 to 1.24 of it, trial by trial), far more than rounds
    within a trial vary. Both times come from the same rounds, so a change of machine load
    between rounds still cancels.
    """
    per = len(ours) // trials
    return [
        statistics.median(ours[t * per : (t + 1) * per]) / statistics.median(theirs[t * per : (t + 1) * per])
        for t in range(trials)
    ]


def goal_1_verdict(ratio: float, low: float, high: float) -> str:
    """What the trial-by-trial ratio of optlib's fused NesterovAdamW to torch's fused AdamW,
    its median ``ratio`` and 95 % interval ``low`` to ``high``, says of "no slower than"."""
    if high < 1:
        return "met: faster, the 95% CI lies below 1"
    if ratio <= 1:
        return "met by the median; level within this run's noise (the 95% CI contains 1)"
    if low <= 1:
        return "not met by the median, but level within this run's noise (the 95% CI contains 1)"
    return "not met: slower (the 95% CI lies above 1)"


def run_trials(setup: tuple, trials: int, warmup: int, repeats: int, only: tuple | None = None) -> tuple[dict, dict]:
    """Every round's seconds per step of each path (``make_optimizers(*setup, only)``),
    ``trials`` sets of fresh copies one after another, and the first trial's first steps."""
    samples: dict = {}
    *_, device, order = setup
    for trial in range(trials):
        optimizers = make_optimizers(*setup, only)
        rounds, first_steps = time_steps(optimizers, device, warmup, repeats, order)
        if trial == 0:  # the first step that compiles
            first = first_steps
        for key, values in rounds.items():
            samples.setdefault(key, []).extend(values)
        del optimizers
    return samples, first


# The paths goal 1 compares: optlib's fused NesterovAdamW and both copies of torch's fused AdamW.
GOAL_1_PATHS = (("optlib", "fused"), ("torch", "fused"), REFERENCE)


def head_to_head(
    model: str, shapes: list, device: torch.device, order: random.Random, trials: int, warmup: int, repeats: int
) -> None:
    """Goal 1 measured on its own: the trial-by-trial ratio of optlib's fused NesterovAdamW
    to torch's fused AdamW (both copies), printed with its 95 % interval and the verdict.

    The table's trials cannot settle it: one fresh allocation against the next moves a
    kernel's time by up to a quarter, so its few trials leave an interval of about ±10 %
    around a ratio near 1. Here only the three fused paths run, each round a few tens of
    milliseconds, so many more trials (allocations) fit in the same time. torch's kernel
    against its second copy, from the same rounds, shows what the method reads where there
    is no difference: an interval that must contain 1.
    """
    samples, _ = run_trials(
        ("NesterovAdamW", "AdamW", ADAMW_OPTIONS, shapes, device, order), trials, warmup, repeats, GOAL_1_PATHS
    )
    _, each_round = yardstick(samples, ("torch", "fused"))
    ratios = trial_ratios(samples[("optlib", "fused")], each_round, trials)
    middle, low, high = median_interval(ratios)
    print(
        f"goal 1, {model}, head to head ({trials} trials x {repeats} steps of the three fused paths alone): "
        f"optlib fused NesterovAdamW / torch fused AdamW = {middle:.3f} "
        f"(goal <= 1.00: {goal_1_verdict(middle, low, high)}); {_by_trial(ratios)}"
    )
    noise = trial_ratios(samples[REFERENCE], samples[("torch", "fused")], trials)
    print(f"noise,  {model}: torch fused AdamW on its second copy / on its first; {_by_trial(noise)}")


def _by_trial(ratios: list[float]) -> str:
    middle, low, high = median_interval(ratios)
    each = (
        ", ".join(f"{r:.3f}" for r in ratios) if len(ratios) <= 10 else f"from {min(ratios):.3f} to {max(ratios):.3f}"
    )
    return (
        f"trial by trial (each a fresh allocation): median {middle:.3f}, 95% CI {low:.3f} to {high:.3f} "
        f"over {len(ratios)} trials ({each})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        choices=list(MODELS),
        help="model sizes (default: 10M 50M on the CPU, also 1B on CUDA)",
    )
    parser.add_argument("--methods", nargs="+", default=[m[0] for m in METHODS], choices=[m[0] for m in METHODS])
    parser.add_argument("--repeats", type=int, default=8, help="timed steps per path and trial (default 8)")
    parser.add_argument(
        "--trials", type=int, default=6, help="sets of freshly allocated parameters and optimizers (default 6)"
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--goal-trials",
        type=int,
        default=40,
        help="trials of goal 1's head-to-head run of the three fused paths alone (default 40; 0: none)",
    )
    parser.add_argument("--goal-repeats", type=int, default=5, help="timed steps per trial there (default 5)")
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    models = args.models or (CPU_MODELS if device.type == "cpu" else list(MODELS))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {device} ({name}); torch {torch.__version__}; optlib {optlib.__version__}")
    print(_load_note("at the start"))

    columns = [(lib, path) for lib in ("torch", "optlib") for path in PATHS]
    order = random.Random(0)  # the shuffle of each round: the same sequence every run
    for model in models:
        shapes = MODELS[model]
        n = sum(torch.Size(s).numel() for s in shapes)
        results = {}
        for label, opt_name, ref_name, kwargs, tensors in METHODS:
            if label not in args.methods:
                continue
            samples, first = run_trials(
                (opt_name, ref_name, kwargs, shapes, device, order), args.trials, args.warmup, args.repeats
            )
            times = {key: statistics.median(values) for key, values in samples.items()}
            key = reference_key(ref_name, kwargs)
            key = key if key in samples else REFERENCE  # a torch.optim whose AdamW has no fused path here
            times[key], _ = yardstick(samples, key)
            times["reference"] = times[key]
            times["two copies"] = key != REFERENCE
            probes = {key[1]: per_element * n / times[key] for key, (_, per_element) in PROBES.items()}
            bandwidth = max(probes.values())
            results[label] = (times, first, tensors * FLOAT32 * n / bandwidth, tensors, ref_name, probes)
        print(
            f"\n{model}: {n / 1e6:.1f}M float32 parameters in {len(shapes)} tensors; median of "
            f"{args.trials} x {args.repeats} steps; memory bandwidth measured in each method's rounds (GB/s): "
            + "; ".join(
                f"{label} " + ", ".join(f"{name}: {value / 1e9:.1f}" for name, value in result[5].items())
                for label, result in results.items()
            )
        )

        header = f"{'method':<15}{'B/param':>8}{'limit ms':>10}" + "".join(
            f"{lib + ' ' + path:>15}" for lib, path in columns
        )
        print(header)
        print("-" * len(header))
        for label in args.methods:
            times, first, limit, tensors, ref_name, _ = results[label]
            reference = times["reference"]
            row_ms = "".join(f"{1e3 * times[c]:>15.1f}" if c in times else f"{'n/a':>15}" for c in columns)
            row_bw = "".join(f"{limit / times[c]:>15.0%}" if c in times else f"{'':>15}" for c in columns)
            row_ref = "".join(
                f"{times[c] / reference:>14.2f}x" if c in times and reference else f"{'':>15}" for c in columns
            )
            twin = "" if ref_name == label.split()[0] else f" (torch columns: {ref_name})"
            print(f"{label:<15}{tensors * FLOAT32:>8}{1e3 * limit:>10.1f}{row_ms}   ms per step{twin}")
            print(f"{'':<33}{row_bw}   of the bandwidth limit (limit / time)")
            copies = "both copies, " if times["two copies"] else ""
            print(f"{'':<33}{row_ref}   time / torch AdamW fused ({copies}timed in the same rounds)")
            if ("optlib", "fused") in first:
                print(f"{'':<33}optlib fused first step (compiles): {first[('optlib', 'fused')]:.1f} s")

        if "NesterovAdamW" in results:
            times, _, limit = results["NesterovAdamW"][:3]
            ours = times.get(("optlib", "fused"))
            if ours and device.type == "cpu" and model == "50M":
                print(
                    f"goal 2, {model}: optlib fused NesterovAdamW reaches {limit / ours:.0%} of the bandwidth "
                    f"limit (goal >= 70%: {'met' if limit / ours >= 0.7 else 'not met'})"
                )
            if ours and times["two copies"] and args.goal_trials:
                head_to_head(model, shapes, device, order, args.goal_trials, args.warmup, args.goal_repeats)
    print(_load_note("at the end"))
    print("\ncompile seconds of each fused kernel variant (first call, this process):")
    for variant, seconds in compile_seconds().items():
        print(f"  {seconds:6.1f} s  {variant}")


if __name__ == "__main__":
    main()
