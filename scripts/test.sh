#!/usr/bin/env bash
# Everything the test suite needs, from a fresh clone: a virtual environment,
# torch, optlib with its book, test, assign and benchmark (peers) extras, Chromium for the browser test
# (where this machine lets us install it), the website build, then pytest over
# optlib's tests, every notebook in _toc.yml (nbval) and the built site.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0" -e ".[book,test,assign,benchmark]"

bash scripts/install_browser.sh || echo "Chromium could not be installed: the browser test will be skipped and say why."

# optlib's sliders show only their precomputed players: no ipywidgets view,
# whose JavaScript myst-nb would load from a CDN (see optlib/widgets.py).
export OPTLIB_STATIC=1
# The course's models are small: a second thread per kernel buys nothing and,
# when pytest and a notebook kernel run at once, oversubscribes the cores
# (measured 30-50x slower training on a loaded 2-core machine). One thread also
# keeps float reductions in one order, so reruns give the same numbers.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

# Lint and format first: they take a second and fail with the line to fix.
ruff check
ruff format --check

# Warnings are errors (-W, -n): a broken reference, citation or notebook fails here.
# Start from an empty _build/html: pages of removed files must not linger. The tests check
# every notebook as this optlib runs it, so no output comes from the execution cache of an
# earlier build (_config.yml: execute_notebooks: cache; scripts/serve.sh reuses it).
jupyter-book clean .
rm -rf _build/.jupyter_cache
# The teachers' pages link to the student notebooks built here (clean empties _build/, so after it).
python scripts/build_assignments.py
jupyter-book build . --all -W -n --keep-going

# tests/test_site.py reads the build above and saves screenshots to _build/screenshots/.
pytest --nbval-lax --nbval-cell-timeout=600 tests $(python scripts/toc_notebooks.py)
