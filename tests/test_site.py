"""The built website, checked as a reader's browser sees it.

Uses the build in ``_build/html`` (``scripts/test.sh`` builds it before pytest;
this file does not build, because a full build executes every chapter). Two
groups of tests:

* Static checks of the HTML files: every internal link and image resolves to a
  file (and every ``#anchor`` to an id), and no page loads a script, style
  sheet, font or image from another host.
* Browser checks, with headless Debian Chromium driven over the DevTools
  protocol on a pipe (no driver or extra package needed). Every page of the
  table of contents is opened from a local HTTP server, with every host other
  than 127.0.0.1 made unresolvable, so a page that needs the network fails. Each
  page must load, show its title, typeset all of its maths with the bundled
  MathJax, show its figures and animation players working, and show no error
  output. A screenshot of each page goes to ``_build/screenshots/``.
"""

from __future__ import annotations

import base64
import fcntl
import functools
import html.parser
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from toc_notebooks import toc_entries  # noqa: E402  (the one reader of _toc.yml)

HTML = ROOT / "_build" / "html"
EXECUTED = ROOT / "_build" / "jupyter_execute"
SCREENSHOTS = ROOT / "_build" / "screenshots"
BUILD_HINT = "build it first: bash scripts/test.sh, or jupyter-book build . -W -n --keep-going"

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
    # Every host but the test's own server fails to resolve: a page that works
    # here works with the network off.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
VIEWPORT = (1280, 900)
# Chromium cannot capture an image taller than its maximum texture size.
MAX_SCREENSHOT_HEIGHT = 16000
PAGE_TIMEOUT_S = 60


# --------------------------------------------------------------------------- pages


def toc_pages() -> list[str]:
    """Document names (``chapters/03_sgd``) of every page in ``_toc.yml``, in order."""
    return [str(Path(name).with_suffix("")) if Path(name).suffix else name for name in toc_entries()]


PAGES = toc_pages()
# Every executed notebook page: the chapters and their companion solutions notebooks.
NOTEBOOK_PAGES = [page for page in PAGES if page.startswith("chapters/")]
CHAPTERS = [page for page in NOTEBOOK_PAGES if not page.startswith("chapters/solutions/")]


@pytest.fixture(scope="session")
def built_site() -> Path:
    missing = [page for page in PAGES if not (HTML / f"{page}.html").is_file()]
    if missing:
        pytest.fail(f"the website build in {HTML} lacks {', '.join(missing)}: {BUILD_HINT}")
    return HTML


# --------------------------------------------------------------------------- static HTML checks


class _Collector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.remote_loads: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key) and (key == "id" or tag == "a"):
                self.ids.add(attrs[key])
        for key in ("href", "src"):
            value = attrs.get(key)
            if value is None:
                continue
            self.refs.append((tag, key, value))
            # An <a href> to another site is a link the reader may follow; a
            # script, style sheet, image, frame or font is fetched on load.
            loads = tag in ("script", "img", "iframe", "source", "video", "audio", "embed") or (
                tag == "link" and (attrs.get("rel") or "").lower() in ("stylesheet", "preload", "icon", "modulepreload")
            )
            if loads and _is_remote(value):
                self.remote_loads.append(f"<{tag} {key}={value!r}>")


def _is_remote(url: str) -> bool:
    return url.startswith("//") or urlsplit(url).scheme in ("http", "https")


@functools.cache
def _parse(path: Path) -> _Collector:
    collector = _Collector()
    collector.feed(path.read_text(encoding="utf-8", errors="replace"))
    return collector


def _html_files() -> list[Path]:
    return sorted(p for p in HTML.rglob("*.html") if "_static" not in p.relative_to(HTML).parts)


def test_every_toc_page_is_built(built_site):
    for page in PAGES:
        assert (built_site / f"{page}.html").stat().st_size > 0, page
    assert (built_site / "index.html").is_file(), "no index.html: the site has no front page"


