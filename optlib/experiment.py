"""A chapter's closing experiment: several optimizers train the same model, over several seeds.

::

    result = optlib.compare_optimizers(
        "ch09_adam",
        data="mnist1d",
        model=lambda: optlib.MNIST1DCNN(),
        optimizers={"SGD": (optlib.SGD, {"lr": 0.05}), "Adam": (optlib.Adam, {"lr": 1e-3})},
    )
    result.plot("val_accuracy"); result.summary()

The size (``"tiny"``, ``"quick"`` or ``"full"``, see :func:`~optlib.device.experiment_size`)
picks the data, the number of epochs and the seeds; at ``"full"`` size the histories are
saved to ``data/results/<name>.json``. :func:`show_experiment` plots saved full-size
results next to a live quick run and says whether the two rank the optimizers alike.
"""

from __future__ import annotations

import functools
import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .data import DataSplits, TextData, load_digits, load_mnist, load_mnist1d, load_shakespeare
from .device import SIZES, experiment_size, seed_everything
from .results import load_results, missing_results_note, results_note, save_results
from .training import History, train, train_language_model

__all__ = [
    "compare_optimizers",
    "ExperimentResult",
    "SummaryTable",
    "show_experiment",
    "compare_sizes",
    "SizeComparison",
    "load_experiment_data",
    "DEFAULT_EPOCHS",
    "DEFAULT_SEEDS",
    "SAVED_POINTS",
]

DEFAULT_EPOCHS = {"tiny": 1, "quick": 5, "full": 30}
DEFAULT_SEEDS = {"tiny": [0], "quick": [0], "full": [0, 1, 2, 3, 4]}
DEFAULT_STEPS = {"tiny": 20, "quick": 150, "full": 5000}  # language models count steps, not epochs
# Values per series in a saved result: enough for smooth curves, and 3,000 epochs of 25 runs
# stay a file of hundreds of kilobytes, not megabytes (the wheel carries every saved result).
SAVED_POINTS = 400

# Per size, how much of each named data set to use: quick sizes train in seconds on a 2-core CPU.
_DATA_SIZES = {
    "digits": {"tiny": (300, 100), "quick": (None, None), "full": (None, None)},
    "mnist1d": {"tiny": 1000, "quick": 4000, "full": 10000},
    "mnist": {"tiny": (500, 200), "quick": (2000, 1000), "full": (None, None)},
}


def load_experiment_data(data: str, size: str, seed: int = 0):
    """The named data set at the amount used for ``size``: ``"digits"``, ``"mnist1d"``, ``"mnist"`` or ``"shakespeare"``.

    digits: all 1,797 images (300/100 at size tiny); MNIST-1D: 1,000 / 4,000 / 10,000
    generated samples; MNIST: 2,000/1,000 of the 10,000 shipped images at quick size, all at
    full size; Tiny Shakespeare: the whole text, with windows of 64 characters.
    """
    _check_size(size)
    if data == "digits":
        n_train, n_val = _DATA_SIZES["digits"][size]
        return load_digits(seed=seed).subset(n_train, n_val)
    if data == "mnist1d":
        return load_mnist1d(n_samples=_DATA_SIZES["mnist1d"][size], seed=seed)
    if data == "mnist":
        n_train, n_val = _DATA_SIZES["mnist"][size]
        return load_mnist(seed=seed).subset(n_train, n_val)
    if data == "shakespeare":
        return load_shakespeare(block_size=64)
    raise ValueError(
        f"Invalid data: {data!r}; data must be a DataSplits, a TextData, or one of "
        f"'digits', 'mnist1d', 'mnist', 'shakespeare'"
    )


def _check_size(size: str) -> str:
    if size not in SIZES:
        raise ValueError(f"Invalid size: {size!r}; size must be one of {', '.join(map(repr, SIZES))}")
    return size


def _per_size(name: str, value, size: str):
    """``value`` itself, or ``value[size]`` when it is a dict keyed by size."""
    if isinstance(value, Mapping):
        if size not in value:
            raise ValueError(
                f"Invalid {name}: {dict(value)!r} has no entry for size {size!r}; give one for each of {SIZES}"
            )
        return value[size]
    return value


