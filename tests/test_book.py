"""Checks of the built site and of the book's sources.

The site checks need ``_build/html`` from ``make test``'s clean build; the
source checks (notebook pairing, anatomy, configuration) do not.
"""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import pytest
from pybtex.database import parse_string

from papers30 import ledger
from papers30.papers import all_papers, declared_claims
from tests._site import BUILD, ROOT, built_pages, chapter_files, parse, require_site, toc_files

REMOTE = re.compile(r"^(https?:)?//", re.I)


def config() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "_config.yml").read_text())


# --- sources -------------------------------------------------------------------


@pytest.mark.parametrize("chapter", chapter_files())
def test_paired_notebook_in_sync_with_markdown(chapter):
    """Reference: jupytext's own reading of both files; cells must match in type, source and tags."""
    md = jupytext.read(ROOT / f"{chapter}.md")
    nb_path = ROOT / f"{chapter}.ipynb"
    assert nb_path.exists(), f"{chapter}.ipynb is missing: run `jupytext --sync {chapter}.md`"
    nb = jupytext.read(nb_path)
    assert len(md.cells) == len(nb.cells), f"{chapter}: .md and .ipynb have different cell counts"
    for i, (a, b) in enumerate(zip(md.cells, nb.cells)):
        assert a.cell_type == b.cell_type, f"{chapter} cell {i}: type differs"
        assert a.source.strip() == b.source.strip(), f"{chapter} cell {i}: source differs (run jupytext --sync)"
        assert a.metadata.get("tags", []) == b.metadata.get("tags", []), f"{chapter} cell {i}: tags differ"


@pytest.mark.parametrize("chapter", chapter_files())
def test_chapter_follows_the_anatomy(chapter):
    """Reference: the sections of shared CHAPTER.md, in order."""
    text = (ROOT / f"{chapter}.md").read_text()
    headings = [h.strip().lower() for h in re.findall(r"^## (.+)$", text, re.M)]
    required = ["the problem", "the idea, derived", "diagram", "implementation", "experiment",
                "reproduction", "exercises", "cite this chapter", "references"]
    positions = [headings.index(r) for r in required if r in headings]
    assert [r for r in required if r not in headings] == [], f"{chapter}: missing sections"
    assert positions == sorted(positions), f"{chapter}: sections out of order: {headings}"
    assert "{mermaid}" in text and "{literalinclude}" in text and ":pyobject:" in text
    assert ":class: tip" in text and "At a glance" in text, f"{chapter}: no at-a-glance admonition"
    glance = re.search(r"At a glance\n:class: tip\n\n```\{glue:md\} glance\n:format: myst\n```\n:::", text)
    assert glance, f"{chapter}: the At-a-glance box must be the glued ledger text alone ({{glue:md}} glance)"
    assert "ChapterLedger(" in text and ".glance()" in text, f"{chapter}: records nothing in the ledger"
    assert ".table()" in text and ".checks()" in text, f"{chapter}: shows no claims and checks tables"
    assert "criteria were fixed before" not in text, f"{chapter}: git history shows that, not the prose"


def test_toc_lists_only_existing_pages():
    """Reference: the file system; no stub pages (every chapter has executed code cells)."""
    for f in toc_files():
        assert (ROOT / f"{f}.md").exists(), f"{f}.md listed in _toc.yml does not exist"
    for f in chapter_files():
        assert "```{code-cell}" in (ROOT / f"{f}.md").read_text(), f"{f} has no code cells (a stub?)"


def test_no_markdown_footnotes_in_the_book():
    """_config.yml suppresses myst.footnote warnings (false positives of {footcite});
    that is only safe while the book has no Markdown footnotes of its own."""
    for f in toc_files():
        text = (ROOT / f"{f}.md").read_text()
        assert not re.search(r"\[\^[^\]]+\]", text), f"{f} uses a Markdown footnote"


def test_chapters_in_toc_match_the_paper_registry():
    """Reference: papers.toml's docname for each paper, under its own part."""
    docnames = {p.docname for p in all_papers()}
    for f in chapter_files():
        assert f in docnames, f"{f} does not match any paper's docname in papers.toml"


