"""Print the notebooks listed in _toc.yml, in book order, for pytest --nbval-lax."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def toc_files(node):
    if isinstance(node, dict):
        if "file" in node:
            yield node["file"]
        for value in node.values():
            if isinstance(value, (list, dict)):
                yield from toc_files(value)
    elif isinstance(node, list):
        for item in node:
            yield from toc_files(item)


def toc_notebooks():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    paths = []
    for name in toc_files(toc):
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
