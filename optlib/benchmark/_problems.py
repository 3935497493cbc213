"""The benchmark's problems: two test functions and four networks, each in three sizes.

Every run is measured in optimizer steps, with an evaluation every ``eval_every``
steps, so curves and "steps to target" mean the same thing on every problem.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import torch
from torch import nn

from ._optimizers import OptimizerSpec

__all__ = ["BenchmarkProblem", "PROBLEMS", "SCHEDULES", "make_scheduler", "cpu_full_problems"]

CURVE_KEYS = ("step", "train_loss", "val_loss", "val_accuracy", "time", "lr")

# The learning-rate schedules every optimizer can be run with. "warmup_cosine" is the
# AlgoPerf baseline's recipe (and nanoGPT's): linear warm-up over the first 5% of the
# steps, then half a cosine down to 0 at the last step (optlib.warmup_cosine).
SCHEDULES = ("constant", "warmup_cosine")
WARMUP_FRACTION = 0.05
FINAL_FRACTION = 0.0


@dataclass(frozen=True)
class BenchmarkProblem:
    """A problem with a config per size; ``run`` trains once and returns a record."""

    name: str
    title: str
    sizes: dict[str, dict]
    runner: Callable[[dict, OptimizerSpec, float, int], tuple[dict, bool]]
    has_accuracy: bool
    loss_name: str
    # Published numbers the results are set against, with their source.
    reference: dict = field(default_factory=dict)
    # Final losses that span orders of magnitude across seeds (f(x) - f* on the
    # test functions) are compared as log10: on the raw scale one unlucky seed's
    # spread hides a 10^4-fold difference in the typical run.
    log_scale: bool = False
    # ``config -> model`` (seed 0) for the networks, so the benchmark can tell which
    # optimizers apply (Muon needs a hidden matrix); ``None`` for a test function.
    model_factory: Callable[[dict], nn.Module] | None = None
    # Why this problem's full size needs a GPU (measured on the course's 2-core CPU), or
    # "" when it fits on a CPU: `python -m optlib.results regenerate --device cpu` runs
    # the full benchmark of the problems that fit, and chapter 13 says why the rest are missing.
    full_needs_gpu: str = ""

    def config(self, size: str) -> dict:
        if size not in self.sizes:
            raise ValueError(f"Invalid size: {size!r}; size must be one of {', '.join(self.sizes)}")
        return dict(self.sizes[size])

    def model(self, size: str) -> nn.Module | None:
        """The network trained at ``size`` (seed 0), or ``None`` for a bare test function."""
        if self.model_factory is None:
            return None
        return self.model_factory(self.config(size))

    def not_applicable(self, size: str, spec: OptimizerSpec) -> str | None:
        """Why ``spec`` cannot run on this problem (Muon without a hidden matrix), or ``None`` if it can."""
        if spec.applies_to(self.model(size) if spec.hidden_matrices_only else None):
            return None
        what = "a bare test function" if self.model_factory is None else "a model"
        return (
            f"{spec.name} updates hidden weight matrices (2-D weights of nn.Linear layers other than the output "
            f"layer) and {what} without any leaves it nothing to do; not run"
        )

    def run(self, size: str, spec: OptimizerSpec, lr: float, seed: int, schedule: str = "constant") -> dict:
        """Train once; a dict with the curves, the final numbers and ``diverged``.

        ``schedule`` is ``"constant"`` or ``"warmup_cosine"`` (:data:`SCHEDULES`):
        linear warm-up over the first ``WARMUP_FRACTION`` of the steps, then cosine
        decay to 0 at the last step, stepped once per optimizer step.
        """
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"Invalid lr: {lr!r}; lr must be a finite number > 0")
        if schedule not in SCHEDULES:
            raise ValueError(f"Invalid schedule: {schedule!r}; schedule must be one of {', '.join(SCHEDULES)}")
        cfg = self.config(size)
        if schedule != "constant":
            cfg["schedule"] = schedule
        torch.manual_seed(seed)
        start = time.perf_counter()
        curves, diverged = self.runner(cfg, spec, lr, seed)
        wall = time.perf_counter() - start
        final = {k: (curves[k][-1] if curves.get(k) else math.nan) for k in CURVE_KEYS if k not in ("step", "lr")}
        if diverged:
            final["val_loss"] = final["train_loss"] = math.inf
        return {
            "seed": seed,
            "lr": lr,
            "schedule": schedule,
            "diverged": diverged,
            "wall_time": wall,
            "steps": cfg["steps"],
            "final": final,
            "curves": curves,
        }


def make_scheduler(cfg: dict, optimizer):
    """The learning-rate scheduler ``cfg["schedule"]`` asks for, or ``None`` for a constant rate."""
    if cfg.get("schedule", "constant") == "constant":
        return None
    from optlib.schedules import warmup_cosine

    steps = cfg["steps"]
    warmup = max(1, round(WARMUP_FRACTION * steps))
    return warmup_cosine(optimizer, warmup_steps=warmup, total_steps=steps, final_fraction=FINAL_FRACTION)


# ----------------------------------------------------------------------------- functions


def _function_runner(make_function):
    """Full-batch minimisation from a start point perturbed by the seed.

    Without the perturbation every seed would give the same deterministic path
    and the spread over seeds would be zero by construction.
    """

    def run(cfg, spec, lr, seed):
        f, start, f_min = make_function(cfg)
        gen = torch.Generator().manual_seed(seed)
        x0 = start + cfg["start_noise"] * torch.randn(start.shape, generator=gen, dtype=start.dtype)
        x = x0.clone().requires_grad_(True)
        opt = spec.build([x], lr)
        scheduler = make_scheduler(cfg, opt)
        _set_mode(opt, spec, train=True)
        curves = {k: [] for k in CURVE_KEYS}
        with torch.no_grad():
            initial_gap = float(f(x0)) - f_min
        t0, eval_seconds = time.perf_counter(), 0.0
        for step in range(1, cfg["steps"] + 1):
            opt.zero_grad(set_to_none=True)
            loss = f(x)
            loss.backward()
            step_lr = opt.param_groups[0]["lr"]
            opt.step()
            if scheduler is not None:
                scheduler.step()
            if step % cfg["eval_every"] == 0 or step == cfg["steps"]:
                eval_start = time.perf_counter()
                _set_mode(opt, spec, train=False)
                with torch.no_grad():
                    gap = float(f(x)) - f_min
                _set_mode(opt, spec, train=True)
                # Suboptimality f(x) - f*, the same number as train and as validation loss.
                # The time counts training only, as on the networks.
                for key, value in (
                    ("step", step),
                    ("train_loss", gap),
                    ("val_loss", gap),
                    ("val_accuracy", math.nan),
                    ("time", eval_start - t0 - eval_seconds),
                    ("lr", float(step_lr)),
                ):
                    curves[key].append(value)
                eval_seconds += time.perf_counter() - eval_start
                # A gap a million times the starting one will not come back; call it diverged.
                if not math.isfinite(gap) or gap > 1e6 * max(initial_gap, 1e-12):
                    return curves, True
        return curves, False

    return run


def _quadratic(cfg):
    from optlib.problems import quadratic_nd

    # A random rotation mixes the coordinates, so per-coordinate methods get no free
    # help from an axis-aligned Hessian.
    p = quadratic_nd(cfg["dim"], cfg["condition_number"], seed=0)
    return p, p.start, float(p.min_value)


def _rosenbrock(cfg):
    from optlib.problems import rosenbrock

    p = rosenbrock()
    return p, p.start, float(p.min_value)


def _set_mode(opt, spec, *, train):
    if spec.needs_train_eval:
        opt.train() if train else opt.eval()


# ----------------------------------------------------------------------------- networks


@cache
def _dataset(name: str):
    from optlib import data

    if name == "mnist1d":
        # 5000 samples with a 20% validation split is the paper's 4000 / 1000 split.
        return data.load_mnist1d(n_samples=5000, seed=0)
    return getattr(data, f"load_{name}")()


@cache
def _text(block_size: int):
    from optlib.data import load_shakespeare

    return load_shakespeare(block_size=block_size)


def _curves(history) -> dict:
    epochs = history.epochs
    n = len(epochs.get("step", []))
    return {
        "step": [int(s) for s in epochs.get("step", [])],
        "train_loss": list(epochs.get("train_loss", [])),
        "val_loss": list(epochs.get("val_loss", [])),
        "val_accuracy": list(epochs.get("val_accuracy", [math.nan] * n)),
        "time": list(epochs.get("time", [])),
        # The learning rate of the last step before each evaluation: shows the schedule.
        "lr": [float(v) for v in epochs.get("lr", [])],
    }


def _classifier_runner(dataset: str, make_model: Callable[[dict, object, int], nn.Module]):
    def run(cfg, spec, lr, seed):
        from optlib.training import TrainingDiverged, train

        data = _dataset(dataset).subset(cfg.get("n_train"), cfg.get("n_val"))
        model = make_model(cfg, data, seed)
        opt = spec.build_for_model(model, lr)
        if spec.needs_train_eval:
            _wrap_train_eval(model, opt)
        epochs = math.ceil(cfg["steps"] / math.ceil(data.n_train / cfg["batch_size"]))
        with warnings.catch_warnings():
            # A diverged grid point is expected; it is recorded, not shouted about.
            warnings.simplefilter("ignore", TrainingDiverged)
            history = train(
                model,
                opt,
                data,
                epochs=epochs,
                batch_size=cfg["batch_size"],
                max_steps=cfg["steps"],
                eval_every=cfg["eval_every"],
                scheduler=make_scheduler(cfg, opt),
                scheduler_step="step",
                seed=seed,
                progress=False,
            )
        return _curves(history), history.diverged

    return run


def _classifier_model(dataset: str, make_model):
    def factory(cfg):
        return make_model(cfg, _dataset(dataset).subset(cfg.get("n_train"), cfg.get("n_val")), 0)

    return factory


def _shakespeare_runner(cfg, spec, lr, seed):
    from optlib.training import TrainingDiverged, train_language_model

    data = _text(cfg["block_size"])
    model = _char_transformer(cfg, seed)
    opt = spec.build_for_model(model, lr)
    if spec.needs_train_eval:
        _wrap_train_eval(model, opt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrainingDiverged)
        history = train_language_model(
            model,
            opt,
            data,
            max_steps=cfg["steps"],
            batch_size=cfg["batch_size"],
            eval_every=cfg["eval_every"],
            eval_batches=cfg["eval_batches"],
            scheduler=make_scheduler(cfg, opt),
            seed=seed,
            progress=False,
        )
    return _curves(history), history.diverged


def _char_transformer(cfg, seed=0):
    from optlib.models import CharTransformer

    data = _text(cfg["block_size"])
    return CharTransformer(data.vocab_size, cfg["block_size"], cfg["n_layer"], cfg["n_head"], cfg["n_embd"], seed=seed)


def _wrap_train_eval(model: nn.Module, opt) -> None:
    """Make ``model.train()`` / ``model.eval()`` switch Schedule-Free's weights too.

    Schedule-Free evaluates at its averaged point x and trains at the
    interpolation y; ``optimizer.eval()`` swaps the weights, so every evaluation
    of the model has to be bracketed by it.
    """
    original = model.train

    def train(mode: bool = True):
        original(mode)
        opt.train() if mode else opt.eval()
        return model

    model.train = train  # model.eval() calls self.train(False), so it is covered too


def _mlp(cfg, data, seed):
    from optlib.models import MLP

    return MLP(data.n_features, (cfg["hidden"],), data.n_classes, seed=seed)


def _cnn1d(cfg, data, seed):
    from optlib.models import MNIST1DCNN

    return MNIST1DCNN(cfg["channels"], data.n_classes, data.input_shape[-1], seed=seed)


def _cnn2d(cfg, data, seed):
    from optlib.models import MNISTCNN

    return MNISTCNN(data.n_classes, cfg["channels"], cfg["hidden"], seed=seed)


# ----------------------------------------------------------------------------- registry


# Measured at full size on the course's 2-core CPU, one thread per run (see cpu_full_problems).
MNIST_CNN_ON_CPU = (
    "one full-size run (3,000 steps of 128 images, 30 evaluations) takes about 73 s on one core of a 2-core CPU, "
    "so the benchmark's 432 runs with 5 seeds take about 9 core-hours (4.4 h with --jobs 2)"
)


def cpu_full_problems() -> list[str]:
    """The problems whose full-size benchmark fits on a CPU, in the benchmark's order."""
    return [name for name, problem in PROBLEMS.items() if not problem.full_needs_gpu]


