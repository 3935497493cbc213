"""The training loop: mini-batches, evaluation, a progress bar, and divergence that says so.

:func:`train` trains a classifier or a regression model on a :class:`~optlib.data.DataSplits`;
:func:`train_language_model` trains a model such as :class:`~optlib.models.CharTransformer`
on random windows of a :class:`~optlib.data.TextData`. Both return a :class:`History`, and
share the same step, divergence check, timing and progress bar (:class:`_Run`).

A run *diverges* when a training loss is NaN or infinite, or grows beyond ``1e6`` times the
first one. Training then stops, a :class:`TrainingDiverged` warning names the step and the
learning rate, and ``history.diverged`` and ``history.message`` record it.

With ``clip_grad_norm=c``, every step rescales the gradients so that their global norm (all
parameters together) is at most ``c`` (Pascanu et al., 2013), with
:func:`torch.nn.utils.clip_grad_norm_`, before the optimizer steps.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .data import DataSplits, TextData, batches
from .device import pick_device, synchronize
from .results import _jsonable

__all__ = ["History", "TrainingDiverged", "train", "train_language_model", "evaluate", "DIVERGENCE_FACTOR"]

DIVERGENCE_FACTOR = 1e6
"""A loss larger than this multiple of the first loss counts as divergence."""


class TrainingDiverged(RuntimeWarning):
    """Training stopped because the loss became NaN, infinite or exploded."""


# --------------------------------------------------------------------------- History


def _from_json_number(value):
    return math.nan if value is None else float(value)


@dataclass
class History:
    """What a training run recorded.

    ``step_loss[i]`` is the training loss of optimizer step ``i + 1``; with ``clip_grad_norm``,
    ``grad_norm[i]`` is that step's global gradient norm before clipping (empty without). ``epochs`` holds one
    entry per evaluation (the end of each epoch, or every ``eval_every`` steps):

    * ``epoch``: epochs completed (fractional when evaluating within an epoch),
    * ``step``: optimizer steps completed,
    * ``train_loss``: mean training loss of the steps since the previous evaluation,
    * ``val_loss`` and, for classification, ``val_accuracy``,
    * ``lr``: the learning rate of the last step (of the first parameter group),
    * ``time``: cumulative training time in seconds, evaluation excluded.

    A history thinned for saving (:meth:`thinned`) keeps every ``steps_per_loss``-th
    stretch of steps as one mean in ``step_loss`` (and ``grad_norm``), and records the
    run's ``total_steps``.
    """

    optimizer: str = ""
    hyperparameters: dict = field(default_factory=dict)
    step_loss: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    epochs: dict[str, list[float]] = field(default_factory=dict)
    diverged: bool = False
    message: str | None = None
    seed: int | None = None
    device: str = "cpu"
    config: dict = field(default_factory=dict)
    steps_per_loss: int = 1
    total_steps: int | None = None

    _HIGHER_IS_BETTER = ("val_accuracy", "accuracy")

    def _values(self, metric: str) -> list[float]:
        if metric == "step_loss":
            return self.step_loss
        if metric not in self.epochs:
            raise ValueError(f"Invalid metric: {metric!r}; metric must be 'step_loss' or one of {sorted(self.epochs)}")
        return self.epochs[metric]

    def final(self, metric: str = "val_loss") -> float:
        """The last recorded value of ``metric`` (NaN if none was recorded, e.g. after early divergence)."""
        values = self._values(metric)
        return float(values[-1]) if values else math.nan

    def best(self, metric: str = "val_loss") -> float:
        """The best finite value of ``metric``: the largest for accuracies, the smallest otherwise."""
        finite = [v for v in self._values(metric) if math.isfinite(v)]
        if not finite:
            return math.nan
        return max(finite) if metric in self._HIGHER_IS_BETTER else min(finite)

    @property
    def n_steps(self) -> int:
        return self.total_steps if self.total_steps is not None else len(self.step_loss)

    def thinned(self, max_points: int) -> History:
        """A copy with at most ``max_points`` values per series, for saving long runs compactly.

        Evaluations are kept at evenly spaced indices, the first and the last among them (so
        :meth:`final` is unchanged and :meth:`best` is the best of those kept); per-step
        series become means over equal stretches of steps (a mean keeps a plot's level where
        every k-th value would keep one step's noise).
        """
        if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 2:
            raise ValueError(f"Invalid max_points: {max_points!r}; max_points must be an integer >= 2")
        n_evals = max((len(v) for v in self.epochs.values()), default=0)
        keep = sorted({round(i * (n_evals - 1) / (max_points - 1)) for i in range(max_points)}) if n_evals else []
        k = max(1, math.ceil(len(self.step_loss) / max_points))  # stored values per new value

        def block_means(values: list[float]) -> list[float]:
            return [sum(values[i : i + k]) / len(values[i : i + k]) for i in range(0, len(values), k)]

        return replace(
            self,
            step_loss=block_means(self.step_loss),
            grad_norm=block_means(self.grad_norm),
            epochs={key: [values[i] for i in keep if i < len(values)] for key, values in self.epochs.items()},
            steps_per_loss=k * self.steps_per_loss,
            total_steps=self.n_steps,
        )

    def to_dict(self) -> dict:
        """A JSON-able dict (non-finite numbers become ``None``)."""
        data = asdict(self)
        data["step_loss"] = _jsonable(self.step_loss)
        data["grad_norm"] = _jsonable(self.grad_norm)
        data["epochs"] = _jsonable(self.epochs)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> History:
        data = dict(data)
        data["step_loss"] = [_from_json_number(v) for v in data.get("step_loss", [])]
        data["grad_norm"] = [_from_json_number(v) for v in data.get("grad_norm", [])]
        data["epochs"] = {k: [_from_json_number(v) for v in values] for k, values in data.get("epochs", {}).items()}
        return cls(**data)

    def __repr__(self) -> str:
        status = (
            f"diverged: {self.message}"
            if self.diverged
            else (f"final val_loss {self.final('val_loss'):.4g}" if self.epochs.get("val_loss") else "not evaluated")
        )
        return f"History({self.optimizer}, {self.n_steps} steps, {status})"


# --------------------------------------------------------------------------- helpers


def _hyperparameters(optimizer: torch.optim.Optimizer) -> dict:
    return {k: _jsonable(v) for k, v in optimizer.defaults.items() if k not in ("params",)}


def _current_lr(optimizer: torch.optim.Optimizer) -> float:
    lr = optimizer.param_groups[0].get("lr", math.nan)
    return float(lr.item() if isinstance(lr, Tensor) else lr)


def _make_optimizer(optimizer, model: nn.Module) -> torch.optim.Optimizer:
    """An optimizer instance, a class, or a factory ``params -> optimizer`` (e.g. a ``functools.partial``)."""
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if callable(optimizer):
        built = optimizer(model.parameters())
        if isinstance(built, torch.optim.Optimizer):
            return built
    raise ValueError(
        f"Invalid optimizer: {optimizer!r}; optimizer must be a torch.optim.Optimizer, an optimizer class, "
        f"or a callable taking the model's parameters and returning one"
    )


def _make_scheduler(scheduler, optimizer):
    if scheduler is None:
        return None
    if isinstance(scheduler, type) or not hasattr(scheduler, "step"):
        scheduler = scheduler(optimizer)
    if not hasattr(scheduler, "step"):
        raise ValueError(
            f"Invalid scheduler: {scheduler!r}; scheduler must have a step() method, or build one from the optimizer"
        )
    return scheduler


def _check_positive(name: str, value, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        allowed = "an integer >= 1" + (" or None" if allow_none else "")
        raise ValueError(f"Invalid {name}: {value!r}; {name} must be {allowed}")
    return value


def _default_loss(output: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy for integer targets (classification), mean squared error otherwise."""
    if target.dtype in (torch.long, torch.int, torch.int16, torch.int8, torch.uint8):
        return F.cross_entropy(output, target)
    if output.shape != target.shape and output.numel() == target.numel():
        output = output.view_as(target)
    return F.mse_loss(output, target)


def _logits(output):
    """Models such as CharTransformer return ``(logits, loss)``; the rest return logits."""
    return output[0] if isinstance(output, tuple) else output


@torch.no_grad()
def evaluate(model: nn.Module, X: Tensor, y: Tensor, loss_fn: Callable | None = None, batch_size: int = 4096) -> dict:
    """Mean loss over ``(X, y)`` and, for integer labels, accuracy, with the model in eval mode.

    Evaluates in chunks of ``batch_size`` so large validation sets fit in memory, and
    restores the model's training mode afterwards.
    """
    _check_positive("batch_size", batch_size)
    loss_fn = loss_fn or _default_loss
    classification = not torch.is_floating_point(y)
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    try:
        for start in range(0, len(X), batch_size):
            xb, yb = X[start : start + batch_size], y[start : start + batch_size]
            output = _logits(model(xb))
            total_loss += float(loss_fn(output, yb)) * len(xb)
            if classification:
                correct += int((output.argmax(dim=-1) == yb).sum())
    finally:
        model.train(was_training)
    result = {"loss": total_loss / len(X)}
    if classification:
        result["accuracy"] = correct / len(X)
    return result


# --------------------------------------------------------------------------- the shared run


class _Run:
    """What both training loops share: stepping, the divergence check, timing, records and the progress bar.

    On a GPU, reading a loss with ``.item()`` waits for the GPU to finish, so losses are
    kept on the device and read every ``sync_every`` steps; on the CPU they are read at
    once. A divergence is then found up to ``sync_every - 1`` steps late, but reported
    with the exact step at which it happened.
    """

    def __init__(
        self,
        model,
        optimizer,
        scheduler,
        scheduler_step,
        device,
        total_steps,
        steps_per_epoch,
        progress,
        desc,
        leave,
        history,
        clip_grad_norm=None,
    ):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.clip_grad_norm = clip_grad_norm
        self.scheduler_step = scheduler_step
        self.device = device
        self.steps_per_epoch = steps_per_epoch
        self.history = history
        self.sync_every = 1 if device.type == "cpu" else 25
        self.pending: list[tuple[Tensor, float, Tensor | None]] = []
        self.step = 0
        self.window: list[float] = []  # step losses since the last evaluation
        self.first_loss: float | None = None
        self.last_lr = _current_lr(optimizer)
        self.train_seconds = 0.0
        self.bar = tqdm(total=total_steps, desc=desc, disable=not progress, leave=leave, unit="step")
        synchronize(device)
        self.started = time.perf_counter()

    def optimizer_step(self, compute_loss: Callable[[], Tensor]) -> bool:
        """One step; returns False when training must stop because the loss diverged."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = compute_loss()
        loss.backward()
        norm = None
        if self.clip_grad_norm is not None:
            # One global norm over all parameters, as Pascanu et al. clip: the direction is kept.
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
        lr = _current_lr(self.optimizer)
        self.optimizer.step()
        if self.scheduler is not None and self.scheduler_step == "step":
            self.scheduler.step()
        self.step += 1
        self.pending.append((loss.detach(), lr, norm))
        self.last_lr = lr
        if len(self.pending) >= self.sync_every:
            return self.flush()
        return True

    def flush(self) -> bool:
        if not self.pending:
            return not self.history.diverged
        values = torch.stack([loss for loss, _, _ in self.pending]).float().cpu().tolist()
        if self.clip_grad_norm is not None:
            self.history.grad_norm += torch.stack([norm for _, _, norm in self.pending]).float().cpu().tolist()
        first_step = self.step - len(self.pending) + 1
        lrs = [lr for _, lr, _ in self.pending]
        self.pending = []
        for offset, (value, lr) in enumerate(zip(values, lrs)):
            self.history.step_loss.append(value)
            self.window.append(value)
            if self.first_loss is None:
                self.first_loss = value
            if self._diverged(value):
                self._stop(first_step + offset, value, lr)
                return False
        self.bar.update(len(values))
        self.bar.set_postfix(loss=f"{values[-1]:.4g}", refresh=False)
        return True

    def _diverged(self, value: float) -> bool:
        if not math.isfinite(value):
            return True
        return self.first_loss is not None and self.first_loss > 0 and value > DIVERGENCE_FACTOR * self.first_loss

    def _stop(self, step: int, value: float, lr: float) -> None:
        # Steps after the divergent one (read late on a GPU) are not part of the record.
        del self.history.step_loss[step:]
        del self.history.grad_norm[step:]
        message = f"Training diverged at step {step} (loss = {value:.4g}) with lr = {lr:g}: lower the learning rate"
        self.history.diverged = True
        self.history.message = message
        self.bar.set_postfix_str("diverged", refresh=False)
        warnings.warn(message, TrainingDiverged, stacklevel=4)

    def end_epoch(self) -> None:
        if self.scheduler is not None and self.scheduler_step == "epoch":
            self.scheduler.step()

    def record(self, metrics: dict) -> None:
        """Evaluate-time record: ``metrics`` come from a callable run with the clock stopped."""
        synchronize(self.device)
        now = time.perf_counter()
        self.train_seconds += now - self.started
        values = {
            "epoch": self.step / self.steps_per_epoch,
            "step": self.step,
            "train_loss": sum(self.window) / len(self.window) if self.window else math.nan,
            **metrics,
            "lr": self.last_lr,
            "time": self.train_seconds,
        }
        for key, value in values.items():
            self.history.epochs.setdefault(key, []).append(float(value))
        self.window = []
        synchronize(self.device)
        self.started = time.perf_counter()

    def close(self) -> None:
        self.bar.close()


def _new_history(optimizer, seed, device, config) -> History:
    return History(
        optimizer=type(optimizer).__name__,
        hyperparameters=_hyperparameters(optimizer),
        seed=seed,
        device=str(device),
        config=config,
    )


def _cuda_indices(device: torch.device) -> list[int]:
    """The CUDA device whose generator fork_rng must save and restore (none off CUDA)."""
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _check_clip(clip_grad_norm):
    if clip_grad_norm is None:
        return None
    if (
        isinstance(clip_grad_norm, bool)
        or not isinstance(clip_grad_norm, (int, float))
        or not 0 < clip_grad_norm < math.inf
    ):
        raise ValueError(
            f"Invalid clip_grad_norm: {clip_grad_norm!r}; clip_grad_norm must be a finite number > 0, or None"
        )
    return float(clip_grad_norm)


def _check_common(scheduler_step, seed):
    if scheduler_step not in ("epoch", "step"):
        raise ValueError(f"Invalid scheduler_step: {scheduler_step!r}; scheduler_step must be 'epoch' or 'step'")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"Invalid seed: {seed!r}; seed must be an integer in [0, 2**63)")


# --------------------------------------------------------------------------- the loops


def train(
    model: nn.Module,
    optimizer,
    data: DataSplits,
    *,
    epochs: int = 1,
    batch_size: int | None = 64,
    loss_fn: Callable | None = None,
    scheduler=None,
    scheduler_step: str = "epoch",
    clip_grad_norm: float | None = None,
    max_steps: int | None = None,
    eval_every: int | None = None,
    device=None,
    seed: int = 0,
    progress: bool = True,
    desc: str | None = None,
    leave: bool = True,
) -> History:
    """Train ``model`` on ``data`` with mini-batches and return its :class:`History`.

    Arguments:
        optimizer: an optimizer over ``model``'s parameters, or an optimizer class (or any
            callable ``params -> optimizer``, e.g. ``functools.partial(optlib.Adam, lr=1e-3)``).
        batch_size: samples per step; ``None`` for full-batch gradient descent (one step per epoch).
        loss_fn: ``loss_fn(output, target)``; by default cross-entropy for integer labels and
            mean squared error for float targets.
        scheduler: a learning-rate scheduler, or a callable ``optimizer -> scheduler``;
            stepped after every epoch or, with ``scheduler_step="step"``, after every step.
        clip_grad_norm: if given, the gradients' global norm is clipped to at most this value
            before every optimizer step (``torch.nn.utils.clip_grad_norm_``).
        max_steps: stop after this many optimizer steps, even within an epoch.
        eval_every: evaluate on the validation set every this many steps (default: at each epoch's end).
        device: where to train (default :func:`~optlib.device.pick_device`); model and data move there.
        seed: seeds the order of the mini-batches and anything random in the model (dropout),
            without touching the caller's global random state.
    """
    epochs = _check_positive("epochs", epochs)
    batch_size = _check_positive("batch_size", batch_size, allow_none=True)
    max_steps = _check_positive("max_steps", max_steps, allow_none=True)
    eval_every = _check_positive("eval_every", eval_every, allow_none=True)
    _check_common(scheduler_step, seed)
    clip_grad_norm = _check_clip(clip_grad_norm)
    if not isinstance(data, DataSplits):
        raise ValueError(
            f"Invalid data: {type(data).__name__}; data must be an optlib.data.DataSplits "
            f"(use train_language_model for TextData)"
        )
    device = torch.device(device) if device is not None else pick_device()
    model.to(device)
    data = data.to(device)
    optimizer = _make_optimizer(optimizer, model)
    scheduler = _make_scheduler(scheduler, optimizer)
    loss_fn = loss_fn or _default_loss

    effective_batch = data.n_train if batch_size is None else min(batch_size, data.n_train)
    steps_per_epoch = math.ceil(data.n_train / effective_batch)
    total_steps = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    config = {
        "data": data.name,
        "epochs": epochs,
        "batch_size": batch_size,
        "max_steps": max_steps,
        "eval_every": eval_every,
        "scheduler": type(scheduler).__name__ if scheduler else None,
        "scheduler_step": scheduler_step,
        "clip_grad_norm": clip_grad_norm,
    }
    history = _new_history(optimizer, seed, device, config)

    def validation_metrics() -> dict:
        metrics = evaluate(model, data.X_val, data.y_val, loss_fn)
        return {f"val_{k}": v for k, v in metrics.items()}

    with torch.random.fork_rng(devices=_cuda_indices(device)):
        torch.manual_seed(seed)
        generator = torch.Generator(device=device if device.type == "cuda" else "cpu").manual_seed(seed)
        run = _Run(
            model,
            optimizer,
            scheduler,
            scheduler_step,
            device,
            total_steps,
            steps_per_epoch,
            progress,
            desc or type(optimizer).__name__,
            leave,
            history,
            clip_grad_norm,
        )
        model.train()
        try:
            running = True
            for _ in range(epochs):
                for xb, yb in batches(data.X_train, data.y_train, batch_size, generator=generator):
                    running = run.optimizer_step(lambda: loss_fn(_logits(model(xb)), yb))  # noqa: B023 (called at once)
                    if running and eval_every and run.step % eval_every == 0:
                        running = run.flush()
                        if running:
                            run.record(validation_metrics())
                    if not running or run.step >= total_steps:
                        break
                if running:
                    running = run.flush()
                if not running:
                    break
                run.end_epoch()
                if eval_every is None or run.step % eval_every:
                    run.record(validation_metrics())
                if run.step >= total_steps:
                    break
        finally:
            run.close()
    return history


def train_language_model(
    model: nn.Module,
    optimizer,
    data: TextData,
    *,
    max_steps: int = 500,
    batch_size: int = 32,
    eval_every: int = 100,
    eval_batches: int = 20,
    scheduler=None,
    clip_grad_norm: float | None = None,
    device=None,
    seed: int = 0,
    progress: bool = True,
    desc: str | None = None,
    leave: bool = True,
) -> History:
    """Train a next-character model on random windows of ``data`` and return its :class:`History`.

    Each step draws ``batch_size`` windows of ``data.block_size`` characters uniformly at
    random from the training stream, as nanoGPT does; ``model(x, y)`` must return
    ``(logits, loss)``. Every ``eval_every`` steps (and at the end), the validation loss is
    the mean over ``eval_batches`` batches of validation windows; the same windows are
    used at every evaluation, so the curve measures the model and not the draw.
    ``epoch`` in the history counts passes over the training characters. A ``scheduler``
    is stepped after every optimizer step. With ``clip_grad_norm``, the gradients' global norm is
    clipped to at most that value before every step.
    """
    max_steps = _check_positive("max_steps", max_steps)
    batch_size = _check_positive("batch_size", batch_size)
    eval_every = _check_positive("eval_every", eval_every)
    eval_batches = _check_positive("eval_batches", eval_batches)
    _check_common("step", seed)
    clip_grad_norm = _check_clip(clip_grad_norm)
    if not isinstance(data, TextData):
        raise ValueError(f"Invalid data: {type(data).__name__}; data must be an optlib.data.TextData")
    device = torch.device(device) if device is not None else pick_device()
    model.to(device)
    data = data.to(device)
    optimizer = _make_optimizer(optimizer, model)
    scheduler = _make_scheduler(scheduler, optimizer)
    steps_per_epoch = len(data.train) / (batch_size * data.block_size)
    config = {
        "data": data.name,
        "max_steps": max_steps,
        "batch_size": batch_size,
        "block_size": data.block_size,
        "eval_every": eval_every,
        "eval_batches": eval_batches,
        "scheduler": type(scheduler).__name__ if scheduler else None,
        "scheduler_step": "step",
        "clip_grad_norm": clip_grad_norm,
    }
    history = _new_history(optimizer, seed, device, config)

    eval_generator = torch.Generator().manual_seed(seed + 1)
    eval_set = [data.get_batch("val", batch_size, eval_generator) for _ in range(eval_batches)]

    @torch.no_grad()
    def validation_metrics() -> dict:
        was_training = model.training
        model.eval()
        losses = [float(model(x, y)[1]) for x, y in eval_set]
        model.train(was_training)
        return {"val_loss": sum(losses) / len(losses)}

    def step_loss(generator) -> Tensor:
        x, y = data.get_batch("train", batch_size, generator)
        return model(x, y)[1]

    with torch.random.fork_rng(devices=_cuda_indices(device)):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        run = _Run(
            model,
            optimizer,
            scheduler,
            "step",
            device,
            max_steps,
            steps_per_epoch,
            progress,
            desc or type(optimizer).__name__,
            leave,
            history,
            clip_grad_norm,
        )
        model.train()
        try:
            while run.step < max_steps:
                if not run.optimizer_step(lambda: step_loss(generator)):
                    break
                if run.step % eval_every == 0 or run.step == max_steps:
                    if not run.flush():
                        break
                    run.record(validation_metrics())
        finally:
            run.close()
    return history