def _per_label(name: str, value, labels) -> dict:
    """``value`` for every label, or, when it is a dict keyed by label, each label's entry (``None`` if absent)."""
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(labels))
        if unknown:
            raise ValueError(f"Invalid {name}: keys {unknown} are not optimizer labels; use some of {list(labels)}")
        return {label: value.get(label) for label in labels}
    return dict.fromkeys(labels, value)


def _optimizer_factory(label: str, spec):
    """``(cls, kwargs)``, a class, or any callable ``params -> optimizer``."""
    if isinstance(spec, tuple):
        if len(spec) != 2 or not callable(spec[0]) or not isinstance(spec[1], Mapping):
            raise ValueError(f"Invalid optimizers[{label!r}]: {spec!r}; use (OptimizerClass, {{'lr': ...}})")
        return functools.partial(spec[0], **spec[1]), {
            "optimizer": getattr(spec[0], "__name__", repr(spec[0])),
            **dict(spec[1]),
        }
    if callable(spec):
        return spec, {"optimizer": getattr(spec, "__name__", repr(spec))}
    raise ValueError(f"Invalid optimizers[{label!r}]: {spec!r}; use (OptimizerClass, {{'lr': ...}}) or a callable")


# --------------------------------------------------------------------------- results


def _mean_std(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


class SummaryTable(list):
    """A list of dict rows that shows as an HTML table in a notebook and as aligned text elsewhere."""

    def _cells(self) -> tuple[list[str], list[list[str]]]:
        has_accuracy = any(not math.isnan(row["val_accuracy_mean"]) for row in self)
        header = ["optimizer", "final val loss"] + (["val accuracy"] if has_accuracy else []) + ["time (s)", "diverged"]
        lines = []
        for row in self:
            cells = [row["optimizer"], _pm(row["val_loss_mean"], row["val_loss_std"], "{:.4f}")]
            if has_accuracy:
                cells.append(_pm(row["val_accuracy_mean"], row["val_accuracy_std"], "{:.3f}"))
            cells += [f"{row['time_mean']:.2f}", f"{row['diverged']}/{row['runs']}"]
            lines.append(cells)
        return header, lines

    def to_frame(self):
        """The table as a pandas DataFrame, one row per optimizer (mean ± standard deviation over seeds)."""
        import pandas as pd

        header, lines = self._cells()
        return pd.DataFrame(lines, columns=header).set_index("optimizer")

    def _repr_html_(self) -> str:
        # A notebook (and so the website) shows a table that wraps to the page, not fixed-width text.
        return self.to_frame().to_html() if self else "<p>(no runs)</p>"

    def __str__(self) -> str:
        if not self:
            return "(no runs)"
        header, lines = self._cells()
        widths = [max(len(str(c)) for c in column) for column in zip(header, *lines)]
        fmt = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
        return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(c) for c in lines])

    __repr__ = __str__


def _pm(mean: float, std: float, fmt: str) -> str:
    if math.isnan(mean):
        return "-"
    return f"{fmt.format(mean)} ± {fmt.format(std)}"


