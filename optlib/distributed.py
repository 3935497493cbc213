r"""optlib's optimizers across processes: data parallelism, ZeRO-1 and FSDP2 under ``torch.distributed``.

An optlib optimizer is a ``torch.optim.Optimizer``, so the engines that train beyond one
device take it as they take torch's own. This module runs them on N processes of one
machine, on the CPU, with the gloo backend over the loopback interface (127.0.0.1), so a
notebook can show in seconds who holds what under each strategy:

==========  ============================================  ===========  ==========  ===============
strategy    engine                                        parameters   gradients   optimizer state
==========  ============================================  ===========  ==========  ===============
``ddp``     ``DistributedDataParallel``                   all          all         all
``zero1``   DDP + ``ZeroRedundancyOptimizer`` (ZeRO-1)    all          all         1/N
``fsdp``    FSDP2 ``fully_shard`` (ZeRO-3, DTensors)      1/N          1/N         1/N
==========  ============================================  ===========  ==========  ===============

(``single``, one process with no wrapper, is the reference the others must reproduce.)
Every strategy gives each process 1/N of each global batch and averages the gradients,
so N processes follow the trajectory of one process on the whole batch, up to the
rounding of the reductions; the tests check it for every optimizer of the course.

* :func:`sharding_demo` trains a chapter model under one strategy and returns, per rank,
  the bytes of parameters, gradients and optimizer state it holds, and the loss;
  :func:`compare_sharding` does it for several strategies in one start of the processes.
* :func:`run_on_processes` spawns N processes, runs a module-level worker in each and
  collects what each returns; :func:`train_runs` is such a worker.
* :func:`train_distributed` is the training run itself, for a process already in a process group
  (under ``torchrun``, or inside a worker). It can save a ``torch.distributed.checkpoint``
  mid-run and resume from one in fresh processes.
* ``python -m optlib.distributed --nproc 2 --strategy fsdp --optimizer NesterovAdamW --steps 20``
  is the launcher; it also runs under ``torchrun`` (it reads ``RANK`` and ``WORLD_SIZE``).

Sources: S. Rajbhandari, J. Rasley, O. Ruwase and Y. He, "ZeRO: Memory Optimizations
Toward Training Trillion Parameter Models", SC 2020, https://arxiv.org/abs/1910.02054;
Y. Zhao et al., "PyTorch FSDP: Experiences on Scaling Fully Sharded Data Parallel",
VLDB 2023, https://arxiv.org/abs/2304.11277.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DEMO_HYPERPARAMETERS",
    "STRATEGIES",
    "compare_sharding",
    "distribute",
    "full_parameters",
    "gradient_bytes",
    "local_nbytes",
    "optimizer_state_bytes",
    "parameter_bytes",
    "run_on_processes",
    "sharding_demo",
    "train_distributed",
    "train_runs",
]

STRATEGIES = ("single", "ddp", "zero1", "fsdp")
"""``single`` is one process without a wrapper (the reference); the others need a process group."""

# Settings under which 20 steps on the digits MLP make progress without diverging, so the
# comparisons in the tests are between trajectories that move.
DEMO_HYPERPARAMETERS: dict[str, dict[str, float]] = {
    "SGD": {"lr": 0.1, "momentum": 0.9},
    "Adagrad": {"lr": 0.05},
    "RMSprop": {"lr": 3e-3},
    "Adam": {"lr": 1e-2},
    "AdamW": {"lr": 1e-2, "weight_decay": 1e-2},
    "NAdam": {"lr": 1e-2},
    "NesterovAdamW": {"lr": 1e-2, "weight_decay": 1e-2},
}


# --------------------------------------------------------------------------- processes


def _loopback_interface() -> str | None:
    """The name of the loopback interface ('lo' on Linux, 'lo0' on macOS), None if unknown."""
    try:
        names = [name for _, name in socket.if_nameindex()]
    except (AttributeError, OSError):
        return None
    return next((name for name in names if name in ("lo", "lo0")), None)


def _keep_gloo_on_loopback() -> None:
    # Gloo picks its network interface from the host name, which may resolve to a real
    # network card; the course's processes all live on one machine and must not listen there.
    interface = _loopback_interface()
    if interface is not None:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", interface)


def _check_world_size(world_size) -> int:
    if isinstance(world_size, bool) or not isinstance(world_size, int) or not 1 <= world_size <= 64:
        raise ValueError(f"Invalid world_size: {world_size!r}; world_size must be an integer in [1, 64]")
    return world_size


def _check_importable(worker: Callable) -> None:
    """Spawned processes find the worker by module and name, so it must be importable."""
    if not callable(worker):
        raise TypeError(f"Invalid worker: {worker!r}; worker must be a function")
    qualname = getattr(worker, "__qualname__", "")
    module = sys.modules.get(getattr(worker, "__module__", None) or "")
    if "<locals>" in qualname or "<lambda>" in qualname or module is None:
        raise ValueError(
            f"Invalid worker: {qualname or worker!r}; worker must be a function defined at the top level "
            "of a module, because each spawned process imports it by name"
        )
    if module.__name__ == "__main__" and not getattr(module, "__file__", None):
        raise ValueError(
            f"Invalid worker: {qualname}; functions defined in a notebook or an interactive session cannot "
            "be imported by spawned processes: put the worker in a .py module (optlib.distributed.train_runs "
            "is one) and import it from there"
        )


def _process_entry(
    rank: int, world_size: int, backend: str, worker: Callable, args: tuple, out_dir: str, timeout_s: float
) -> None:
    """What each spawned process runs: join the process group, run the worker, save its result."""
    import torch.distributed as dist

    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world_size)
    )
    _keep_gloo_on_loopback()
    if "OMP_NUM_THREADS" not in os.environ:
        # N processes share the machine's cores; more threads each would oversubscribe it.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    # The processes meet through a file rather than a TCP store: torch's TCP store server
    # listens on every network interface, whatever address it is given.
    dist.init_process_group(
        backend,
        init_method=f"file://{Path(out_dir) / 'rendezvous'}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    try:
        result = worker(rank, world_size, *args)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    torch.save(result, Path(out_dir) / f"rank{rank}.pt")


def run_on_processes(
    worker: Callable, world_size: int = 2, args: Sequence = (), *, backend: str = "gloo", timeout_s: float = 300.0
) -> list:
    """Run ``worker(rank, world_size, *args)`` in ``world_size`` new processes; return their results by rank.

    Each process joins one process group (``backend``, gloo by default so that it runs on
    the CPU). The processes meet through a file in a temporary folder, and gloo is kept on
    the loopback interface (127.0.0.1), so nothing listens on the network. They are
    *spawned* (fresh Python interpreters), which works from scripts, pytest and notebooks
    alike, at the price that ``worker`` must be a function at the top level of an
    importable module (not one defined in a notebook cell) and ``args`` must be picklable.
    What the worker returns must be picklable by ``torch.save``; a worker that raises makes
    this call raise with the worker's traceback (the other processes are stopped).

    Example::

        results = run_on_processes(optlib.distributed.train_runs, 2, args=([{"strategy": "fsdp"}],))
    """
    import torch.distributed as dist
    import torch.multiprocessing as mp

    _check_world_size(world_size)
    _check_importable(worker)
    if not dist.is_available():
        raise RuntimeError("this build of torch has no torch.distributed; install a build that has it")
    if not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise ValueError(f"Invalid timeout_s: {timeout_s!r}; timeout_s must be a number > 0")
    with tempfile.TemporaryDirectory(prefix="optlib_distributed_") as out_dir:
        mp.start_processes(
            _process_entry,
            args=(world_size, backend, worker, tuple(args), out_dir, float(timeout_s)),
            nprocs=world_size,
            join=True,
            start_method="spawn",
        )
        # Our own files, just written by our own workers: safe to unpickle.
        return [torch.load(Path(out_dir) / f"rank{rank}.pt", weights_only=False) for rank in range(world_size)]


# --------------------------------------------------------------------------- who holds what


def _dtensor_class():
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # torch < 2.4 has no public DTensor, so no tensor here is one
        return None
    return DTensor


def _local(t: Tensor) -> Tensor:
    """The part of ``t`` this process stores: the local shard of a DTensor, else ``t`` itself."""
    dtensor = _dtensor_class()
    return t.to_local() if dtensor is not None and isinstance(t, dtensor) else t


def local_nbytes(t: Tensor) -> int:
    """The bytes of ``t`` held by this process (for a DTensor, its local shard only)."""
    local = _local(t)
    return local.numel() * local.element_size()


def parameter_bytes(model: nn.Module) -> int:
    """The bytes of parameters this process holds (a shard of each under FSDP)."""
    return sum(local_nbytes(p) for p in model.parameters())


def gradient_bytes(model: nn.Module) -> int:
    """The bytes of gradients this process holds (0 after ``zero_grad(set_to_none=True)``)."""
    return sum(local_nbytes(p.grad) for p in model.parameters() if p.grad is not None)


def _local_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The optimizer that owns this process's state: ZeRO keeps it in ``.optim``, for its shard."""
    from torch.distributed.optim import ZeroRedundancyOptimizer

    return optimizer.optim if isinstance(optimizer, ZeroRedundancyOptimizer) else optimizer


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """The bytes of optimizer state (moments, momentum buffers, step counters) this process holds.

    Under ZeRO-1 that is the state of the parameters this rank is assigned; under FSDP the
    local shards of the state, which has the parameters' (sharded) layout.
    """
    state = _local_optimizer(optimizer).state
    return sum(local_nbytes(v) for per_param in state.values() for v in per_param.values() if torch.is_tensor(v))


