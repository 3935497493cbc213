"""Where a parameter's optimizer state lies in memory, so that a step's streams do not collide.

An element-wise step streams a parameter θ, its gradient g and its state (Adam's m and v)
through the CPU side by side: element i of each is read, and θ, m and v are written, in
the same iteration. A large tensor's memory comes straight from the operating system in
whole pages, so every one of them starts at the same offset within a 4 KiB page (0x40 with
glibc), and element i of θ, g, m and v share the lowest 12 bits of their addresses. A CPU
core compares only those bits when it checks whether a load depends on an earlier store
still in flight; with every stream at the same offset each load appears to depend on the
stores of the other streams and waits for them ("4K aliasing", Intel's optimization manual).

So the state of a large CPU parameter starts ``slot`` KiB past the parameter's offset in
its page: m one KiB on, v two. On this course's 2-core CPU (2 threads), a fused step on one
parameter of 38 or 64 MB took 2-4 % less time this way, torch's kernel and optlib's alike;
that is about this machine's run-to-run noise, and on two 64 MB parameters one run showed
nothing beyond it (``benchmarks/state_placement.py`` times both placements side by side).
A small gain, for one page of padding per state tensor.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["STAGGER_BYTES", "state_like"]

PAGE_BYTES = 4096
# The distance between the page offsets of a parameter and each of its state tensors: four
# streams fit in a page this way.
STAGGER_BYTES = 1024
# Below this a tensor's streams stay in the caches, where the stalls cost little, and a
# page of padding would no longer be small beside it.
MIN_BYTES = 1 << 18


def _staggered(p: Tensor) -> bool:
    """Whether ``p``'s state is placed: a plain, contiguous, large CPU tensor (not a DTensor
    or other subclass, whose state its own library allocates)."""
    return (
        type(p) in (torch.Tensor, torch.nn.Parameter)
        and p.device.type == "cpu"
        and p.layout == torch.strided
        and p.is_contiguous()
        and p.numel() * p.element_size() >= MIN_BYTES
    )


def state_like(p: Tensor, slot: int, fill: float | complex = 0.0) -> Tensor:
    """A state tensor for ``p`` filled with ``fill`` (as ``torch.full_like``), starting ``slot``
    × STAGGER_BYTES past ``p``'s offset in its page where ``p`` is a large CPU tensor."""
    if not _staggered(p):
        return torch.full_like(p, fill, memory_format=torch.preserve_format)
    size = p.element_size()
    padded = torch.empty(p.numel() + PAGE_BYTES // size, dtype=p.dtype, device=p.device)
    start = (p.data_ptr() + slot * STAGGER_BYTES - padded.data_ptr()) % PAGE_BYTES // size
    return padded[start : start + p.numel()].view(p.shape).fill_(fill)