@dataclass
class ExperimentResult:
    """The histories of an optimizer comparison: ``histories[label][i]`` is the run with ``seeds[i]``."""

    name: str
    size: str
    histories: dict[str, list[History]]
    seeds: list[int]
    config: dict = field(default_factory=dict)

    def summary(self) -> SummaryTable:
        """One row per optimizer: final validation loss and accuracy (mean and std over the
        seeds that did not diverge), mean training time, and how many runs diverged."""
        rows = SummaryTable()
        for label, runs in self.histories.items():
            ok = [h for h in runs if not h.diverged]
            loss_mean, loss_std = _mean_std([h.final("val_loss") for h in ok])
            has_accuracy = any("val_accuracy" in h.epochs for h in runs)
            acc_mean, acc_std = (
                _mean_std([h.final("val_accuracy") for h in ok]) if has_accuracy else (math.nan, math.nan)
            )
            time_mean, _ = _mean_std([h.epochs["time"][-1] for h in runs if h.epochs.get("time")])
            rows.append(
                {
                    "optimizer": label,
                    "val_loss_mean": loss_mean,
                    "val_loss_std": loss_std,
                    "val_accuracy_mean": acc_mean,
                    "val_accuracy_std": acc_std,
                    "time_mean": time_mean,
                    "diverged": sum(h.diverged for h in runs),
                    "runs": len(runs),
                }
            )
        return rows

    def plot(self, metric: str = "val_loss", ax=None, title: str | None = None):
        """Mean ± std over seeds of ``metric`` per optimizer (see ``optlib.plotting.plot_histories``)."""
        from .plotting import plot_histories

        if title is None:
            title = (
                f"{self.config.get('data', self.name)}: {metric.replace('_', ' ')} ({self.size} size, "
                f"{len(self.seeds)} seed{'s' if len(self.seeds) > 1 else ''})"
            )
        xlabel = "step" if metric == "step_loss" else ("evaluation" if self.config.get("language_model") else "epoch")
        return plot_histories(
            self.histories, metric=metric, ax=ax, title=title, xlabel=xlabel, ylabel=metric.replace("_", " ")
        )

    def to_dict(self, max_points: int | None = None) -> dict:
        """A JSON-able dict; with ``max_points``, every series thinned to at most that many values."""
        thin = (lambda h: h) if max_points is None else (lambda h: h.thinned(max_points))
        return {
            "name": self.name,
            "size": self.size,
            "seeds": list(self.seeds),
            "config": self.config,
            "histories": {label: [thin(h).to_dict() for h in runs] for label, runs in self.histories.items()},
        }

    def save(self):
        """Save as ``<results_dir>/<name>.json``, each series thinned to :data:`SAVED_POINTS` values."""
        return save_results(
            self.name, self.to_dict(max_points=SAVED_POINTS), seeds=self.seeds, config=self.config, size=self.size
        )

    @classmethod
    def from_dict(cls, data: dict) -> ExperimentResult:
        return cls(
            name=data["name"],
            size=data["size"],
            seeds=list(data["seeds"]),
            config=dict(data.get("config", {})),
            histories={label: [History.from_dict(h) for h in runs] for label, runs in data["histories"].items()},
        )

    def __repr__(self) -> str:
        return f"ExperimentResult({self.name!r}, size {self.size}, seeds {self.seeds}):\n{self.summary()}"


# --------------------------------------------------------------------------- running


