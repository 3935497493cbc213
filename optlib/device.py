"""Where experiments run, how big they are, and how they are seeded.

A chapter's closing experiment has three sizes:

* ``"tiny"``: a few dozen steps, for the test suite;
* ``"quick"``: seconds on a 2-core CPU, what the website build and a laptop run;
* ``"full"``: the whole data set, enough epochs to converge and five seeds, on whatever
  device can afford it (``python -m optlib.results regenerate`` runs them all).

:func:`experiment_size` picks ``"full"`` when a CUDA device is present and
``"quick"`` otherwise; the environment variable ``OPTLIB_SIZE`` overrides it.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = [
    "pick_device",
    "experiment_size",
    "describe_device",
    "device_label",
    "seed_everything",
    "synchronize",
    "SIZES",
]

SIZES = ("tiny", "quick", "full")

_SIZE_ENV = "OPTLIB_SIZE"
_described = False


def pick_device() -> torch.device:
    """The fastest available device: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def experiment_size() -> str:
    """The size of the experiments to run: ``"tiny"``, ``"quick"`` or ``"full"``.

    ``"full"`` on a CUDA device, ``"quick"`` elsewhere (MPS included: the full
    runs are calibrated on a data-centre GPU). Set ``OPTLIB_SIZE`` to force one.
    """
    override = os.environ.get(_SIZE_ENV)
    if override is not None and override.strip() != "":
        size = override.strip().lower()
        if size not in SIZES:
            raise ValueError(
                f"Invalid {_SIZE_ENV}={override!r}; {_SIZE_ENV} must be one of {', '.join(map(repr, SIZES))}"
            )
        return size
    return "full" if torch.cuda.is_available() else "quick"


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return "CPU"


def synchronize(device: torch.device) -> None:
    """Wait until ``device`` has finished the work queued on it (a no-op on the CPU), so that a
    timer read next measures the work, not only its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def device_label(device: torch.device | str | None = None) -> str:
    """Where a run ran, in words a reader can compare: a GPU's name, or ``"2-core CPU (AMD EPYC)"``.

    For the CPU the count is of the cores this process may use (its affinity), not of the
    machine, since that is what a result's wall time depends on.
    """
    device = torch.device(device) if device is not None else pick_device()
    if device.type != "cpu":
        return _device_name(device)
    return f"{usable_cores()}-core CPU ({_cpu_model()})"


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity; the machine's count where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def _cpu_model() -> str:
    import platform

    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown model"


def describe_device() -> str:
    """Print (once per process) and return a one-line note on the device and experiment size.

    Chapters call this in their first cell so the reader knows whether the
    closing experiment runs at full size or at the quick size.
    """
    global _described
    device = pick_device()
    size = experiment_size()
    note = f"Device: {_device_name(device)} ({device.type}); experiment size: {size}."
    if device.type == "cpu":
        note += (
            f" No GPU found: running the {size} size of the experiments;"
            " saved full-size results are shown where they exist, with the device they ran on."
        )
    if not _described:
        print(note)
        _described = True
    return note


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every GPU)."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= int(seed) < 2**32:
        raise ValueError(f"Invalid seed: {seed!r}; seed must be an integer in [0, 2**32)")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