def test_colab_install_url_is_the_configured_repository():
    """Reference: repository.url in _config.yml, the one place the URL lives."""
    url = config()["repository"]["url"]
    for f in chapter_files():
        for found in re.findall(r"git\+(https://\S+?)[\"']", (ROOT / f"{f}.md").read_text()):
            assert found == url, f"{f}: installs from {found}, but _config.yml says {url}"


def test_citation_cff_names_the_configured_repository():
    """Reference: repository.url and html.baseurl in _config.yml."""
    cff = (ROOT / "CITATION.cff").read_text()
    assert f'repository-code: "{config()["repository"]["url"]}"' in cff
    assert f'url: "{config()["html"]["baseurl"]}"' in cff


def test_binder_pins_match_the_lock_used_by_make():
    """Reference: the Makefile's LOCK; Binder must constrain with the same file and CPU torch."""
    make = (ROOT / "Makefile").read_text()
    lock = re.search(r"^LOCK := (\S+)", make, re.M).group(1)
    req = (ROOT / ".binder" / "requirements.txt").read_text()
    assert (ROOT / ".binder" / re.search(r"^-c (\S+)", req, re.M).group(1)) == ROOT / lock
    pins = (ROOT / lock).read_text()
    assert re.search(r"^torch==2\.13\.0\+cpu$", pins, re.M), "torch must be pinned to the CPU build"
    assert "download.pytorch.org/whl/cpu" in req


def test_ci_runs_the_readme_test_command():
    """Reference: README's quick start; .ci/run must call the same command."""
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make book" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)


# --- the built site --------------------------------------------------------------


def test_every_toc_page_is_built():
    html = require_site()
    for f in toc_files():
        assert (html / f"{f}.html").exists(), f"{f}.html was not built"


def test_no_script_or_stylesheet_from_another_origin():
    """Every script, stylesheet, preload and ES-module import is served by the site itself."""
    require_site()
    pages = built_pages()
    assert len(pages) >= len(toc_files())
    for page in pages:
        doc = parse(page)
        for tag, attrs in doc.tags:
            if tag == "script" and REMOTE.match(attrs.get("src", "")):
                pytest.fail(f"{page}: remote script {attrs['src']}")
            if tag == "link" and any(r in attrs.get("rel", "") for r in ("stylesheet", "preload", "modulepreload")):
                assert not REMOTE.match(attrs.get("href", "")), f"{page}: remote {attrs['rel']} {attrs['href']}"
        for script in doc.inline_scripts:
            for target in re.findall(r"""(?:import\s[^'"]*?from\s*|import\s*\(\s*)['"]([^'"]+)['"]""", script):
                assert not REMOTE.match(target), f"{page}: inline script imports {target}"


def test_vendored_mermaid_and_mathjax_are_served():
    require_site()
    page = BUILD / "html" / "book" / "intro.html"
    text = page.read_text()
    assert "_static/mermaid/mermaid.esm.min.mjs" in text
    assert (BUILD / "html" / "_static" / "mermaid" / "mermaid.esm.min.mjs").exists()
    chapter = (BUILD / "html" / f"{chapter_files()[0]}.html").read_text()
    assert "_static/mathjax/tex-chtml.js" in chapter
    assert (BUILD / "html" / "_static" / "mathjax" / "tex-chtml.js").exists()


@pytest.mark.parametrize("page", toc_files())
def test_every_mermaid_block_is_emitted(page):
    """Reference: the count of mermaid (and generated timeline) directives in the page's source."""
    require_site()
    source = (ROOT / f"{page}.md").read_text()
    expected = source.count("```{mermaid}") + source.count("```{paper-timeline}")
    built = (BUILD / "html" / f"{page}.html").read_text()
    assert built.count('class="mermaid"') == expected


