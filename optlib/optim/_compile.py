"""The fused path: a step's update compiled with ``torch.compile``, 8 parameters per call.

An optimizer step is memory-bound: an AdamW step reads θ, g, m, v and writes θ,
m, v, 28 bytes per float32 parameter, and does a handful of flops on each. The
loop and foreach paths run one kernel per operation, so they read and write the
same tensors about ten times. A fused step does every operation of the update in
one pass over memory. torch.optim hand-writes such a kernel per optimizer and
device; optlib writes the update of one parameter once, as ordinary tensor code,
and lets Inductor generate the kernel (a vectorised C++/OpenMP loop on the CPU, a
Triton kernel on CUDA).

These choices make the compiled step as fast as torch's hand-written one:

* one compiled call updates a chunk of 8 parameters, each flattened to 1-D, with
  dynamic shapes: one compilation (about 10 s on a 2-core CPU with an empty Inductor
  cache) serves every tensor size and every model; the last chunk is filled up with
  two-element scratch rows. Larger chunks (16 to 64) were measured too: no faster on
  10M and 50M parameters in 51 tensors, slower with the caches cold (a 64-parameter
  kernel is 8 times the machine code), and up to 42 s to compile;
* after the first call, a graph is called directly, not through Dynamo
  (``_KeepGraph``): with the caches cold from a backward pass, Dynamo's frame
  evaluation and guards cost about 0.2 ms per call on a CPU, more than the update of
  a 600K-element tensor. It is Inductor's own call, past AOTAutograd's wrappers too
  (about 10 µs per call with cold caches: 70 µs a step for 51 parameters), which
  for this graph only turned off grad mode and counted a version of each tensor
  written; the second is done here. On the CPU it is the C++ kernel itself, past
  Inductor's Python call, which unpacked the arguments and read the tensors' sizes,
  and needed every gradient flattened into a 1-D view each step (``_bind_kernel``
  learns from a probe what the call passed its kernel). The three layers cost 0.2 ms
  of a 10M-parameter step with cold caches, 4 %: with them optlib's step took 1.03x
  torch's fused AdamW, without them 1.00x;
* a step keeps what it prepared for the next (``_Plan``): the flat views, the order
  of the rows, the graphs and their arguments, and the step counters, moved into one
  vector so that one operation counts them all. A later step over the same tensors
  only checks that they are the same and that new gradients are laid out as before,
  and calls the graphs; this per-step Python had cost about 0.8 ms for 51 tensors;
* Dynamo's duck shaping is turned off, so that merely equal sizes (say, a bias and a
  norm's scale) do not become one symbol with a guard on their equality; the flat
  tensors are detached, not views, since Dynamo guards on a view's base;
* every hyperparameter enters as a 0-dim tensor, so a learning-rate scheduler
  changes a value, not the graph (a changed Python float would recompile); the
  scalars of a step share one small tensor, written in place when a value changes;
* the per-parameter scalars that need a power (the bias corrections) are computed
  once per step outside the kernel (inside it Inductor would recompute them for
  every vector of elements), on the CPU as Python numbers, as the single-tensor loop
  computes them, and enter as one vector per chunk, read by index, all of a chunk's
  side by side. Inductor's C++ loop reads each scalar from memory in every iteration
  (its stores may alias any memory), and scalars in few cache lines cost less than
  scalars in many (``benchmarks/scalar_loads.py``).

The booleans of an update (maximize, nesterov, amsgrad, ...) are specialised:
each combination in use compiles once per dtype.
"""

from __future__ import annotations

import contextlib
import functools
import operator
import shutil
import sys
import time
from collections.abc import Callable

import torch
import torch.fx.experimental._config as fx_config
from torch import Tensor

__all__ = [
    "CHUNK",
    "FusedKernel",
    "check_fused_device",
    "fused_buckets",
    "fused_scalars",
    "advance_steps",
    "each_count",
    "compile_seconds",
]

# Every (kernel, dtype, flags) combination is a compiled variant of the same code;
# Dynamo's default of 8 per function would run the rest eagerly.
_RECOMPILE_LIMIT = 64

_COMPILE_SECONDS: dict[str, float] = {}

# Entries of one kind an optimizer's plans keep (see _remember): one per bucket of
# parameters, more only while the set of parameters with gradients changes.
_MAX_PLANS = 64

# dynamic_threads: the C++ loop asks OpenMP for its threads at run time. Otherwise Inductor
# decides at compile time from the first tensor's size, and a kernel first compiled for a
# bias vector would run single-threaded on every matrix after it.
# size_asserts: the fused path passes only 1-D contiguous tensors; asserting their sizes
# and strides would cost four checks per parameter per step.
# ffp-contract=fast: the C++ compiler may fuse a multiply and an add into one FMA
# instruction (Inductor turns this off by default, to round as eager PyTorch does). A
# tensor that sits in cache makes the update compute-bound: a 590K-element AdamW-family
# update took 1.075x torch's fused kernel without FMA, 0.89x with it. The results differ
# from the loop's in the last bit, which the tests' tolerances cover.
_INDUCTOR_OPTIONS = {
    "cpp.dynamic_threads": True,
    "size_asserts": False,
    "cpp.enable_floating_point_contract_flag": "fast",
}

