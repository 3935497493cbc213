"""The notebooks run where optlib is installed without the repository, as a reader runs them.

The website build and the nbval tests run the notebooks inside the repository, against the
editable install, with ``OPTLIB_STATIC=1``. A reader who installs optlib (Colab's ``pip install``
from git, a wheel) has neither the repository around it nor ``OPTLIB_STATIC``. So this file
installs optlib *non-editably* into a temporary folder (``pip install --no-deps --target``: the
same wheel as ``pip install`` from git), then runs notebooks in a live kernel with that folder as
the only optlib on the path, from a working directory outside the repository, without
``OPTLIB_STATIC`` (so the live sliders run, not the website's players) and without
``OPTLIB_DATA`` or ``OPTLIB_RESULTS``.

Which notebooks: every notebook in ``_toc.yml`` whose code reads shipped data or saved results
(through the optlib calls that ``READS_DATA`` matches); that is where an installed optlib can
differ from a checkout. A notebook that reads neither runs the same code against the same
modules, and ``test_the_install_holds_every_module_and_data_file`` checks that they are all
installed; ``OPTLIB_OFF_WEBSITE=all`` runs those too. ``OPTLIB_OFF_WEBSITE_JOBS`` notebooks
(default 2) run at a time, each kernel on one thread.
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

# optlib calls that read data/ or data/results/, directly or through the experiment helpers.
DATA_READERS = (
    "load_results",
    "results_note",
    "show_experiment",
    "compare_optimizers",
    "load_experiment_data",
    "load_mnist",
    "load_shakespeare",
    "verify_file",
    "data_dir",
    "results_dir",
    "load_benchmark",
)
READS_DATA = re.compile(r"\b(" + "|".join(DATA_READERS) + r")\b")
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
cpu = float(nb.cells[-1].outputs[0]["text"].split()[1])
cells = []
for index, cell in enumerate(nb.cells[1:-1]):
    timing = cell.get("metadata", {}).get("execution", {})
    if cell.cell_type == "code" and "iopub.execute_input" in timing and "shell.execute_reply" in timing:
        start, end = (datetime.fromisoformat(timing[k].replace("Z", "+00:00"))
                      for k in ("iopub.execute_input", "shell.execute_reply"))
        first_line = cell.source.splitlines()[0][:60] if cell.source else ""
        cells.append([index, round((end - start).total_seconds(), 2), first_line])
print("TIMING " + json.dumps({"total": round(total, 1), "cpu": round(cpu, 1), "cells": cells}))
"""


def reads_data(notebook: Path) -> bool:
    cells = json.loads(notebook.read_text())["cells"]
    return any(READS_DATA.search("".join(c["source"])) for c in cells if c["cell_type"] == "code")


def selected_notebooks() -> list[Path]:
    notebooks = [ROOT / path for path in toc_notebooks()]
    if os.environ.get("OPTLIB_OFF_WEBSITE", "").strip().lower() == "all":
        return notebooks
    return [path for path in notebooks if reads_data(path)]


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
    """Starts the notebooks this session selected, ``OPTLIB_OFF_WEBSITE_JOBS`` at a time; each test waits for its own."""
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


def test_the_selection_follows_optlib_names():
    # A renamed reader would silently drop the notebooks that call it from this test.
    import optlib
    from optlib import benchmark, data, experiment, results

    modules = (optlib, data, results, experiment, benchmark)
    missing = [name for name in DATA_READERS if not any(hasattr(module, name) for module in modules)]
    assert not missing, f"DATA_READERS names calls optlib no longer has: {missing}"
    assert selected_notebooks(), "no notebook reads data: the selection is broken"


@pytest.mark.parametrize("notebook", selected_notebooks(), ids=lambda path: path.name)
def test_notebook_runs_off_the_website(notebook, notebook_runs):
    returncode, output, timing = notebook_runs[notebook].result()
    assert returncode == 0, (
        f"{notebook.name} fails against an installed optlib, outside the repository:\n{output[-8000:]}"
    )
    slowest = sorted(timing["cells"], key=lambda cell: -cell[1])[:3]
    print(f"{notebook.name}: {timing['total']} s ({timing['cpu']} s CPU) in a live kernel; slowest cells {slowest}")
