"""Browser smoke test: the built pages work offline in headless Chromium.

Playwright drives Debian's Chromium (``/usr/bin/chromium``; no browser is ever
downloaded). The site is served from 127.0.0.1 and every request to another
origin is blocked and counted. On each page: every Mermaid block becomes an
SVG, every math block is typeset by MathJax, and the console shows no errors.
"""

from __future__ import annotations

import functools
import os
import queue
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests._site import chapter_files, require_site, toc_files

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output clean
        pass


@pytest.fixture(scope="module")
def site_url():
    html = require_site()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(html)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        msg = "Debian's chromium is not installed at /usr/bin/chromium (.ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()


def open_page(browser, url: str, mode: str | None = None, viewport: dict | None = None):
    """Open ``url`` with other origins blocked; return (page, console errors, blocked requests).

    ``mode`` ("light" or "dark") sets both the system colour scheme and the theme's stored choice;
    ``viewport`` the window size (default: Playwright's desktop 1280 x 720).
    """
    options = {"viewport": viewport} if viewport else {}
    if mode:
        options["color_scheme"] = mode
    context = browser.new_context(**options)
    if mode:
        context.add_init_script(f"localStorage.setItem('mode', '{mode}'); localStorage.setItem('theme', '{mode}');")
    page = context.new_page()
    errors: list[str] = []
    blocked: list[str] = []

    def route(r):
        host = urlparse(r.request.url).hostname
        if r.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url, wait_until="load")
    return page, errors, blocked


RENDERED = """() => {
  const m = [...document.querySelectorAll('pre.mermaid')];
  const done = m.every(e => e.querySelector('svg'));
  const math = [...document.querySelectorAll('div.math, span.math')];
  const typeset = math.every(e => e.querySelector('mjx-container'));
  return done && typeset;
}"""


LABELLED = """() => [...document.querySelectorAll('pre.mermaid')].every(e => {
  const svg = e.querySelector('svg'); return svg && svg.textContent.trim().length > 0; })"""

PHONE = {"width": 390, "height": 844}
CHAPTERS = set(chapter_files())


def load_report(browser, site_url: str, page_path: str, view: str) -> dict:
    """Load ``page_path`` in one view and gather what the tests of that view check.

    ``desktop`` (1280 px, light mode) serves the render, accessibility and light-mode readability
    tests; ``phone`` (390 px, dark mode) serves the overflow and dark-mode readability tests. Two
    loads per page instead of four; each test still asserts only its own part.
    """
    mode, viewport = ("light", None) if view == "desktop" else ("dark", PHONE)
    page, errors, blocked = open_page(browser, f"{site_url}/{page_path}.html", mode, viewport)
    try:
        page.wait_for_function(RENDERED, timeout=30_000)
        try:  # Mermaid redraws its diagrams once the theme's mode is applied: let that finish
            page.wait_for_function(LABELLED, timeout=10_000)
        except PlaywrightTimeout:
            pass  # reported by the assertions on "labels"
        report = {
            "mermaid": page.locator("pre.mermaid").count(),
            "svgs": page.locator("pre.mermaid svg").count(),
            "labels": page.eval_on_selector_all("pre.mermaid svg",
                                                "els => els.map(e => e.textContent.trim().length)"),
            "merror": page.locator("mjx-merror").count(),
            "width": page.evaluate("document.documentElement.scrollWidth"),
        }
        if page_path in CHAPTERS:
            report["readability"] = readability(page)
        if view == "desktop":
            page.wait_for_timeout(200)
            report["errors"], report["blocked"] = list(errors), list(blocked)
            page.add_script_tag(path=axe_script())
            result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
            report["violations"] = [
                f"{v['id']} ({v['impact']}): {v['help']} x{len(v['nodes'])} e.g. {v['nodes'][0]['target']}"
                for v in result["violations"] if v["impact"] in ("critical", "serious")]
            report["missing_alt"] = page.eval_on_selector_all(
                "img", "els => els.filter(e => !e.getAttribute('alt')).map(e => e.src)")
        return report
    finally:
        page.context.close()