def test_every_chapter_keeps_the_claims_protocol():
    """Reference: papers30.ledger.audit over the records the chapters wrote during the build
    (one headline on >= 3 seeds, a control for every claim, none vacuous, no undeclared miss)."""
    require_site()
    records = ledger.load(BUILD / "ledger")
    written = sorted(p.number for p in all_papers() if p.docname in chapter_files())
    assert {r.chapter for r in records} == set(written)
    problems = ledger.audit(records, written)
    assert problems == [], "\n".join(problems)


def test_scorecard_has_one_card_per_chapter_and_a_plain_summary():
    require_site()
    records = ledger.load(BUILD / "ledger")
    text = (BUILD / "html" / "book" / "back" / "scorecard.html").read_text()
    heads = [r for r in records if r.headline]
    summary = re.search(r"(\d+) of (\d+) headline claims hold", text)
    assert summary and int(summary.group(1)) == sum(h.held for h in heads) and int(summary.group(2)) == len(heads)
    assert text.count('class="papers30-score ') == len({r.chapter for r in records})
    for r in records:
        assert f"<b>{r.id}</b>" in text, f"ch{r.chapter} {r.id} is not in the per-record detail"


def test_chapters_execute_within_budget():
    """Reference: the executor's own timings (_build/execution-summary.json) and myst-nb's table."""
    require_site()
    import json

    summary = json.loads((BUILD / "execution-summary.json").read_text())
    for f in chapter_files():
        entry = summary["chapters"][f"{f}.md"]
        assert entry["ok"], f"{f} failed to execute"
        assert entry["seconds"] <= 90.0, f"{f} took {entry['seconds']} s, over the 90 s budget"
    full = summary.get("full_run")
    assert full and full["chapters"] == len(chapter_files()), "make test executes every chapter from clean"
    assert full["wall_seconds"] <= 720.0, f"the book took {full['wall_seconds']} s, over the 12-minute budget"
    if Path("/proc/self/smaps_rollup").exists():  # the executor samples the memory of all its processes
        assert full["peak_memory_mb"] <= 4096, f"the build's processes used {full['peak_memory_mb']} MB together"
    text = (BUILD / "html" / "book" / "back" / "execution.html").read_text()
    assert "against a budget of 720 s" in text
    for f in chapter_files():
        assert Path(f).name in text


def test_committed_chapter_times_order_every_chapter():
    """Reference: _toc.yml. A clean checkout schedules the chapters longest first from these times."""
    import json

    hint = json.loads((ROOT / "book" / "_ext" / "chapter-seconds.json").read_text())
    assert set(hint) == {f"{f}.md" for f in chapter_files()}
    assert all(isinstance(v, (int, float)) and 0 < v <= 90 for v in hint.values())


@pytest.mark.parametrize("chapter", chapter_files())
def test_cite_this_chapter_block_is_valid_bibtex(chapter):
    """Reference: pybtex parses the rendered block; URL is the page's stable address."""
    require_site()
    import html as html_lib

    text = (BUILD / "html" / f"{chapter}.html").read_text()
    block = re.search(r'papers30-cite(?!-figure).*?<pre>(.*?)</pre>', text, re.S)
    assert block, f"{chapter}: no cite-this-chapter block"
    bib = html_lib.unescape(re.sub(r"<[^>]+>", "", block.group(1)))
    entries = parse_string(bib, "bibtex").entries
    assert len(entries) == 1
    entry = next(iter(entries.values()))
    assert entry.fields["url"] == config()["html"]["baseurl"].rstrip("/") + f"/{chapter}.html"
    assert entry.type == "incollection" and entry.fields["booktitle"]


def test_bibliography_page_lists_all_thirty_papers():
    require_site()
    text = (BUILD / "html" / "book" / "back" / "bibliography.html").read_text()
    labels = re.findall(r'<span class="fn-bracket">\[</span>(\d+)<span class="fn-bracket">\]</span>', text)
    assert len(set(labels)) >= 30, f"only {len(set(labels))} entries on the bibliography page"
    for p in all_papers():
        surname = p.short_authors.split()[0].strip(",")
        assert surname in text, f"{p.bibkey}: {surname} not on the bibliography page"