# A private option of torch.fx (see FusedKernel.__call__); a torch without it compiles
# more often, not wrongly.
_NO_DUCK_SHAPES = {"use_duck_shape": False} if hasattr(fx_config, "use_duck_shape") else {}

#: Parameters one compiled call updates (see the module's docstring).
CHUNK = 8

# The key prefix of a chunk's per-parameter values packed into one tensor (see _Plan).
_PACKED = "packed:"


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


def fused_scalars(like: Tensor, cache: dict | None = None, **values: float) -> dict[str, Tensor]:
    """Hyperparameters as 0-dim tensors on ``like``'s device: a new value is new data, not a recompile.

    The scalars of a step share one small tensor, and each is a 0-dim tensor over its
    element. Inductor's C++ loop reads every such scalar from memory in every iteration
    (its vector stores may alias any memory), and scalars spread over several cache lines
    cost more than scalars in one: in three runs on one thread, a NesterovAdamW update
    with its seven scalars in seven tensors took 1.05-1.06x torch's fused kernel, with the
    seven in one tensor 1.01-1.05x (``benchmarks/scalar_loads.py`` prints both).

    With a ``cache`` (the optimizer's plans), the tensor is kept per bucket (``like`` is its
    first parameter) and a changed value is written into it, so that a learning-rate
    schedule keeps the same tensors, and the arguments prepared for them, step after step.
    """
    dtype = opmath_dtype(like.dtype)
    names = tuple(values)
    numbers = [float(v) for v in values.values()]
    key = ("scalars", id(like))
    held = None if cache is None else cache.get(key)
    if held is None or held[0] != names or held[1].device != like.device or held[1].dtype != dtype:
        packed = torch.tensor(numbers, dtype=dtype, device=like.device)
        # Detached: 0-dim tensors over the packed one, not views of it (see _flat).
        held = (names, packed, {n: packed[j].detach() for j, n in enumerate(names)}, list(numbers))
        if cache is not None:
            _remember(cache, key, held)
    elif held[3] != numbers:
        for scalar, new, was in zip(held[2].values(), numbers, held[3]):
            if new != was:
                scalar.fill_(new)  # writes into the packed tensor
        held[3][:] = numbers
    return held[2]


def _remember(plans: dict, key: tuple, value):
    """Keep ``value`` in ``plans`` under ``key``, and return it.

    Entries are keyed by the identity of a bucket's first parameter. Past ``_MAX_PLANS`` of
    one kind (parameter sets that came and went, or complex parameters, whose real views
    are new each step) the oldest of that kind is forgotten; a bucket in use is found again
    every step, so any number of param groups up to that bound keeps its entries.
    """
    plans.pop(key, None)
    plans[key] = value
    same_kind = [k for k in plans if k[0] == key[0]]
    if len(same_kind) > _MAX_PLANS:
        del plans[same_kind[0]]
    return value


def fused_buckets(plans: dict | None, *tensor_lists: list) -> dict[tuple, list[list]]:
    """``group_by_device_and_dtype``, remembered in ``plans`` for the same parameters in one bucket."""
    params = tensor_lists[0]
    held = plans.get(("bucket", id(params[0]))) if plans is not None else None
    if held is not None and _same(params, held[0]):
        return {held[1]: list(tensor_lists)}
    from ._base import group_by_device_and_dtype  # _base imports this module

    buckets = group_by_device_and_dtype(*tensor_lists)
    if plans is not None and len(buckets) == 1:
        _remember(plans, ("bucket", id(params[0])), (list(params), next(iter(buckets))))
    return buckets


# Counter dtypes NumPy can view (not bfloat16).
_NUMPY_COUNTS = (torch.float32, torch.float64, torch.int64)


def advance_steps(steps: list[Tensor], dtype: torch.dtype, plans: dict | None = None) -> Tensor | list[float]:
    """Add 1 to every step counter and return the counts.

    On the CPU, as Python numbers: the per-parameter scalars made from them (the bias
    corrections) are then computed in double precision, as the single-tensor loop computes
    them, with no operator calls. Elsewhere, as one vector in the kernel's scalar dtype,
    which needs no synchronisation with the device.

    With ``plans``, the counters (each parameter's 0-dim ``state["step"]``, as torch.optim
    keeps it) are first moved into one shared vector, each tensor keeping its identity
    (``Tensor.set_``), so that a step adds 1 to all of them in one operation instead of one
    per parameter (with cold caches about 0.1 ms for 51 parameters on a CPU); on the CPU,
    through NumPy's view of that vector.
    """
    counts = None
    if plans is not None:
        key = ("steps", id(steps[0]))
        held = plans.get(key)
        if held is not None and _same(steps, held[0]):
            counts, host = held[1], held[2]
            if host is not None:
                # On the CPU through NumPy's view of the same memory: an operator call costs
                # about 20 us with the caches cold from a backward pass.
                host += 1
                return host.tolist()
        elif all(s.dim() == 0 and s.dtype == steps[0].dtype and s.device == steps[0].device for s in steps):
            counts = torch.stack(steps)
            for i, s in enumerate(steps):
                s.set_(counts.untyped_storage(), i, (), ())
            # A counter moved here has left the vector of any earlier set (a parameter without
            # a gradient changes the set): that set must not be counted through its vector again.
            moved = {id(s) for s in steps}
            for other in [k for k, v in plans.items() if k[0] == "steps" and any(id(s) in moved for s in v[0])]:
                del plans[other]
            host = counts.numpy() if counts.device.type == "cpu" and counts.dtype in _NUMPY_COUNTS else None
            _remember(plans, key, (list(steps), counts, host))
    if counts is not None:
        counts.add_(1)
    else:
        torch._foreach_add_(steps, torch.ones((), dtype=steps[0].dtype, device=steps[0].device))
        counts = torch.stack(steps)
    return counts.tolist() if counts.device.type == "cpu" else counts.to(opmath_dtype(dtype))


