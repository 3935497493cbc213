"""Results of the full-size experiments, saved as JSON under ``data/results/``.

A chapter runs its closing experiment at full size once (``python -m optlib.results regenerate``
runs them all, see :mod:`optlib.regenerate`), saves the numbers with :func:`save_results`, and
from then on every reader sees them (with :func:`results_note` saying on which device, when and
how long they took) next to the quick run their own machine can afford.

``RESULTS_DIR`` is the ``results/`` folder of :func:`optlib.data.data_dir` (``data/results/`` in a
clone, ``optlib/_data/results/`` in an installed wheel, ``$OPTLIB_DATA/results`` if that is set);
set ``OPTLIB_RESULTS`` to write and read elsewhere (the tests do). A name with no saved file
gives ``None`` from :func:`load_results`, so a chapter says none are saved instead of failing.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import re
from pathlib import Path

import torch

__all__ = ["RESULTS_DIR", "results_dir", "save_results", "load_results", "results_note", "missing_results_note"]  # noqa: F822 (RESULTS_DIR: module __getattr__)

_RESULTS_ENV = "OPTLIB_RESULTS"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def results_dir() -> Path:
    """Where results live: ``$OPTLIB_RESULTS`` if set, else the ``results/`` folder of :func:`optlib.data.data_dir`."""
    override = os.environ.get(_RESULTS_ENV)
    if override:
        return Path(override).expanduser()
    from .data import data_dir

    return data_dir() / "results"


def __getattr__(name: str):
    # RESULTS_DIR follows OPTLIB_RESULTS / OPTLIB_DATA at the time it is read, not at import.
    if name == "RESULTS_DIR":
        return results_dir()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name.endswith(".json"):
        raise ValueError(
            f"Invalid name: {name!r}; name must be letters, digits, '_', '-' or '.', "
            f"starting with a letter or digit, without '.json'"
        )
    return name


def _jsonable(value, digits: int | None = None):
    """Plain JSON: tuples become lists, tensors numbers or lists, NaN and infinities None;
    floats rounded to ``digits`` significant digits if given."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, digits) for v in value]
    if isinstance(value, torch.Tensor):
        # A one-element tensor (a tensor lr, say) is a number, not a list of one.
        return _jsonable(value.item() if value.numel() == 1 else value.tolist(), digits)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return value if digits is None else float(f"{value:.{digits}g}")
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if hasattr(value, "item"):  # numpy scalars
        return _jsonable(value.item(), digits)
    if isinstance(value, type):
        return value.__name__
    return repr(value)


def save_results(
    name: str, payload: dict, *, seeds, config: dict, size: str | None = None, path: Path | str | None = None
) -> Path:
    """Write ``payload`` with its provenance to ``<results_dir>/<name>.json`` (or to the file ``path``).

    The metadata record the device (the GPU's name, or e.g. ``2-core CPU (AMD EPYC)``) and
    torch's thread count, the torch, optlib and
    Python versions, the seeds, the experiment ``config``, the size, and the UTC time.
    """
    from . import __version__
    from .device import device_label, experiment_size

    _check_name(name)
    if not isinstance(payload, dict):
        raise ValueError(f"Invalid payload: {type(payload).__name__}; payload must be a dict")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("Invalid seeds: []; seeds must list at least one seed")
    record = {
        "name": name,
        "meta": {
            "device": device_label(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "optlib": __version__,
            "python": platform.python_version(),
            "seeds": seeds,
            "size": size or experiment_size(),
            "config": _jsonable(config),
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
        # Six significant digits: more than any plot or test of a training run resolves, and
        # half the characters of a float64's repr.
        "payload": _jsonable(payload, digits=6),
    }
    path = results_dir() / f"{name}.json" if path is None else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so an interrupted run never leaves half a file for the chapters to read.
    partial = path.with_suffix(".json.partial")
    # Compact: an indented file of long curves is mostly whitespace and line breaks.
    partial.write_text(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")
    partial.replace(path)
    return path


def load_results(name: str) -> dict | None:
    """The saved record ``{"name", "meta", "payload"}`` for ``name``, or ``None`` if none was saved."""
    path = results_dir() / f"{_check_name(name)}.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(
            f"Saved results {path} are not valid JSON ({err}); delete the file or re-run the experiment"
        ) from err


def _format_seeds(seeds: list[int]) -> str:
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    ordered = sorted(seeds)
    if ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"seeds {ordered[0]}\u2013{ordered[-1]}"
    return "seeds " + ", ".join(map(str, ordered))


def results_note(results: dict) -> str:
    """One line on where saved results come from.

    For example: ``Saved full-size results: 2-core CPU (AMD EPYC), torch 2.13.0, seeds 0–4, run on
    2026-11-29 in 4.2 min.`` (the wall time when the record has it).
    """
    meta = results["meta"]
    date = meta["created_utc"][:10]
    size = meta.get("size", "full")
    wall = (meta.get("config") or {}).get("wall_seconds")
    took = f" in {_format_duration(wall)}" if isinstance(wall, (int, float)) else ""
    return (
        f"Saved {size}-size results: {meta['device']}, torch {meta['torch']}, "
        f"{_format_seeds(meta['seeds'])}, run on {date}{took}."
    )


def _format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def missing_results_note(name: str) -> str:
    """What a page says when ``name`` has no saved full-size results, and how to make them."""
    from .regenerate import missing_note

    return missing_note(name)


if __name__ == "__main__":
    from .regenerate import main

    raise SystemExit(main())
