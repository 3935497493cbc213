"""The graded assignments in ``assignments/``: the grader is right and the student version hides what it must.

For every ``assignments/NN_slug/`` (found at collection time, so a new assignment is tested as
soon as it lands), built with ``scripts/build_assignments.py`` once per test session:

1. the build makes the student notebook, the solution notebook and the autograder zip;
2. the solution scores full marks under ``otter run`` with that zip, with no cell error;
3. the untouched student notebook runs to the end with no cell error and scores 0 on
   every autograded question;
4. every typical mistake in ``mistakes.json`` (at least two), applied to the solution, gets
   partial credit, and the output of the failing question names the mistake;
5. no solution line and no hidden test reaches the student notebook;

plus the layout of ASSIGNMENTS.md (4-8 autograded and 1-2 written questions, learning goals, a
time estimate of 60-120 minutes, the Colab install cell, public tests that work in Colab) and
the website's part For teachers (a page per assignment that offers only the student notebook).
Each ``otter run`` executes a notebook in a fresh kernel (about 5-20 s); the tests are
independent, so pytest-xdist (``-n 2``), where installed, spreads them over cores.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import build_assignments  # noqa: E402  (the build command under test)
from toc_notebooks import toc_entries  # noqa: E402  (the one reader of _toc.yml)

ASSIGNMENTS = build_assignments.assignment_dirs()
OTTER_RUN_TIMEOUT_S = 300

pytestmark = pytest.mark.skipif(not ASSIGNMENTS, reason="no assignments in assignments/ yet")


def _ids(folder: Path) -> str:
    return folder.name


# --------------------------------------------------------------------------- reading the master notebook


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


BOUNDARY = re.compile(r"^\s*#\s*(BEGIN|END)\s+(QUESTION|SOLUTION|TESTS|PROMPT)\b", re.IGNORECASE)
TEST_CONFIG = re.compile(
    r'(?s)^\s*(?:\w+\s*=\s*)?"""\s*#\s*BEGIN\s+TEST\s+CONFIG(.*?)"""\s*#\s*END\s+TEST\s+CONFIG[^\n]*\n?'
)


@cache
def master(folder: Path) -> dict:
    """The parts of an Otter master notebook that the checks need, read the way ``otter assign`` reads them.

    Returns a dict with ``questions`` (name -> {"manual", "public", "hidden"} test counts),
    ``solution_lines`` (lines students must not see: inside solution markers, ``# SOLUTION``
    lines, Markdown solutions), ``hidden_lines`` (lines of hidden test cells) and
    ``visible_lines`` (everything else, which students may see and which may repeat a line).
    """
    nb = _load(folder / f"{folder.name}.ipynb")
    blocks: list[str] = []
    questions: dict[str, dict] = {}
    question = None
    solution_lines, hidden_lines, visible = [], [], []
    for cell in nb["cells"]:
        text = _source(cell)
        if cell["cell_type"] == "raw" and text.lstrip().startswith("# ASSIGNMENT CONFIG"):
            continue
        boundary = BOUNDARY.match(text) if cell["cell_type"] in ("raw", "markdown") else None
        if boundary:
            kind, block = boundary.group(1).upper(), boundary.group(2).upper()
            if kind == "BEGIN":
                blocks.append(block)
                if block == "QUESTION":
                    config = {}
                    for line in text.splitlines()[1:]:
                        key, _, value = line.partition(":")
                        config[key.strip()] = value.strip()
                    question = config.get("name")
                    manual = config.get("manual", "false").lower() == "true"
                    questions[question] = {"manual": manual, "public": 0, "hidden": 0}
            else:
                assert blocks and blocks[-1] == block, f"{folder.name}: END {block} without BEGIN {block}"
                blocks.pop()
            continue
        inside = blocks[-1] if blocks else None
        if inside == "TESTS" and cell["cell_type"] == "code":
            config = TEST_CONFIG.match(text)
            if config:
                hidden = bool(re.search(r"^\s*hidden\s*:\s*true\s*$", config.group(1), re.MULTILINE | re.IGNORECASE))
                body = text[config.end() :]
            else:
                first = text.lstrip().split("\n", 1)[0]
                hidden = first.startswith("#") and bool(re.search(r"\bhidden\b", first, re.IGNORECASE))
                body = text
            questions[question]["hidden" if hidden else "public"] += 1
            (hidden_lines if hidden else visible).extend(body.splitlines())
        elif inside == "SOLUTION" and cell["cell_type"] == "markdown":
            solution_lines.extend(text.splitlines())
        elif inside == "SOLUTION" and cell["cell_type"] == "code":
            hidden_part, shown = _split_solution(text)
            solution_lines.extend(hidden_part)
            visible.extend(shown)
        else:
            visible.extend(text.splitlines())
    return {
        "nb": nb,
        "questions": questions,
        "solution_lines": solution_lines,
        "hidden_lines": hidden_lines,
        "visible_lines": {line.strip() for line in visible},
    }


