"""The fused path: one compiled update for CHUNK parameters at a time, built with ``torch.compile``.

An optimizer step is memory-bound: an AdamW step reads θ, g, m, v and writes θ,
m, v, 28 bytes per float32 parameter, and does a handful of flops on each. The
loop and foreach paths run one kernel per operation, so they read and write the
same tensors about ten times. A fused step does every operation of the update in
one pass over memory. torch.optim hand-writes such a kernel per optimizer and
device; optlib writes the update of one parameter once, as ordinary tensor code,
and lets Inductor generate the kernel (a vectorised C++/OpenMP loop on the CPU, a
Triton kernel on CUDA).

These choices keep the compiled step fast and stable:

* one compiled call updates ``CHUNK`` (8) parameters, each flattened to 1-D, with
  dynamic shapes: one compilation serves every tensor size and every model, and
  Dynamo's fixed cost per call (its guards and wrappers, about 20 µs on a CPU) is
  paid once per 8 parameters instead of once per parameter. A first version compiled
  one call per parameter; at 10M parameters in 17 large tensors that fixed cost was
  about 0.4 ms of a 6.5 ms step. A single graph over all of a model's tensors would
  pay it once per step, but its compile time grows with the model (about 40 s for
  the 51 tensors of benchmarks/step_time.py), while a chunk of 8 compiles in about
  11 s (8 s for one parameter) on a 2-core CPU with an empty Inductor cache;
* the last chunk of a step is filled up with two-element zero tensors, so every
  call has the same arity; Dynamo's duck shaping is turned off, so that merely
  equal sizes (say, a bias and a norm's scale) do not become one symbol with a guard
  on their equality, which would compile again for every chunk of another pattern;
  the flat tensors are detached, not views, since Dynamo guards on a view's base;
* every hyperparameter enters as a 0-dim tensor, so a learning-rate scheduler
  changes a value, not the graph (a changed Python float would recompile);
* the per-parameter scalars that need a power (the bias corrections) are computed
  once per step for all parameters of a bucket, outside the kernel (inside it
  Inductor would recompute them for every vector of elements), and enter as one
  vector per chunk, read by index.

The booleans of an update (maximize, nesterov, amsgrad, ...) are specialised:
each combination in use compiles once per dtype.

A compiled call still costs about 3 µs per parameter (guards, Python-side
flattening), which is more than the update of a bias or a norm's scale. So in a
fused step the parameters under ``FUSED_MIN_NUMEL`` elements take the multi-tensor
path (one ``torch._foreach_*`` call per operation for all of them), and only the
large ones, which hold almost all the bytes, run the compiled kernel. What is left
between optlib's fused step and torch's hand-written one on a CPU is this per-step
Python (about 0.6–0.8 ms for 51 tensors, against torch's 0.2 ms) and, with one
thread, a kernel 8–12 % slower than torch's; with two threads the kernels are level
on a large tensor.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import time
from collections.abc import Callable

import torch
import torch.fx.experimental._config as fx_config
from torch import Tensor

__all__ = ["FUSED_MIN_NUMEL", "FusedKernel", "check_fused_device", "fused_scalars", "advance_steps", "compile_seconds"]

# Every (kernel, dtype, flags) combination is a compiled variant of the same code;
# Dynamo's default of 8 per function would run the rest eagerly.
_RECOMPILE_LIMIT = 64

_COMPILE_SECONDS: dict[str, float] = {}

# A private option of torch.fx (see FusedKernel.__call__); a torch without it compiles
# more often, not wrongly.
_NO_DUCK_SHAPES = {"use_duck_shape": False} if hasattr(fx_config, "use_duck_shape") else {}

#: Parameters with fewer elements than this take the multi-tensor path within a fused
#: step: a compiled call's fixed cost (Dynamo's wrappers, about 20 µs on a CPU) is more
#: than streaming 64K float32 elements through it. Tests set it to 0 (or the environment
#: variable, which spawned processes inherit) to compile every tensor.
FUSED_MIN_NUMEL = int(os.environ.get("OPTLIB_FUSED_MIN_NUMEL", 1 << 16))

#: Parameters one compiled call updates: a call's fixed cost (about 20 µs) is shared by
#: CHUNK parameters, while the compile time grows with CHUNK (about 8 s for 1, 11 s for 8
#: and 23 s for 16 on a 2-core CPU with an empty cache).
CHUNK = 8


def compile_seconds() -> dict[str, float]:
    """Seconds each compiled variant took on its first call in this process (compilation included)."""
    return dict(_COMPILE_SECONDS)


def _unavailable_reason(device: torch.device) -> str | None:
    from torch._inductor import config

    # Asked every step: looking for the compiler on PATH each time would cost more than a small update.
    return _unavailable_reason_cached(device.type, config.cpp.cxx)


@functools.cache
def _unavailable_reason_cached(device_type: str, cxx) -> str | None:
    device = torch.device(device_type)
    if device.type not in ("cpu", "cuda"):
        return f"it compiles for CPU and CUDA tensors only, and the parameters are on {device.type}"
    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile does not support this Python version or platform"
    if device.type == "cpu":
        compilers = cxx if isinstance(cxx, tuple) else (cxx,)
        if not any(c and shutil.which(c) for c in compilers):
            return f"Inductor needs a C++ compiler for CPU kernels and none of {compilers} is installed"
    else:
        from torch.utils._triton import has_triton

        if not has_triton():
            return "Inductor needs Triton for CUDA kernels and it is not installed"
    return None


def check_fused_device(optimizer_name: str, device: torch.device) -> None:
    """Raise RuntimeError, saying why and what to use instead, where the fused path cannot compile."""
    reason = _unavailable_reason(device)
    if reason is not None:
        raise RuntimeError(
            f"Invalid fused: optlib.{optimizer_name}(fused=True) builds its kernel with torch.compile, "
            f"but {reason}. Use foreach=True (or leave fused unset) instead."
        )


def opmath_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the kernel's scalars are kept in: float64 for float64 tensors, float32 otherwise.

    A bfloat16 β2 = 0.999 would round to 1.0 and v would never decay.
    """
    return torch.float64 if dtype == torch.float64 else torch.float32


