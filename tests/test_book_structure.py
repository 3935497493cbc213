"""The book's sources follow CONTRIBUTING.md: checked on the files, no build needed.

Each chapter notebook is in ``_toc.yml``, stored without outputs, runs in Colab
(its first cell installs optlib only when it is missing), and has the parts every
chapter has: an algorithm box (all but chapters 1 and 13), at least three exercises, and
citations of entries that exist in ``references.bib``.

Solutions form: chapters/NN_slug.ipynb holds each {exercise} (with its :label:) ending in a link
[Solution](solutions/NN_slug_solutions.ipynb#exercise-Nk); chapters/solutions/NN_slug_solutions.ipynb (in _toc.yml)
has per exercise a "## Exercise N.k" heading, the exercise restated, then ```{solution-start} <label>``` with
:class: dropdown, markdown and *code cells* (run by nbval) and ```{solution-end}```; no solution in the chapter.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTER_DIR = ROOT / "chapters"
sys.path.insert(0, str(ROOT / "scripts"))
from toc_notebooks import toc_entries  # noqa: E402  (the one reader of _toc.yml)

TOC_FILES = toc_entries()
NOTEBOOKS = sorted(CHAPTER_DIR.glob("*.ipynb"))
SOLUTION_DIR = CHAPTER_DIR / "solutions"
SOLUTION_NOTEBOOKS = sorted(SOLUTION_DIR.glob("*.ipynb"))


def _companion(chapter: Path) -> Path:
    """chapters/03_sgd.ipynb -> chapters/solutions/03_sgd_solutions.ipynb, where its exercises are solved."""
    return SOLUTION_DIR / f"{chapter.stem}_solutions.ipynb"


def _resolve(name: str) -> Path | None:
    path = ROOT / name
    if path.suffix:
        return path if path.is_file() else None
    for suffix in (".ipynb", ".md"):
        if path.with_suffix(suffix).is_file():
            return path.with_suffix(suffix)
    return None


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _markdown(nb: dict) -> str:
    return "\n\n".join(_source(c) for c in nb["cells"] if c["cell_type"] == "markdown")


def _code_cells(nb: dict) -> list[str]:
    return [_source(c) for c in nb["cells"] if c["cell_type"] == "code"]


def _chapter_number(path: Path) -> int:
    match = re.match(r"(\d+)_", path.name)
    assert match, f"{path.name}: chapter files are named NN_topic.ipynb"
    return int(match.group(1))


# A MyST directive, fenced with backticks or colons, and its option lines.
DIRECTIVE = re.compile(
    r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:-]+)\}[ \t]*(?P<argument>[^\n]*)\n(?P<options>(?:[ \t]*:[\w-]+:[^\n]*\n)*)",
    re.MULTILINE,
)
CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
TERM = re.compile(r"\{term\}`([^`]+)`")


def _directives(text: str, name: str) -> list[tuple[str, dict[str, str]]]:
    found = []
    for match in DIRECTIVE.finditer(text):
        if match.group("name") != name:
            continue
        options = dict(re.findall(r"^[ \t]*:([\w-]+):[ \t]*([^\n]*)$", match.group("options"), re.MULTILINE))
        found.append((match.group("argument").strip(), options))
    return found


def _bib_keys() -> list[str]:
    return re.findall(r"^@\w+\{([^,\s]+),", (ROOT / "references.bib").read_text(encoding="utf-8"), re.MULTILINE)


def _term_target(role_text: str) -> str:
    """``learning rate`` or ``step sizes <learning rate>`` -> ``learning rate``, as Sphinx matches it."""
    target = re.sub(r"(?s).*<(.+)>$", r"\1", role_text.strip())
    return " ".join(target.split()).lower()


def _glossary_terms() -> set[str]:
    text = (ROOT / "glossary.md").read_text(encoding="utf-8")
    body = text.split("```{glossary}", 1)[1].split("\n```", 1)[0]
    # A term is an unindented line; its definition is indented below it.
    return {
        line.strip().lower()
        for line in body.splitlines()
        if line.strip() and not line[0].isspace() and not line.startswith(":")
    }


# --------------------------------------------------------------------------- the table of contents


def test_every_toc_entry_exists():
    missing = [name for name in TOC_FILES if _resolve(name) is None]
    assert not missing, f"_toc.yml lists files that do not exist: {missing}"


def test_every_chapter_notebook_is_in_the_toc_and_vice_versa():
    in_toc = {_resolve(name) for name in TOC_FILES} - {None}
    on_disk = set(NOTEBOOKS)
    assert on_disk - in_toc == set(), f"notebooks missing from _toc.yml: {sorted(p.name for p in on_disk - in_toc)}"
    toc_notebooks = {p for p in in_toc if p.suffix == ".ipynb"}
    outside = toc_notebooks - on_disk - set(SOLUTION_NOTEBOOKS)
    assert outside == set(), (
        f"_toc.yml notebooks outside chapters/ and chapters/solutions/: {sorted(map(str, outside))}"
    )
    assert len(NOTEBOOKS) == 14, f"the course has 14 chapters, chapters/ holds {len(NOTEBOOKS)}"


def test_every_solutions_notebook_belongs_to_a_chapter_and_is_in_the_toc():
    in_toc = {_resolve(name) for name in TOC_FILES} - {None}
    orphans = sorted(p.name for p in SOLUTION_NOTEBOOKS if p not in {_companion(c) for c in NOTEBOOKS})
    assert not orphans, f"chapters/solutions/ holds notebooks that are no chapter's NN_slug_solutions.ipynb: {orphans}"
    missing = sorted(p.name for p in SOLUTION_NOTEBOOKS if p not in in_toc)
    assert not missing, (
        f"solutions notebooks missing from _toc.yml (so neither the book nor nbval runs them): {missing}"
    )


def test_chapters_are_in_numbered_order_in_the_toc():
    order = [_chapter_number(p) for p in (_resolve(n) for n in TOC_FILES) if p is not None and p.parent == CHAPTER_DIR]
    assert order == sorted(order) == list(range(1, len(order) + 1))


def test_reference_pages_are_in_the_toc():
    for page in ("notation", "glossary", "bibliography"):
        assert page in TOC_FILES, f"{page}.md is not in _toc.yml"


# --------------------------------------------------------------------------- each notebook


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.stem)
def notebook(request) -> tuple[Path, dict]:
    return request.param, _load(request.param)


def test_notebook_is_stored_without_outputs(notebook):
    path, nb = notebook
    dirty = [
        i
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} keep outputs or execution counts (clear them before committing)"
    assert "widgets" not in nb.get("metadata", {}), f"{path.name}: saved widget state in the notebook metadata"


def test_notebook_starts_with_its_title(notebook):
    path, nb = notebook
    first = nb["cells"][0]
    assert first["cell_type"] == "markdown" and _source(first).lstrip().startswith("# "), (
        f"{path.name}: the first cell is a markdown cell whose first line is the '# Title'"
    )
    assert nb.get("metadata", {}).get("kernelspec", {}).get("name") == "python3", f"{path.name}: kernel is not python3"


COLAB_GUARD = re.compile(
    r"^try:[ \t]*\n"
    r"[ \t]+import optlib\b[^\n]*\n"
    r"except (?:ImportError|ModuleNotFoundError)(?: as \w+)?:[ \t]*\n"
    r"(?P<body>(?:[ \t]+[^\n]*\n?)+)",
    re.MULTILINE,
)


def test_first_code_cell_installs_optlib_only_when_missing(notebook):
    path, nb = notebook
    cells = _code_cells(nb)
    assert cells, f"{path.name} has no code cell"
    first = re.sub(r"#[^\n]*", "", cells[0])
    guard = COLAB_GUARD.search(first)
    assert guard, (
        f"{path.name}: the first code cell must be `try: import optlib` / `except ImportError:` + %pip install"
    )
    assert re.search(r"[%!]pip install[^\n]*optlib", guard.group("body")), (
        f"{path.name}: the except branch must pip install optlib"
    )
    installs = sum(len(re.findall(r"pip install", re.sub(r"#[^\n]*", "", cell))) for cell in cells)
    guarded = len(re.findall(r"pip install", guard.group("body")))
    assert installs == guarded, f"{path.name}: `pip install` outside the first cell's ImportError guard"
    # The guard cell stays exactly the guard (it is what Colab users see first);
    # the device note comes in the imports cell right after it, before any work.
    assert len(cells) > 1 and "optlib.describe_device()" in cells[1], (
        f"{path.name}: the second code cell (the imports) must call optlib.describe_device()"
    )


def test_colab_cell_is_removed_from_the_website(notebook):
    path, nb = notebook
    for candidate in (path, _companion(path)):
        if not candidate.is_file():
            continue
        first = next(c for c in _load(candidate)["cells"] if c["cell_type"] == "code")
        # Jupyter Book drops cells tagged remove-cell; the notebook keeps it for Colab.
        assert "remove-cell" in first["metadata"].get("tags", []), (
            f"{candidate.name}: tag the Colab install cell `remove-cell`, the website has no use for it"
        )


def test_boxes_and_exercises_render_in_plain_markdown(notebook):
    """Colab renders CommonMark + maths, no MyST: a ```-fenced directive shows as a code block,
    its maths as raw TeX. A :::-fenced one shows its fence lines as text and its body, maths
    included, rendered."""
    from markdown_it import MarkdownIt

    path, nb = notebook
    for candidate in (path, _companion(path)):
        if not candidate.is_file():
            continue
        parser = MarkdownIt("commonmark")
        for cell in _load(candidate)["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            for token in parser.parse("".join(cell["source"])):
                name = re.match(r"\{([\w:-]+)\}", token.info) if token.type == "fence" else None
                assert not (name and name.group(1) in ("prf:algorithm", "exercise")), (
                    f"{candidate.name}: open {{{name.group(1)}}} with ::: (colon fence), not ```: "
                    "in Colab a ```-fenced box is a code block and its maths stays raw TeX"
                )


