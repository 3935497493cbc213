"""Sliders that teach: live in Jupyter and Colab, precomputed on the website.

:func:`explore` shows a drawing as a function of a few hyperparameters in one of
three forms, chosen by where it runs:

1. **Live controls** (ipywidgets ``SelectionSlider`` s and ``interactive_output``)
   that redraw when a slider moves, shown in a running IPython kernel (Jupyter,
   Colab, VS Code). They cost one drawing until a slider moves.
2. **A precomputed player** (:func:`player`): the drawing rendered once per value
   of the *first* slider (the others at their defaults), embedded as PNG frames
   in a small self-contained HTML block with an ``<input type="range">`` and a
   few lines of inline JavaScript to switch frames. No CDN, no external script:
   it works on the static website, offline. Without JavaScript the first frame
   still shows. It is made only in static mode.
3. **One drawing** at the start values, anywhere else (a script, a test):
   nothing there can move a slider or play a player, and the drawing still runs
   ``draw`` once, so a broken one fails.

**Static mode.** The book is built by myst-nb, which, as soon as a notebook's
outputs contain an ipywidgets view, adds require.js and the widget manager from
a CDN to the page; the website must work offline, and a page cannot run a
kernel. So when the environment variable ``OPTLIB_STATIC`` is set to anything
but ``""``, ``"0"``, ``"false"`` or ``"no"``, only the player is shown, kernel
or not. The book build (``_ext/course_site.py``) and the notebook tests set
``OPTLIB_STATIC=1``. A reader's kernel does not: there the live controls alone
are shown, and the player's frames (one drawing per value) are never computed.
"""

from __future__ import annotations

import base64
import hashlib
import html
import inspect
import io
import itertools
import json
import os
from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
from IPython.display import HTML, display

from optlib.plotting import _compact_png

__all__ = ["explore", "player", "static_mode", "MAX_PLAYER_FRAMES"]

#: A player embeds one PNG per value; more than this makes a page heavy and a build slow.
MAX_PLAYER_FRAMES = 24

_PLAYER_DPI = 80
_player_ids = itertools.count()


def static_mode() -> bool:
    """Whether ``OPTLIB_STATIC`` asks for the website-only output (no ipywidgets)."""
    return os.environ.get("OPTLIB_STATIC", "").strip().lower() not in ("", "0", "false", "no")


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _png(fig, dpi: int) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return _compact_png(buffer.getvalue())


def _player_html(frames: Sequence[bytes], labels: Sequence[str], name: str, title: str | None, start: int) -> str:
    digest = hashlib.sha1(b"".join(frames)).hexdigest()[:10]
    uid = f"optlib-player-{next(_player_ids)}-{digest}"
    images = "\n".join(
        f'<img class="{uid}-frame" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}" '
        f'alt="{html.escape(label)}" style="max-width:100%;height:auto;'
        f'{"" if i == start else "display:none;"}">'
        for i, (png, label) in enumerate(zip(frames, labels))
    )
    heading = f'<div style="font-weight:600;margin-bottom:0.3em">{html.escape(title)}</div>' if title else ""
    last = len(frames) - 1
    # The range input is the slider; the script only toggles which <img> is visible.
    script = (
        "(function(){"
        f"var root=document.getElementById({json.dumps(uid)});"
        f"var frames=root.getElementsByClassName({json.dumps(uid + '-frame')});"
        "var range=root.querySelector('input[type=range]');"
        "var text=root.querySelector('output');"
        f"var labels={json.dumps(list(labels))};"
        "function show(i){for(var k=0;k<frames.length;k++){frames[k].style.display=(k==i)?'':'none';}"
        "text.textContent=labels[i];}"
        "range.addEventListener('input',function(){show(parseInt(range.value,10));});"
        "range.disabled=false;"
        "})();"
    )
    return (
        f'<div id="{uid}" class="optlib-player" style="max-width:100%;margin:0.5em 0">\n'
        f"{heading}\n{images}\n"
        '<div style="display:flex;align-items:center;gap:0.6em;margin-top:0.3em;font-family:sans-serif">'
        f'<label for="{uid}-range"><code>{html.escape(name)}</code></label>'
        f'<input type="range" id="{uid}-range" min="0" max="{last}" step="1" value="{start}" '
        f'aria-label="{html.escape(name)}" style="flex:1;max-width:24em" disabled>'
        f'<output for="{uid}-range">{html.escape(labels[start])}</output>'
        "</div>\n"
        f"<script>{script}</script>\n</div>"
    )


def _check_values(values, name: str) -> list:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) and not hasattr(values, "__iter__"):
        raise ValueError(f"{name} must be a sequence of values, got {values!r}")
    values = list(values)
    if not values:
        raise ValueError(f"{name} must hold at least one value")
    return values


def player(
    make_figure: Callable[[object], plt.Figure],
    values: Sequence,
    *,
    name: str,
    title: str | None = None,
    start=None,
):
    """A slider over precomputed figures that plays on a static page: HTML with no
    external resources.

    ``make_figure(value)`` must return a matplotlib ``Figure`` for one value; it
    is called once per value, saved as a PNG at 80 dpi and closed. The slider is
    labelled ``name`` and shows ``name = value``; it starts at ``start`` (a
    member of ``values``, default the first). ``values`` may hold 1 to
    :data:`MAX_PLAYER_FRAMES` entries. Returns ``IPython.display.HTML``.
    """
    values = _check_values(values, "values")
    if len(values) > MAX_PLAYER_FRAMES:
        raise ValueError(f"values must hold 1 to {MAX_PLAYER_FRAMES} entries (one PNG each), got {len(values)}")
    if not callable(make_figure):
        raise ValueError("make_figure must be a callable value -> matplotlib Figure")
    index = 0 if start is None else _index_of(values, start, "start")
    frames, labels = [], []
    for value in values:
        fig = make_figure(value)
        try:
            if not hasattr(fig, "savefig"):
                raise ValueError(f"make_figure must return a matplotlib Figure, got {type(fig).__name__}")
            frames.append(_png(fig, _PLAYER_DPI))
        finally:
            if hasattr(fig, "savefig"):
                plt.close(fig)
        labels.append(f"{name} = {_format(value)}")
    return HTML(_player_html(frames, labels, name, title, index))


