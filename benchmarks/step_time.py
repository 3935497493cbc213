"""Time per optimizer.step() of optlib against torch.optim, for 1M- and 10M-parameter models.

    python benchmarks/step_time.py                 # CPU
    python benchmarks/step_time.py --device cuda   # GPU, if there is one

For each optimizer it times torch.optim with the per-parameter loop
(foreach=False) and with the multi-tensor path (foreach=True), and optlib's two
paths, and prints the medians with optlib/torch ratios. NesterovAdamW has no
torch.optim twin; torch.optim.AdamW is its reference cost (its multi-tensor
path does one more in-place addcdiv per step, its loop one more lerp).

The parameters have the shapes of a small transformer (embedding, attention and
MLP matrices, biases, layer-norm vectors), because the number and sizes of the
tensors, not only the total, decide how much the multi-tensor path saves. The
gradients are fixed random tensors, so only the optimizer is timed. The
implementations are timed in turn, one step each, round after round, so a
change in machine load affects them all alike.
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
import optlib  # noqa: E402

# (optimizer, torch.optim twin or reference, keyword arguments for both)
CASES = [
    ("SGD", "SGD", dict(lr=1e-3, momentum=0.9)),
    ("Adam", "Adam", dict(lr=1e-3)),
    ("AdamW", "AdamW", dict(lr=1e-3, weight_decay=1e-2)),
    ("Adagrad", "Adagrad", dict(lr=1e-2)),
    ("RMSprop", "RMSprop", dict(lr=1e-3)),
    ("NAdam", "NAdam", dict(lr=1e-3)),
    ("NesterovAdamW", "AdamW", dict(lr=1e-3, weight_decay=1e-2)),
]


def transformer_shapes(d: int, layers: int, target: int) -> list[tuple[int, ...]]:
    """Shapes of a `layers`-block transformer of width d, with the embedding sized to reach about `target`."""
    block = [
        (d,), (d,),                     # layer norm 1
        (3 * d, d), (3 * d,),           # q, k, v projection
        (d, d), (d,),                   # attention output
        (d,), (d,),                     # layer norm 2
        (4 * d, d), (4 * d,),           # MLP up
        (d, 4 * d), (d,),               # MLP down
    ]
    per_block = sum(torch.Size(s).numel() for s in block)
    vocab = max(1, (target - layers * per_block) // d)
    return [(vocab, d)] + block * layers + [(d,), (d,)]


MODELS = {
    "1M": transformer_shapes(d=256, layers=1, target=1_000_000),
    "10M": transformer_shapes(d=512, layers=3, target=10_000_000),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_optimizers(opt_name: str, ref_name: str, kwargs: dict, shapes, device) -> dict:
    """Four optimizers, each over its own copy of the same parameters and gradients."""
    generator = torch.Generator().manual_seed(0)
    values = [torch.randn(s, generator=generator) for s in shapes]
    grads = [torch.randn(s, generator=generator) * 1e-2 for s in shapes]
    impls = {
        "torch loop": (getattr(torch.optim, ref_name), False),
        "torch foreach": (getattr(torch.optim, ref_name), True),
        "optlib loop": (getattr(optlib, opt_name), False),
        "optlib foreach": (getattr(optlib, opt_name), True),
    }
    optimizers = {}
    for label, (cls, foreach) in impls.items():
        params = [v.to(device).requires_grad_(True) for v in values]
        for p, g in zip(params, grads):
            p.grad = g.to(device)
        optimizers[label] = cls(params, foreach=foreach, **kwargs)
    return optimizers


def time_steps(optimizers: dict, device: torch.device, warmup: int, repeats: int) -> dict[str, float]:
    """Median seconds per step of each optimizer, timed in interleaved rounds."""
    for opt in optimizers.values():
        for _ in range(warmup):
            opt.step()
    _sync(device)
    samples: dict[str, list[float]] = {label: [] for label in optimizers}
    for _ in range(repeats):
        for label, opt in optimizers.items():
            _sync(device)
            start = time.perf_counter()
            opt.step()
            _sync(device)
            samples[label].append(time.perf_counter() - start)
    return {label: statistics.median(s) for label, s in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--optimizers", nargs="+", default=[c[0] for c in CASES], choices=[c[0] for c in CASES])
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per implementation (default: by size)")
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {device} ({name}); torch {torch.__version__}; optlib {optlib.__version__}; "
          f"threads: {torch.get_num_threads()}")

    labels = ["torch loop", "torch foreach", "optlib loop", "optlib foreach"]
    header = (f"{'model':>5} {'optimizer':<26}" + "".join(f"{label + ' ms':>18}" for label in labels)
              + f"{'optlib/torch loop':>19}{'optlib/torch foreach':>22}")
    print(header)
    print("-" * len(header))
    for model in args.models:
        shapes = MODELS[model]
        n_params = sum(torch.Size(s).numel() for s in shapes)
        repeats = args.repeats or (60 if n_params < 3_000_000 else 20)
        for opt_name, ref_name, kwargs in CASES:
            if opt_name not in args.optimizers:
                continue
            optimizers = make_optimizers(opt_name, ref_name, kwargs, shapes, device)
            t = time_steps(optimizers, device, args.warmup, repeats)
            label = opt_name + ("" if ref_name == opt_name else f" (vs {ref_name})")
            print(f"{model:>5} {label:<26}" + "".join(f"{1e3 * t[lab]:>18.3f}" for lab in labels)
                  + f"{t['optlib loop'] / t['torch loop']:>19.2f}"
                  + f"{t['optlib foreach'] / t['torch foreach']:>22.2f}")
            del optimizers
        print(f"{model:>5}: {n_params / 1e6:.2f}M parameters in {len(shapes)} tensors, "
              f"median of {repeats} steps after {args.warmup} warm-up steps")


if __name__ == "__main__":
    main()