def full_parameters(model: nn.Module) -> dict[str, Tensor]:
    """Every parameter, whole (gathered from all ranks under FSDP), by its name in the unwrapped model.

    Collective under FSDP: every rank must call it.
    """
    dtensor = _dtensor_class()
    out = {}
    for name, p in model.named_parameters():
        whole = p.full_tensor() if dtensor is not None and isinstance(p, dtensor) else p
        out[name.removeprefix("module.")] = whole.detach().clone()
    return out


# --------------------------------------------------------------------------- strategies


def _optimizer_class(optimizer: str | type) -> type:
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        return optimizer
    from . import optim

    if not isinstance(optimizer, str) or optimizer not in optim.__all__:
        raise ValueError(
            f"Invalid optimizer: {optimizer!r}; optimizer must be one of {sorted(optim.__all__)} "
            "or a torch.optim.Optimizer subclass"
        )
    return getattr(optim, optimizer)


def _check_strategy(strategy) -> str:
    if strategy not in STRATEGIES:
        raise ValueError(f"Invalid strategy: {strategy!r}; strategy must be one of {list(STRATEGIES)}")
    return strategy


def _require_process_group(strategy: str) -> None:
    import torch.distributed as dist

    if strategy != "single" and not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            f"strategy {strategy!r} needs a process group: call torch.distributed.init_process_group "
            "first, or run through optlib.distributed.run_on_processes or torchrun"
        )


