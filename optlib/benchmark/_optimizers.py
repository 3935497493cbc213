"""The optimizers the benchmark compares, each with the learning rate its grid is centred on."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["OptimizerSpec", "OPTIMIZERS", "available_optimizers", "MuonWithAdamW", "hidden_matrices"]

# Package extras that install every peer; the messages name it so that a rerun never drops one quietly.
PEERS_EXTRA = "pip install 'optlib[benchmark]'"


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
    # Muon updates only the hidden weight matrices: with this set, build_for_model
    # gives it those and AdamW (with ``aux_kwargs``) every other parameter, and the
    # optimizer is not applicable to a problem without hidden matrices.
    hidden_matrices_only: bool = False
    aux_kwargs: dict = field(default_factory=dict)

    @property
    def is_peer(self) -> bool:
        return self.source != "optlib"

    def load_class(self) -> type[torch.optim.Optimizer]:
        """The optimizer class; ImportError when a peer package (or a torch recent enough) is not installed."""
        if self.is_peer:
            module = importlib.import_module(self.source)
            try:
                return getattr(module, self.attr)
            except AttributeError:
                # torch.optim.Muon arrived in torch 2.9: an older torch is a missing dependency, not a bug.
                version = getattr(importlib.import_module(self.source.split(".")[0]), "__version__", "?")
                raise ImportError(f"{self.source}.{self.attr} is not in this version ({version})") from None
        return _optlib_class(self.attr)

    def build(self, params, lr: float) -> torch.optim.Optimizer:
        if self.hidden_matrices_only:
            raise ValueError(
                f"Invalid use of {self.name}: it needs the model, to give the hidden matrices to {self.attr} "
                f"and the rest to AdamW; call build_for_model(model, lr)"
            )
        return self.load_class()(params, lr=lr, **self.kwargs)

    def applies_to(self, model: nn.Module | None) -> bool:
        """Whether this optimizer has something to do on ``model`` (``None``: a bare test function)."""
        if not self.hidden_matrices_only:
            return True
        return model is not None and bool(hidden_matrices(model)[0])

    def build_for_model(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        """The optimizer over ``model``'s parameters (for Muon: hidden matrices to Muon, the rest to AdamW)."""
        if not self.hidden_matrices_only:
            return self.build(model.parameters(), lr)
        matrices, others = hidden_matrices(model)
        if not matrices:
            raise ValueError(
                f"Invalid model for {self.name}: {type(model).__name__} has no hidden weight matrix "
                f"(a 2-D weight of an nn.Linear other than the output layer)"
            )
        return MuonWithAdamW(matrices, others, lr, self.load_class(), self.kwargs, self.aux_kwargs)


def hidden_matrices(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(hidden, others)``: the weights of ``model``'s hidden ``nn.Linear`` layers, and every other parameter.

    Muon orthogonalises 2-D updates, which suits a layer mapping hidden features to
    hidden features. The output layer (the last ``nn.Linear`` registered), embeddings
    (also when an ``nn.Linear`` shares an embedding's weight, as a tied ``lm_head`` does),
    biases, norms and convolution kernels (3-D and 4-D, which ``torch.optim.Muon``
    rejects) are not such layers: they go to AdamW, as Muon's authors prescribe.
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    embedded = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    hidden_ids = {id(m.weight) for m in linears[:-1] if m.weight.ndim == 2 and id(m.weight) not in embedded}
    hidden, others = [], []
    for p in model.parameters():  # parameters() yields a shared (tied) weight once
        if p.requires_grad:
            (hidden if id(p) in hidden_ids else others).append(p)
    return hidden, others


class MuonWithAdamW(torch.optim.Optimizer):
    """Muon on the hidden matrices and AdamW on every other parameter, stepped as one optimizer.

    One learning rate drives both: Muon runs with ``adjust_lr_fn="match_rms_adamw"``,
    which scales its orthogonalised update to the RMS of an AdamW update (Liu et al.
    2025, "Muon is Scalable for LLM Training"), so that the learning rate and weight
    decay tuned for AdamW serve Muon too. ``param_groups`` are the two optimizers'
    groups (the same dicts), so a learning-rate scheduler moves both.
    """

    def __init__(self, matrices, others, lr: float, muon_class, muon_kwargs: dict, adamw_kwargs: dict):
        matrices, others = list(matrices), list(others)
        if not matrices:
            raise ValueError("Invalid matrices: empty; Muon needs at least one 2-D hidden weight matrix")
        self.muon = muon_class(matrices, lr=lr, **muon_kwargs)
        self.adamw = torch.optim.AdamW(others, lr=lr, **adamw_kwargs) if others else None
        super().__init__(matrices + others, {"lr": lr})
        # The scheduler and the training loop read and write param_groups: let them be the inner ones.
        self.param_groups = self.muon.param_groups + (self.adamw.param_groups if self.adamw else [])

    @property
    def _inner(self):
        return [o for o in (self.muon, self.adamw) if o is not None]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for opt in self._inner:
            opt.step()
        return loss

    def zero_grad(self, set_to_none: bool = True):
        for opt in self._inner:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict() if self.adamw else None}

    def load_state_dict(self, state_dict):
        self.muon.load_state_dict(state_dict["muon"])
        if self.adamw is not None:
            self.adamw.load_state_dict(state_dict["adamw"])


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
        # One learning rate for the Muon and the AdamW parts (match_rms_adamw), so its grid is
        # AdamW's; weight decay 0.01 on both, AdamW's default, so that it differs from AdamW
        # only in how the hidden matrices are updated.
        OptimizerSpec(
            "Muon",
            1e-3,
            "torch.optim",
            "Muon",
            {"adjust_lr_fn": "match_rms_adamw", "weight_decay": 1e-2},
            note="peer: torch.optim.Muon (Jordan et al. 2024) on the hidden matrices, AdamW on the rest",
            hidden_matrices_only=True,
            aux_kwargs={"weight_decay": 1e-2},
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
                reason = f"{spec.source}.{spec.attr} cannot be imported ({err}); {PEERS_EXTRA} to include it"
                skipped[name] = reason
                if verbose:
                    print(f"Skipping {name}: {reason}")
                continue
        specs.append(spec)
    return specs, skipped