def test_part_pages_list_their_ten_papers_and_link_written_chapters():
    require_site()
    for part in (1, 2, 3):
        text = (BUILD / "html" / "book" / f"part{part}" / "index.html").read_text()
        papers = [p for p in all_papers() if p.part == part]
        assert len(papers) == 10
        for p in papers:
            assert p.title.replace("&", "&amp;") in text, p.title
            if p.docname in chapter_files():
                assert f'{Path(p.docname).name}.html"' in text, f"part {part} does not link chapter {p.number}"


@pytest.mark.parametrize("chapter", chapter_files())
def test_chapter_carries_citation_and_opengraph_meta(chapter):
    """Reference: the paper registry and html.baseurl; reference managers read these tags."""
    require_site()
    paper = next(p for p in all_papers() if p.docname == chapter)
    doc = parse(BUILD / "html" / f"{chapter}.html")
    meta = {a.get("name") or a.get("property"): a.get("content") for t, a in doc.tags if t == "meta"}
    url = config()["html"]["baseurl"].rstrip("/") + f"/{chapter}.html"
    assert meta["citation_title"] == f"Chapter {paper.number}: {paper.title}"
    assert meta["citation_author"] and meta["citation_inbook_title"]
    assert re.fullmatch(r"\d{4}", meta["citation_publication_date"])
    assert meta["citation_public_url"] == url == meta["og:url"]
    assert meta["og:title"] == meta["citation_title"]


def test_sitemap_lists_every_toc_page():
    """Reference: _toc.yml; the sitemap is valid XML with one stable URL per page."""
    require_site()
    import xml.etree.ElementTree as ET

    root = ET.parse(BUILD / "html" / "sitemap.xml").getroot()
    ns = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}
    locs = {e.text for e in root.findall("s:url/s:loc", ns)}
    base = config()["html"]["baseurl"].rstrip("/")
    assert locs == {f"{base}/{f}.html" for f in toc_files()}


@pytest.mark.parametrize("chapter", chapter_files())
def test_download_buttons_serve_the_executed_notebook_and_source(chapter):
    """Reference: nbformat; the .ipynb offered for download carries this build's outputs."""
    require_site()
    import nbformat

    text = (BUILD / "html" / f"{chapter}.html").read_text()
    name = Path(chapter).name
    assert f"_sources/{chapter}.ipynb" in text or f"{name}.ipynb" in text
    assert f"{name}.md" in text
    nb = nbformat.read(BUILD / "html" / "_sources" / f"{chapter}.ipynb", as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert len(outputs) >= 3, "the downloadable notebook has no outputs"
    assert (BUILD / "html" / "_sources" / f"{chapter}.md").exists()


def test_pages_workflow_builds_with_the_readme_command():
    """Reference: README's build command and the site directory it prints."""
    import yaml

    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "pages.yml").read_text())
    steps = [s for job in wf["jobs"].values() for s in job["steps"]]
    assert any(s.get("run") == "make book" for s in steps)
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/html"


@pytest.mark.parametrize("chapter", chapter_files())
def test_every_numbered_figure_and_equation_has_a_stable_anchor(chapter):
    """Reference: the :name: of each figure and the (label) of each equation in the source;
    a lecturer links to page.html#<name> or page.html#equation-<label>."""
    require_site()
    source = (ROOT / f"{chapter}.md").read_text()
    ids = {a["id"] for _, a in parse(BUILD / "html" / f"{chapter}.html").tags if "id" in a}
    figures = re.findall(r"^:name:\s*(\S+)", source, re.M)
    equations = re.findall(r"^\$\$\s*\(([\w-]+)\)\s*$", source, re.M)
    assert figures and equations
    for name in figures:
        assert name in ids, f"{chapter}: figure {name} has no anchor"
    for label in equations:
        assert f"equation-{label}" in ids, f"{chapter}: equation {label} has no anchor"