def compare_optimizers(
    name: str,
    *,
    data,
    model: Callable[[], torch.nn.Module],
    optimizers: Mapping[str, object],
    epochs=None,
    steps=None,
    batch_size=64,
    seeds=None,
    size: str | None = None,
    loss_fn: Callable | None = None,
    scheduler=None,
    scheduler_step: str = "epoch",
    clip_grad_norm=None,
    eval_every: int | None = None,
    device=None,
    save: bool | None = None,
    progress: bool = True,
) -> ExperimentResult:
    """Train a fresh ``model()`` with each optimizer and each seed, and return all histories.

    Arguments:
        name: the experiment's name; at full size the results go to ``data/results/<name>.json``.
        data: ``"digits"``, ``"mnist1d"``, ``"mnist"``, ``"shakespeare"`` (sized by
            :func:`load_experiment_data`), or a ready ``DataSplits`` / ``TextData``.
        model: a callable returning a new model; it is called after seeding with each seed,
            so every optimizer starts from the same weights for a given seed.
        optimizers: label -> ``(OptimizerClass, {"lr": ...})`` (or a callable ``params -> optimizer``).
        epochs: int, or a dict per size (default ``DEFAULT_EPOCHS``); for ``TextData`` use
            ``steps`` instead (default ``DEFAULT_STEPS``).
        batch_size: int, ``None`` (full batch), or a dict per size.
        seeds: list of seeds, or a dict per size (default ``DEFAULT_SEEDS``: 1 seed, 5 at full size).
        size: ``"tiny"``, ``"quick"`` or ``"full"``; default :func:`~optlib.device.experiment_size`.
        scheduler: a callable ``optimizer -> scheduler``, built fresh for every run, or a dict
            label -> such a callable (labels it leaves out run without a scheduler).
        clip_grad_norm: clip the gradients' global norm to this value before every step, or a
            dict label -> value (labels it leaves out are not clipped); default: no clipping.
        save: save the results (default: only at full size).
    """
    size = _check_size(size or experiment_size())
    if not isinstance(optimizers, Mapping) or not optimizers:
        raise ValueError("Invalid optimizers: it must be a non-empty dict label -> (OptimizerClass, kwargs)")
    factories = {label: _optimizer_factory(label, spec) for label, spec in optimizers.items()}
    schedulers = _per_label("scheduler", scheduler, factories)
    clips = _per_label("clip_grad_norm", clip_grad_norm, factories)
    seeds = list(_per_size("seeds", seeds if seeds is not None else DEFAULT_SEEDS, size))
    if not seeds:
        raise ValueError("Invalid seeds: []; give at least one seed")
    batch_size = _per_size("batch_size", batch_size, size)
    data_name = data if isinstance(data, str) else data.name
    dataset = load_experiment_data(data, size) if isinstance(data, str) else data
    language_model = isinstance(dataset, TextData)
    if not language_model and not isinstance(dataset, DataSplits):
        raise ValueError(f"Invalid data: {type(data).__name__}; data must be a name, a DataSplits or a TextData")
    if language_model:
        n_steps = _per_size("steps", steps if steps is not None else DEFAULT_STEPS, size)
        n_epochs = None
    else:
        n_epochs = _per_size("epochs", epochs if epochs is not None else DEFAULT_EPOCHS, size)
        n_steps = _per_size("steps", steps, size) if steps is not None else None

    config = {
        "data": data_name,
        "model": None,
        "batch_size": batch_size,
        "epochs": n_epochs,
        "steps": n_steps,
        "eval_every": eval_every,
        "language_model": language_model,
        "optimizers": {label: settings for label, (_, settings) in factories.items()},
    }
    if any(clip is not None for clip in clips.values()):
        config["clip_grad_norm"] = clips
    histories: dict[str, list[History]] = {label: [] for label in factories}
    runs = [(label, seed) for label in factories for seed in seeds]
    bar = tqdm(runs, desc=name, disable=not progress, unit="run")
    started = time.perf_counter()
    for label, seed in bar:
        bar.set_postfix_str(f"{label}, seed {seed}", refresh=True)
        seed_everything(seed)
        network = model()
        config["model"] = type(network).__name__
        common = dict(
            device=device, seed=seed, progress=progress and size == "full", desc=f"{label} (seed {seed})", leave=False
        )
        if language_model:
            history = train_language_model(
                network,
                factories[label][0],
                dataset,
                max_steps=n_steps,
                batch_size=batch_size,
                eval_every=eval_every or max(1, n_steps // 10),
                scheduler=schedulers[label],
                clip_grad_norm=clips[label],
                **common,
            )
        else:
            history = train(
                network,
                factories[label][0],
                dataset,
                epochs=n_epochs,
                batch_size=batch_size,
                loss_fn=loss_fn,
                scheduler=schedulers[label],
                scheduler_step=scheduler_step,
                clip_grad_norm=clips[label],
                max_steps=n_steps,
                eval_every=eval_every,
                **common,
            )
        histories[label].append(history)
    bar.close()
    config["wall_seconds"] = time.perf_counter() - started
    result = ExperimentResult(name=name, size=size, histories=histories, seeds=seeds, config=config)
    if save if save is not None else size == "full":
        result.save()
    return result


def show_experiment(name: str, run_quick: Callable[[], ExperimentResult] | None = None, metric: str = "val_loss"):
    """Plot the saved full-size results of ``name`` (if any) and the result of ``run_quick()`` (if given).

    Chapters end with ``optlib.show_experiment("ch09_adam", lambda: optlib.compare_optimizers(...))``:
    the reader sees the full-size numbers with a note saying where, when and how long they ran,
    then their own run, then (see :func:`compare_sizes`) the two side by side and whether their
    rankings agree. Shows each summary table (HTML in a notebook) and returns the live result (or
    the saved one when nothing ran).
    """
    import matplotlib.pyplot as plt
    from IPython.display import display

    record = load_results(name)
    saved = None
    if record is not None:
        saved = ExperimentResult.from_dict(record["payload"])
        print(results_note(record))
    else:
        print(missing_results_note(name))
    live = run_quick() if run_quick is not None else None
    if live is not None and not isinstance(live, ExperimentResult):
        raise ValueError(f"Invalid run_quick: it returned {type(live).__name__}; it must return an ExperimentResult")
    panels = [
        (r, t)
        for r, t in ((saved, "saved full-size run"), (live, f"this run ({live.size} size)" if live else ""))
        if r is not None
    ]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6.0 * len(panels), 4.0), squeeze=False)
    for ax, (result, caption) in zip(axes[0], panels):
        result.plot(metric, ax=ax, title=f"{result.config.get('data', result.name)}: {caption}")
        print(f"\n{caption}:")
        display(result.summary())
    if saved is not None:
        fig.suptitle(results_note(record), fontsize=9)
    fig.tight_layout()
    plt.show()
    if saved is not None and live is not None and live.size != saved.size:
        comparison = compare_sizes(saved, live)
        display(comparison.table)
        print(comparison.verdict)
    return live if live is not None else saved