def each_count(counts: list[float], scalar: Callable[[float], float]) -> list[float]:
    """``scalar(k)`` for each parameter's step count k, computed once where the counts agree
    (as they do when every parameter has stepped each time): a power per parameter per step
    was a tenth of the fused step's Python, with the caches cold, at 51 parameters."""
    first = counts[0]
    if counts.count(first) == len(counts):
        return [scalar(first)] * len(counts)
    return [scalar(k) for k in counts]


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


def _shard_of(t: Tensor | None) -> Tensor | None:
    """The tensor object behind a DTensor's local shard (the same object from step to step
    while the shard stays), any other tensor unchanged; ``to_local`` returns a new view of
    it each call for a DTensor parameter."""
    return getattr(t, "_local_tensor", t)


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


def _inputs(rows: list, per_param: dict, shared: dict) -> list:
    """The tensors of one chunk's call in one list, in an order fixed by its signature."""
    flat = []
    for v in per_param.values():
        if isinstance(v, Tensor):
            flat.append(v)
        else:
            flat.extend(x for x in v if isinstance(x, Tensor))
    flat.extend(v for v in shared.values() if isinstance(v, Tensor))
    for row in rows:
        flat.extend(t for t in row if t is not None)
    return flat


class _Offset(int):
    """A recipe entry (see :class:`_KeepGraph`): the storage offset of input k, which Dynamo
    makes an input of its own when a tensor starts inside its storage (a gradient that is a
    view into one flat buffer, as FSDP2's reduce-scatter and DDP's bucket views leave it)."""


def _argument(inputs: list, k: int):
    """Recipe entry k's value among a chunk's inputs: a tensor (k >= 0), its size (~k) or its storage offset."""
    if isinstance(k, _Offset):
        return inputs[int(k)].storage_offset()
    return inputs[k] if k >= 0 else inputs[~k].shape[0]


class _Graph:
    """A compiled graph, called with its arguments in the order Inductor takes them.

    ``direct`` is Inductor's call and the arguments it writes (see ``_keep_inductor_graphs``),
    or None to call through AOTAutograd's wrappers. On the CPU, :meth:`bind` goes one step
    further, to the C++ kernel that call runs (see :func:`_bind_kernel`).
    """

    def __init__(self, compiled: Callable[..., None], recipe: list[int], direct=None) -> None:
        self.compiled = compiled
        self.recipe = recipe
        # Arguments that change with each step's gradients, beyond the gradients themselves:
        # a direct call takes the storage offsets too (a bound kernel takes pointers).
        self.offsets = any(isinstance(k, _Offset) for k in recipe)
        self.direct = direct
        self.kernel: Callable[..., None] | None = None
        self.layout: list[int] = []
        self.probed = False
        # Where among a call's arguments are the tensors it writes, whose versions the caller
        # counts (AOTAutograd's wrappers count them when there is no direct call).
        self.writes: list[int] = [] if direct is None else list(direct[1])

    def bind(self, rows: list, per_param: dict, shared: dict) -> None:
        """Call the kernel itself from now on, where :func:`_bind_kernel` can prove it safe."""
        self.probed = True
        if self.direct is not None:
            binding = _bind_kernel(self.direct[0], self.recipe, rows, per_param, shared)
            if binding is not None:
                self.kernel, self.layout = binding
                # Each input the graph writes, at its first place among the kernel's arguments.
                changed = {self.recipe[i] for i in self.direct[1]}
                first = {k: j for j, k in reversed(list(enumerate(self.layout))) if k in changed}
                self.writes = list(first.values())

    def arguments(self, rows: list, per_param: dict, shared: dict) -> list:
        """The call's arguments; a bound kernel takes the tensors as they are (rows of any
        shape), the others the flat 1-D rows."""
        inputs = _inputs(rows, per_param, shared)
        if self.kernel is not None:
            return [inputs[k] if k >= 0 else inputs[~k].numel() for k in self.layout]
        return [_argument(inputs, k) for k in self.recipe]

    def __call__(self, arguments: list) -> None:
        if self.kernel is not None:
            self.kernel(*arguments)
        elif self.direct is None:
            self.compiled(*arguments)
        else:
            self.direct[0](arguments)  # Inductor's call empties the list it is given

    def written(self, arguments: list) -> tuple:
        """The arguments a direct call writes, whose versions the caller counts (the wrappers
        count them on the other path)."""
        return tuple(arguments[j] for j in self.writes)