@pytest.mark.parametrize("chapter", chapter_files())
def test_figures_and_equations_are_numbered_per_chapter(chapter):
    """Reference: the chapter's number and the order of items in its source (Fig. 13.1, 13.2, ...; (3.1) ...)."""
    require_site()
    number = int(Path(chapter).name[:2])
    text = (BUILD / "html" / f"{chapter}.html").read_text()
    source = (ROOT / f"{chapter}.md").read_text()
    figs = re.findall(r'<span class="caption-number">Fig\. ([\d.]+) </span>', text)
    assert figs == [f"{number}.{i}" for i in range(1, len(figs) + 1)]
    assert len(figs) == len(re.findall(r"^:name:\s*fig-", source, re.M))
    eqs = re.findall(r'<span class="eqno">\(([\d.]+)\)', text)
    assert eqs == [f"{number}.{i}" for i in range(1, len(eqs) + 1)] and eqs


@pytest.mark.parametrize("chapter", chapter_files())
def test_every_figure_can_be_downloaded_linked_and_cited(chapter):
    """Reference: the {glue:figure} names in the source; files checked by their own headers."""
    require_site()
    import html as html_lib

    number = int(Path(chapter).name[:2])
    page = BUILD / "html" / f"{chapter}.html"
    text = page.read_text()
    names = re.findall(r"^```\{glue:figure\}.*\n(?::[\w-]+:.*\n)*?:name:\s*(\S+)", (ROOT / f"{chapter}.md").read_text(),
                       re.M)
    assert names, f"{chapter} has no glued figures"
    for name in names:
        block = re.search(rf'id="{re.escape(name)}".*?<div class="papers30-figure-tools">(.*?)</div>', text, re.S)
        assert block, f"{chapter}: figure {name} has no download/cite links"
        links = dict(re.findall(r'<a href="([^"]+)" download>(SVG|PNG)', block.group(1)))
        svg = next(k for k, v in links.items() if v == "SVG")
        png = next(k for k, v in links.items() if v == "PNG")
        assert (page.parent / svg).read_text().lstrip().startswith(("<?xml", "<svg"))
        assert (page.parent / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'href="#{name}"' in block.group(1)
        cite = html_lib.unescape(re.search(r"Cite this figure: (.*?)</p>", block.group(1)).group(1))
        assert re.match(rf"Fig\. {number}\.\d+ in papers30 contributors", cite)
        assert cite.endswith(f"{config()['html']['baseurl'].rstrip('/')}/{chapter}.html#{name}")


def test_kernel_benchmarks_cover_every_kernel_with_a_torch_reference():
    """Reference: tools/bench.py's registry; every kernel whose module exists has a stored row, shown on the page."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("bench", ROOT / "tools" / "bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    import torch

    data = json.loads((ROOT / "book" / "results" / "bench.json").read_text())
    stored = {r["kernel"]: r for r in data["rows"]}
    for name, _shape, setup, target in bench.KERNELS:
        try:
            setup(torch.Generator().manual_seed(0))
        except (ImportError, AttributeError):
            continue  # the kernel's module is not written yet
        assert name in stored, f"{name} has no stored timing: run make bench"
        row = stored[name]
        assert row["ratio"] == pytest.approx(row["ours_ms"] / row["torch_ms"], rel=0.02)
        assert row["met"] == (row["ratio"] <= target)
        assert row["met"] or row["note"], f"{name} misses its target and the page does not say why"
    require_site()
    text = (BUILD / "html" / "book" / "back" / "benchmarks.html").read_text()
    assert data["machine"].split(",")[0] in text
    for name in stored:
        assert name.split(" ")[0] in text


def test_recorded_runs_with_settings_are_compared_on_their_pages():
    """Reference: the run files; a page that shows a run which stored its pick() settings must have
    compared them with the chapter's present ones (the comparison runs in the chapter's kernel)."""
    from papers30.papers import paper
    from papers30.provenance import recorded_runs

    require_site()
    for run in recorded_runs():
        if run.settings is None:
            continue
        text = re.sub(r"<[^>]+>", "", (BUILD / "html" / f"{paper(run.chapter).docname}.html").read_text())
        assert "and so are its pick settings" in text or "pick settings for scale" in text, \
            f"chapter {run.chapter}'s page did not compare its recorded run's settings"