def _exercise_labels(nb: dict) -> list[str]:
    return [options.get("label") for _, options in _directives(_markdown(nb), "exercise")]


def test_chapter_has_three_exercises_and_no_solution_in_it(notebook):
    """Colab and JupyterLab show MyST dropdowns open: a solution in the chapter would be in plain view."""
    path, nb = notebook
    text = _markdown(nb)
    labels = _exercise_labels(nb)
    assert len(labels) >= 3, f"{path.name}: {len(labels)} exercises, at least 3 needed"
    assert all(labels), f"{path.name}: every exercise needs a :label:"
    assert len(set(labels)) == len(labels), f"{path.name}: duplicate exercise labels {labels}"
    inline = [name for name in ("solution", "solution-start", "solution-end") if _directives(text, name)]
    assert not inline, (
        f"{path.name}: {inline} directives in the chapter; solutions go to {_companion(path).relative_to(ROOT)}"
    )


# An exercise directive and its body, up to the closing fence of the same length (so fenced code inside is fine).
EXERCISE_BLOCK = re.compile(
    r"^(?P<fence>`{3,}|:{3,})\{exercise\}[^\n]*\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.MULTILINE | re.DOTALL
)
# "## Exercise 3.2" -> "exercise-32": the anchor MyST (myst_heading_anchors) and GitHub give the heading.
HEADING = re.compile(r"^#{1,3} +(.+?) *$", re.MULTILINE)


