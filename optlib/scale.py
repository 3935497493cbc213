r"""What an optimizer costs at scale: bytes moved per step, memory held per device.

An optimizer step is element-wise: each parameter is updated from its own
gradient and state, with a handful of arithmetic operations. So its speed is set
by how many bytes it must move through memory, not by arithmetic: the step of a
method that keeps :math:`k` state tensors reads :math:`\theta`, :math:`g` and the
:math:`k` states and writes :math:`\theta` and the :math:`k` states back,

.. math::

    \text{bytes per parameter} = s\,(3 + 2k),

with :math:`s` bytes per number (4 in float32): 12 B for SGD, 20 B for momentum,
Adagrad and RMSprop, 28 B for the Adam family. Its time is at least
bytes per parameter × parameters ÷ memory bandwidth (:func:`step_time_limit`),
and :func:`measure_bandwidth` measures that bandwidth with the same
read-modify-write pattern.

The memory a method *holds* is counted by :func:`training_memory`: parameters,
gradients, float32 master weights under mixed precision, and the optimizer
state, per device, replicated (data parallel) or sharded over the devices by
ZeRO stage 1 (optimizer state), 2 (and gradients) or 3 (and parameters; FSDP's
full sharding) (Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training
Trillion Parameter Models", SC 2020).
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .device import synchronize

__all__ = [
    "METHODS",
    "PRECISIONS",
    "ZERO_STAGES",
    "Method",
    "OperatorTraffic",
    "Precision",
    "StepTimer",
    "count_state_tensors",
    "measure_bandwidth",
    "measure_peak_flops",
    "state_bytes",
    "step_bytes_per_param",
    "step_flops_per_param",
    "step_time_limit",
    "training_memory",
]


@dataclass(frozen=True)
class Method:
    """One optimizer of the course, as the cost model sees it.

    ``state_tensors`` counts the state tensors of the parameter's shape (step
    counters and other scalars are negligible); ``flops`` counts the element-wise
    operations (add, multiply, divide, square root) of the update as the chapter's
    algorithm box writes it. A fused kernel may do fewer by folding scalar factors;
    the count only has to show that there are a few per parameter, not thousands.
    """

    name: str
    optimizer: str  # the optlib class
    kwargs: dict = field(default_factory=dict)
    state_tensors: int = 0
    flops: int = 0


# flops: SGD θ − ηg (2); momentum b ← μb + g, θ − ηb (4); Adagrad s ← s + g², θ − ηg/(√s + ε) (2 + 5);
# RMSprop v ← αv + (1 − α)g² (4) + 5; Adam m (3), v (4), m̂, v̂ (2), θ − ηm̂/(√v̂ + ε) (5);
# AdamW + θ(1 − ηλ) (1); NAdam + its look-ahead mix of m and g (3); NesterovAdamW = AdamW + look-ahead (3).
METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("SGD", "SGD", {}, 0, 2),
        Method("Momentum", "SGD", {"momentum": 0.9}, 1, 4),
        Method("Adagrad", "Adagrad", {}, 1, 7),
        Method("RMSprop", "RMSprop", {}, 1, 9),
        Method("Adam", "Adam", {}, 2, 14),
        Method("AdamW", "AdamW", {}, 2, 15),
        Method("NAdam", "NAdam", {}, 2, 17),
        Method("NesterovAdamW", "NesterovAdamW", {}, 2, 18),
    )
}


@dataclass(frozen=True)
class Precision:
    """Bytes per parameter of each thing training keeps, in one precision setup."""

    name: str
    parameter: float  # the weights the forward and backward passes use
    gradient: float
    master: float  # a float32 copy of the weights that the optimizer updates (mixed precision)
    state: float  # one element of one optimizer state tensor


#: 8-bit optimizer states (Dettmers et al., ICLR 2022): one byte per element plus one
#: float32 scale (the block's absolute maximum) per block of 2048 elements.
BLOCKWISE_8BIT_BLOCK = 2048

PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in (
        Precision("fp32", 4, 4, 0, 4),
        Precision("mixed", 2, 2, 4, 4),  # bf16/fp16 weights and gradients, fp32 master weights and states
        Precision("mixed, 8-bit states", 2, 2, 4, 1 + 4 / BLOCKWISE_8BIT_BLOCK),
    )
}

#: 0: plain data parallelism (everything replicated); 1: optimizer state (with the master
#: weights) sharded; 2: and gradients; 3: and parameters (FSDP's FULL_SHARD).
ZERO_STAGES = (0, 1, 2, 3)


def _method(method: str) -> Method:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    return METHODS[method]


def _positive(value, name: str, integer: bool = False):
    kind = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if not ok or not value > 0 or (not integer and not math.isfinite(value)):
        wanted = "a positive integer" if integer else "a finite number > 0"
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return value


def count_state_tensors(optimizer: torch.optim.Optimizer) -> int:
    """The most state tensors of a parameter's shape that the optimizer keeps for one parameter.

    Read from a live optimizer, so the table in :data:`METHODS` can be checked
    against what the optimizer actually stores. Optimizers create their state
    lazily: count after ``optimizer.step()``, or a stateful method reads as 0.
    """
    counts = [
        sum(1 for v in optimizer.state[p].values() if torch.is_tensor(v) and v.dim() > 0 and v.shape == p.shape)
        for group in optimizer.param_groups
        for p in group["params"]
        if p in optimizer.state
    ]
    return max(counts, default=0)


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor in the optimizer's state (scalars such as ``step`` included)."""
    return sum(v.numel() * v.element_size() for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v))


