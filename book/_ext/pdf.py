"""Print the single-page HTML build of the book to PDF with the system Chromium.

Usage: python book/_ext/pdf.py _build/singlehtml _build/pdf/papers30.pdf

The page is served from 127.0.0.1 (requests elsewhere are refused), Mermaid
diagrams and MathJax equations are rendered in the browser exactly as on the
site, and Chromium's print engine writes the PDF. No browser is downloaded:
Debian's ``chromium`` at /usr/bin/chromium is used.
"""

from __future__ import annotations

import functools
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

CHROMIUM = "/usr/bin/chromium"
READY = """() => [...document.querySelectorAll('pre.mermaid')].every(e => e.querySelector('svg'))
  && [...document.querySelectorAll('div.math, span.math')].every(e => e.querySelector('mjx-container'))"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def print_book(site: Path, out: Path, entry: str = "book/intro.html") -> Path:
    """Render ``site/entry`` and print it to ``out``; return ``out``.

    Jupyter Book 1 writes the single page at ``book/intro.html`` but with
    links relative to the site root, so it is copied to the root first.
    """
    from playwright.sync_api import sync_playwright

    (site / "_print.html").write_text((site / entry).read_text(encoding="utf-8"), encoding="utf-8")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1100, "height": 1400})
            page.route("**/*", lambda r: r.continue_() if urlparse(r.request.url).hostname == "127.0.0.1"
                       else r.abort())
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/_print.html", wait_until="load")
            page.wait_for_function(READY, timeout=60_000)
            page.emulate_media(media="print")
            page.pdf(path=str(out), format="A4", print_background=True,
                     margin={"top": "16mm", "bottom": "16mm", "left": "14mm", "right": "14mm"})
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return out


if __name__ == "__main__":
    site, target = Path(sys.argv[1]), Path(sys.argv[2])
    print(f"PDF written: {print_book(site, target)}")
