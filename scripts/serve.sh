#!/usr/bin/env bash
# Build the course website from a fresh clone and serve it on http://localhost:8000
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0" -e ".[book,assign]"

# The website shows optlib's precomputed slider players, which need no kernel and no CDN.
export OPTLIB_STATIC=1
# Start from an empty _build/html: pages of removed files must not linger.
jupyter-book clean .
# The teachers' pages link to the student notebooks built here (clean empties _build/, so after it).
python scripts/build_assignments.py
jupyter-book build . --all -W -n --keep-going
echo "The website is in _build/html/ (open _build/html/index.html), served now at http://localhost:${PORT:-8000}"
python -m http.server --bind 127.0.0.1 --directory _build/html "${PORT:-8000}"
