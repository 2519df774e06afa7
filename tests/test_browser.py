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


@pytest.mark.parametrize("page_path", toc_files())
def test_page_renders_offline(browser, site_url, page_path):
    page, errors, blocked = open_page(browser, f"{site_url}/{page_path}.html")
    try:
        page.wait_for_function(RENDERED, timeout=30_000)
        n_mermaid = page.locator("pre.mermaid").count()
        svgs = page.locator("pre.mermaid svg").count()
        assert svgs == n_mermaid, f"{svgs} of {n_mermaid} Mermaid blocks rendered"
        if n_mermaid:
            # every diagram carries its labels as text
            labels = page.eval_on_selector_all("pre.mermaid svg", "els => els.map(e => e.textContent.trim().length)")
            assert min(labels) > 0, "a Mermaid diagram rendered without labels"
        assert page.locator("mjx-merror").count() == 0, "MathJax reported a TeX error"
        page.wait_for_timeout(200)
        assert errors == [], f"console errors: {errors}"
        assert blocked == [], f"requests to other origins: {blocked}"
    finally:
        page.context.close()


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
