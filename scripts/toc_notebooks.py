"""The pages of _toc.yml in book order; run as a script, the notebooks among them (for pytest --nbval-lax).

tests/test_book_structure.py and tests/test_site.py read the table of contents
through toc_entries() too, so the book, nbval and the tests agree on one list.
"""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _walk(node):
    if isinstance(node, dict):
        if "file" in node:
            yield node["file"]
        for key in ("root", "parts", "chapters", "sections"):
            value = node.get(key)
            if isinstance(value, str):
                yield value
            elif isinstance(value, list):
                for item in value:
                    yield from _walk(item)


def toc_entries() -> list[str]:
    """Every entry of _toc.yml as written there (``intro``, ``chapters/03_sgd``), in book order."""
    return list(_walk(yaml.safe_load((ROOT / "_toc.yml").read_text())))


def toc_notebooks() -> list[str]:
    paths = []
    for name in toc_entries():
        path = ROOT / name
        if not path.suffix:
            # A toc entry names a file without its suffix: a notebook or a Markdown page.
            path = next((path.with_suffix(s) for s in (".ipynb", ".md") if path.with_suffix(s).is_file()), path)
        if path.suffix == ".ipynb":
            if not path.is_file():
                raise SystemExit(f"_toc.yml lists {name}, but {path.relative_to(ROOT)} does not exist")
            paths.append(path.relative_to(ROOT).as_posix())
    return paths


if __name__ == "__main__":
    print(" ".join(toc_notebooks()))