def _load_reports(site_url: str, jobs: queue.SimpleQueue, out: dict) -> None:
    """One worker thread: its own Playwright and Chromium, loading pages until ``jobs`` is empty."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            while True:
                try:
                    job = jobs.get_nowait()
                except queue.Empty:
                    return
                try:
                    out[job] = load_report(b, site_url, *job)
                except Exception as err:  # noqa: BLE001 - the page's own tests report it
                    out[job] = {"exception": f"{type(err).__name__}: {err}"}
        finally:
            b.close()


@pytest.fixture(scope="module")
def reports(browser, site_url) -> dict:
    """Every page in both views, loaded by one Chromium per core (the pages are independent)."""
    jobs: queue.SimpleQueue = queue.SimpleQueue()
    for view in ("desktop", "phone"):
        for page_path in toc_files():
            jobs.put((page_path, view))
    out: dict = {}
    workers = [threading.Thread(target=_load_reports, args=(site_url, jobs, out))
               for _ in range(max(1, min(2, os.cpu_count() or 1)))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return out


def page_report(reports: dict, page_path: str, view: str = "desktop") -> dict:
    """The report of ``page_path`` in ``view``; fails the test if loading the page failed."""
    report = reports[(page_path, view)]
    if "exception" in report:
        pytest.fail(f"{page_path} ({view}) did not load: {report['exception']}")
    return report


@pytest.mark.parametrize("page_path", toc_files())
def test_page_renders_offline(reports, page_path):
    report = page_report(reports, page_path)
    assert report["svgs"] == report["mermaid"], f"{report['svgs']} of {report['mermaid']} Mermaid blocks rendered"
    if report["mermaid"]:
        # every diagram carries its labels as text
        assert min(report["labels"]) > 0, "a Mermaid diagram rendered without labels"
    assert report["merror"] == 0, "MathJax reported a TeX error"
    assert report["errors"] == [], f"console errors: {report['errors']}"
    assert report["blocked"] == [], f"requests to other origins: {report['blocked']}"


def test_chapter_13_typesets_its_equations(browser, site_url):
    chapter = next(c for c in chapter_files() if c.endswith("13_attention"))
    page, errors, blocked = open_page(browser, f"{site_url}/{chapter}.html")
    try:
        page.wait_for_function(RENDERED, timeout=30_000)
        displayed = page.locator("div.math mjx-container").count()
        assert displayed >= 8, f"only {displayed} display equations typeset"
        assert page.locator("pre.mermaid svg").count() >= 1
        assert errors == [] and blocked == []
    finally:
        page.context.close()


@pytest.mark.parametrize("query, expected", [
    ("attention", "13_attention.html"),
    ("label smoothing", "13_attention.html"),
    ("positional encoding", "13_attention.html"),
    ("complextropy", "01_complexodynamics.html"),
    ("coarse-grained", "01_complexodynamics.html"),
    ("temperature sampling", "02_rnn_effectiveness.html"),
    ("forget gate", "03_understanding_lstm.html"),
    ("recurrent dropout", "04_rnn_regularization.html"),
    ("bits back", "05_mdl_weights.html"),
    ("convex hull", "06_pointer_networks.html"),
    ("local response normalization", "07_alexnet.html"),
    ("process block", "08_order_matters.html"),
    ("micro-batches", "09_gpipe.html"),
    ("degradation", "10_resnet.html"),
])
def test_search_finds_the_right_chapter(browser, site_url, query, expected):
    """Reference: the chapter that teaches the queried idea; Sphinx's own search page."""
    page, errors, blocked = open_page(browser, f"{site_url}/search.html?q={query.replace(' ', '+')}")
    try:
        page.wait_for_selector("#search-results ul li a", timeout=20_000)
        hrefs = page.eval_on_selector_all("#search-results ul li a", "els => els.map(e => e.getAttribute('href'))")
        assert any(expected in h for h in hrefs[:3]), f"{query!r}: top results {hrefs[:3]}"
        assert errors == [] and blocked == []
    finally:
        page.context.close()


@pytest.mark.parametrize("page_path", toc_files())
def test_no_horizontal_overflow_on_a_phone(reports, page_path):
    """At a 390-pixel-wide viewport the page itself never scrolls sideways (code may scroll inside its box)."""
    width = page_report(reports, page_path, "phone")["width"]
    assert width <= PHONE["width"], f"page is {width} px wide at a {PHONE['width']} px viewport"