def distribute(
    model: nn.Module, strategy: str, optimizer: str | type = "AdamW", **hyperparameters
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """Wrap ``model`` for ``strategy`` and build the optimizer that goes with it.

    * ``single``: the model as it is, the optimizer on all its parameters.
    * ``ddp``: ``DistributedDataParallel(model)``, whose backward all-reduces (averages) the
      gradients, and the optimizer on all parameters, on every rank.
    * ``zero1``: DDP for the gradients, and ``ZeroRedundancyOptimizer`` with
      ``optimizer_class=optimizer``: each rank's optimizer steps only the parameters it is
      assigned (whole tensors, balanced by size), then broadcasts them to the others.
    * ``fsdp``: FSDP2's ``fully_shard`` on every ``nn.Linear`` and on the model: parameters,
      gradients and optimizer state become DTensors sharded along dimension 0; each layer's
      parameters are gathered just before it runs and freed after.

    Needs an initialised process group except for ``single``. ``optimizer`` is an optlib
    name (``"NesterovAdamW"``) or an optimizer class; ``hyperparameters`` go to its constructor.
    """
    import torch.distributed as dist

    _check_strategy(strategy)
    optimizer_class = _optimizer_class(optimizer)
    _require_process_group(strategy)
    if strategy == "single":
        return model, optimizer_class(model.parameters(), **hyperparameters)
    if strategy in ("ddp", "zero1"):
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model)
        if strategy == "ddp":
            return model, optimizer_class(model.parameters(), **hyperparameters)
        from torch.distributed.optim import ZeroRedundancyOptimizer

        return model, ZeroRedundancyOptimizer(model.parameters(), optimizer_class=optimizer_class, **hyperparameters)
    try:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard
    except ImportError as err:
        raise RuntimeError(
            f"strategy 'fsdp' needs FSDP2 (torch.distributed.fsdp.fully_shard, torch >= 2.6); "
            f"this torch is {torch.__version__}"
        ) from err
    device_type = next(model.parameters()).device.type
    mesh = init_device_mesh(device_type, (dist.get_world_size(),))
    # One FSDP unit per layer, so only one layer is ever gathered whole at a time.
    for module in model.modules():
        if isinstance(module, nn.Linear):
            fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model, optimizer_class(model.parameters(), **hyperparameters)


