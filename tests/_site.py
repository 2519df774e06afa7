"""Shared helpers for the tests of the built site (``_build/html``)."""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
HTML = BUILD / "html"


def require_site() -> Path:
    """The built site; skip when it is absent locally, fail in CI (where `make test` builds it)."""
    if not (HTML / "book" / "intro.html").exists():
        msg = "the site is not built: run `make test` (it builds the book, then runs pytest)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return HTML


def toc_files() -> list[str]:
    """Every page listed in _toc.yml (root first), as paths without suffix."""
    text = (ROOT / "_toc.yml").read_text()
    root = re.search(r"^root:\s*(\S+)", text, re.M).group(1)
    return [root, *re.findall(r"file:\s*(\S+)", text)]


def chapter_files() -> list[str]:
    """The chapters in the toc (files named NN_slug)."""
    return [f for f in toc_files() if re.match(r"\d\d_", Path(f).name)]


def built_pages() -> list[Path]:
    """Every HTML page of the book's content (not Sphinx's generated search/genindex)."""
    return sorted(p for p in HTML.rglob("*.html") if "_static" not in p.parts and "_sources" not in p.parts)


class TagCollector(HTMLParser):
    """Collects start tags with their attributes, and the text of inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.inline_scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline_scripts.append(data)


def parse(path: Path) -> TagCollector:
    parser = TagCollector()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser
