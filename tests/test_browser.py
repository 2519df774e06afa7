"""Browser smoke test: the built pages work offline in headless Chromium.

Playwright drives Debian's Chromium (``/usr/bin/chromium``; no browser is ever
downloaded). The site is served from 127.0.0.1 and every request to another
origin is blocked and counted. On each page: every Mermaid block becomes an
SVG, every math block is typeset by MathJax, and the console shows no errors.
"""

from __future__ import annotations

import functools
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

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


def open_page(browser, url: str):
    """Open ``url`` with other origins blocked; return (page, console errors, blocked requests)."""
    context = browser.new_context()
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


_REPORTS: dict[str, dict] = {}


def page_report(browser, site_url: str, page_path: str) -> dict:
    """Load ``page_path`` once (desktop size) and gather what the render and accessibility tests check.

    One page load serves both tests, which halves the slowest part of the browser suite; each test
    still asserts only its own part.
    """
    if page_path not in _REPORTS:
        page, errors, blocked = open_page(browser, f"{site_url}/{page_path}.html")
        try:
            page.wait_for_function(RENDERED, timeout=30_000)
            report = {
                "mermaid": page.locator("pre.mermaid").count(),
                "svgs": page.locator("pre.mermaid svg").count(),
                "labels": page.eval_on_selector_all("pre.mermaid svg",
                                                    "els => els.map(e => e.textContent.trim().length)"),
                "merror": page.locator("mjx-merror").count(),
            }
            page.wait_for_timeout(200)
            report["errors"], report["blocked"] = list(errors), list(blocked)
            page.add_script_tag(path=axe_script())
            result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
            report["violations"] = [
                f"{v['id']} ({v['impact']}): {v['help']} x{len(v['nodes'])} e.g. {v['nodes'][0]['target']}"
                for v in result["violations"] if v["impact"] in ("critical", "serious")]
            report["missing_alt"] = page.eval_on_selector_all(
                "img", "els => els.filter(e => !e.getAttribute('alt')).map(e => e.src)")
        finally:
            page.context.close()
        _REPORTS[page_path] = report
    return _REPORTS[page_path]


@pytest.mark.parametrize("page_path", toc_files())
def test_page_renders_offline(browser, site_url, page_path):
    report = page_report(browser, site_url, page_path)
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
def test_no_horizontal_overflow_on_a_phone(browser, site_url, page_path):
    """At a 390-pixel-wide viewport the page itself never scrolls sideways (code may scroll inside its box)."""
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.route("**/*", lambda r: r.continue_() if urlparse(r.request.url).hostname == "127.0.0.1" else r.abort())
    try:
        page.goto(f"{site_url}/{page_path}.html", wait_until="load")
        page.wait_for_function(RENDERED, timeout=30_000)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"page is {width} px wide at a 390 px viewport"
    finally:
        context.close()


LUMINANCE = """(color) => {
  const [r, g, b] = color.match(/[\\d.]+/g).slice(0, 3).map(Number).map(v => {
    v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}"""


def contrast(page, fg: str, bg: str) -> float:
    lf, lb = page.evaluate(LUMINANCE, fg), page.evaluate(LUMINANCE, bg)
    return (max(lf, lb) + 0.05) / (min(lf, lb) + 0.05)


NODE_COLOURS = """() => [...document.querySelectorAll('pre.mermaid svg')].flatMap(svg =>
  [...svg.querySelectorAll('g.node')].slice(0, 3).map(n => {
    const shape = n.querySelector('rect, polygon, circle, path');
    const label = n.querySelector('.nodeLabel, text, span');
    return [getComputedStyle(label).color || getComputedStyle(label).fill, getComputedStyle(shape).fill];
  }))"""


@pytest.mark.parametrize("mode", ["light", "dark"])
@pytest.mark.parametrize("chapter", chapter_files())
def test_chapter_is_readable_in_light_and_dark_mode(browser, site_url, chapter, mode):
    """Text contrast (WCAG ratio >= 7) in both modes; diagram labels readable on their boxes
    (ratio >= 4.5); figures keep an opaque white background."""
    context = browser.new_context(color_scheme=mode)
    context.add_init_script(f"localStorage.setItem('mode', '{mode}'); localStorage.setItem('theme', '{mode}');")
    page = context.new_page()
    try:
        page.goto(f"{site_url}/{chapter}.html", wait_until="load")
        page.wait_for_function(RENDERED, timeout=30_000)
        assert page.evaluate("document.documentElement.dataset.theme") == mode
        fg = page.evaluate("getComputedStyle(document.querySelector('article p')).color")
        bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
        ratio = contrast(page, fg, bg)
        assert ratio >= 7, f"{mode}: body text contrast {ratio:.1f}"
        # the diagrams re-render when the theme mode is applied: wait for the nodes
        page.wait_for_function("() => document.querySelectorAll('pre.mermaid svg g.node').length > 0",
                               timeout=30_000)
        nodes = page.evaluate(NODE_COLOURS)
        assert nodes, "no diagram nodes found"
        for label, fill in nodes:
            if fill.startswith("rgb"):
                assert contrast(page, label, fill) >= 4.5, f"{mode}: diagram label {label} on {fill}"
        figures = page.locator(".cell_output img, figure img")
        assert figures.count() >= 1, "no figures found on the chapter page"
        for i in range(figures.count()):
            img = figures.nth(i)
            # the PNG itself is opaque white behind the plot: sample its corner pixel
            corner = img.evaluate("""(el) => { const c = document.createElement('canvas');
                c.width = el.naturalWidth; c.height = el.naturalHeight; const x = c.getContext('2d');
                x.drawImage(el, 0, 0); return Array.from(x.getImageData(1, 1, 1, 1).data); }""")
            assert corner == [255, 255, 255, 255], f"{mode}: figure {i} corner pixel {corner}"
    finally:
        context.close()


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
def test_accessibility_has_no_serious_violations(browser, site_url, page_path):
    """axe-core (bundled by axe-playwright-python) on every page: no critical or serious violations."""
    report = page_report(browser, site_url, page_path)
    assert report["violations"] == [], "\n".join(report["violations"])
    assert report["missing_alt"] == [], f"images without alt text: {report['missing_alt']}"