def _bind_kernel(
    call: Callable, recipe: list[int], rows: list, per_param: dict, shared: dict
) -> tuple[Callable, list[int]] | None:
    """The C++ kernel an Inductor call runs on the CPU, and for each of its arguments the
    input it takes (k, in :func:`_inputs`'s order) or whose number of elements it takes (~k);
    None where that is not proven.

    Inductor's call is Python that unpacks its arguments, reads each tensor's size and passes
    the kernel pointers and sizes: with the caches cold from a backward pass about 13 µs per
    call, and it needs 1-D tensors (its loop bounds are their sizes), so every gradient needs
    a flat view each step. The kernel itself takes any tensor's memory. What the call passes
    it is learnt from a probe: the call runs once on scratch rows of a chunk's layout, each
    row of another size, and the kernel's arguments are matched to the probe's inputs, tensors
    by identity and sizes by value. Proof that the call does nothing else: the kernel alone,
    called so on an identical copy of the inputs, must leave every one of them bit for bit as
    the call did. Two probes of different sizes must agree.
    """
    function = getattr(call, "__func__", call)
    namespace = getattr(function, "__globals__", {})
    names = [name for name in namespace if name.startswith("cpp_fused")]
    if len(names) != 1 or any(t.device.type != "cpu" for t in _inputs(rows, per_param, shared)):
        return None
    name = names[0]
    kernel = namespace[name]
    layouts = []
    for smallest in (37, 101):
        # The tensors of a row share one size (the graph may compute with one symbol for them).
        probe_rows = [
            tuple(None if t is None else _scratch(t, (smallest + 2 * r,)) for t in row) for r, row in enumerate(rows)
        ]
        probe_values = {
            k: _scratch(v, v.shape)
            if isinstance(v, Tensor)
            else [_scratch(x, x.shape) if isinstance(x, Tensor) else x for x in v]
            for k, v in per_param.items()
        }
        probe_shared = {k: _scratch(v, v.shape) if isinstance(v, Tensor) else v for k, v in shared.items()}
        probe = _inputs(probe_rows, probe_values, probe_shared)
        copy = [t.clone() for t in probe]
        calls = []
        namespace[name] = lambda *args, seen=calls: (seen.append(args), kernel(*args))[1]
        try:
            call([_argument(probe, k) for k in recipe])
        finally:
            namespace[name] = kernel
        if len(calls) != 1:
            return None
        position = {id(t): k for k, t in enumerate(probe)}
        sized = {row[0].shape[0]: position[id(row[0])] for row in probe_rows}
        layout = []
        for arg in calls[0]:
            if isinstance(arg, Tensor) and id(arg) in position:
                layout.append(position[id(arg)])
            elif type(arg) is int and arg in sized:
                layout.append(~sized[arg])
            else:
                return None
        kernel(*[copy[k] if k >= 0 else copy[~k].shape[0] for k in layout])
        if not all(torch.equal(a, b) for a, b in zip(probe, copy)):
            return None
        layouts.append(layout)
    return (kernel, layouts[0]) if layouts[0] == layouts[1] else None


def _scratch(like: Tensor, shape: tuple) -> Tensor:
    """A probe input for _bind_kernel: values in [0.5, 1.5], where every update of the course is finite."""
    scratch = torch.empty(shape, dtype=like.dtype, device=like.device)
    return scratch.uniform_(0.5, 1.5) if scratch.is_floating_point() else scratch.fill_(1)


def _input_kind(value) -> tuple:
    """What a graph input is, to match Dynamo's inputs with Inductor's: a tensor's dtype and
    dimensions, or the type of a number."""
    if isinstance(value, Tensor):
        return ("tensor", value.dtype, value.dim())
    return (type(value).__name__,)


@contextlib.contextmanager
def _keep_inductor_graphs():
    """Collect, while compiling, each graph Inductor finishes: its call, the kinds of its
    inputs, and which inputs it writes.

    Inductor readies every graph it compiles or loads from its caches (AOTAutograd's
    included) with ``CompiledFxGraph.post_compile``, which sees the graph's inputs. Where a
    torch lacks that method or its attributes, nothing is collected and the graphs are
    called through AOTAutograd's wrappers as before.
    """
    inner: list = []
    try:
        from torch._inductor.output_code import CompiledFxGraph

        original = CompiledFxGraph.post_compile
    except (ImportError, AttributeError):
        yield inner
        return

    def keep(graph, example_inputs, *args, **kwargs):
        result = original(graph, example_inputs, *args, **kwargs)
        call = getattr(graph, "current_callable", None)
        mutated = getattr(graph, "mutated_input_idxs", None)
        if call is not None and mutated is not None:
            inner.append((call, [_input_kind(v) for v in example_inputs], sorted(mutated)))
        return result

    CompiledFxGraph.post_compile = keep
    try:
        yield inner
    finally:
        CompiledFxGraph.post_compile = original


class _ThroughDynamo:
    """The fallback where a graph's inputs could not be matched: every call goes through Dynamo."""

    def __init__(self, traced: Callable[..., None]) -> None:
        self.traced = traced

    def arguments(self, rows: list, per_param: dict, shared: dict) -> tuple:
        return rows, per_param, shared

    def __call__(self, arguments: tuple) -> None:
        with torch._dynamo.config.patch(recompile_limit=_RECOMPILE_LIMIT), fx_config.patch(_NO_DUCK_SHAPES):
            self.traced(*arguments)

    def written(self, arguments: tuple) -> tuple:
        return ()  # Dynamo's graph counts its own