def step_bytes_per_param(method: str, bytes_per_number: float = 4) -> float:
    """Bytes one step moves per parameter: read θ, g and the states, write θ and the states."""
    _positive(bytes_per_number, "bytes_per_number")
    return bytes_per_number * (3 + 2 * _method(method).state_tensors)


def step_flops_per_param(method: str) -> int:
    """Element-wise arithmetic operations of one step per parameter (see :class:`Method`)."""
    return _method(method).flops


def step_time_limit(method: str, n_params: int, bandwidth: float, bytes_per_number: float = 4) -> float:
    """The least time in seconds one step can take: bytes moved ÷ memory bandwidth (bytes/s)."""
    _positive(n_params, "n_params", integer=True)
    _positive(bandwidth, "bandwidth")
    return step_bytes_per_param(method, bytes_per_number) * n_params / bandwidth


def _tensor_bytes(value) -> int:
    return sum(t.numel() * t.element_size() for t in tree_leaves(value) if isinstance(t, torch.Tensor))


class OperatorTraffic(TorchDispatchMode):
    """Count the bytes that the operators run inside the block read and write.

    Each operator (as the dispatcher sees it: ``aten.mul_``, ``aten._fused_adamw_``)
    reads every tensor it is given, writes the inputs its schema marks as mutated
    and writes every new tensor it returns; views move nothing and are skipped.
    When the tensors are larger than the caches, this is the memory traffic of
    the block, operator by operator: a step written as ten operators moves its
    tensors ten times, a fused one once::

        with OperatorTraffic() as traffic:
            optimizer.step()
        traffic.bytes, traffic.operators

    ``operators`` counts the calls of each operator. Writes are what the schema
    declares, an upper bound for a kernel that mutates an input only sometimes:
    torch's fused optimizers declare the gradients mutable (they unscale them in
    place when given a gradient scale), so they count 4 bytes per parameter more
    than they move without one.
    """

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0
        self.operators: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func.is_view:
            return out
        schema = func._schema
        moved = _tensor_bytes((args, kwargs))  # every input is read
        for i, argument in enumerate(schema.arguments):
            if argument.alias_info is not None and argument.alias_info.is_write:
                moved += _tensor_bytes(args[i] if i < len(args) else kwargs.get(argument.name))
        results = out if isinstance(out, tuple) else (out,)
        for result, returned in zip(results, schema.returns):
            if returned.alias_info is None:  # a new tensor (an in-place op returns its input: counted above)
                moved += _tensor_bytes(result)
        self.bytes += moved
        name = str(func.overloadpacket.__name__) if hasattr(func, "overloadpacket") else str(func)
        self.operators[name] = self.operators.get(name, 0) + 1
        return out


def _timed(fn, device: torch.device, repeats: int) -> list[float]:
    fn()  # warm-up: page in the memory, load the kernels
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


