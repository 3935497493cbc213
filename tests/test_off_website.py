"""The notebooks run where optlib is installed without the repository, as a reader runs them.

The website build and the nbval tests run the notebooks inside the repository, against the
editable install, with ``OPTLIB_STATIC=1``. A reader who installs optlib (Colab's ``pip install``
from git, a wheel) has neither the repository around it nor ``OPTLIB_STATIC``. So this file
installs optlib *non-editably* into a temporary folder (``pip install --no-deps --target``: the
same wheel as ``pip install`` from git), then runs notebooks in a live kernel with that folder as
the only optlib on the path, from a working directory outside the repository, without
``OPTLIB_STATIC`` (so the live sliders run, not the website's players) and without
``OPTLIB_DATA`` or ``OPTLIB_RESULTS``.

Every chapter and solutions notebook in ``_toc.yml`` runs, ``OPTLIB_OFF_WEBSITE_JOBS`` at a
time (default 2, each kernel on one thread): without the players' frames a notebook costs 3 to
25 CPU seconds, and all of them take about 4 minutes on two cores.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from toc_notebooks import toc_notebooks  # noqa: E402  (the one reader of _toc.yml)

CELL_TIMEOUT = 600

# Runs one notebook with nbclient and prints each code cell's seconds as JSON. The cell put first
# fails unless optlib comes from the install and the working directory is outside the repository.
RUNNER = r"""
import json, sys, time
from datetime import datetime
import nbformat
from nbclient import NotebookClient

path, install, root, timeout = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
nb = nbformat.read(path, as_version=4)
nb.cells.insert(0, nbformat.v4.new_code_cell(
    "import os, optlib\n"
    f"assert os.path.realpath(optlib.__file__).startswith(os.path.realpath({install!r}) + os.sep), optlib.__file__\n"
    f"assert not (os.path.realpath(os.getcwd()) + os.sep).startswith(os.path.realpath({root!r}) + os.sep), os.getcwd()\n"
    "assert not any(os.environ.get(k) for k in ('OPTLIB_STATIC', 'OPTLIB_DATA', 'OPTLIB_RESULTS'))\n"
))
# The kernel's CPU seconds, printed last: on a loaded machine they tell more than the wall time.
nb.cells.append(nbformat.v4.new_code_cell(
    "import resource\n"
    "print('CPU', sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)"
    " for f in ('ru_utime', 'ru_stime')))"
))
client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": "."}})
started = time.perf_counter()
client.execute()
total = time.perf_counter() - started
printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs).split()
cpu = float(printed[1]) if printed[:1] == ["CPU"] else None
cells = []
for index, cell in enumerate(nb.cells[1:-1]):
    timing = cell.get("metadata", {}).get("execution", {})
    if cell.cell_type == "code" and "iopub.execute_input" in timing and "shell.execute_reply" in timing:
        start, end = (datetime.fromisoformat(timing[k].replace("Z", "+00:00"))
                      for k in ("iopub.execute_input", "shell.execute_reply"))
        first_line = cell.source.splitlines()[0][:60] if cell.source else ""
        cells.append([index, round((end - start).total_seconds(), 2), first_line])
print("TIMING " + json.dumps({"total": round(total, 1), "cpu": cpu and round(cpu, 1), "cells": cells}))
"""


def toc_notebook_paths() -> list[Path]:
    return [ROOT / path for path in toc_notebooks()]


def install_optlib(target: Path) -> Path:
    """``pip install --no-deps --target target`` from a copy of the sources, so no build/ lands in the repository."""
    source = target.parent / "source"
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.partial")
    for folder in ("optlib", "data"):
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    # Offline when this environment can build the wheel itself; else pip fetches setuptools, as in Colab.
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", *isolation, "--target", str(target), str(source)],
        check=True,
        cwd=target.parent,
    )
    return target


def reader_env(install: Path) -> dict[str, str]:
    """This environment as a reader's kernel has it: optlib only from ``install``, none of the course's variables."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPTLIB_STATIC", "OPTLIB_DATA", "OPTLIB_RESULTS")}
    env["PYTHONPATH"] = str(install)
    return env


