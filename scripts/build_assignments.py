"""Build the graded assignments with Otter-Grader: student notebooks, solutions and autograder zips.

    python scripts/build_assignments.py            # every assignment in assignments/
    python scripts/build_assignments.py 01 3       # only assignments 01 and 03
    python scripts/build_assignments.py --out DIR  # somewhere else than _build/assignments/

Each master notebook ``assignments/NN_slug/NN_slug.ipynb`` goes through ``otter assign`` into
``_build/assignments/NN_slug/``:

* ``student/NN_slug.ipynb``: what students get (no solutions, public tests only);
* ``autograder/NN_slug.ipynb``: the solution notebook;
* ``autograder/NN_slug-autograder.zip``: the autograder, for ``otter run``, ``otter grade`` or Gradescope.

The output folder of an assignment is emptied first, so a rebuild never keeps files of an older
build, and the zip gets a fixed name instead of Otter's timestamped one, so links to it stay valid.
Otter's own test run is skipped (``--no-run-tests``): tests/test_assignments.py grades the solution,
the blank student notebook and typical mistakes with the zip, which checks more. Any failure stops
the script with a non-zero exit status and Otter's output.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENTS = ROOT / "assignments"
DEFAULT_OUT = ROOT / "_build" / "assignments"


def assignment_dirs() -> list[Path]:
    """Every ``assignments/NN_slug/`` folder, in order."""
    return sorted(p for p in ASSIGNMENTS.glob("[0-9][0-9]_*") if p.is_dir())


def select(numbers: list[str]) -> list[Path]:
    """The assignment folders named by their numbers (``1``, ``01``) or all of them for an empty list."""
    folders = assignment_dirs()
    if not numbers:
        return folders
    by_number = {int(f.name[:2]): f for f in folders}
    chosen = []
    for number in numbers:
        if not re.fullmatch(r"\d{1,2}", number) or int(number) not in by_number:
            known = ", ".join(f.name for f in folders) or "none"
            raise SystemExit(f"no assignment numbered {number!r}; there are: {known}")
        chosen.append(by_number[int(number)])
    return chosen


def build(folder: Path, out_root: Path = DEFAULT_OUT) -> dict[str, Path]:
    """Run ``otter assign`` on one assignment; return the paths of the student notebook, solution and zip."""
    name = folder.name
    if not (folder / f"{name}.ipynb").is_file():
        raise RuntimeError(f"{folder} has no master notebook {name}.ipynb")
    out = out_root / name
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Otter resolves the config's `files:` relative to the working directory: run it in the assignment's folder.
    command = [sys.executable, "-m", "otter", "assign", "--no-run-tests", "--no-pdfs", f"{name}.ipynb", str(out)]
    done = subprocess.run(command, check=False, cwd=folder, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(
            f"otter assign failed for {name} (exit status {done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    zips = sorted((out / "autograder").glob("*.zip"))
    if len(zips) != 1:
        raise RuntimeError(f"otter assign made {len(zips)} zip files in {out / 'autograder'}, expected one")
    paths = {
        "student": out / "student" / f"{name}.ipynb",
        "solution": out / "autograder" / f"{name}.ipynb",
        "autograder": out / "autograder" / f"{name}-autograder.zip",
    }
    zips[0].rename(paths["autograder"])
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise RuntimeError(f"otter assign did not make {missing}")
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("numbers", nargs="*", help="assignment numbers (default: all)")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT.relative_to(ROOT)})"
    )
    args = parser.parse_args(argv)
    folders = select(args.numbers)
    if not folders:
        print(f"no assignments in {ASSIGNMENTS.relative_to(ROOT)}/: nothing to build")
        return 0
    out_root = args.out.resolve()
    for folder in folders:
        start = time.perf_counter()
        try:
            paths = build(folder, out_root)
        except RuntimeError as error:
            print(error, file=sys.stderr)
            return 1
        print(f"{folder.name} ({time.perf_counter() - start:.1f} s):")
        for role, path in paths.items():
            shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
            print(f"  {role:<10} {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