# --------------------------------------------------------------------------- training


def _load_chapter_data() -> tuple[Tensor, Tensor]:
    from .data import load_digits

    splits = load_digits()
    return splits.X_train, splits.y_train


def _batch(X: Tensor, y: Tensor, step: int, batch_size: int, seed: int, rank: int, world_size: int):
    """This rank's share of global batch number ``step``: the same for every rank count and any restart."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    indices = torch.randperm(len(X), generator=generator)[:batch_size]
    share = batch_size // world_size
    mine = indices[rank * share : (rank + 1) * share]
    return X[mine], y[mine]


def _checkpoint_state(model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> dict:
    """What a checkpoint holds, in DCP's form: model and optimizer state by parameter name, and the step.

    For ZeRO-1 the optimizer part is this rank's local optimizer, so each rank saves (and later
    loads) only the state of its own parameters.
    """
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optimizer_state = get_state_dict(model, _local_optimizer(optimizer))
    return {"model": model_state, "optimizer": optimizer_state, "step": torch.tensor(step)}


def _save_checkpoint(path: Path, model, optimizer, step: int) -> None:
    import torch.distributed.checkpoint as dcp

    dcp.save(_checkpoint_state(model, optimizer, step), checkpoint_id=str(path))


def _load_checkpoint(path: Path, model, optimizer) -> int:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    # get_state_dict gives the layout to load into (it creates an empty optimizer state first).
    state = _checkpoint_state(model, optimizer, 0)
    dcp.load(state, checkpoint_id=str(path))
    set_state_dict(
        model, _local_optimizer(optimizer), model_state_dict=state["model"], optim_state_dict=state["optimizer"]
    )
    return int(state["step"])


def _check_count(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"Invalid {name}: {value!r}; {name} must be an integer >= {low}")
    return value


def train_distributed(
    strategy: str,
    optimizer: str | type = "AdamW",
    *,
    steps: int = 5,
    hidden: Sequence[int] = (64, 64),
    batch_size: int = 64,
    seed: int = 0,
    data: tuple[Tensor, Tensor] | None = None,
    hyperparameters: dict | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    save_at: int | None = None,
    resume: bool = False,
    return_parameters: bool = False,
) -> dict:
    """Train the chapter MLP on digits for ``steps`` steps under ``strategy``, in this process's group.

    Global batch ``t`` is ``batch_size`` samples drawn by a generator seeded with
    ``(seed, t)``; rank ``r`` of ``N`` takes its ``r``-th ``batch_size / N`` of them, so the
    run is the same whatever ``N`` and from wherever it resumes. The loss is the mean
    cross-entropy of the local share, and every strategy averages the gradients over the
    ranks: the step is the one a single process would take on the whole batch.

    Args:
        strategy: one of :data:`STRATEGIES`.
        optimizer: an optlib optimizer name or a ``torch.optim.Optimizer`` subclass.
        steps: the number of the last step (>= 1); a resumed run continues up to it.
        hidden: the MLP's hidden widths (64 inputs, 10 classes).
        batch_size: the global batch size, a multiple of the number of processes.
        seed: seeds the model's initial weights and the batches.
        data: ``(X, y)`` to train on instead of scikit-learn's digits (64 features, 10 classes).
        hyperparameters: the optimizer's keyword arguments (default
            :data:`DEMO_HYPERPARAMETERS` for optlib names, else the class's defaults).
        checkpoint_dir: where a ``torch.distributed.checkpoint`` is saved (``save_at``)
            or loaded (``resume``).
        save_at: save a checkpoint after this step (1 <= save_at <= steps); training goes on.
        resume: load the checkpoint in ``checkpoint_dir`` (model, optimizer state, step) and
            continue from its step.
        return_parameters: add the whole final parameters (gathered under FSDP) to the result.

    Returns:
        A dict: ``rank``, ``world_size``, ``strategy``, ``optimizer``, ``start_step``,
        ``steps``; ``losses`` (the global batch's mean loss at each step taken, averaged over
        the ranks); ``final_loss``; this rank's ``parameter_bytes``, ``gradient_bytes``
        (after the last backward) and ``optimizer_state_bytes``; ``model_parameter_bytes``
        (the whole model's); and ``parameters`` when asked.
    """
    import torch.distributed as dist

    from .models import MLP

    _check_strategy(strategy)
    _check_count("steps", steps, 1)
    _check_count("batch_size", batch_size, 1)
    _check_count("seed", seed, 0)
    distributed = strategy != "single"
    _require_process_group(strategy)
    rank = dist.get_rank() if distributed else 0
    world_size = dist.get_world_size() if distributed else 1
    if batch_size % world_size:
        raise ValueError(
            f"Invalid batch_size: {batch_size}; batch_size must be a multiple of the number of "
            f"processes ({world_size}), so that every rank's share weighs the same"
        )
    if save_at is not None:
        _check_count("save_at", save_at, 1)
        if save_at > steps:
            raise ValueError(f"Invalid save_at: {save_at}; save_at must be in [1, steps={steps}]")
    if (save_at is not None or resume) and checkpoint_dir is None:
        raise ValueError("Invalid checkpoint_dir: None; save_at and resume need a checkpoint_dir")
    if hyperparameters is None:
        hyperparameters = dict(DEMO_HYPERPARAMETERS.get(optimizer, {})) if isinstance(optimizer, str) else {}
    X, y = data if data is not None else _load_chapter_data()

    model = MLP(X[0].numel(), tuple(hidden), int(y.max()) + 1, seed=seed)
    model_bytes = parameter_bytes(model)
    model, opt = distribute(model, strategy, optimizer, **hyperparameters)
    start = _load_checkpoint(Path(checkpoint_dir), model, opt) if resume else 0
    if start > steps:
        raise ValueError(f"Invalid steps: {steps}; the checkpoint is at step {start} already")

    losses, grad_bytes = [], 0
    for step in range(start, steps):
        xb, yb = _batch(X, y, step, batch_size, seed, rank, world_size)
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        grad_bytes = gradient_bytes(model)
        opt.step()
        opt.zero_grad(set_to_none=True)
        mean_loss = loss.detach().clone()
        if distributed:
            dist.all_reduce(mean_loss)  # gloo has no AVG: sum, then divide
            mean_loss /= world_size
        losses.append(mean_loss.item())
        if not math.isfinite(losses[-1]):
            raise FloatingPointError(
                f"training diverged at step {step + 1} (loss = {losses[-1]}) with "
                f"{hyperparameters}: lower the learning rate"
            )
        if save_at == step + 1:
            _save_checkpoint(Path(checkpoint_dir), model, opt, step + 1)

    result = {
        "rank": rank,
        "world_size": world_size,
        "strategy": strategy,
        "optimizer": optimizer if isinstance(optimizer, str) else optimizer.__name__,
        "start_step": start,
        "steps": steps,
        "losses": losses,
        "final_loss": losses[-1] if losses else float("nan"),
        "parameter_bytes": parameter_bytes(model),
        "gradient_bytes": grad_bytes,
        "optimizer_state_bytes": optimizer_state_bytes(opt),
        "model_parameter_bytes": model_bytes,
    }
    if return_parameters:
        result["parameters"] = full_parameters(model)
    return result


def train_runs(
    rank: int, world_size: int, runs: Sequence[dict], data: tuple[Tensor, Tensor] | None = None
) -> list[dict]:
    """A worker for :func:`run_on_processes`: :func:`train_distributed` with each dict of keyword arguments in turn.

    Training several optimizers in one set of processes saves starting Python and torch
    again for each. ``data`` is passed to every run that gives none, so that the parent
    loads the data set once.
    """
    return [train_distributed(**{"data": data, **run}) for run in runs]


def sharding_demo(
    strategy: str, optimizer: str = "AdamW", world_size: int = 2, steps: int = 5, **train_kwargs
) -> list[dict]:
    """Train the chapter MLP on ``world_size`` CPU processes under ``strategy``; report who holds what.

    Starts ``world_size`` fresh processes (gloo on 127.0.0.1; a few seconds, most of it
    starting Python and torch), trains the digits MLP (64 -> 64 -> 64 -> 10) with the optlib
    optimizer named for ``steps`` steps on global batches of 64, and returns one dict per
    rank, in rank order, with:

    * ``parameter_bytes``, ``gradient_bytes``, ``optimizer_state_bytes``: what this rank holds;
    * ``model_parameter_bytes``: the whole model's parameters, for comparison;
    * ``final_loss`` and ``losses``: the global batch's loss (equal on every rank);
    * ``rank``, ``world_size``, ``strategy``, ``optimizer``, ``steps``.

    Under ``ddp`` every rank holds everything; under ``zero1`` each holds about
    1/``world_size`` of the optimizer state; under ``fsdp`` also of the parameters and
    gradients. ``strategy`` is ``"ddp"``, ``"zero1"`` or ``"fsdp"``; ``train_kwargs`` go to
    :func:`train_distributed` (``hidden``, ``batch_size``, ``seed``, ``hyperparameters``, ...).

    Example::

        import pandas as pd
        pd.DataFrame(optlib.sharding_demo("fsdp", "NesterovAdamW"))[
            ["rank", "parameter_bytes", "optimizer_state_bytes", "final_loss"]]
    """
    if strategy not in STRATEGIES[1:]:
        raise ValueError(f"Invalid strategy: {strategy!r}; strategy must be one of {list(STRATEGIES[1:])}")
    return compare_sharding((strategy,), optimizer, world_size, steps, **train_kwargs)


def compare_sharding(
    strategies: Sequence[str] = ("ddp", "zero1", "fsdp"),
    optimizer: str = "AdamW",
    world_size: int = 2,
    steps: int = 5,
    **train_kwargs,
) -> list[dict]:
    """:func:`sharding_demo` for several strategies, in one start of the processes.

    Starting Python and torch is most of a demo's time, so comparing the strategies this way
    costs about as much as one of them. Returns the dicts of :func:`sharding_demo`, strategy
    by strategy, rank by rank.
    """
    strategies = list(strategies)
    if not strategies or any(s not in STRATEGIES[1:] for s in strategies):
        raise ValueError(f"Invalid strategies: {strategies!r}; each must be one of {list(STRATEGIES[1:])}")
    _optimizer_class(optimizer)
    _check_world_size(world_size)
    _check_count("steps", steps, 1)
    data = train_kwargs.pop("data", None) or _load_chapter_data()
    runs = [{"strategy": s, "optimizer": optimizer, "steps": steps, **train_kwargs} for s in strategies]
    per_rank = run_on_processes(train_runs, world_size, args=(runs, data))
    return [per_rank[rank][i] for i in range(len(runs)) for rank in range(world_size)]


# --------------------------------------------------------------------------- launcher


def _kilobytes(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"


def _report(results: Sequence[dict]) -> str:
    first = results[0]
    lines = [
        (
            f"{first['optimizer']} under {first['strategy']} on {first['world_size']} processes, steps "
            f"{first['start_step'] + 1}-{first['steps']}; the whole model's parameters: "
            f"{_kilobytes(first['model_parameter_bytes'])}"
        ),
        f"{'rank':>4}  {'parameters':>12}  {'gradients':>12}  {'optimizer state':>15}  {'final loss':>10}",
    ]
    for r in results:
        lines.append(
            f"{r['rank']:>4}  {_kilobytes(r['parameter_bytes']):>12}  {_kilobytes(r['gradient_bytes']):>12}  "
            f"{_kilobytes(r['optimizer_state_bytes']):>15}  {r['final_loss']:>10.4f}"
        )
    total_state = sum(r["optimizer_state_bytes"] for r in results)
    lines.append(f"optimizer state on all ranks together: {_kilobytes(total_state)}")
    return "\n".join(lines)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m optlib.distributed",
        description="Train the course's digits MLP with an optlib optimizer on N CPU processes "
        "(gloo on 127.0.0.1) and print what each rank holds. Also runs under torchrun, "
        "which then decides the number of processes.",
    )
    parser.add_argument("--nproc", type=int, default=2, help="number of processes (default 2; ignored under torchrun)")
    parser.add_argument("--strategy", choices=STRATEGIES[1:], default="fsdp")
    parser.add_argument("--optimizer", default="NesterovAdamW", choices=sorted(DEMO_HYPERPARAMETERS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64, help="global batch size, a multiple of the process count")
    parser.add_argument(
        "--lr", type=float, default=None, help="learning rate (default: the module's per-optimizer default)"
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """The launcher: ``python -m optlib.distributed --nproc 2 --strategy fsdp --optimizer NesterovAdamW --steps 20``.

    Under ``torchrun`` (``RANK`` and ``WORLD_SIZE`` set) each process joins the group torchrun
    set up (``torchrun --nproc-per-node 2 --master-addr 127.0.0.1 -m optlib.distributed ...``)
    and rank 0 prints; otherwise this process spawns ``--nproc`` processes itself.
    """
    import torch.distributed as dist

    args = _parse(argv)
    hyperparameters = dict(DEMO_HYPERPARAMETERS[args.optimizer])
    if args.lr is not None:
        hyperparameters["lr"] = args.lr
    options = {"batch_size": args.batch_size, "seed": args.seed, "hyperparameters": hyperparameters}
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        _keep_gloo_on_loopback()
        dist.init_process_group("gloo")
        try:
            result = train_distributed(args.strategy, args.optimizer, steps=args.steps, **options)
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, result)
        finally:
            dist.destroy_process_group()
        if result["rank"] == 0:
            print(_report(gathered), flush=True)
        return gathered
    results = compare_sharding((args.strategy,), args.optimizer, args.nproc, args.steps, **options)
    print(_report(results), flush=True)
    return results


if __name__ == "__main__":
    # Run main from the module imported under its own name, so that the worker the spawned
    # processes import is optlib.distributed.train_runs, not __main__.train_runs.
    from optlib.distributed import main as _main

    _main()