def test_internal_links_and_images_resolve(built_site):
    problems = []
    for page in _html_files():
        for tag, attribute, value in _parse(page).refs:
            parts = urlsplit(value)
            if parts.scheme or value.startswith("//") or value.startswith(("mailto:", "javascript:")):
                continue
            if parts.path:
                target = (page.parent / unquote(parts.path)).resolve()
                if target.is_dir():
                    target = target / "index.html"
            else:
                target = page
            where = f"{page.relative_to(built_site)}: <{tag} {attribute}={value!r}>"
            if not target.is_file():
                problems.append(f"{where} points to a missing file")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in _parse(target).ids:
                problems.append(f"{where}: no element with id {parts.fragment!r} in {target.name}")
    assert not problems, "broken internal links or images:\n" + "\n".join(problems)


def test_pages_load_nothing_from_other_hosts(built_site):
    problems = [
        f"{page.relative_to(built_site)}: {load}" for page in _html_files() for load in _parse(page).remote_loads
    ]
    assert not problems, "pages that need the network:\n" + "\n".join(problems)


def test_mathjax_is_served_with_the_site(built_site):
    assert (built_site / "_static" / "mathjax" / "tex-chtml.js").is_file()
    fonts = list((built_site / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    assert fonts, "MathJax's CommonHTML fonts are missing from _static/mathjax"
    page = (built_site / "notation.html").read_text(encoding="utf-8")
    assert re.search(r'<script[^>]+src="_static/mathjax/tex-chtml\.js', page), (
        "notation.html does not load the local MathJax"
    )


# --------------------------------------------------------------------------- the browser


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """Headless Chromium spoken to over ``--remote-debugging-pipe``.

    Chromium reads JSON commands, each ended by a NUL byte, on its file
    descriptor 3 and writes replies and events on descriptor 4.
    """

    def __init__(self, executable: str):
        self.profile = tempfile.mkdtemp(prefix="optdl-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def move_pipes_to_3_and_4():
            # Dup above 10 first so that placing one pipe at 3 or 4 cannot
            # overwrite the other.
            a = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.process = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=move_pipes_to_3_and_4,
            pass_fds=(3, 4),
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self.events: list[dict] = []
        self._lock = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._lock:
                    self._lock.notify_all()
                return
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            with self._lock:
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self.events.append(message)
                self._lock.notify_all()

    def send(
        self, method: str, params: dict | None = None, session: str | None = None, timeout: float = PAGE_TIMEOUT_S
    ):
        with self._lock:
            self._next_id += 1
            call_id = self._next_id
        message = {"id": call_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._lock:
            while call_id not in self._replies:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.process.poll() is not None:
                    raise TimeoutError(f"Chromium did not answer {method} within {timeout} s")
                self._lock.wait(remaining)
            reply = self._replies.pop(call_id)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_for_event(self, method: str, session: str, since: int, timeout: float = PAGE_TIMEOUT_S) -> dict:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for event in self.events[since:]:
                    if event.get("method") == method and event.get("sessionId") == session:
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no {method} within {timeout} s")
                self._lock.wait(remaining)

    def close(self):
        try:
            self.send("Browser.close", timeout=10)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="session")
def site_url(built_site):
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(built_site))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser():
    executable = _chromium()
    if executable is None:
        pytest.skip(
            "Chromium is not installed (Debian: apt-get install chromium, or bash scripts/install_browser.sh as root)"
        )
    instance = Browser(executable)
    try:
        yield instance
    finally:
        instance.close()


# Runs in the page once MathJax has typeset it; returns what the tests check.
INSPECT_PAGE = r"""
(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  await document.fonts.ready;
  const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  // Visible prose only: code may legitimately contain backslashes and dollars.
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT, {
    acceptNode(node) {
      for (let el = node.parentElement; el && el !== article; el = el.parentElement) {
        if (el.matches('pre, code, script, style, mjx-container, mjx-assistive-mml, .highlight')) return NodeFilter.FILTER_REJECT;
      }
      return NodeFilter.FILTER_ACCEPT;
    }
  });
  let prose = '';
  for (let n = walker.nextNode(); n; n = walker.nextNode()) prose += n.nodeValue + ' ';
  const inside = (el, selector) => el.closest(selector) !== null;
  const images = [...article.querySelectorAll('img')].map(img => ({
    src: img.getAttribute('src') || '',
    loaded: img.complete && img.naturalWidth > 0,
    output: inside(img, '.cell_output'),
    player: inside(img, '.optlib-player, .animation'),
  }));
  const outputs = [...article.querySelectorAll('.cell_output .output')];
  return {
    title: (() => {
      const h1 = article.querySelector('h1');
      if (!h1) return '';
      const copy = h1.cloneNode(true);
      copy.querySelectorAll('.section-number, .headerlink').forEach(el => el.remove());
      return copy.textContent.trim();
    })(),
    documentTitle: document.title,
    mathElements: article.querySelectorAll('.math').length,
    untypesetMath: [...article.querySelectorAll('.math')].filter(el => !el.querySelector('mjx-container')).map(el => el.textContent.slice(0, 80)),
    mjxContainers: article.querySelectorAll('mjx-container').length,
    mathErrors: [...article.querySelectorAll('mjx-merror')].map(el => el.getAttribute('data-mjx-error') || el.textContent),
    prose,
    images,
    tracebacks: article.querySelectorAll('.output.traceback, .output.error').length,
    stderr: outputs.filter(el => el.classList.contains('stderr')).map(el => el.textContent.slice(0, 400)),
    outputText: outputs.map(el => el.textContent).join('\n'),
    optlibPlayers: article.querySelectorAll('.optlib-player').length,
    jshtmlPlayers: article.querySelectorAll('.animation').length,
    // Outputs and code wider than their box, with no scrolling box around them: the reader
    // cannot see their right end (a scrolling box shows its scroll bar in this browser).
    // A table must fit the column outright (custom.css lets its cells wrap).
    clipped: (() => {
      const right = article.getBoundingClientRect().right;
      const found = [];
      for (const el of article.querySelectorAll('.cell_output pre, .cell_output table, .cell_output img, .cell_input pre')) {
        const wide = el.scrollWidth > el.clientWidth + 1 || el.getBoundingClientRect().right > right + 1;
        if (!wide) continue;
        let scrolls = false;
        for (let box = el; box && box !== article.parentElement; box = box.parentElement) {
          const overflow = getComputedStyle(box).overflowX;
          if ((overflow === 'auto' || overflow === 'scroll') && box.scrollWidth > box.clientWidth) { scrolls = true; break; }
        }
        if (!scrolls || el.tagName === 'TABLE') found.push(`${el.tagName.toLowerCase()} (${Math.round(el.scrollWidth)} px in ${Math.round(el.clientWidth)}): ${el.textContent.trim().slice(0, 60)}`);
      }
      return found;
    })(),
  };
})()
"""

# Moves every player one frame on and reports whether the frame shown changed.
EXERCISE_PLAYERS = r"""
(() => {
  const results = [];
  for (const root of document.querySelectorAll('.optlib-player')) {
    const range = root.querySelector('input[type=range]');
    const frames = [...root.querySelectorAll('img')];
    const visible = () => frames.findIndex(f => f.style.display !== 'none');
    const before = visible();
    let ok = !!range && !range.disabled && frames.length > 1;
    if (ok) {
      range.value = String((before + 1) % frames.length);
      range.dispatchEvent(new Event('input'));
      ok = visible() === (before + 1) % frames.length && frames[visible()].naturalWidth > 0;
    }
    results.push({kind: 'optlib', id: root.id, frames: frames.length, ok: ok || frames.length === 1 && !!range});
  }
  for (const root of document.querySelectorAll('.animation')) {
    const img = root.querySelector('img[id^="_anim_img"]');
    const name = img ? 'anim' + img.id.slice('_anim_img'.length) : '';
    const anim = window[name];
    let ok = !!(img && anim && anim.frames && anim.frames.length > 0);
    if (ok && anim.frames.length > 1) {
      const before = img.src;
      anim.next_frame();
      ok = img.src !== before;
    }
    results.push({kind: 'jshtml', id: name, frames: anim && anim.frames ? anim.frames.length : 0, ok});
  }
  return results;
})()
"""

RAW_TEX = re.compile(
    r"\\\(|\\\)|\\\[|\\\]|\$\$|\\(?:frac|theta|eta|beta|nabla|mathcal|sqrt|hat|lambda|varepsilon|alpha|mathbb)\b"
)
ERROR_WORDS = re.compile(r"Traceback \(most recent call last\)|\b\w*(Error|Exception|Warning)\b")


def _expected_figures(page: str) -> int:
    """Image outputs of the executed notebook that myst-nb renders as <img>."""
    executed = EXECUTED / f"{page}.ipynb"
    if not executed.is_file():
        return 0
    count = 0
    for cell in json.loads(executed.read_text()).get("cells", []):
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell.get("cell_type") != "code" or tags & {"remove-output", "remove-cell"}:
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            html_first = {"text/html", "application/javascript", "application/vnd.jupyter.widget-view+json"} & set(data)
            if not html_first and any(key.startswith("image/") for key in data):
                count += 1
    return count


@pytest.fixture(scope="session")
def inspected(browser, site_url):
    """Open every page once; the tests below read the results."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    results = {}
    for page in PAGES:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        try:
            for domain in ("Page", "Network", "Runtime", "Log"):
                browser.send(f"{domain}.enable", session=session)
            browser.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": VIEWPORT[0], "height": VIEWPORT[1], "deviceScaleFactor": 1, "mobile": False},
                session=session,
            )
            mark = len(browser.events)
            browser.send("Page.navigate", {"url": f"{site_url}/{page}.html"}, session=session)
            browser.wait_for_event("Page.loadEventFired", session, mark)
            state = browser.send(
                "Runtime.evaluate",
                {"expression": INSPECT_PAGE, "awaitPromise": True, "returnByValue": True},
                session=session,
            )["result"]["value"]
            state["players"] = browser.send(
                "Runtime.evaluate", {"expression": EXERCISE_PLAYERS, "returnByValue": True}, session=session
            )["result"]["value"]
            metrics = browser.send("Page.getLayoutMetrics", session=session)
            height = min(int(metrics["cssContentSize"]["height"]), MAX_SCREENSHOT_HEIGHT)
            shot = browser.send(
                "Page.captureScreenshot",
                {
                    "format": "png",
                    "captureBeyondViewport": True,
                    "clip": {"x": 0, "y": 0, "width": VIEWPORT[0], "height": height, "scale": 1},
                },
                session=session,
            )
            path = SCREENSHOTS / (page.replace("/", "__") + ".png")
            path.write_bytes(base64.b64decode(shot["data"]))
            state["screenshot"] = path
            events = [e for e in browser.events[mark:] if e.get("sessionId") == session]
            state["requests"] = [
                e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"
            ]
            state["failed"] = [
                e["params"].get("errorText", "")
                + " "
                + next(
                    (
                        r["params"]["request"]["url"]
                        for r in events
                        if r["method"] == "Network.requestWillBeSent"
                        and r["params"]["requestId"] == e["params"]["requestId"]
                    ),
                    "?",
                )
                for e in events
                if e["method"] == "Network.loadingFailed"
            ]
            state["js_errors"] = [
                e["params"]["exceptionDetails"].get("exception", {}).get("description")
                or e["params"]["exceptionDetails"].get("text", "")
                for e in events
                if e["method"] == "Runtime.exceptionThrown"
            ]
            state["console_errors"] = [
                e["params"]["entry"]["text"]
                for e in events
                if e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"
            ]
            results[page] = state
        finally:
            browser.send("Target.closeTarget", {"targetId": target})
    return results


@pytest.mark.parametrize("page", PAGES)
def test_page_loads_offline_without_errors(inspected, site_url, page):
    state = inspected[page]
    local = (f"{site_url}/", "data:", "blob:", "about:")
    remote = [url for url in state["requests"] if not url.startswith(local)]
    assert not remote, f"{page} requested other hosts: {remote}"
    assert not state["failed"], f"{page}: requests that failed: {state['failed']}"
    assert not state["js_errors"], f"{page}: JavaScript errors: {state['js_errors']}"
    assert not state["console_errors"], f"{page}: console errors: {state['console_errors']}"
    assert state["screenshot"].stat().st_size > 10_000, f"{page}: the screenshot is (nearly) empty"


@pytest.mark.parametrize("page", PAGES)
def test_page_shows_its_title(inspected, page):
    state = inspected[page]
    title = state["title"]
    assert title, f"{page} has no <h1> heading"
    assert title in state["documentTitle"], f"{page}: <title> {state['documentTitle']!r} does not name {title!r}"


@pytest.mark.parametrize("page", PAGES)
def test_page_maths_is_typeset(inspected, page):
    state = inspected[page]
    assert not state["untypesetMath"], f"{page}: maths MathJax left as source: {state['untypesetMath'][:5]}"
    assert not state["mathErrors"], f"{page}: TeX errors: {state['mathErrors'][:5]}"
    assert state["mjxContainers"] >= state["mathElements"]
    leftovers = sorted(set(RAW_TEX.findall(state["prose"])))
    assert not leftovers, f"{page}: raw TeX in the visible text (math not recognised): {leftovers}"
    if page in CHAPTERS or page == "notation":
        assert state["mjxContainers"] > 0, f"{page} shows no typeset maths at all"


@pytest.mark.parametrize("page", PAGES)
def test_page_images_load(inspected, page):
    broken = [image["src"][:100] for image in inspected[page]["images"] if not image["src"] or not image["loaded"]]
    assert not broken, f"{page}: images that do not display: {broken}"


@pytest.mark.parametrize("page", NOTEBOOK_PAGES)
def test_chapter_shows_its_figures(inspected, page):
    state = inspected[page]
    figures = [image for image in state["images"] if image["output"] and not image["player"]]
    expected = _expected_figures(page)
    assert len(figures) >= expected, f"{page}: the notebook made {expected} figures, the page shows {len(figures)}"
    # CONTRIBUTING: every chapter shows its method's behaviour in plots (a solution may have none).
    assert figures or page not in CHAPTERS, f"{page} shows no figure"


@pytest.mark.parametrize("page", NOTEBOOK_PAGES)
def test_chapter_shows_no_error_output(inspected, page):
    state = inspected[page]
    assert state["tracebacks"] == 0, f"{page} shows an error output"
    assert "Traceback (most recent call last)" not in state["outputText"], f"{page} shows a Python traceback"
    noisy = [text for text in state["stderr"] if ERROR_WORDS.search(text)]
    assert not noisy, f"{page} prints warnings or errors: {noisy}"


@pytest.mark.parametrize("page", NOTEBOOK_PAGES)
def test_no_output_or_code_is_cut_off_on_the_right(inspected, page):
    clipped = inspected[page]["clipped"]
    assert not clipped, (
        f"{page}: wider than the text column, a table at all or other output without a scroll bar: {clipped}"
    )


@pytest.mark.parametrize("page", NOTEBOOK_PAGES)
def test_chapter_animation_players_work(inspected, page):
    players = inspected[page]["players"]
    assert len(players) == inspected[page]["optlibPlayers"] + inspected[page]["jshtmlPlayers"]
    broken = [player for player in players if not player["ok"]]
    assert not broken, f"{page}: players that do not step through their frames: {broken}"
    # CONTRIBUTING: every chapter has at least one slider, shown on the site as a player.
    assert players or page not in CHAPTERS, f"{page} has no slider player"