class _KeepGraph:
    """A ``torch.compile`` backend: compiles with Inductor, and keeps the graph as a plain call.

    Dynamo hands a backend the graph's inputs as a list: the chunk's tensors (the very
    objects passed in) and, before each tensor with a new size, that size as a symbolic
    integer. Matching each tensor to its place in :func:`_inputs` gives the recipe that
    turns a later chunk's inputs into the graph's arguments. Where some input does not
    match (a future torch may lift others), ``graph`` stays None and the caller keeps
    calling through Dynamo.
    """

    def __init__(self, rows: list, per_param: dict, shared: dict) -> None:
        self._chunk = (rows, per_param, shared)
        self.graph: _Graph | None = None

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list):
        from torch._inductor.compile_fx import compile_fx

        with _keep_inductor_graphs() as inner:
            compiled = compile_fx(gm, example_inputs, config_patches=_INDUCTOR_OPTIONS)
        recipe = self._recipe(gm, example_inputs)
        self._chunk = None  # no reference to the model's tensors stays behind
        if recipe is not None:
            # Inductor's own call, past AOTAutograd's wrappers, where it takes the same
            # arguments as Dynamo's graph (no input was merged with another or dropped).
            matched = len(inner) == 1 and inner[0][1] == [_input_kind(v) for v in example_inputs]
            self.graph = _Graph(compiled, recipe, (inner[0][0], inner[0][2]) if matched else None)
        return compiled

    def _recipe(self, gm: torch.fx.GraphModule, example_inputs: list) -> list[int] | None:
        """For each graph input, its index in :func:`_inputs` (k), ~k for the size of tensor k,
        or ``_Offset(k)`` for its storage offset."""
        position = {id(t): k for k, t in enumerate(_inputs(*self._chunk))}
        placeholders = [node for node in gm.graph.nodes if node.op == "placeholder"]
        if len(placeholders) != len(example_inputs):
            return None
        recipe: list[int | None] = []
        for value in example_inputs:
            if isinstance(value, Tensor):
                if id(value) not in position:
                    return None
                recipe.append(position[id(value)])
            elif isinstance(value, torch.SymInt):
                recipe.append(None)  # filled in below, from the tensor it sizes
            else:
                return None
        for i, node in enumerate(placeholders):
            if recipe[i] is not None:
                continue
            # The next tensor's only dimension or its storage offset: check it symbolically.
            following = next((j for j in range(i + 1, len(recipe)) if isinstance(example_inputs[j], Tensor)), None)
            if following is None:
                return None
            fake = placeholders[following].meta.get("example_value")
            size = node.meta.get("example_value")
            if fake is None or fake.dim() != 1 or not isinstance(size, torch.SymInt):
                return None
            if isinstance(fake.shape[0], torch.SymInt) and fake.shape[0].node.expr == size.node.expr:
                recipe[i] = ~recipe[following]
            elif isinstance(fake.storage_offset(), torch.SymInt) and fake.storage_offset().node.expr == size.node.expr:
                recipe[i] = _Offset(recipe[following])
            else:
                return None
        return recipe


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
        # A compiled graph per signature (see __call__), called without Dynamo once compiled.
        self._graphs: dict[tuple, _Graph | _ThroughDynamo] = {}
        # Scratch rows that fill the last chunk of a step, by the layout of a row.
        self._padding: dict[tuple, list[tuple[Tensor | None, ...]]] = {}

    def _update_each(self, rows: list[tuple[Tensor | None, ...]], per_param: dict, shared: dict) -> None:
        """What one compiled call runs: the update of each row, unrolled into one graph."""
        per_param = dict(per_param)
        for key in [k for k in per_param if k.startswith(_PACKED)]:
            names, values = per_param.pop(key)  # (names, CHUNK values of each name in turn)
            per_param.update({name: values[q * CHUNK : (q + 1) * CHUNK] for q, name in enumerate(names)})
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

    def _compile(self, optimizer_name: str, variant: str, rows: list, per_param: dict, shared: dict):
        """Compile the update of one chunk (and run it); return what runs the next chunks of its signature.

        Dynamo traces the chunk and Inductor compiles the graph, as ``torch.compile`` does, but
        through a backend that keeps the compiled graph and learns which input each of its
        arguments is. Later chunks call the graph directly, without Dynamo's frame evaluation
        and guards: on a CPU, with the caches cold from the backward pass, that machinery cost
        about 0.2 ms per call, more than the update of a 600K-element tensor. The guards it
        skips are ones the fused path already ensures: every tensor 1-D, contiguous and of at
        least two elements, and everything else the graph depends on in the signature.
        """
        begin = time.perf_counter()
        backend = _KeepGraph(rows, per_param, shared)
        # Sizes that are merely equal must not become one symbol (duck shaping): the graph
        # would then guard on which of a chunk's tensors have equal sizes.
        with torch._dynamo.config.patch(recompile_limit=_RECOMPILE_LIMIT), fx_config.patch(_NO_DUCK_SHAPES):
            # A new backend makes Dynamo compile anew (it guards on the backend), so the graph
            # of this signature reaches _KeepGraph even if another signature's is cached.
            traced = torch.compile(self._update_each, backend=backend, fullgraph=True, dynamic=True)
            try:
                traced(rows, per_param, shared)
            except Exception as err:  # a compiler failure is not the user's bad input
                raise RuntimeError(
                    f"optlib.{optimizer_name}(fused=True) could not compile its update on "
                    f"{rows[0][0].device.type} ({type(err).__name__}: {err}). Use foreach=True instead."
                ) from err
        _COMPILE_SECONDS.setdefault(variant, time.perf_counter() - begin)
        return backend.graph if backend.graph is not None else _ThroughDynamo(traced)

    def __call__(
        self, optimizer_name: str, tensors: list[list[Tensor | None]], plans: dict | None = None, **kwargs
    ) -> None:
        """Update every parameter; ``tensors`` are aligned lists (params, grads, state...).

        ``plans`` (a dict the optimizer owns) keeps what this call prepares, the flat views
        of each parameter and its state, the chunks and their compiled graphs, for the next
        step over the same tensors, so that a step in steady state does little more than
        call the graphs.
        """
        params = tensors[0]
        if not params:
            return
        per_param = {
            k: v for k, v in kwargs.items() if isinstance(v, (list, tuple)) or (isinstance(v, Tensor) and v.dim() == 1)
        }
        shared = {k: v for k, v in kwargs.items() if k not in per_param}
        key = (self.name, id(params[0]))
        plan = plans.get(key) if plans is not None else None
        if plan is None or not plan.fits(tensors, per_param, shared):
            # Refuse where nothing can compile (checked while planning: the graphs of a plan compiled).
            check_fused_device(optimizer_name, params[0].device)
            plan = self._plan(plans, key, optimizer_name, tensors, per_param, shared)
        if not plan.run(tensors, per_param, shared):
            # A gradient whose layout differs from the plan's: prepare this step anew.
            self._plan(plans, key, optimizer_name, tensors, per_param, shared).run(tensors, per_param, shared)

    def _plan(self, plans: dict | None, key: tuple, optimizer_name: str, tensors: list, per_param: dict, shared: dict):
        plan = _Plan(self, optimizer_name, tensors, per_param, shared)
        return plan if plans is None else _remember(plans, key, plan)


