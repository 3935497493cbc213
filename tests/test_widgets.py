"""Sliders: the offline player in static mode, the live controls alone in a kernel, one drawing elsewhere."""

from __future__ import annotations

import re
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from optlib import widgets  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture
def shown(monkeypatch):
    """What explore displays, captured instead of printed."""
    displayed = []
    monkeypatch.setattr(widgets, "display", displayed.append)
    return displayed


def draw_line(ax, slope, offset=0.0):
    ax.plot([0, 1], [offset, offset + slope])
    ax.set_title(f"slope {slope}")
    ax.set_xlabel("x")
    ax.set_ylabel("y")


def frames_of(html: str) -> list[str]:
    return re.findall(r'src="(data:image/png;base64,[^"]+)"', html)


def test_player_has_one_frame_per_value_and_no_external_script():
    made = []

    def make_figure(value):
        fig, ax = plt.subplots(figsize=(3, 2))
        draw_line(ax, value)
        made.append(value)
        return fig

    html = widgets.player(make_figure, [0.5, 1.0, 2.0], name="slope", title="A line").data
    assert made == [0.5, 1.0, 2.0]
    frames = frames_of(html)
    assert len(frames) == 3 and len(set(frames)) == 3
    assert '<input type="range"' in html and 'max="2"' in html
    assert "slope = 0.5" in html and "slope = 2" in html and "A line" in html
    assert not re.search(r"<script[^>]*\bsrc=", html)
    assert not re.search(r"https?://", html)
    assert not plt.get_fignums(), "every frame's figure is closed"


def test_player_starts_at_the_requested_value():
    def make_figure(value):
        fig, ax = plt.subplots(figsize=(2, 2))
        draw_line(ax, value)
        return fig

    html = widgets.player(make_figure, [1, 2, 3], name="k", start=2).data
    assert 'value="1"' in html
    shown_images = re.findall(r'<img [^>]*style="([^"]*)"', html)
    assert ["display:none" in style for style in shown_images] == [True, False, True]


