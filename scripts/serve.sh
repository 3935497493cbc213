#!/usr/bin/env bash
# Build the course website from a fresh clone and serve it on http://localhost:8000.
# The first build executes every notebook (about 8 minutes on a 2-core CPU); later builds execute
# only the notebooks whose code changed, unless optlib changed (see the cache below).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0" -e ".[book,assign]"

# The website shows optlib's precomputed slider players, which need no kernel and no CDN.
export OPTLIB_STATIC=1

# _config.yml's execute_notebooks: cache re-executes a notebook only when its code changed; the
# outputs of the others come from the cache in _build/.jupyter_cache. That cache knows nothing of
# optlib, so it is cleared whenever optlib's sources, data/ (saved results included), the Sphinx
# extension or the installed packages differ from those its notebooks were executed with.
cache=_build/.jupyter_cache
inputs="$(
    {
        find optlib data _ext pyproject.toml -type f ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum
        python -VV
        python -m pip freeze --exclude optlib
    } | sha256sum | cut -d' ' -f1
)"
if [ "$(cat "$cache/optlib-inputs.sha256" 2>/dev/null)" = "$inputs" ]; then
    echo "optlib, data/ and the packages are unchanged: only notebooks whose code changed are executed."
else
    if [ -d "$cache" ]; then
        echo "optlib, data/ or the packages changed since the last build: every notebook is executed again."
    fi
    rm -rf "$cache"
    mkdir -p "$cache"
    echo "$inputs" >"$cache/optlib-inputs.sha256"
fi

# Start from an empty _build/html: pages of removed files must not linger (clean keeps the cache).
jupyter-book clean .
# The teachers' pages link to the student notebooks built here (clean empties _build/, so after it).
python scripts/build_assignments.py
jupyter-book build . --all -W -n --keep-going
echo "The website is in _build/html/ (open _build/html/index.html), served now at http://localhost:${PORT:-8000}"
python -m http.server --bind 127.0.0.1 --directory _build/html "${PORT:-8000}"