def _slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_each_exercise_links_to_its_solution(notebook):
    path, nb = notebook
    companion = _companion(path)
    assert companion.is_file(), f"{path.name}: no solutions notebook {companion.relative_to(ROOT)}"
    anchors = {_slug(h) for h in HEADING.findall(_markdown(_load(companion)))}
    bodies = {}
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            for match in EXERCISE_BLOCK.finditer(_source(cell)):
                label = re.search(r"^[ \t]*:label:[ \t]*(\S+)", match.group("body"), re.MULTILINE)
                bodies[label.group(1) if label else None] = match.group("body")
    for label in _exercise_labels(nb):
        links = re.findall(r"\]\((solutions/[^)#\s]+)(?:#([\w-]+))?\)", bodies.get(label, ""))
        assert links, f"{path.name}: exercise {label} does not end with a link [Solution](solutions/...#exercise-Nk)"
        target, anchor = links[-1]
        assert CHAPTER_DIR / target == companion, f"{path.name}: {label} links to {target}, not to {companion.name}"
        assert anchor in anchors, f"{path.name}: {label} links to #{anchor}, which is no heading of {companion.name}"


# --------------------------------------------------------------------------- the solutions notebooks


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.stem)
def solutions(request) -> tuple[Path, dict, dict]:
    """(the solutions notebook, its content, the chapter's content); every chapter must have one."""
    chapter = request.param
    path = _companion(chapter)
    assert path.is_file(), f"{chapter.name} has no solutions notebook {path.relative_to(ROOT)}"
    return path, _load(path), _load(chapter)


