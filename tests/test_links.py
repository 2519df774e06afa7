"""Every internal link and anchor in the built site resolves (a crawler over the HTML files).

External links are collected into ``_build/external_links.txt`` for review; they are never fetched.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

from tests._site import BUILD, built_pages, parse, require_site

SKIP_SCHEMES = ("mailto:", "javascript:", "data:")


def _ids(page: Path, cache: dict[Path, set[str]]) -> set[str]:
    if page not in cache:
        doc = parse(page)
        cache[page] = {a["id"] for _, a in doc.tags if "id" in a} | {a["name"] for t, a in doc.tags if t == "a" and "name" in a}
    return cache[page]


def test_every_internal_link_and_anchor_resolves():
    html = require_site()
    pages = built_pages()
    ids: dict[Path, set[str]] = {}
    broken, external, checked = [], set(), 0
    for page in pages:
        for tag, attrs in parse(page).tags:
            href = attrs.get("href") if tag in ("a", "link") else attrs.get("src") if tag in ("img", "script") else None
            if not href or href.startswith(SKIP_SCHEMES):
                continue
            if urlparse(href).scheme in ("http", "https") or href.startswith("//"):
                external.add(href)
                continue
            path, frag = urldefrag(href)
            path = urlparse(path).path  # drop ?digest=... cache busters
            target = (page.parent / unquote(path)).resolve() if path else page
            if target.is_dir():
                target = target / "index.html"
            checked += 1
            if not target.exists():
                broken.append(f"{page.relative_to(html)} -> {href} (no file)")
            elif frag and target.suffix == ".html" and frag not in _ids(target, ids):
                broken.append(f"{page.relative_to(html)} -> {href} (no anchor)")
    (BUILD / "external_links.txt").write_text(
        f"# {checked} internal links checked in {len(pages)} pages; {len(external)} external links (not fetched):\n"
        + "\n".join(sorted(external)) + "\n")
    assert checked > 100, f"only {checked} internal links found: is the crawler reading the pages?"
    assert broken == [], "broken internal links:\n" + "\n".join(broken)
