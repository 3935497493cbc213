"""Sphinx extension for the course website: offline maths and static widgets.

* MathJax 3 is served from the site itself (``_static/mathjax/``), copied from
  the ``sphinx-mathjax-offline`` wheel, so equations render with the network off
  and nothing is fetched from a CDN.
* sphinx-thebe's scripts are left out of the pages while the thebe launch
  button is off: Jupyter Book registers its configuration script twice, and
  the second ``const THEBE_JS_URL`` is a JavaScript error on every page.
* ``OPTLIB_STATIC=1`` is set before any notebook executes, so optlib's sliders
  emit only their precomputed HTML players. A live ipywidgets view would need
  widget JavaScript from a CDN (which the configuration refuses to inject) and a
  running kernel, neither of which a static page has.
"""

import importlib.util
import os
import shutil
from pathlib import Path

from sphinx.errors import ExtensionError

# The MathJax package ships every combined component; the site loads only
# ``tex-chtml.js``. The folders stay: MathJax loads TeX extensions
# (``\require``, autoloaded packages), CommonHTML fonts, and the context menu's
# accessibility and speech modules from them on demand.
_UNUSED_COMPONENTS = {
    "latest.js",
    "mml-chtml.js",
    "mml-svg.js",
    "node-main.js",
    "tex-chtml-full-speech.js",
    "tex-chtml-full.js",
    "tex-mml-chtml.js",
    "tex-mml-svg.js",
    "tex-svg-full.js",
    "tex-svg.js",
}


def mathjax_source() -> Path:
    # The wheel's top-level folder has dashes in its name, so it is found by
    # spec rather than imported (importing it would also register its own
    # copy-everything hook).
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or not spec.submodule_search_locations:
        raise ExtensionError(
            "MathJax for the offline website is missing: "
            "pip install sphinx-mathjax-offline (it is in optlib's [book] extra)"
        )
    source = Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax"
    if not (source / "tex-chtml.js").is_file():
        raise ExtensionError(f"{source} has no tex-chtml.js; reinstall sphinx-mathjax-offline")
    return source


def _check_mathjax_path(app, config):
    path = config.mathjax_path
    if "://" in path or path.startswith("//"):
        raise ExtensionError(
            f"mathjax_path={path!r} loads MathJax from the network; "
            "the course site serves it from _static/mathjax/ (set mathjax_path: mathjax/tex-chtml.js)"
        )


def _copy_mathjax(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    source = mathjax_source()
    target = Path(app.outdir) / "_static" / "mathjax"
    # Skip the copy when the build already holds this MathJax: it is ~9 MB.
    stamp = target / ".source"
    if stamp.is_file() and stamp.read_text() == str(source):
        return
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(
        source,
        target,
        ignore=lambda folder, names: [n for n in names if Path(folder) == source and n in _UNUSED_COMPONENTS],
    )
    stamp.write_text(str(source))


def _thebe_enabled(app) -> bool:
    launch = (app.config.html_theme_options or {}).get("launch_buttons", {})
    return bool(launch.get("thebe"))


def _is_thebe_asset(asset) -> bool:
    filename = str(getattr(asset, "filename", asset) or "")
    body = str(getattr(asset, "attributes", {}).get("body", ""))
    return "thebe" in filename or "THEBE_JS_URL" in body


def _drop_thebe(app, pagename, templatename, context, doctree):
    if _thebe_enabled(app):
        return
    for key in ("script_files", "css_files"):
        if key in context:
            context[key] = [asset for asset in context[key] if not _is_thebe_asset(asset)]


def setup(app):
    os.environ.setdefault("OPTLIB_STATIC", "1")
    mathjax_source()  # fail at start-up, not after executing every notebook
    app.connect("config-inited", _check_mathjax_path)
    app.connect("build-finished", _copy_mathjax)
    app.connect("html-page-context", _drop_thebe)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