def test_solutions_notebook_is_a_runnable_notebook(solutions):
    path, nb, _ = solutions
    test_notebook_is_stored_without_outputs((path, nb))
    test_notebook_starts_with_its_title((path, nb))
    test_first_code_cell_installs_optlib_only_when_missing((path, nb))
    test_directives_with_code_inside_use_a_longer_fence((path, nb))


def test_solutions_notebook_solves_every_exercise_in_hidden_code_cells(solutions):
    path, nb, chapter = solutions
    labels = _exercise_labels(chapter)
    text = _markdown(nb)
    gated = _directives(text, "solution-start")
    solved = [argument for argument, _ in gated] + [argument for argument, _ in _directives(text, "solution")]
    assert sorted(solved) == sorted(labels), f"{path.name}: solutions to {solved}, the chapter's exercises are {labels}"
    shown = [
        argument
        for argument, options in gated + _directives(text, "solution")
        if "dropdown" not in options.get("class", "").split()
    ]
    assert not shown, f"{path.name}: solutions not hidden on the website (add `:class: dropdown`): {shown}"
    for label in labels:
        assert f"{{ref}}`{label}`" in text, (
            f"{path.name}: the solution to {label} does not link back to it with {{ref}}`{label}`"
        )
    fenced = re.findall(r"^`{3,}(?:python|ipython3?|py)\s*$", text, re.MULTILINE)
    assert not fenced, f"{path.name}: code in a Markdown fence is never run; put it in a code cell"
    # Walk the cells: every code cell after the first solution sits between a solution-start and its
    # solution-end (so the website folds it into the dropdown), and gated solutions do not nest.
    inside, seen, code_cells = None, False, {}
    for i, cell in enumerate(nb["cells"]):
        source = _source(cell)
        if cell["cell_type"] == "code":
            assert inside or not seen, f"{path.name}: code cell {i} lies outside every solution dropdown"
            if inside:
                code_cells[inside] = code_cells.get(inside, 0) + 1
            continue
        for match in re.finditer(r"^`{3,}\{(solution-start|solution-end)\}[ \t]*(\S*)", source, re.MULTILINE):
            if match.group(1) == "solution-start":
                assert inside is None, f"{path.name}: solution-start {match.group(2)} inside the solution to {inside}"
                inside, seen = match.group(2), True
            else:
                assert inside, f"{path.name}: solution-end without a solution-start in cell {i}"
                inside = None
    assert inside is None, f"{path.name}: the solution to {inside} has no solution-end"
    with_code = [label for label, _ in gated if code_cells.get(label)]
    assert len(with_code) >= len(labels) // 2, f"{path.name}: only {with_code} of {labels} have code cells that run"


def test_solutions_notebook_cites_and_terms_exist(solutions):
    path, nb, _ = solutions
    cited = [key.strip() for group in CITE.findall(_markdown(nb)) for key in group.split(",")]
    assert set(cited) <= set(_bib_keys()), (
        f"{path.name}: cites keys missing from references.bib: {sorted(set(cited) - set(_bib_keys()))}"
    )
    terms = {_term_target(term) for term in TERM.findall(_markdown(nb))}
    assert terms <= _glossary_terms(), (
        f"{path.name}: {{term}} targets missing from glossary.md: {sorted(terms - _glossary_terms())}"
    )


def _directives_closed_by_inner_code(text: str) -> list[str]:
    """Directives fenced with ``` that contain a fenced code block.

    The code block's closing ``` ends the directive early in MyST, and the
    directive's own closing fence then opens a code block that swallows what
    follows (the next exercise, say). Such directives need a longer outer fence.
    """
    broken, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        opening = re.match(r"^```\{([\w:-]+)\}[ \t]*(.*)$", lines[i])
        i += 1
        if not opening:
            continue
        while i < len(lines) and not re.match(r"^```\s*$", lines[i]):
            if re.match(r"^```[\w+-]+\s*$", lines[i]):
                broken.append(f"{opening.group(1)} {opening.group(2)}".strip())
                break
            i += 1
        i += 1
    return broken