@pytest.mark.parametrize(
    "values, kwargs, argument",
    [
        ([], {}, "values"),
        (list(range(widgets.MAX_PLAYER_FRAMES + 1)), {}, "values"),
        ("abc", {}, "values"),
        ([1, 2], {"start": 5}, "start"),
    ],
)
def test_player_bad_input(values, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        widgets.player(lambda v: plt.figure(), values, name="v", **kwargs)


@pytest.mark.parametrize("in_kernel", [False, True])
def test_static_mode_shows_only_the_player_over_the_first_slider(monkeypatch, shown, in_kernel):
    monkeypatch.setenv("OPTLIB_STATIC", "1")
    monkeypatch.setattr(widgets, "_in_kernel", lambda: in_kernel)
    calls = []

    def draw(ax, slope, offset):
        calls.append((slope, offset))
        draw_line(ax, slope, offset)

    widgets.explore(draw, slope=[0.5, 1.0, 1.5, 2.0], offset=[0.0, 1.0], title="Lines", defaults={"offset": 1.0})
    assert len(shown) == 1, "static mode: the player alone, no ipywidgets view even in a kernel"
    html = shown[0].data
    assert len(frames_of(html)) == 4
    assert calls == [(0.5, 1.0), (1.0, 1.0), (1.5, 1.0), (2.0, 1.0)]
    assert "slope = 0.5" in html and "Lines" in html
    assert not re.search(r"https?://", html)


def test_outside_a_kernel_and_static_mode_one_drawing_at_the_start_values(monkeypatch, shown):
    monkeypatch.delenv("OPTLIB_STATIC", raising=False)
    monkeypatch.setattr(widgets, "_in_kernel", lambda: False)
    calls = []

    def draw(ax, slope, offset):
        calls.append((slope, offset))
        draw_line(ax, slope, offset)

    widgets.explore(draw, slope=[0.5, 1.0, 1.5], offset=[0.0, 1.0], title="Lines", defaults={"offset": 1.0})
    assert calls == [(0.5, 1.0)], "no player is computed where nothing can play it"
    (figure,) = shown
    assert figure.axes[0].get_title() == "slope 0.5" and figure._suptitle.get_text() == "Lines"
    assert not plt.get_fignums(), "the drawing is closed after it is shown"


def test_first_slider_longer_than_a_player_fails_in_every_mode(monkeypatch, shown):
    too_many = list(range(widgets.MAX_PLAYER_FRAMES + 1))
    for static, in_kernel in [("1", False), ("", True), ("", False)]:
        monkeypatch.setenv("OPTLIB_STATIC", static)
        monkeypatch.setattr(widgets, "_in_kernel", lambda k=in_kernel: k)
        with pytest.raises(ValueError, match=rf"slope \(the first slider.*1 to {widgets.MAX_PLAYER_FRAMES}"):
            widgets.explore(draw_line, slope=too_many)
    assert not shown


def test_static_mode_switch(monkeypatch):
    for value, expected in [("1", True), ("yes", True), ("0", False), ("", False), ("false", False)]:
        monkeypatch.setenv("OPTLIB_STATIC", value)
        assert widgets.static_mode() is expected
    monkeypatch.delenv("OPTLIB_STATIC")
    assert widgets.static_mode() is False


def test_a_kernel_shows_the_live_controls_alone(monkeypatch, shown):
    monkeypatch.setattr(widgets, "_in_kernel", lambda: True)
    monkeypatch.delenv("OPTLIB_STATIC", raising=False)
    calls = []

    def draw(ax, slope, offset):
        calls.append((slope, offset))
        draw_line(ax, slope, offset)

    widgets.explore(draw, slope=[1.0, 2.0], offset=[0.0, 3.0], defaults={"offset": 3.0})
    first_drawing, box = shown
    assert calls == [(1.0, 3.0)], "one drawing at the start values; no player frames are computed"
    import ipywidgets

    # interactive_output draws once at the start values, into its Output widget.
    assert first_drawing.axes[0].get_title() == "slope 1.0"
    assert list(first_drawing.axes[0].get_lines()[0].get_ydata()) == [3.0, 4.0]

    assert isinstance(box, ipywidgets.VBox)
    sliders = [c for c in box.children if isinstance(c, ipywidgets.SelectionSlider)]
    assert [(s.description, s.value, s.options) for s in sliders] == [
        ("slope", 1.0, (("1", 1.0), ("2", 2.0))),
        ("offset", 3.0, (("0", 0.0), ("3", 3.0))),
    ]
    assert not any(isinstance(item, widgets.HTML) for item in shown), "no player next to the live controls"


def test_a_kernel_without_ipywidgets_falls_back_to_the_player(monkeypatch, shown):
    monkeypatch.setattr(widgets, "_in_kernel", lambda: True)
    monkeypatch.delenv("OPTLIB_STATIC", raising=False)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets raises ImportError
    widgets.explore(draw_line, slope=[1.0, 2.0, 3.0])
    (html,) = shown
    assert len(frames_of(html.data)) == 3


def test_moving_a_live_slider_redraws_with_its_value(shown):
    box = widgets._live_controls(draw_line, {"slope": [1.0, 2.0]}, {"slope": 2.0}, (3, 2), "T")
    assert box.children[0].value == "<b>T</b>"
    slider = next(c for c in box.children if hasattr(c, "options"))
    slider.value = 1.0
    assert [fig.axes[0].get_title() for fig in shown] == ["slope 2.0", "slope 1.0"]
    assert not plt.get_fignums(), "each redraw closes its figure after showing it"


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({}, "slider"),
        ({"slope": []}, "slope"),
        ({"slope": [1.0], "defaults": {"other": 1}}, "defaults"),
        ({"slope": [1.0], "defaults": {"slope": 9.0}}, "slope"),
        ({"slope": [1.0], "width": [1, 2]}, "width"),
    ],
)
def test_explore_bad_input(shown, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        widgets.explore(draw_line, **kwargs)