class StepTimer:
    """The seconds of every ``optimizer.step()``, recorded through torch.optim's step hooks.

    Attach one to an optimizer and train as usual: the share of a training step that
    the optimizer takes is then ``total / training time``, whatever loop drives it. On
    a GPU each hook synchronises the device first, so that a step's time is its kernels'
    and not only their launch (the synchronisation slows the training a little).

    Example::

        >>> import torch, optlib
        >>> w = torch.nn.Parameter(torch.ones(3))
        >>> opt = optlib.AdamW([w], lr=0.1)
        >>> timer = StepTimer(opt)
        >>> for _ in range(4):
        ...     (w**2).sum().backward()
        ...     opt.step()
        >>> len(timer.seconds), timer.total > 0
        (4, True)
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"Invalid optimizer: a torch.optim.Optimizer is required, got {type(optimizer).__name__}")
        self.seconds: list[float] = []
        self._device = optimizer.param_groups[0]["params"][0].device
        self._start: float | None = None
        self._handles = [
            optimizer.register_step_pre_hook(self._begin),
            optimizer.register_step_post_hook(self._end),
        ]

    def _begin(self, optimizer, args, kwargs) -> None:
        synchronize(self._device)
        self._start = time.perf_counter()

    def _end(self, optimizer, args, kwargs) -> None:
        synchronize(self._device)
        self.seconds.append(time.perf_counter() - self._start)

    @property
    def total(self) -> float:
        """Seconds of all the steps recorded so far."""
        return sum(self.seconds)

    def per_step_ms(self, training_seconds: float) -> tuple[float, float]:
        """Mean milliseconds per step of the optimizer, and of everything else in ``training_seconds``
        (the training time of the recorded steps, such as ``history.epochs["time"][-1]``).

        The optimizer's mean leaves out the first step, which creates the state (and, on a
        compiled path, may compile its kernel); the rest is spread over every step.
        """
        steps = len(self.seconds)
        if steps < 2:
            raise ValueError(f"Invalid timer: per_step_ms needs at least 2 recorded steps, got {steps}")
        return 1e3 * (self.total - self.seconds[0]) / (steps - 1), 1e3 * (training_seconds - self.total) / steps

    def remove(self) -> None:
        """Stop recording (the seconds recorded so far stay)."""
        for handle in self._handles:
            handle.remove()


def measure_bandwidth(n_elements: int = 1 << 25, repeats: int = 9, device: str | torch.device = "cpu") -> float:
    """Memory bandwidth in bytes/s, from the fastest of ``repeats`` runs of ``a += s·b`` on float32 vectors.

    The kernel has an optimizer step's access pattern (read two vectors, write one
    of them back in place, 12 bytes per element, no write to memory it did not
    read). Each vector must be much larger than the last-level cache (the default
    is 128 MiB) or the result is the cache's bandwidth, not the memory's. The
    fastest run is kept, as the STREAM benchmark does (McCalpin 1995): other
    programs sharing the machine can only slow a run down, so the fastest is the
    best estimate of what the memory can deliver.
    """
    _positive(n_elements, "n_elements", integer=True)
    _positive(repeats, "repeats", integer=True)
    device = torch.device(device)
    a = torch.rand(n_elements, device=device)
    b = torch.rand(n_elements, device=device)
    seconds = min(_timed(lambda: a.add_(b, alpha=1e-3), device, repeats))
    return 12 * n_elements / seconds


def measure_peak_flops(n: int = 1024, repeats: int = 5, device: str | torch.device = "cpu") -> float:
    """Arithmetic throughput in FLOP/s from the fastest of ``repeats`` float32 n×n matrix products.

    A matrix product does :math:`2n^3` operations on :math:`3n^2` numbers, so it is
    limited by arithmetic, not memory: the roof of a roofline plot.
    """
    _positive(n, "n", integer=True)
    _positive(repeats, "repeats", integer=True)
    device = torch.device(device)
    x = torch.rand(n, n, device=device)
    return 2 * n**3 / min(_timed(lambda: x @ x, device, repeats))


def training_memory(
    n_params: int,
    method: str = "AdamW",
    precision: str = "mixed",
    zero_stage: int = 0,
    world_size: int = 1,
) -> dict[str, float]:
    """Bytes each device holds for the model's parameters, gradients and optimizer.

    Returns ``{"parameters", "gradients", "master weights", "optimizer state",
    "total"}``. ZeRO stage 1 divides the optimizer state and the master weights by
    ``world_size`` (ZeRO counts the master weights as optimizer state), stage 2 the
    gradients as well, stage 3 the parameters too. Activations, buffers, temporary
    buffers and fragmentation are not counted: they depend on the model and the
    batch, not on the optimizer.
    """
    _positive(n_params, "n_params", integer=True)
    _positive(world_size, "world_size", integer=True)
    if zero_stage not in ZERO_STAGES:
        raise ValueError(f"zero_stage must be one of {ZERO_STAGES}, got {zero_stage!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}, got {precision!r}")
    p, k = PRECISIONS[precision], _method(method).state_tensors

    def share(stage: int) -> float:
        return 1 / world_size if zero_stage >= stage else 1.0

    held = {
        "parameters": n_params * p.parameter * share(3),
        "gradients": n_params * p.gradient * share(2),
        "master weights": n_params * p.master * share(1),
        "optimizer state": n_params * k * p.state * share(1),
    }
    held["total"] = sum(held.values())
    return held