def test_directives_with_code_inside_use_a_longer_fence(notebook):
    path, nb = notebook
    broken = _directives_closed_by_inner_code(_markdown(nb))
    assert not broken, f"{path.name}: open these with ```` (4 backticks), they contain fenced code: {broken}"


def test_chapter_has_an_algorithm_box(notebook):
    path, nb = notebook
    if _chapter_number(path) in (1, 13):
        pytest.skip("chapters 1 and 13 present no new update rule")  # 14 has LAMB's
    boxes = _directives(_markdown(nb), "prf:algorithm")
    assert boxes, f"{path.name}: no ```{{prf:algorithm}} box with the update rule"
    assert all(options.get("label") for _, options in boxes), f"{path.name}: every algorithm box needs a :label:"


def test_chapter_cites_existing_references(notebook):
    path, nb = notebook
    cited = [key.strip() for group in CITE.findall(_markdown(nb)) for key in group.split(",")]
    assert cited, f"{path.name}: cites nothing from references.bib (use {{cite:p}}`key`)"
    unknown = sorted(set(cited) - set(_bib_keys()))
    assert not unknown, f"{path.name}: cites keys missing from references.bib: {unknown}"


def test_chapter_terms_are_in_the_glossary(notebook):
    path, nb = notebook
    terms = {_term_target(term) for term in TERM.findall(_markdown(nb))}
    unknown = sorted(terms - _glossary_terms())
    assert not unknown, f"{path.name}: {{term}} targets missing from glossary.md: {unknown}"


# --------------------------------------------------------------------------- the reference pages


PRIMARY_SOURCES = [
    "robbins1951stochastic",
    "polyak1964some",
    "nesterov1983method",
    "sutskever2013importance",
    "duchi2011adaptive",
    "tieleman2012lecture",
    "graves2013generating",
    "kingma2015adam",
    "reddi2018convergence",
    "loshchilov2019decoupled",
    "dozat2016incorporating",
    "goh2017why",
    "greydanus2020scaling",
    "karpathy2022nanogpt",
    "dahl2023benchmarking",
    "defazio2024road",
    "xie2024adan",
    "bottou2018optimization",
    "zhang2023dive",
    "keskar2017large",
    "wilson2017marginal",
    "goyal2017accurate",
    "lecun1998gradient",
    "mccandlish2018empirical",
]


def test_bibliography_has_the_primary_sources_once_each():
    keys = _bib_keys()
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    assert not duplicates, f"references.bib defines these keys twice: {duplicates}"
    missing = sorted(set(PRIMARY_SOURCES) - set(keys))
    assert not missing, f"references.bib lacks {missing}"
    entries = re.split(r"^@", (ROOT / "references.bib").read_text(encoding="utf-8"), flags=re.MULTILINE)[1:]
    for entry in entries:
        key = entry.split("{", 1)[1].split(",", 1)[0]
        for field in ("author", "title", "year"):
            assert re.search(rf"^\s*{field}\s*=", entry, re.MULTILINE), f"{key} has no {field}"


def test_glossary_terms_have_a_ukrainian_equivalent():
    text = (ROOT / "glossary.md").read_text(encoding="utf-8")
    body = text.split("```{glossary}", 1)[1].split("\n```", 1)[0]
    entries = re.split(r"\n(?=\S)", body.strip())
    entries = [entry for entry in entries if not entry.startswith(":")]
    assert len(entries) >= 35, f"the glossary has {len(entries)} terms"
    for entry in entries:
        term, _, definition = entry.partition("\n")
        assert re.match(r"\s+\*\*uk:\*\* [^\n]*[а-щьюяєіїґ]", definition, re.IGNORECASE), (
            f"{term!r} has no **uk:** line in Ukrainian"
        )


def test_glossary_cross_references_resolve():
    text = (ROOT / "glossary.md").read_text(encoding="utf-8")
    terms = {_term_target(term) for term in TERM.findall(text)}
    assert terms <= _glossary_terms(), f"glossary.md links to undefined terms: {sorted(terms - _glossary_terms())}"
