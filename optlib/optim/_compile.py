"""The fused path: one compiled kernel per parameter, built with ``torch.compile``.

An optimizer step is memory-bound: an AdamW step reads θ, g, m, v and writes θ,
m, v, 28 bytes per float32 parameter, and does a handful of flops on each. The
loop and foreach paths run one kernel per operation, so they read and write the
same tensors about ten times. A fused step does every operation of the update in
one pass over memory. torch.optim hand-writes such a kernel per optimizer and
device; optlib writes the update once, as ordinary tensor code, and lets
Inductor generate the kernel (a vectorised C++/OpenMP loop on the CPU, a Triton
kernel on CUDA).

Three choices keep the compiled step fast and stable:

* one kernel per parameter, compiled with dynamic shapes: one compilation serves
  every tensor size, instead of a graph that unrolls all the model's tensors
  (whose compile time grows with the model);
* every hyperparameter enters as a 0-dim tensor, so a learning-rate scheduler
  changes a value, not the graph (a changed Python float would recompile);
* the per-parameter scalars that need a power (the bias corrections) are computed
  once per step for all parameters of a bucket, outside the kernel: inside it
  Inductor would recompute them for every vector of elements.

The booleans of an update (maximize, nesterov, amsgrad, ...) are specialised:
each combination in use compiles once per dtype.

A compiled call has a fixed cost of its own (Dynamo's guards and wrappers, about
20 µs on a CPU), which dwarfs the update of a bias or a norm's scale. So in a fused
step the parameters under ``FUSED_MIN_NUMEL`` elements take the multi-tensor path
(one ``torch._foreach_*`` call per operation for all of them), and only the large
ones, which hold almost all the bytes, run the compiled kernel.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import time
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["FUSED_MIN_NUMEL", "FusedKernel", "check_fused_device", "fused_scalars", "advance_steps", "compile_seconds"]

# Every (kernel, dtype, flags) combination is a compiled variant of the same code;
# Dynamo's default of 8 per function would run the rest eagerly.
_RECOMPILE_LIMIT = 64

_COMPILE_SECONDS: dict[str, float] = {}

#: Parameters with fewer elements than this take the multi-tensor path within a fused
#: step: a compiled call's fixed cost (Dynamo's wrappers, about 20 µs on a CPU) is more
#: than streaming 64K float32 elements through it. Tests set it to 0 (or the environment
#: variable, which spawned processes inherit) to compile every tensor.
FUSED_MIN_NUMEL = int(os.environ.get("OPTLIB_FUSED_MIN_NUMEL", 1 << 16))


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
    """One parameter's tensors as 1-D views of their memory, or None where that is impossible.

    The update is elementwise, so only which elements pair up matters: tensors of one
    shape and one dense layout (contiguous, or e.g. all transposed alike) pair up
    element by element in memory order too. Flat views let one compiled kernel serve
    matrices, vectors and 0-dim parameters alike (Dynamo compiles once per rank).
    """
    tensors = [t for t in row if t is not None]
    if all(t.is_contiguous() for t in tensors):  # the common case, and the cheapest test
        return tuple(None if t is None else t.view(-1) for t in row)
    first = tensors[0]
    if not all(t.shape == first.shape and t.stride() == first.stride() for t in tensors):
        return None
    if not _dense(first):
        return None
    return tuple(None if t is None else t.as_strided((t.numel(),), (1,)) for t in row)


class FusedKernel:
    """A per-parameter update function, compiled on first use.

    ``kernel(param, grad, *state, **scalars_and_flags)`` updates the tensors in place.
    """

    def __init__(self, update: Callable[..., None]) -> None:
        self.update = update
        self.name = update.__name__
        self._compiled: Callable[..., None] | None = None

    def __call__(self, optimizer_name: str, tensors: list[list[Tensor | None]], **kwargs) -> None:
        """Run the kernel once per parameter; ``tensors`` are aligned lists (param, grad, state...).

        Scalar keyword arguments may be a 0-dim tensor shared by all parameters or
        a list with one 0-dim tensor per parameter.
        """
        params = tensors[0]
        if not params:
            return
        check_fused_device(optimizer_name, params[0].device)
        if self._compiled is None:
            # dynamic_threads: the C++ loop asks OpenMP for its threads at run time. Otherwise
            # Inductor decides at compile time from the first tensor's size, and a kernel first
            # compiled for a bias vector would run single-threaded on every matrix after it.
            self._compiled = torch.compile(
                self.update, fullgraph=True, dynamic=True, options={"cpp.dynamic_threads": True}
            )
        per_param = {k: v for k, v in kwargs.items() if isinstance(v, (list, tuple))}
        shared = {k: v for k, v in kwargs.items() if k not in per_param}
        flags = tuple(sorted((k, v) for k, v in shared.items() if isinstance(v, bool)))
        variant = f"{optimizer_name}:{self.name}[{params[0].dtype}, {params[0].device.type}, {flags}]"
        with torch._dynamo.config.patch(recompile_limit=_RECOMPILE_LIMIT):
            for i, row in enumerate(zip(*tensors)):
                scalars = {k: v[i] for k, v in per_param.items()}
                row = tuple(_local(t) for t in row)
                flat = _flat(row)
                if flat is None:
                    # Tensors with gaps or with layouts that differ between param, grad and
                    # state (rare) run the same update uncompiled, one operation at a time.
                    self.update(*row, **shared, **scalars)
                    continue
                row = flat
                if variant in _COMPILE_SECONDS:
                    self._compiled(*row, **shared, **scalars)
                    continue
                start = time.perf_counter()
                try:
                    self._compiled(*row, **shared, **scalars)
                except Exception as err:  # a compiler failure is not the user's bad input
                    raise RuntimeError(
                        f"optlib.{optimizer_name}(fused=True) could not compile its update on "
                        f"{params[0].device.type} ({type(err).__name__}: {err}). Use foreach=True instead."
                    ) from err
                _COMPILE_SECONDS[variant] = time.perf_counter() - start