def run_notebook(notebook: Path, install: Path, workdir: Path, env: dict[str, str], timeout: int = CELL_TIMEOUT):
    """Run a copy of ``notebook`` in ``workdir``: (return code, output, {"total", "cells"} or None)."""
    workdir.mkdir(parents=True, exist_ok=True)
    copy = workdir / notebook.name
    shutil.copy2(notebook, copy)
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, str(copy), str(install), str(ROOT), str(timeout)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
    )
    found = re.search(r"^TIMING (.*)$", done.stdout, re.M)
    return done.returncode, done.stdout + done.stderr, json.loads(found.group(1)) if found else None


@pytest.fixture(scope="module")
def install(tmp_path_factory) -> Path:
    return install_optlib(tmp_path_factory.mktemp("off_website") / "site")


@pytest.fixture(scope="module")
def notebook_runs(request, install, tmp_path_factory):
    """Starts the notebooks this session collected, ``OPTLIB_OFF_WEBSITE_JOBS`` at a time; each test waits for its own."""
    wanted = [
        item.callspec.params["notebook"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_notebook_runs_off_the_website"
    ]
    env = reader_env(install)
    # One thread per kernel: two kernels on a 2-core machine, not four threads fighting for two cores.
    env.setdefault("OMP_NUM_THREADS", "1")
    outside = tmp_path_factory.mktemp("reader")
    with ThreadPoolExecutor(max_workers=int(os.environ.get("OPTLIB_OFF_WEBSITE_JOBS", "2"))) as pool:
        futures = {nb: pool.submit(run_notebook, nb, install, outside / nb.stem, env) for nb in wanted}
        yield futures
        for future in futures.values():
            future.cancel()


def test_the_install_holds_every_module_and_data_file(install):
    package = install / "optlib"
    modules = {p.relative_to(ROOT / "optlib").as_posix() for p in (ROOT / "optlib").rglob("*.py")}
    installed = {p.relative_to(package).as_posix() for p in package.rglob("*.py")}
    assert modules <= installed, f"not in the wheel (list the package in pyproject.toml): {sorted(modules - installed)}"
    manifest = json.loads((ROOT / "data" / "MANIFEST.json").read_text())["files"]
    for relative, entry in manifest.items():
        content = (package / "_data" / relative).read_bytes()
        assert hashlib.sha256(content).hexdigest() == entry["sha256"], relative
    for saved in (ROOT / "data" / "results").glob("*.json"):
        assert (package / "_data" / "results" / saved.name).read_bytes() == saved.read_bytes(), saved.name


def test_installed_optlib_finds_its_data_and_results_outside_the_repository(install, tmp_path):
    script = (
        "import optlib, optlib.data as D, optlib.results as R\n"
        "from optlib.benchmark import load_benchmark\n"
        "assert D.load_mnist().n_train > 0 and len(D.load_shakespeare().train) > 0\n"
        "load_benchmark('full')\n"
        "print('PATHS', optlib.__file__, D.data_dir(), R.results_dir())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=reader_env(install), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    module, data, results = map(Path, re.search(r"^PATHS (.*)$", done.stdout, re.M).group(1).split())
    package = install.resolve() / "optlib"
    assert module.resolve().parent == package
    assert data.resolve() == package / "_data" and results.resolve() == package / "_data" / "results"


@pytest.mark.parametrize("notebook", toc_notebook_paths(), ids=lambda path: path.name)
def test_notebook_runs_off_the_website(notebook, notebook_runs):
    returncode, output, timing = notebook_runs[notebook].result()
    assert returncode == 0, (
        f"{notebook.name} fails against an installed optlib, outside the repository:\n{output[-8000:]}"
    )
    slowest = sorted(timing["cells"], key=lambda cell: -cell[1])[:3]
    print(f"{notebook.name}: {timing['total']} s ({timing['cpu']} s CPU) in a live kernel; slowest cells {slowest}")