def _index_of(values: list, value, argument: str) -> int:
    for i, candidate in enumerate(values):
        if candidate is value or candidate == value:
            return i
    raise ValueError(f"{argument} must be one of {[_format(v) for v in values]}, got {value!r}")


def _live_controls(draw, sliders: Mapping[str, list], defaults: Mapping[str, object], figsize, title):
    """The ipywidgets box: one SelectionSlider per argument and the output they drive."""
    import ipywidgets as widgets

    controls = {
        name: widgets.SelectionSlider(
            options=[(_format(v), v) for v in values],
            value=values[_index_of(values, defaults[name], name)],
            description=name,
            continuous_update=False,
            style={"description_width": "initial"},
            layout=widgets.Layout(width="28em"),
        )
        for name, values in sliders.items()
    }

    def redraw(**values):
        _show_drawing(draw, values, figsize, None)  # the title is the box's heading

    output = widgets.interactive_output(redraw, controls)
    children = [widgets.HTML(f"<b>{html.escape(title)}</b>")] if title else []
    return widgets.VBox([*children, *controls.values(), output])


def explore(
    draw: Callable[..., None],
    *,
    title: str | None = None,
    defaults: Mapping[str, object] | None = None,
    figsize: tuple[float, float] = (6.0, 4.0),
    **sliders: Sequence,
) -> None:
    """Show ``draw`` under sliders, live in a kernel and as a player on the website.

    ``draw(ax, **values)`` draws into a fresh matplotlib ``Axes`` (``figsize``
    inches) for one value per slider, and should give the axes a title and axis
    labels. Each slider is a keyword argument with the sequence of values it
    steps through::

        def draw(ax, lr, momentum):
            traj = optlib.run_trajectory(problem, optlib.SGD, lr=lr, momentum=momentum)
            optlib.plot_contour(problem, [traj], ax=ax)

        optlib.explore(draw, lr=[0.01, 0.05, 0.1, 0.2], momentum=[0.0, 0.5, 0.9])

    Every slider starts at ``defaults[name]`` if given, else at its first value.
    What is shown depends on where it runs (see the module docstring): the live
    controls in a kernel; in static mode (``OPTLIB_STATIC=1``, the website) the
    precomputed player, which steps through the *first* slider's values with the
    others at their start values (so choose the slider order, and keep the first
    one short: at most :data:`MAX_PLAYER_FRAMES` values, about 12 is plenty);
    elsewhere one drawing at the start values. ``title`` heads each of them.
    """
    if not callable(draw):
        raise ValueError("draw must be a callable draw(ax, **values)")
    if not sliders:
        raise ValueError("explore needs at least one slider, e.g. lr=[0.01, 0.1]")
    sliders = {name: _check_values(values, name) for name, values in sliders.items()}
    defaults = dict(defaults or {})
    unknown = set(defaults) - set(sliders)
    if unknown:
        raise ValueError(f"defaults must name sliders ({', '.join(sliders)}); unknown: {', '.join(sorted(unknown))}")
    start = {
        name: values[_index_of(values, defaults[name], name)] if name in defaults else values[0]
        for name, values in sliders.items()
    }
    parameters = inspect.signature(draw).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    missing = [name for name in sliders if name not in parameters and not accepts_any]
    if missing:
        raise ValueError(f"draw must accept the slider arguments; it lacks {', '.join(missing)}")

    first = next(iter(sliders))
    if len(sliders[first]) > MAX_PLAYER_FRAMES:
        # Checked in every mode, so a notebook that works live also builds into the website.
        raise ValueError(
            f"{first} (the first slider, which the website's player steps through) must hold 1 to "
            f"{MAX_PLAYER_FRAMES} values, got {len(sliders[first])}"
        )

    if static_mode():
        display(_static_player(draw, sliders, start, figsize, title))
        return
    if _in_kernel():
        try:
            box = _live_controls(draw, sliders, start, figsize, title)
        except ImportError:  # no ipywidgets: the player alone still teaches
            display(_static_player(draw, sliders, start, figsize, title))
            return
        display(box)
        return
    _show_drawing(draw, start, figsize, title)


def _new_axes(figsize):
    return plt.subplots(figsize=figsize, layout="constrained")


def _show_drawing(draw, values: Mapping[str, object], figsize, title):
    """Display ``draw`` at ``values`` once, then close it so no backend shows it a second time."""
    fig, ax = _new_axes(figsize)
    try:
        draw(ax, **values)
        if title:
            fig.suptitle(title)
        display(fig)
    finally:
        plt.close(fig)


def _static_player(draw, sliders: Mapping[str, list], start: Mapping[str, object], figsize, title):
    first = next(iter(sliders))

    def make_figure(value):
        fig, ax = _new_axes(figsize)
        try:
            draw(ax, **{**start, first: value})
        except BaseException:
            plt.close(fig)
            raise
        return fig

    return player(make_figure, sliders[first], name=first, title=title, start=start[first])