def _kind(values) -> str:
    """How a per-parameter value is passed: a 1-D tensor, a list of Python numbers (both
    become a buffer the graph reads), or a list of bools or tensors (compiled in, or passed)."""
    if isinstance(values, Tensor):
        return "tensor"
    first = values[0]  # the values of a list are all of one kind
    return "floats" if isinstance(first, (float, int)) and not isinstance(first, bool) else "list"


def _options(per_param: dict, shared: dict) -> tuple:
    """What a plan depends on besides the tensors: the values' names and kinds, the flags."""
    return (
        tuple((k, _kind(v)) for k, v in per_param.items()),
        tuple((k, v if isinstance(v, bool) else None) for k, v in shared.items()),
    )


def _same(a: list, b: list) -> bool:
    """Whether two lists hold the very same objects."""
    return len(a) == len(b) and all(map(operator.is_, a, b))


class _Plan:
    """What one fused call over a list of parameters prepares, kept while they stay the same.

    The parameters' and their state's flat views, the order of the compiled rows (the
    parameters that cannot be flattened run uncompiled), the scratch rows that fill the
    last chunk, one buffer per per-parameter value in that order, and each chunk's graph.
    It fits a later call with the same parameter and state tensors, the same options and
    the same per-parameter bools; gradients may be new tensors each step (``zero_grad``
    sets them to None), and only they are flattened again.
    """

    def __init__(self, kernel: FusedKernel, optimizer_name: str, tensors: list, per_param: dict, shared: dict):
        self.kernel = kernel
        self.optimizer_name = optimizer_name
        params = tensors[0]
        self.held = [list(t) for i, t in enumerate(tensors) if i != 1]  # everything but the gradients
        self.lists = {k: list(v) for k, v in per_param.items() if _kind(v) == "list"}
        self.options = _options(per_param, shared)
        self.grad_mode = torch.is_grad_enabled()
        # No DTensor exists unless torch.distributed.tensor was imported: no import here.
        dtensor = sys.modules.get("torch.distributed.tensor")
        self.sharded = dtensor is not None and any(isinstance(p, dtensor.DTensor) for p in params)
        # A sharded plan holds views of each DTensor's local shard: it fits a later step only
        # while the same shards stand behind the same DTensors (FSDP2 gives a parameter a new
        # local tensor when it is moved or loaded with assign=True).
        self.held_shards = [[_shard_of(t) for t in held] for held in self.held] if self.sharded else None
        self.eager: list[int] = []
        self.compiled: list[int] = []
        self.rows: list[tuple[Tensor | None, ...]] = []
        # The same rows as the tensors themselves (a bound kernel takes them as they are),
        # without this step's gradients, which are kept apart until the first run.
        self.originals: list[tuple[Tensor | None, ...]] = []
        self.first_grads: list[Tensor] | None = []
        for i, row in enumerate(zip(*tensors)):
            if self.sharded:
                row = tuple(_local(t) for t in row)
            # A parameter of one element (a 0-dim scale) runs uncompiled too: Dynamo makes a
            # size of 1 a constant, and with cpp.dynamic_threads Inductor's C++ loop then ran
            # that element's update on every OpenMP thread, applying it once per thread
            # (torch 2.13; with 2 threads a 0-dim parameter moved twice as far as it should).
            flat = _flat(row) if row[0].numel() > 1 else None
            if flat is None:
                # Tensors with gaps or with layouts that differ between param, grad and
                # state (rare) run the same update uncompiled, one operation at a time.
                self.eager.append(i)
            else:
                self.rows.append(flat)
                self.originals.append((row[0], None, *row[2:]))
                self.first_grads.append(row[1])
                self.compiled.append(i)
        # What a later step's gradient must match to be flattened the same way (as the
        # parameter each compiled row holds: a DTensor's local shard).
        self.layouts = [
            (i, p.shape, p.dim() == 1, p.stride(), p.is_contiguous())
            for i, (p, *_) in zip(self.compiled, self.originals)
        ]
        self.written: tuple | None = None  # what the chunks' direct calls write, once known
        self.all_compiled = not self.eager
        self.count = len(self.rows)
        if not self.rows:
            return
        # The last chunk is filled up with scratch rows, so that every call has the same
        # arity and one compilation serves any model.
        padding = kernel._pad(self.rows[-1], -self.count % CHUNK)
        self.rows += padding
        self.originals += padding
        # The rows whose values each row of the buffers below takes: the scratch rows the last parameter's.
        self.index = torch.tensor(
            self.compiled + [self.compiled[-1]] * (len(self.rows) - self.count), device=params[0].device
        )
        # One buffer per per-parameter value, shaped (chunks, CHUNK): row r's value at
        # [r // CHUNK, r % CHUNK]. The values of one chunk sit side by side in memory, one
        # cache line for 16 float32 values (see fused_scalars for why that matters).
        chunks = len(self.rows) // CHUNK
        kinds: dict[tuple, list[str]] = {}
        for k, v in per_param.items():
            if _kind(v) == "tensor":
                kinds.setdefault((v.dtype, v.device), []).append(k)
            elif _kind(v) == "floats":
                kinds.setdefault((opmath_dtype(params[0].dtype), params[0].device), []).append(k)
        self.buffers = {}
        self.packs = []
        for (dtype, device), names in kinds.items():
            packed = torch.zeros(chunks, len(names), CHUNK, dtype=dtype, device=device)
            self.buffers.update({k: packed[:, q] for q, k in enumerate(names)})
            self.packs.append((tuple(names), packed))
        # Python numbers are written into CPU buffers through NumPy, with no operator call
        # (each costs tens of microseconds with cold caches); the scratch rows' once.
        self.host = {}
        for k, b in self.buffers.items():
            if _kind(per_param[k]) == "floats" and b.device.type == "cpu":
                self.host[k] = b.numpy()
                self.host[k].flat[self.count :] = float(per_param[k][self.compiled[-1]])
        flags = tuple(sorted((k, v) for k, v in shared.items() if isinstance(v, bool)))
        self.variant = f"{optimizer_name}:{kernel.name}[{params[0].dtype}, {params[0].device.type}, {flags}]"
        # What decides a graph besides the sizes: the variant, which entries of a row are
        # None, the names of the values, the grad mode, and the bools of per-parameter lists
        # (SGD's first step), which are compiled in.
        signature = (self.variant, tuple(shared), tuple(per_param), self.grad_mode)
        ordered = {k: self._ordered(v) for k, v in self.lists.items()}
        self.shared = list(shared.values())
        # Per chunk: its rows, its per-parameter values, the key of its graph, and (once
        # known) the graph and its arguments, which change only with the gradients.
        self.chunks = []
        for start in range(0, len(self.rows), CHUNK):
            end = start + CHUNK
            key = (
                signature,
                tuple(t is None for row in self.rows[start:end] for t in row),
                tuple(tuple(v[start:end]) for v in ordered.values()),
            )
            # Each buffer's chunk enters the graph as one tensor (FusedKernel._update_each
            # unpacks it): Dynamo's graph did not take several tensors over one storage as they are.
            values = {
                f"{_PACKED}{g}": (names, packed.view(len(packed), -1)[start // CHUNK].detach())
                for g, (names, packed) in enumerate(self.packs)
            }
            values.update({k: v[start:end] for k, v in ordered.items()})
            self.chunks.append(_Chunk(start, end, key, values))

    def _ordered(self, values: list) -> list:
        """A per-parameter list in the rows' order, the scratch rows reading the last value."""
        ordered = values if self.all_compiled else [values[i] for i in self.compiled]
        return list(ordered) + [ordered[-1]] * (len(self.rows) - self.count)

    def fits(self, tensors: list, per_param: dict, shared: dict) -> bool:
        """Whether this plan serves a call with these tensors and options."""
        held = [t for i, t in enumerate(tensors) if i != 1]
        return (
            len(held) == len(self.held)
            and all(map(_same, held, self.held))
            and self.options == _options(per_param, shared)
            and self.grad_mode == torch.is_grad_enabled()
            and all(list(per_param[k]) == v for k, v in self.lists.items())
            and (not self.sharded or all(_same([_shard_of(t) for t in h], h0) for h, h0 in zip(held, self.held_shards)))
        )

    def _checked_grads(self, grads: list) -> list[Tensor] | None:
        """The compiled rows' gradients, or None where one is laid out unlike its parameter."""
        checked = []
        for i, shape, _, stride, contiguous in self.layouts:
            g = grads[i]
            if g.shape != shape or not (g.is_contiguous() if contiguous else g.stride() == stride):
                return None
            checked.append(g)
        return checked

    def _flat_grads(self, grads: list[Tensor]) -> list[Tensor]:
        """Checked gradients as the 1-D tensors a graph not bound to its kernel takes."""
        return [
            g if vector else g.view(-1) if contiguous else g.as_strided((g.numel(),), (1,))
            for g, (_, _, vector, _, contiguous) in zip(grads, self.layouts)
        ]

    def run(self, tensors: list, per_param: dict, shared: dict) -> bool:
        """Update every parameter; False (nothing done) where a new gradient does not fit the plan.

        The plan holds no gradient between steps: it would keep a step's gradients alive,
        in memory, through the next backward pass.
        """
        if self.first_grads is not None:  # the rows hold this step's gradients, flattened while planning
            grads, flats = self.first_grads, [row[1] for row in self.rows[: self.count]]
            self.rows[: self.count] = [(row[0], None, *row[2:]) for row in self.rows[: self.count]]
            self.first_grads = None
        else:
            grads = [_local(g) for g in tensors[1]] if self.sharded else tensors[1]
            grads, flats = self._checked_grads(grads), None
            if grads is None:
                return False
        self._run(tensors, per_param, shared, grads, flats)
        return True

    def _rows(self, chunk: _Chunk, grads: list[Tensor], flat: bool) -> list[tuple[Tensor | None, ...]]:
        """A chunk's rows with this step's gradients (the scratch rows keep their own): the
        flat 1-D rows, or the tensors as they are."""
        rows = self.rows if flat else self.originals
        return [
            (row[0], grads[r], *row[2:]) if r < self.count else row
            for r, row in enumerate(rows[chunk.start : chunk.end], chunk.start)
        ]

    def _run(
        self, tensors: list, per_param: dict, shared: dict, grads: list[Tensor], flats: list[Tensor] | None
    ) -> None:
        for i in self.eager:
            row = tuple(t[i] for t in tensors)
            if self.sharded:
                row = tuple(_local(t) for t in row)
            self.kernel.update(*row, **shared, **{k: v[i] for k, v in per_param.items()})
        if not self.count:
            return
        for k, buffer in self.buffers.items():
            values = per_param[k]
            if k in self.host:
                self.host[k].flat[: self.count] = values if self.all_compiled else [values[i] for i in self.compiled]
            else:
                if not isinstance(values, Tensor):
                    values = torch.tensor(values, dtype=buffer.dtype)
                buffer.copy_(values.to(buffer.device).index_select(0, self.index).view(buffer.shape))
        if not _same(self.shared, list(shared.values())):
            self.shared = list(shared.values())
            self._forget_arguments()
        graphs = self.kernel._graphs
        for chunk in self.chunks:
            graph = chunk.graph
            if graph is None:
                graph = chunk.graph = graphs.get(chunk.key)
                if graph is None:
                    if flats is None:
                        flats = self._flat_grads(grads)
                    graphs[chunk.key] = self.kernel._compile(
                        self.optimizer_name, self.variant, self._rows(chunk, flats, True), chunk.values, shared
                    )
                    continue
            # A graph bound to its kernel takes the tensors as they are, the others flat rows.
            if isinstance(graph, _Graph) and not graph.probed:
                graph.bind(self._rows(chunk, grads, False), chunk.values, shared)
            bound = getattr(graph, "kernel", None) is not None
            if not bound and flats is None:
                flats = self._flat_grads(grads)
            source = grads if bound else flats
            if chunk.arguments is None:
                arguments = graph.arguments(self._rows(chunk, source, not bound), chunk.values, shared)
                position = {id(source[r]): r for r in range(chunk.start, min(chunk.end, self.count))}
                # Kept for the next steps without the gradients, with where each row's goes (found
                # by identity: not where two parameters were given one gradient tensor).
                keep = bound or not getattr(graph, "offsets", False)
                if keep and isinstance(arguments, list) and len(position) == min(chunk.end, self.count) - chunk.start:
                    chunk.grad_slots = [(j, position[id(a)]) for j, a in enumerate(arguments) if id(a) in position]
                    chunk.arguments = list(arguments)
                    for j, _ in chunk.grad_slots:
                        chunk.arguments[j] = None
                    self.written = None
                elif isinstance(arguments, list):  # prepared anew each step: its writes counted here
                    written = graph.written(arguments)
                    graph(arguments)
                    if written:
                        torch.autograd.graph.increment_version(written)
                    continue
            else:
                arguments = chunk.arguments.copy()
                for j, r in chunk.grad_slots:
                    arguments[j] = source[r]
            graph(arguments)
        # Each tensor a step wrote counts one more version, as after an in-place operation
        # (autograd refuses a backward through a tensor saved before it changed): one call
        # for the whole step.
        if self.written is None:
            # A chunk compiled in this step has no arguments yet: Dynamo's graph counted its own.
            self.written = tuple(
                t for chunk in self.chunks if chunk.arguments is not None for t in chunk.graph.written(chunk.arguments)
            )
        if self.written:
            torch.autograd.graph.increment_version(self.written)

    def _forget_arguments(self) -> None:
        for chunk in self.chunks:
            chunk.arguments = None


class _Chunk:
    """The rows ``start:end`` of a plan, their per-parameter values, and their graph."""

    def __init__(self, start: int, end: int, key: tuple, values: dict) -> None:
        self.start, self.end, self.key, self.values = start, end, key, values
        self.graph: _Graph | _ThroughDynamo | None = None
        self.arguments: list | tuple | None = None
        self.grad_slots: list[tuple[int, int]] = []
