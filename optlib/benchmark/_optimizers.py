"""The optimizers the benchmark compares, each with the learning rate its grid is centred on."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import torch

__all__ = ["OptimizerSpec", "OPTIMIZERS", "available_optimizers"]


@dataclass(frozen=True)
class OptimizerSpec:
    """One contender: how to build it and where its learning-rate grid is centred.

    ``default_lr`` is the conventional default the grid is centred on (torch's
    default where torch has one). Every other hyperparameter stays at the
    class's default: the benchmark tunes the learning rate only, the same way
    for every optimizer.
    """

    name: str
    default_lr: float
    source: str  # "optlib" or the peer package's import name
    attr: str  # class name in that package
    kwargs: dict = field(default_factory=dict)
    note: str = ""
    # Schedule-Free keeps two sequences of weights; it must be told when the
    # model is trained and when it is evaluated.
    needs_train_eval: bool = False

    @property
    def is_peer(self) -> bool:
        return self.source != "optlib"

    def load_class(self) -> type[torch.optim.Optimizer]:
        """The optimizer class; ImportError when a peer package is not installed."""
        if self.is_peer:
            module = importlib.import_module(self.source)
            return getattr(module, self.attr)
        return _optlib_class(self.attr)

    def build(self, params, lr: float) -> torch.optim.Optimizer:
        return self.load_class()(params, lr=lr, **self.kwargs)


def _optlib_class(attr: str) -> type[torch.optim.Optimizer]:
    # No fallback to torch.optim: a benchmark of optlib must fail loudly, not
    # quietly measure something else, when optlib.optim cannot be imported.
    from optlib import optim

    return getattr(optim, attr)


# Grids are centred on each method's conventional learning rate. SGD with
# momentum 0.9 takes steps of about lr / (1 - 0.9) = 10 lr once the velocity has
# built up, so its centre is a tenth of plain SGD's.
OPTIMIZERS: dict[str, OptimizerSpec] = {
    spec.name: spec
    for spec in (
        OptimizerSpec("SGD", 1e-1, "optlib", "SGD"),
        OptimizerSpec("Momentum", 1e-2, "optlib", "SGD", {"momentum": 0.9}, "SGD, momentum=0.9"),
        OptimizerSpec(
            "Nesterov", 1e-2, "optlib", "SGD", {"momentum": 0.9, "nesterov": True}, "SGD, momentum=0.9, nesterov=True"
        ),
        OptimizerSpec("Adagrad", 1e-2, "optlib", "Adagrad"),
        OptimizerSpec("RMSprop", 1e-2, "optlib", "RMSprop"),
        OptimizerSpec("Adam", 1e-3, "optlib", "Adam"),
        OptimizerSpec("AdamW", 1e-3, "optlib", "AdamW", note="weight_decay=1e-2 (default)"),
        OptimizerSpec("NAdam", 2e-3, "optlib", "NAdam"),
        OptimizerSpec("NesterovAdamW", 1e-3, "optlib", "NesterovAdamW", note="the course's combined method"),
        OptimizerSpec("Adan", 1e-3, "pytorch_optimizer", "Adan", note="peer: pytorch-optimizer (Xie et al. 2022)"),
        OptimizerSpec(
            "ScheduleFreeAdamW",
            2.5e-3,
            "schedulefree",
            "AdamWScheduleFree",
            note="peer: schedulefree (Defazio et al. 2024)",
            needs_train_eval=True,
        ),
    )
}


def available_optimizers(names=None, *, verbose: bool = True) -> tuple[list[OptimizerSpec], dict[str, str]]:
    """The specs to run, and ``{name: reason}`` for the peers skipped because their package is missing."""
    if names is None:
        names = list(OPTIMIZERS)
    unknown = [n for n in names if n not in OPTIMIZERS]
    if unknown or not names:
        raise ValueError(f"Invalid optimizers: {unknown or names!r}; choose from {', '.join(OPTIMIZERS)}")
    specs, skipped = [], {}
    for name in names:
        spec = OPTIMIZERS[name]
        if spec.is_peer:
            try:
                spec.load_class()
            except ImportError as err:
                reason = f"package {spec.source!r} is not installed ({err}); pip install 'optlib[peers]' to include it"
                skipped[name] = reason
                if verbose:
                    print(f"Skipping {name}: {reason}")
                continue
        specs.append(spec)
    return specs, skipped
