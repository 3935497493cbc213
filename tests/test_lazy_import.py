"""A script that only wants an optimizer pays only for the optimizer.

``optlib.AdamW`` must load ``optlib.optim`` and nothing else of optlib, and none of
the heavy libraries the course's other modules use (matplotlib, IPython,
scikit-learn); every other public name must still be reachable as ``optlib.<name>``.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import optlib


def _modules_after(code: str) -> list[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def test_an_optimizer_loads_only_optlib_optim():
    modules = _modules_after("import optlib\nopt = optlib.AdamW\nopt = optlib.NesterovAdamW")
    ours = [m for m in modules if m.startswith("optlib")]
    assert all(m == "optlib" or m.startswith("optlib.optim") for m in ours), ours
    heavy = [m for m in ("matplotlib", "IPython", "sklearn", "ipywidgets", "mnist1d") if m in modules]
    assert not heavy, f"optlib.AdamW imported {heavy}"


def test_every_public_name_is_reachable():
    for name in optlib._SUBMODULES:
        module = importlib.import_module(f"optlib.{name}")
        for public in module.__all__:
            assert hasattr(optlib, public), f"optlib.{public} (listed in optlib.{name}.__all__) is not reachable"
    assert "NesterovAdamW" in dir(optlib) and "train" in dir(optlib)