def _split_solution(text: str) -> tuple[list[str], list[str]]:
    """Lines of a solution code cell that ``otter assign`` removes, and those it keeps."""
    removed, kept, inside = [], [], False
    for line in text.splitlines():
        stripped = line.rstrip()
        if re.match(r"\s*# BEGIN SOLUTION", line):
            inside = True
        elif stripped.endswith("# END SOLUTION"):
            inside = False
        elif inside or re.search(r"# ?SOLUTION( NO PROMPT)?$", stripped):
            removed.append(line)
        else:
            kept.append(line)
    return removed, kept


TRIVIAL = {"", "pass", "...", "else:", "try:", "finally:", "return", "break", "continue", '"""', "'''", "**Answer.**"}


def _telling(line: str, visible_lines: set[str]) -> bool:
    """Whether a solution or hidden-test line would give something away if students saw it."""
    stripped = line.strip()
    if stripped in TRIVIAL or not re.search(r"[A-Za-z0-9]", stripped):
        return False
    # A line the students see anyway (a test's `import torch`, a signature) gives nothing away.
    return stripped not in visible_lines


def _normal(line: str) -> str:
    return line.strip().replace('"', "'")


def _strings(node) -> list[str]:
    """Every string in a JSON document: cell sources, outputs and metadata (Otter keeps public tests there)."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value)]
    return []


# --------------------------------------------------------------------------- building and grading


@pytest.fixture(scope="session")
def build_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("assignments")


_BUILT: dict[Path, dict[str, Path]] = {}


@pytest.fixture
def built(build_root):
    """Build an assignment with scripts/build_assignments.py, once per session (and per xdist worker)."""

    def get(folder: Path) -> dict[str, Path]:
        if folder not in _BUILT:
            done = subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "scripts" / "build_assignments.py"),
                    folder.name[:2],
                    "--out",
                    str(build_root),
                ],
                check=False,
                capture_output=True,
                text=True,
                timeout=OTTER_RUN_TIMEOUT_S,
            )
            assert done.returncode == 0, f"building {folder.name} failed:\n{done.stdout}\n{done.stderr}"
            out = build_root / folder.name
            _BUILT[folder] = {
                "student": out / "student" / f"{folder.name}.ipynb",
                "solution": out / "autograder" / f"{folder.name}.ipynb",
                "autograder": out / "autograder" / f"{folder.name}-autograder.zip",
            }
        return _BUILT[folder]

    return get


def otter_run(notebook: Path, autograder: Path, workdir: Path, *, debug: bool) -> dict:
    """Grade one submission as a teacher does (``otter run``, no Docker); return results.json.

    ``debug`` makes any error in a notebook cell fail the run instead of being skipped.
    """
    submission = workdir / "submission" / notebook.name
    submission.parent.mkdir(parents=True, exist_ok=True)
    if submission != notebook:
        shutil.copy(notebook, submission)
    results = workdir / "results"
    results.mkdir(exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "otter",
        "run",
        "--no-logo",
        "-a",
        str(autograder),
        "-o",
        str(results),
        str(submission),
    ]
    if debug:
        command.insert(4, "--debug")
    done = subprocess.run(
        command, check=False, cwd=workdir, capture_output=True, text=True, timeout=OTTER_RUN_TIMEOUT_S
    )
    assert done.returncode == 0, (
        f"otter run failed on {notebook.name} (exit status {done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    )
    return _load(results / "results.json")


def scores(results: dict) -> dict[str, tuple[float, float, str]]:
    """question -> (score, max score, output), for the autograded questions in results.json."""
    return {
        test["name"]: (float(test["score"]), float(test["max_score"]), test.get("output", ""))
        for test in results["tests"]
        if test.get("max_score") is not None
    }


MISTAKES = []
for _folder in ASSIGNMENTS:
    _path = _folder / "mistakes.json"
    if _path.is_file():
        MISTAKES += [(_folder, m) for m in json.loads(_path.read_text(encoding="utf-8"))]


# --------------------------------------------------------------------------- the layout


@pytest.mark.parametrize("folder", ASSIGNMENTS, ids=_ids)
def test_folder_holds_its_master_notebook(folder):
    assert (folder / f"{folder.name}.ipynb").is_file(), f"{folder.name}/ has no master notebook {folder.name}.ipynb"


@pytest.mark.parametrize("folder", ASSIGNMENTS, ids=_ids)
def test_master_is_stored_without_outputs(folder):
    nb = master(folder)["nb"]
    dirty = [
        i
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)
    ]
    assert not dirty, f"{folder.name}: cells {dirty} keep outputs or execution counts (clear them before committing)"


@pytest.mark.parametrize("folder", ASSIGNMENTS, ids=_ids)
def test_has_4_to_8_autograded_and_1_to_2_written_questions(folder):
    questions = master(folder)["questions"]
    autograded = [q for q, info in questions.items() if not info["manual"]]
    written = [q for q, info in questions.items() if info["manual"]]
    assert 4 <= len(autograded) <= 8, f"{folder.name}: {len(autograded)} autograded questions {autograded}, 4-8 needed"
    assert 1 <= len(written) <= 2, (
        f"{folder.name}: {len(written)} written (manual: true) questions {written}, 1-2 needed"
    )
    for name in autograded:
        info = questions[name]
        assert info["public"] >= 1, f"{folder.name} {name}: no public test (students need one to check their work)"
        assert info["hidden"] >= 1, f"{folder.name} {name}: no hidden test (hidden tests decide the grade)"


def _minutes(text: str) -> list[float]:
    """Durations written in a text: '90 minutes', '60-120 min', '1.5 hours', '1-2 h'."""
    found = []
    for low, high, unit in re.findall(
        r"(\d+(?:\.\d+)?)(?:\s*(?:–|-|to)\s*(\d+(?:\.\d+)?))?\s*(min(?:utes?)?|h(?:ours?|rs?)?)\b", text
    ):
        factor = 1.0 if unit.startswith("m") else 60.0
        found += [float(v) * factor for v in (low, high) if v]
    return found


@pytest.mark.parametrize("folder", ASSIGNMENTS, ids=_ids)
def test_opens_with_title_goals_and_time_estimate(folder):
    nb = master(folder)["nb"]
    markdown = [c for c in nb["cells"] if c["cell_type"] == "markdown"]
    assert markdown, f"{folder.name}: no Markdown cell"
    top = _source(markdown[0])
    assert top.lstrip().startswith("# "), f"{folder.name}: the first Markdown cell starts with the '# Title'"
    assert re.search(r"goal", top, re.IGNORECASE), (
        f"{folder.name}: the first Markdown cell must state the learning goals"
    )
    durations = _minutes(top)
    assert durations, f"{folder.name}: the first Markdown cell must give a time estimate (e.g. 'about 90 minutes')"
    assert all(60 <= m <= 120 for m in durations), f"{folder.name}: time estimate {durations} minutes is outside 60-120"
    assert "grader.check" in top, f'{folder.name}: the top must say how to check your work (grader.check("q1"))'


@pytest.mark.parametrize("folder", ASSIGNMENTS, ids=_ids)
def test_first_code_cell_installs_optlib_and_otter_in_colab(folder):
    nb = master(folder)["nb"]
    first = next(_source(c) for c in nb["cells"] if c["cell_type"] == "code")
    guard = re.search(
        r"^try:[ \t]*\n(?P<body>(?:[ \t]+[^\n]*\n|[ \t]*\n)+)except (?:ImportError|ModuleNotFoundError)\b",
        first,
        re.MULTILINE,
    )
    assert guard and re.search(r"^\s+import optlib\b", guard.group("body"), re.MULTILINE), (
        f"{folder.name}: the first code cell must try `import optlib` and install only on ImportError"
    )
    assert re.search(r"pip install[^\n]*optlib", first) and "otter-grader" in first, (
        f"{folder.name}: the first code cell must install optlib and otter-grader when they are missing"
    )


@pytest.mark.parametrize("folder", ASSIGNMENTS, ids=_ids)
def test_public_tests_work_in_colab(folder):
    """Otter reads public tests from the notebook file, which Colab hides from the kernel (Otter then refuses
    metadata tests); the set-up cell must fetch the notebook from Colab and write the tests to files."""
    code = "\n".join(_source(c) for c in master(folder)["nb"]["cells"] if c["cell_type"] == "code")
    assert "google.colab" in code and "get_ipynb" in code and "tests_dir=" in code, (
        f"{folder.name}: in Colab, write the notebook's public tests to files and use otter.Notebook(tests_dir=...), "
        "as assignments/01_gradient_descent's set-up cell does"
    )


@pytest.mark.parametrize("folder", ASSIGNMENTS, ids=_ids)
def test_lists_at_least_two_typical_mistakes(folder):
    path = folder / "mistakes.json"
    assert path.is_file(), f"{folder.name}: no mistakes.json"
    mistakes = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(mistakes, list) and len(mistakes) >= 2, (
        f"{folder.name}: mistakes.json needs at least two mistakes"
    )
    names = [m.get("name") for m in mistakes]
    assert len(set(names)) == len(names) and all(names), (
        f"{folder.name}: mistake names must be unique and non-empty: {names}"
    )
    autograded = {q for q, info in master(folder)["questions"].items() if not info["manual"]}
    for mistake in mistakes:
        missing = {"name", "question", "find", "replace", "message"} - set(mistake)
        assert not missing, f"{folder.name} {mistake.get('name')}: missing keys {sorted(missing)}"
        assert mistake["question"] in autograded, (
            f"{folder.name} {mistake['name']}: {mistake['question']} is not an autograded question"
        )
        assert mistake["find"] != mistake["replace"] and mistake["message"].strip(), (
            f"{folder.name} {mistake['name']}: empty mistake"
        )


# --------------------------------------------------------------------------- the build and the grader


@pytest.mark.parametrize("folder", ASSIGNMENTS, ids=_ids)
def test_build_makes_student_solution_and_autograder(folder, built):
    paths = built(folder)
    for role, path in paths.items():
        assert path.is_file() and path.stat().st_size > 0, f"{folder.name}: the build made no {role} file {path}"
    student = _load(paths["student"])
    assert not any(c.get("outputs") for c in student["cells"] if c["cell_type"] == "code"), (
        f"{folder.name}: student notebook has outputs"
    )


@pytest.mark.parametrize("folder", ASSIGNMENTS, ids=_ids)
def test_solution_scores_full_marks(folder, built, tmp_path):
    paths = built(folder)
    results = scores(otter_run(paths["solution"], paths["autograder"], tmp_path, debug=True))
    autograded = {q for q, info in master(folder)["questions"].items() if not info["manual"]}
    assert set(results) == autograded, f"{folder.name}: graded {sorted(results)}, the master has {sorted(autograded)}"
    lost = {q: out for q, (score, top, out) in results.items() if score < top}
    assert not lost, f"{folder.name}: the solution loses points:\n" + "\n".join(
        f"{q}: {out}" for q, out in lost.items()
    )


@pytest.mark.parametrize("folder", ASSIGNMENTS, ids=_ids)
def test_blank_student_notebook_runs_and_scores_zero(folder, built, tmp_path):
    paths = built(folder)
    # --debug: a cell that crashes before the student wrote anything fails here.
    results = scores(otter_run(paths["student"], paths["autograder"], tmp_path, debug=True))
    assert results, f"{folder.name}: nothing was graded"
    earned = {q: score for q, (score, _, _) in results.items() if score > 0}
    assert not earned, (
        f"{folder.name}: the blank notebook earns points {earned}: a test passes without the student's code"
    )


@pytest.mark.parametrize("folder, mistake", MISTAKES, ids=[f"{f.name}-{m.get('name')}" for f, m in MISTAKES])
def test_typical_mistake_gets_partial_credit_and_is_named(folder, mistake, built, tmp_path):
    paths = built(folder)
    nb = _load(paths["solution"])
    hits = [(i, _source(c).count(mistake["find"])) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]
    hits = [(i, n) for i, n in hits if n]
    assert sum(n for _, n in hits) == 1, (
        f"{folder.name} {mistake['name']}: `find` occurs {sum(n for _, n in hits)} times in the solution, must be once"
    )
    cell = nb["cells"][hits[0][0]]
    cell["source"] = _source(cell).replace(mistake["find"], mistake["replace"])
    submission = tmp_path / "submission" / paths["solution"].name
    submission.parent.mkdir(parents=True)
    submission.write_text(json.dumps(nb), encoding="utf-8")
    results = scores(otter_run(submission, paths["autograder"], tmp_path, debug=False))
    total, full = sum(s for s, _, _ in results.values()), sum(t for _, t, _ in results.values())
    assert 0 < total < full, f"{folder.name} {mistake['name']}: scores {total}/{full}, partial credit expected"
    score, top, output = results[mistake["question"]]
    assert score < top, f"{folder.name} {mistake['name']}: {mistake['question']} still gets full marks"
    assert mistake["message"] in output, (
        f"{folder.name} {mistake['name']}: the failing {mistake['question']} does not say {mistake['message']!r}; it says:\n{output}"
    )


@pytest.mark.parametrize("folder", ASSIGNMENTS, ids=_ids)
def test_student_notebook_has_no_solution_and_no_hidden_test(folder, built):
    info = master(folder)
    # Line by line, quotes unified: Otter rewrites test code with ast.unparse, which changes " to '.
    student_lines = {_normal(line) for text in _strings(_load(built(folder)["student"])) for line in text.splitlines()}
    leaked = {
        kind: [
            line.strip() for line in lines if _telling(line, info["visible_lines"]) and _normal(line) in student_lines
        ]
        for kind, lines in (("solution", info["solution_lines"]), ("hidden test", info["hidden_lines"]))
    }
    assert info["solution_lines"], f"{folder.name}: found no solution lines in the master notebook"
    assert info["hidden_lines"], f"{folder.name}: found no hidden tests in the master notebook"
    for kind, lines in leaked.items():
        assert not lines, f"{folder.name}: {kind} lines in the student notebook: {lines[:10]}"


# --------------------------------------------------------------------------- the teachers' pages on the website


TEACHERS = ROOT / "teachers"
DOWNLOAD = re.compile(r"\{download\}`[^`<]*<([^>`]+)>`")


@pytest.mark.parametrize("folder", ASSIGNMENTS, ids=_ids)
def test_has_a_teachers_page_that_offers_the_student_notebook(folder):
    page = TEACHERS / f"{folder.name}.md"
    assert page.is_file(), f"{folder.name}: no page teachers/{folder.name}.md (goals, time, chapters, download)"
    assert f"teachers/{folder.name}" in toc_entries(), f"teachers/{folder.name} is not in _toc.yml's part For teachers"
    targets = DOWNLOAD.findall(page.read_text(encoding="utf-8"))
    expected = f"../_build/assignments/{folder.name}/student/{folder.name}.ipynb"
    assert targets == [expected], (
        f"teachers/{folder.name}.md must offer exactly {{download}}`...<{expected}>`, it offers {targets}"
    )


def test_teachers_pages_belong_to_assignments_and_offer_no_solution():
    for page in sorted(TEACHERS.glob("*.md")):
        if re.match(r"\d\d_", page.name):
            assert (ROOT / "assignments" / page.stem / f"{page.stem}.ipynb").is_file(), (
                f"teachers/{page.name} describes an assignment that does not exist"
            )
        for target in DOWNLOAD.findall(page.read_text(encoding="utf-8")):
            assert "/student/" in target and "autograder" not in target, (
                f"teachers/{page.name} offers {target}: only student notebooks"
            )