@dataclass
class SizeComparison:
    """The saved full-size run beside a live run: a table and a sentence on whether their rankings agree."""

    table: object  # a pandas DataFrame, one row per optimizer
    full_ranking: list[str]
    live_ranking: list[str]

    @property
    def agree(self) -> bool:
        return self.full_ranking == self.live_ranking

    @property
    def verdict(self) -> str:
        if len(self.full_ranking) < 2:
            return "(one optimizer: nothing to rank)"
        order = lambda ranking: " < ".join(ranking)
        if self.agree:
            return f"Ranked by final validation loss, both sizes agree: {order(self.full_ranking)}."
        return (
            f"The sizes disagree. Ranked by final validation loss, the full size gives {order(self.full_ranking)}, "
            f"this run {order(self.live_ranking)}. The full-size ranking, with more data, steps and seeds, "
            f"is the one to trust; where the text above reads this run, it describes the quick size only."
        )


def compare_sizes(saved: ExperimentResult, live: ExperimentResult) -> SizeComparison:
    """Each optimizer's final validation loss (and accuracy) in the saved run and in the live one, ranked."""
    import pandas as pd

    full_rows = {row["optimizer"]: row for row in saved.summary()}
    live_rows = {row["optimizer"]: row for row in live.summary()}
    labels = [label for label in full_rows if label in live_rows]
    rank = lambda rows: sorted(labels, key=lambda label: _nan_last(rows[label]["val_loss_mean"]))
    full_ranking, live_ranking = rank(full_rows), rank(live_rows)
    has_accuracy = any(not math.isnan(full_rows[label]["val_accuracy_mean"]) for label in labels)
    n_full, n_live = len(saved.seeds), len(live.seeds)
    table = []
    for label in labels:
        row = {"optimizer": label}
        for size, rows, ranking, n in (
            (saved.size, full_rows, full_ranking, n_full),
            (live.size, live_rows, live_ranking, n_live),
        ):
            r = rows[label]
            row[f"{size}: val loss ({n} seed{'s' if n > 1 else ''})"] = _pm(
                r["val_loss_mean"], r["val_loss_std"], "{:.4f}"
            )
            if has_accuracy:
                row[f"{size}: val accuracy"] = _pm(r["val_accuracy_mean"], r["val_accuracy_std"], "{:.3f}")
            row[f"{size}: rank"] = ranking.index(label) + 1
        table.append(row)
    return SizeComparison(pd.DataFrame(table).set_index("optimizer"), full_ranking, live_ranking)


def _nan_last(value: float) -> float:
    return math.inf if math.isnan(value) else value
