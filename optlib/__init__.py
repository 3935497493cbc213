"""optlib: the optimizers and experiment tools of the course *Optimization for Deep Learning*.

Every chapter imports this package. The optimizers are drop-in replacements for
their ``torch.optim`` counterparts::

    import optlib
    opt = optlib.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)

Names are loaded on first use from the submodule whose ``__all__`` lists them,
so ``import optlib`` stays fast and a notebook that only needs an optimizer
does not pay for matplotlib or scikit-learn.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# One idea per module; each lists its public names in __all__.
_SUBMODULES = (
    "optim",  # the optimizers (torch.optim.Optimizer subclasses)
    "problems",  # 2-D and n-D test functions
    "trajectory",  # run an optimizer on a test function, record its path
    "plotting",  # contour maps, loss curves, animations
    "widgets",  # live sliders in Jupyter, precomputed players on the website
    "device",  # device choice and quick/full experiment size
    "data",  # data sets with no download, checksummed files
    "models",  # the small networks the experiments train
    "schedules",  # warm-up + cosine learning-rate schedule
    "training",  # the training loop with progress bar and divergence detection
    "results",  # saved GPU results under data/results/
    "experiment",  # a chapter's closing experiment: optimizers compared on a model
    "benchmark",  # the course's benchmark: fair tuning, many seeds
    "scale",  # bytes moved per step and memory held per device, at scale
    "distributed",  # the optimizers under DDP, ZeRO-1 and FSDP2 on N processes
)

# Public name -> submodule, filled in as submodules are imported, in the order above.
_index: dict[str, str] = {}
_indexed: set[str] = set()


def _index_next() -> bool:
    """Import the next submodule not yet indexed and record its names; False when none is left."""
    for name in _SUBMODULES:
        if name in _indexed:
            continue
        _indexed.add(name)
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"{__name__}.{name}":
                continue  # a module not written yet must not break the others
            raise
        for public in getattr(module, "__all__", ()):
            _index.setdefault(public, name)
        return True
    return False


def __getattr__(attr: str):
    if attr in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{attr}")
    # Import submodules one at a time until one lists the name: optlib.AdamW loads
    # optlib.optim alone, and a script that only wants an optimizer pays only for it.
    while attr not in _index:
        if not _index_next():
            raise AttributeError(f"module 'optlib' has no attribute {attr!r}")
    return getattr(importlib.import_module(f"{__name__}.{_index[attr]}"), attr)


def __dir__():
    while _index_next():
        pass
    return sorted(set(globals()) | set(_index) | set(_SUBMODULES))