def contrast(fg: str, bg: str) -> float:
    """WCAG contrast ratio of two CSS colours ``rgb(...)`` / ``rgba(...)``."""
    def luminance(color: str) -> float:
        channels = [float(v) / 255 for v in re.findall(r"[\d.]+", color)[:3]]
        r, g, b = (v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    lf, lb = luminance(fg), luminance(bg)
    return (max(lf, lb) + 0.05) / (min(lf, lb) + 0.05)


NODE_COLOURS = """() => [...document.querySelectorAll('pre.mermaid svg')].flatMap(svg =>
  [...svg.querySelectorAll('g.node')].slice(0, 3).map(n => {
    const shape = n.querySelector('rect, polygon, circle, path');
    const label = n.querySelector('.nodeLabel, text, span');
    return [getComputedStyle(label).color || getComputedStyle(label).fill, getComputedStyle(shape).fill];
  }))"""

CORNERS = """() => [...document.querySelectorAll('.cell_output img, figure img')].map(el => {
  const c = document.createElement('canvas'); c.width = el.naturalWidth; c.height = el.naturalHeight;
  const x = c.getContext('2d'); x.drawImage(el, 0, 0); return Array.from(x.getImageData(1, 1, 1, 1).data); })"""


def readability(page) -> dict:
    """The colours a reader sees on a loaded chapter page: theme, body text and background,
    diagram labels on their boxes, and the corner pixel of every figure."""
    # the diagrams re-render when the theme mode is applied: wait for the nodes
    page.wait_for_function("() => document.querySelectorAll('pre.mermaid svg g.node').length > 0",
                           timeout=30_000)
    return {
        "theme": page.evaluate("document.documentElement.dataset.theme"),
        "fg": page.evaluate("getComputedStyle(document.querySelector('article p')).color"),
        "bg": page.evaluate("getComputedStyle(document.body).backgroundColor"),
        "nodes": page.evaluate(NODE_COLOURS),
        "corners": page.evaluate(CORNERS),
    }


@pytest.mark.parametrize("mode", ["light", "dark"])
@pytest.mark.parametrize("chapter", chapter_files())
def test_chapter_is_readable_in_light_and_dark_mode(reports, chapter, mode):
    """Text contrast (WCAG ratio >= 7) in both modes; diagram labels readable on their boxes
    (ratio >= 4.5); figures keep an opaque white background. Light mode is read at desktop size,
    dark mode at phone size."""
    seen = page_report(reports, chapter, "desktop" if mode == "light" else "phone")["readability"]
    assert seen["theme"] == mode
    ratio = contrast(seen["fg"], seen["bg"])
    assert ratio >= 7, f"{mode}: body text contrast {ratio:.1f}"
    assert seen["nodes"], "no diagram nodes found"
    for label, fill in seen["nodes"]:
        if fill.startswith("rgb"):
            assert contrast(label, fill) >= 4.5, f"{mode}: diagram label {label} on {fill}"
    assert len(seen["corners"]) >= 1, "no figures found on the chapter page"
    for i, corner in enumerate(seen["corners"]):
        # the PNG itself is opaque white behind the plot
        assert corner == [255, 255, 255, 255], f"{mode}: figure {i} corner pixel {corner}"


def test_live_code_loads_thebe_only_after_the_click(browser, site_url):
    """Thebe (sphinx-thebe) turns cells into live code backed by Binder: nothing remote loads before the click."""
    chapter = next(c for c in chapter_files() if c.endswith("13_attention"))
    page, errors, blocked = open_page(browser, f"{site_url}/{chapter}.html")
    try:
        page.wait_for_function(RENDERED, timeout=30_000)
        page.wait_for_timeout(500)
        assert blocked == [], f"loaded before the click: {blocked}"
        assert page.locator("button.btn-launch-thebe").count() == 1
        page.locator("button.btn-launch-thebe").dispatch_event("click")
        page.wait_for_timeout(1500)
        assert any("thebe" in url for url in blocked), f"the click requested no thebe bundle: {blocked}"
    finally:
        page.context.close()


def axe_script() -> str:
    import axe_playwright_python

    return str(Path(axe_playwright_python.__file__).with_name("axe.min.js"))


@pytest.mark.parametrize("page_path", toc_files())
def test_accessibility_has_no_serious_violations(reports, page_path):
    """axe-core (bundled by axe-playwright-python) on every page: no critical or serious violations."""
    report = page_report(reports, page_path)
    assert report["violations"] == [], "\n".join(report["violations"])
    assert report["missing_alt"] == [], f"images without alt text: {report['missing_alt']}"