def fused_scalars(device: torch.device, dtype: torch.dtype, **values: float) -> dict[str, Tensor]:
    """Hyperparameters as 0-dim tensors on ``device``: a new value is new data, not a recompile."""
    dtype = opmath_dtype(dtype)
    return {name: torch.tensor(float(value), dtype=dtype, device=device) for name, value in values.items()}


def advance_steps(steps: list[Tensor], dtype: torch.dtype) -> Tensor:
    """Add 1 to every step counter and return the counts as one vector in the kernel's scalar dtype."""
    torch._foreach_add_(steps, torch.ones((), dtype=steps[0].dtype, device=steps[0].device))
    return torch.stack(steps).to(opmath_dtype(dtype))


def _dense(t: Tensor) -> bool:
    """Whether t's elements fill one block of memory without gaps or overlaps (any dim order)."""
    expected = 1
    for stride, size in sorted((st, sz) for sz, st in zip(t.shape, t.stride()) if sz != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _local(t: Tensor | None) -> Tensor | None:
    """A DTensor's local shard (FSDP2 parameters), any other tensor unchanged.

    The update is elementwise and a parameter, its gradient and its state are sharded
    alike, so each rank updates its own shard in place; Dynamo cannot trace the
    DTensor wrapper with dynamic shapes.
    """
    # No DTensor exists unless torch.distributed.tensor was imported: no import here.
    dtensor = sys.modules.get("torch.distributed.tensor")
    if t is not None and dtensor is not None and isinstance(t, dtensor.DTensor):
        return t.to_local()
    return t


def _flat(row: tuple[Tensor | None, ...]) -> tuple[Tensor | None, ...] | None:
    """One parameter's tensors as 1-D tensors over their memory, or None where that is impossible.

    The update is elementwise, so only which elements pair up matters: tensors of one
    shape and one dense layout (contiguous, or e.g. all transposed alike) pair up
    element by element in memory order too. Flat tensors let one compiled kernel serve
    matrices, vectors and 0-dim parameters alike.

    They are detached, so that they are not views to Dynamo: it guards on a view's base
    (its number of dimensions and sizes), which would tell a weight matrix from a bias and
    compile again for each chunk of a different mix.
    """
    flat = []
    for t in row:  # the common case, all contiguous, in one pass: it runs for every parameter
        if t is None:
            flat.append(None)
        elif t.is_contiguous():
            # A vector needs no view, and detach() costs a third of view(-1).
            flat.append(t.detach() if t.dim() == 1 else t.view(-1).detach())
        else:
            break
    else:
        return tuple(flat)
    tensors = [t for t in row if t is not None]
    first = tensors[0]
    if not all(t.shape == first.shape and t.stride() == first.stride() for t in tensors):
        return None
    if not _dense(first):
        return None
    return tuple(None if t is None else t.as_strided((t.numel(),), (1,)).detach() for t in row)


class FusedKernel:
    """A per-parameter update function, compiled on first use to update ``CHUNK`` parameters per call.

    ``kernel(optimizer_name, [params, grads, *state], **scalars_and_flags)`` updates the
    tensors in place. Each keyword is a 0-dim tensor shared by every parameter, a bool
    flag, or one value per parameter: a 1-D tensor (a per-parameter scalar such as a
    bias correction) or a list (of bools or 0-dim tensors).
    """

    def __init__(self, update: Callable[..., None]) -> None:
        self.update = update
        self.name = update.__name__
        self._compiled: Callable[..., None] | None = None
        # Scratch rows that fill the last chunk of a step, by the layout of a row.
        self._padding: dict[tuple, list[tuple[Tensor | None, ...]]] = {}

    def _update_each(self, rows: list[tuple[Tensor | None, ...]], per_param: dict, shared: dict) -> None:
        """What one compiled call runs: the update of each row, unrolled into one graph."""
        for i, row in enumerate(rows):
            self.update(*row, **shared, **{name: values[i] for name, values in per_param.items()})

    def _pad(self, row: tuple[Tensor | None, ...], count: int) -> list[tuple[Tensor | None, ...]]:
        """``count`` rows of distinct two-element zero tensors laid out like ``row``.

        The update is elementwise and each row has tensors of its own, so what the scratch
        rows hold never reaches a parameter, and they are reused step after step. Distinct
        tensors, since Dynamo guards on which inputs are the same tensor; two elements,
        since it specialises a size of 0 or 1.
        """
        layout = tuple(None if t is None else (t.dtype, t.device) for t in row)
        rows = self._padding.setdefault(layout, [])
        while len(rows) < count:
            rows.append(tuple(None if t is None else torch.zeros(2, dtype=t.dtype, device=t.device) for t in row))
        return rows[:count]

    def __call__(self, optimizer_name: str, tensors: list[list[Tensor | None]], **kwargs) -> None:
        """Update every parameter; ``tensors`` are aligned lists (params, grads, state...)."""
        params = tensors[0]
        if not params:
            return
        check_fused_device(optimizer_name, params[0].device)
        if self._compiled is None:
            # dynamic_threads: the C++ loop asks OpenMP for its threads at run time. Otherwise
            # Inductor decides at compile time from the first tensor's size, and a kernel first
            # compiled for a bias vector would run single-threaded on every matrix after it.
            # size_asserts: Dynamo's guards already check every input's size and stride; the
            # wrapper's asserts would check them again, four tensors per parameter per step.
            self._compiled = torch.compile(
                self._update_each,
                fullgraph=True,
                dynamic=True,
                options={"cpp.dynamic_threads": True, "size_asserts": False},
            )
        per_param = {
            k: v for k, v in kwargs.items() if isinstance(v, (list, tuple)) or (isinstance(v, Tensor) and v.dim() == 1)
        }
        shared = {k: v for k, v in kwargs.items() if k not in per_param}
        rows, compiled = [], []
        # No DTensor exists unless torch.distributed.tensor was imported: no import here.
        dtensor = sys.modules.get("torch.distributed.tensor")
        sharded = dtensor is not None and any(isinstance(p, dtensor.DTensor) for p in params)
        for i, row in enumerate(zip(*tensors)):
            if sharded:
                row = tuple(_local(t) for t in row)
            # A parameter of one element (a 0-dim scale) runs uncompiled too: Dynamo makes a
            # size of 1 a constant, and with cpp.dynamic_threads Inductor's C++ loop then ran
            # that element's update on every OpenMP thread, applying it once per thread
            # (torch 2.13; with 2 threads a 0-dim parameter moved twice as far as it should).
            flat = _flat(row) if row[0].numel() > 1 else None
            if flat is None:
                # Tensors with gaps or with layouts that differ between param, grad and
                # state (rare) run the same update uncompiled, one operation at a time.
                self.update(*row, **shared, **{k: v[i] for k, v in per_param.items()})
            else:
                rows.append(flat)
                compiled.append(i)
        if not rows:
            return
        if len(compiled) < len(params):
            per_param = {
                k: [v[i] for i in compiled] if isinstance(v, (list, tuple)) else v[compiled]
                for k, v in per_param.items()
            }
        # The last chunk is filled up with scratch rows, so that every call has the same
        # arity and one compilation serves any model.
        padding = -len(rows) % CHUNK
        if padding:
            rows += self._pad(rows[-1], padding)
            per_param = {
                k: list(v) + [v[-1]] * padding
                if isinstance(v, (list, tuple))
                else torch.cat([v, v[-1:].expand(padding)])
                for k, v in per_param.items()
            }
        flags = tuple(sorted((k, v) for k, v in shared.items() if isinstance(v, bool)))
        variant = f"{optimizer_name}:{self.name}[{params[0].dtype}, {params[0].device.type}, {flags}]"
        # Sizes that are merely equal must not become one symbol (duck shaping): the graph
        # would then guard on which of a chunk's tensors have equal sizes, and compile again
        # for every chunk whose pattern differs.
        with torch._dynamo.config.patch(recompile_limit=_RECOMPILE_LIMIT), fx_config.patch(_NO_DUCK_SHAPES):
            for start in range(0, len(rows), CHUNK):
                chunk = rows[start : start + CHUNK]
                chunk_values = {k: v[start : start + CHUNK] for k, v in per_param.items()}
                if variant in _COMPILE_SECONDS:
                    self._compiled(chunk, chunk_values, shared)
                    continue
                begin = time.perf_counter()
                try:
                    self._compiled(chunk, chunk_values, shared)
                except Exception as err:  # a compiler failure is not the user's bad input
                    raise RuntimeError(
                        f"optlib.{optimizer_name}(fused=True) could not compile its update on "
                        f"{params[0].device.type} ({type(err).__name__}: {err}). Use foreach=True instead."
                    ) from err
                _COMPILE_SECONDS[variant] = time.perf_counter() - begin