def _sizes(tiny, quick, full):
    return {"tiny": tiny, "quick": quick, "full": full}


PROBLEMS: dict[str, BenchmarkProblem] = {
    p.name: p
    for p in (
        BenchmarkProblem(
            "quadratic",
            "Ill-conditioned quadratic (full batch)",
            _sizes(
                dict(dim=10, condition_number=100, steps=40, eval_every=4, start_noise=0.1),
                dict(dim=50, condition_number=100, steps=300, eval_every=10, start_noise=0.1),
                dict(dim=200, condition_number=1000, steps=3000, eval_every=50, start_noise=0.1),
            ),
            _function_runner(_quadratic),
            has_accuracy=False,
            loss_name="f(x) - f*",
            log_scale=True,
        ),
        BenchmarkProblem(
            "rosenbrock",
            "Rosenbrock function, 2-D (full batch)",
            _sizes(
                dict(steps=60, eval_every=6, start_noise=0.1),
                dict(steps=1000, eval_every=25, start_noise=0.1),
                dict(steps=5000, eval_every=100, start_noise=0.1),
            ),
            _function_runner(_rosenbrock),
            has_accuracy=False,
            loss_name="f(x) - f*",
            log_scale=True,
        ),
        BenchmarkProblem(
            "digits_mlp",
            "MLP on scikit-learn digits",
            _sizes(
                dict(hidden=32, batch_size=32, steps=30, eval_every=10),
                dict(hidden=64, batch_size=32, steps=300, eval_every=15),
                dict(hidden=128, batch_size=32, steps=3000, eval_every=100),
            ),
            _classifier_runner("digits", _mlp),
            model_factory=_classifier_model("digits", _mlp),
            has_accuracy=True,
            loss_name="cross-entropy",
        ),
        BenchmarkProblem(
            "mnist1d_cnn",
            "CNN on MNIST-1D (4000 train / 1000 validation)",
            _sizes(
                dict(channels=8, batch_size=32, steps=30, eval_every=10, n_train=1000, n_val=500),
                dict(channels=16, batch_size=64, steps=400, eval_every=20),
                dict(channels=32, batch_size=100, steps=6000, eval_every=200),
            ),
            _classifier_runner("mnist1d", _cnn1d),
            model_factory=_classifier_model("mnist1d", _cnn1d),
            has_accuracy=True,
            loss_name="cross-entropy",
            reference={
                "metric": "val_accuracy",
                "values": {"logistic regression": 0.32, "MLP": 0.68, "CNN": 0.94, "GRU": 0.91, "human": 0.96},
                "source": "Greydanus (2020), 'Scaling down deep learning', arXiv:2011.14439, "
                "Table 1, test accuracy on the standard 4000/1000 MNIST-1D split (rounded)",
                "caveat": "The quick size trains a smaller CNN (16 channels) for 400 steps, so its accuracy "
                "is far below the paper's; the full size trains 32 channels for the paper's 6,000 steps of 100 "
                "signals, on a split of the paper's size cut from a differently seeded generator.",
            },
        ),
        BenchmarkProblem(
            "mnist_cnn",
            "CNN on MNIST (official 10k test images split 8000 / 2000)",
            _sizes(
                dict(channels=(4, 8), hidden=16, batch_size=32, steps=20, eval_every=10, n_train=1000, n_val=500),
                dict(channels=(8, 16), hidden=32, batch_size=64, steps=150, eval_every=10, n_train=8000, n_val=1000),
                dict(channels=(16, 32), hidden=64, batch_size=128, steps=3000, eval_every=100),
            ),
            _classifier_runner("mnist", _cnn2d),
            model_factory=_classifier_model("mnist", _cnn2d),
            has_accuracy=True,
            loss_name="cross-entropy",
            full_needs_gpu=MNIST_CNN_ON_CPU,
        ),
        BenchmarkProblem(
            "shakespeare_transformer",
            "Character-level transformer on Tiny Shakespeare",
            _sizes(
                dict(
                    block_size=16, n_embd=16, n_layer=1, n_head=2, batch_size=8, steps=20, eval_every=10, eval_batches=2
                ),
                dict(
                    block_size=32,
                    n_embd=32,
                    n_layer=1,
                    n_head=4,
                    batch_size=16,
                    steps=200,
                    eval_every=20,
                    eval_batches=4,
                ),
                dict(
                    block_size=256,
                    n_embd=384,
                    n_layer=6,
                    n_head=6,
                    batch_size=64,
                    steps=5000,
                    eval_every=250,
                    eval_batches=20,
                ),
            ),
            _shakespeare_runner,
            model_factory=_char_transformer,
            full_needs_gpu="nanoGPT's shakespeare-char transformer takes about 40 s per step on a 2-core CPU: "
            "one run of 5,000 steps takes about 56 hours, the benchmark's 400-odd runs decades",
            has_accuracy=False,
            loss_name="cross-entropy (nats/char)",
            reference={
                "metric": "val_loss",
                "values": {"nanoGPT shakespeare-char": 1.47},
                "source": "Karpathy, nanoGPT README (github.com/karpathy/nanoGPT), 'train_shakespeare_char': "
                "6-layer, 6-head, 384-dim transformer, context 256, 5000 iterations on one A100, "
                "best validation loss 1.4697",
                "caveat": "nanoGPT also uses dropout 0.2, a cosine learning-rate schedule and AdamW; "
                "smaller runs here (fewer steps, a smaller model, no dropout) "
                "end well above 1.47.",
            },
        ),
    )
}
