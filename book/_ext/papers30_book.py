"""Sphinx extension for the papers30 book: pages generated from one source of truth.

Directives:

``{part-papers} N``
    The landing page table of part ``N``: its ten papers (from
    ``papers30/data/papers.toml``), linked to their chapter when the chapter
    is in the table of contents, marked "in preparation" otherwise.
``{paper-timeline}``
    A Mermaid timeline of the thirty papers by year.
``{cite-this-chapter}``
    The BibTeX entry for the current chapter, from one template.
``{scorecard}``
    The book-wide reproduction scorecard, rendered after every chapter has
    executed from the ledger records the chapters wrote (see
    :mod:`papers30.ledger`). Pages using it are re-read on every build.

The extension also points ``PAPERS30_LEDGER_DIR`` at ``_build/ledger`` so
that the chapters' kernels (which inherit the build's environment) write
their claims where the scorecard reads them.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinxcontrib.mermaid import mermaid

import execute  # noqa: I001 (book/_ext, beside this file: the executor's paths)
from papers30 import ledger, provenance
from papers30.display import FIGURE_ENV
from papers30.papers import Paper, all_papers, declared_claims

logger = logging.getLogger(__name__)
PART_NAMES = {1: "Part I: Foundations", 2: "Part II: Architectures and memory", 3: "Part III: Frontiers and theory"}
BOOK_TITLE = "papers30: The Sutskever 30, Executed"


def _chapter_of(docname: str) -> Paper | None:
    for p in all_papers():
        if p.docname == docname:
            return p
    return None


def chapter_url(baseurl: str, paper: Paper) -> str:
    """The stable public URL of a chapter's page."""
    return f"{baseurl.rstrip('/')}/{paper.docname}.html"


def cite_this_chapter(paper: Paper, baseurl: str, year: int) -> str:
    """The BibTeX entry a lecturer pastes to cite a chapter (the one template)."""
    return (
        f"@incollection{{papers30_ch{paper.number:02d},\n"
        f"  author    = {{{{papers30 contributors}}}},\n"
        f"  title     = {{Chapter {paper.number}: {paper.title}}},\n"
        f"  booktitle = {{{BOOK_TITLE}}},\n"
        f"  year      = {{{year}}},\n"
        f"  chapter   = {{{paper.number}}},\n"
        f"  url       = {{{chapter_url(baseurl, paper)}}},\n"
        f"  note      = {{Executable chapter on {paper.short_authors} ({paper.year}), {paper.bibkey}}}\n"
        f"}}"
    )


def _table(head: list[str], rows: list[list[nodes.Node | str]], widths: list[int]) -> nodes.table:
    table = nodes.table(classes=["papers30-table"])
    group = nodes.tgroup(cols=len(head))
    table += group
    for w in widths:
        group += nodes.colspec(colwidth=w)
    thead = nodes.thead()
    group += thead
    hrow = nodes.row()
    for h in head:
        hrow += nodes.entry("", nodes.paragraph(text=h))
    thead += hrow
    tbody = nodes.tbody()
    group += tbody
    for r in rows:
        row = nodes.row()
        for cell in r:
            para = nodes.paragraph()
            para += cell if isinstance(cell, nodes.Node) else nodes.Text(cell)
            row += nodes.entry("", para)
        tbody += row
    return table


class PartPapers(SphinxDirective):
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        part = int(self.arguments[0])
        rows: list[list[nodes.Node | str]] = []
        for p in all_papers():
            if p.part != part:
                continue
            title: nodes.Node
            if p.docname in self.env.found_docs:
                self.env.note_dependency(self.env.doc2path(p.docname))
                ref = nodes.reference("", "", internal=True, refuri=p.docname)
                ref["papers30_doc"] = p.docname
                ref += nodes.Text(p.title)
                title, status = ref, "written"
            else:
                title, status = nodes.Text(p.title), "in preparation"
            rows.append([str(p.number), title, f"{p.short_authors} ({p.venue} {p.year})", status])
        return [_table(["No.", "Paper", "Authors", "Chapter"], rows, [6, 50, 30, 14])]


class PaperTimeline(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        lines = ["timeline", "    title The thirty papers by year"]
        by_year: dict[int, list[Paper]] = {}
        for p in all_papers():
            by_year.setdefault(p.year, []).append(p)
        for year in sorted(by_year):
            items = " : ".join(f"{p.number}. {p.title.replace(':', ' -')}" for p in by_year[year])
            lines.append(f"    {year} : {items}")
        node = mermaid()
        node["code"] = "\n".join(lines)
        node["options"] = {}
        node["alt"] = "Timeline of the thirty papers by year of publication"
        return [node]


class CiteThisChapter(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        paper = _chapter_of(self.env.docname)
        if paper is None:
            return [self.state_machine.reporter.warning(
                f"cite-this-chapter used in {self.env.docname}, which is not a chapter of papers.toml", line=self.lineno)]
        year = int(self.config.papers30_year)
        text = cite_this_chapter(paper, self.config.html_baseurl, year)
        block = nodes.literal_block(text, text, language="bibtex", classes=["papers30-cite"])
        return [block]


class scorecard_placeholder(nodes.General, nodes.Element):
    pass


class Scorecard(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        self.env.papers30_dynamic = getattr(self.env, "papers30_dynamic", set()) | {self.env.docname}
        return [scorecard_placeholder()]


class KernelBenchmarks(SphinxDirective):
    """The table of ``make bench`` (book/results/bench.json), with the machine it ran on."""

    def run(self) -> list[nodes.Node]:
        import json

        path = Path(self.env.srcdir) / "book" / "results" / "bench.json"
        self.env.note_dependency(str(path))
        if not path.exists():
            return [self.state_machine.reporter.warning("book/results/bench.json is missing: run make bench",
                                                        line=self.lineno)]
        data = json.loads(path.read_text())
        para = nodes.paragraph()
        para += nodes.Text(f"Measured on {data['machine']}, {data['date']}, median of {data['repeats']} "
                           "repeats of forward plus backward, by ")
        para += nodes.literal(text="make bench")
        load = data.get("load_average")
        para += nodes.Text("." if load is None else f", with a load average of {load:.2f} when it started.")
        rows = [[r["kernel"], r["shape"], f"{r['ours_ms']:.2f}", f"{r['torch_ms']:.2f}", f"{r['ratio']:.2f}",
                 f"{r['target']:g}", "yes" if r["met"] else "no", r.get("note", "")] for r in data["rows"]]
        head = ["Kernel", "Shapes", "Ours (ms)", "Torch (ms)", "Ratio", "Target", "Met", "Notes from profiling"]
        return [para, _table(head, rows, [18, 20, 9, 9, 7, 7, 6, 24])]


class budget_placeholder(nodes.General, nodes.Element):
    pass


CHAPTER_BUDGET_S = 90.0
BOOK_BUDGET_S = 720.0


class ExecutionBudget(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        self.env.papers30_dynamic = getattr(self.env, "papers30_dynamic", set()) | {self.env.docname}
        return [budget_placeholder()]


def budget_rows(summary: dict, chapter_docs: list[str]) -> tuple[str, list[list[str]]]:
    """The budget summary sentence and one row per chapter: time, peak kernel memory, within budget."""
    known = summary.get("chapters", {})
    rows, total = [], 0.0
    for doc in chapter_docs:
        entry = known.get(f"{doc}.md")
        if entry is None:
            rows.append([doc.split("/")[-1], "not executed by execute.py", "—", "—"])
            continue
        total += entry["seconds"]
        ok = entry["seconds"] <= CHAPTER_BUDGET_S and entry["ok"]
        rows.append([doc.split("/")[-1], f"{entry['seconds']:.1f}", f"{entry['peak_rss_mb']:.0f}",
                     "yes" if ok else "NO"])
    full = summary.get("full_run")
    if full:
        wall = (f"The last run that executed every chapter took {full['wall_seconds']:.0f} s of wall time "
                f"({full['chapters']} chapters, {full['jobs']} at a time with {full['threads']} thread(s) each, "
                f"on {full['cpus']} cores), against a budget of {BOOK_BUDGET_S:.0f} s.")
        if "peak_memory_mb" in full and "sample_seconds" in full:
            wall += (f" Its processes (workers, kernels and their children) used at most "
                     f"{full['peak_memory_mb'] / 1024:.2f} GB of memory together (proportional set size, "
                     f"shared pages counted once, sampled every {full['sample_seconds']:g} s), "
                     "against a budget of 4 GB.")
    else:
        wall = "No run has executed every chapter in this build directory yet."
    sentence = (f"{wall} Chapter times add up to {total:.0f} s; the budget is {CHAPTER_BUDGET_S:.0f} s "
                "per chapter, with one thread.")
    return sentence, rows


def _render_budget(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    import json

    for node in list(doctree.findall(budget_placeholder)):
        path = Path(app.outdir).parent / "execution-summary.json"
        summary = json.loads(path.read_text()) if path.exists() else {}
        docs = [p.docname for p in all_papers() if p.docname in app.env.found_docs]
        sentence, rows = budget_rows(summary, docs)
        para = nodes.paragraph()
        para += nodes.strong(text=sentence)
        node.replace_self([para, _table(["Chapter", "Seconds", "Peak kernel memory (MB)", "Within budget"],
                                        rows, [40, 15, 25, 20])])


def ledger_dir(app: Sphinx) -> Path:
    return Path(app.outdir).parent / "ledger"


def scorecard_html(records: list[ledger.Record], links: dict[int, str],
                   recorded: dict[int, provenance.RecordedRun] | None = None) -> tuple[str, str]:
    """The scorecard's summary sentence and its HTML: one row per chapter, per-record detail behind it.

    ``links`` maps a chapter number to the relative URL of its page; ``recorded`` a chapter number
    to its recorded larger run (``book/results``), whose headline verdict the card shows beside the
    build's, marked stale where the run no longer follows from the code.
    """
    recorded = recorded or {}
    esc = html.escape
    by_chapter: dict[int, list[ledger.Record]] = {}
    for r in records:
        by_chapter.setdefault(r.chapter, []).append(r)
    heads = [r for r in records if r.headline]
    claims = [r for r in records if r.kind == "claim"]
    checks = [r for r in records if r.kind == "check"]
    declared = sum(1 for r in claims if not r.held and not r.expected)
    summary = (
        f"{sum(h.held for h in heads)} of {len(heads)} headline claims hold, in the "
        f"{len(by_chapter)} chapters written. Over all records: {sum(r.held for r in claims)} of "
        f"{len(claims)} claims held and {len(claims) - sum(r.held for r in claims)} missed "
        f"({declared} of those misses declared before the run); "
        f"{sum(r.held for r in checks)} of {len(checks)} checks passed.")
    shown = {c: run for c, run in recorded.items() if c in by_chapter}
    rec_heads = {c: next((r for r in run.ledger_records() if r.headline), None) for c, run in shown.items()}
    if shown:
        stale = sum(run.stale for run in shown.values())
        summary += (f" {len(shown)} chapters also show a recorded larger run, not executed by this build; "
                    f"its headline holds in {sum(bool(h and h.held) for h in rec_heads.values())} of them"
                    + (f" ({stale} of the runs stale)." if stale else "."))
    rows = []
    for chapter in sorted(by_chapter):
        recs = by_chapter[chapter]
        head = next((r for r in recs if r.headline), None)
        title = next(p.title for p in all_papers() if p.number == chapter)
        link = f'<a href="{esc(links.get(chapter, "#"))}">{chapter}. {esc(title)}</a>'
        c_recs = [r for r in recs if r.kind == "claim"]
        k_recs = [r for r in recs if r.kind == "check"]
        counts = (f"{sum(r.held for r in c_recs)} of {len(c_recs)} claims held; "
                  f"{sum(r.held for r in k_recs)} of {len(k_recs)} checks passed")
        if head is None:
            verdict, ours, control, paper_fig = "no headline recorded", "—", "—", "—"
        else:
            verdict = head.result
            ours = f"{head.seeds_text()}: {head.quantity}"
            control = f"{head.shown_control} ({head.control_label})"
            paper_fig = f"{head.paper} ({head.source})" if head.source else head.paper
        detail_rows = "".join(
            f"<li><b>{esc(r.id)}</b> ({r.kind}{', headline' if r.headline else ''}): {esc(r.seeds_text())} "
            f"against {esc(r.criterion)}"
            + (f"; control {esc(r.shown_control)}" if r.control is not None else "")
            + f": <b>{esc(r.result)}</b>"
            + (f". Declared: {esc(r.reason)}" if not r.expected else "") + "</li>"
            for r in recs)
        cls = "held" if head is not None and head.held else "missed"
        rows.append(
            f'<div class="papers30-score papers30-score-{cls}">'
            f'<p class="papers30-score-title">{link}</p>'
            f'<dl><dt>Headline</dt><dd><b>{esc(verdict)}</b>'
            f'{": " + esc(head.id) if head else ""}</dd>'
            f"<dt>Ours</dt><dd>{esc(ours)}</dd>"
            f"<dt>Control</dt><dd>{esc(control)}</dd>"
            f"<dt>Paper</dt><dd>{esc(paper_fig)}</dd>"
            f"<dt>Records</dt><dd>{esc(counts)}</dd>"
            + (_recorded_dd(shown[chapter], rec_heads[chapter]) if chapter in shown else "")
            + "</dl>"
            f"<details><summary>Every record of chapter {chapter}</summary><ul>{detail_rows}</ul></details>"
            f"</div>")
    return summary, '<div class="papers30-scorecard">' + "".join(rows) + "</div>"


def _recorded_dd(run: provenance.RecordedRun, head: ledger.Record | None) -> str:
    """The scorecard's line for a chapter's recorded run: its headline verdict, value and provenance."""
    esc = html.escape
    what = ("no headline recorded" if head is None else
            f"<b>{esc(head.result)}</b>: {esc(head.seeds_text())} against the control's {esc(head.shown_control)}")
    state = (f"; <b>stale</b>, rerun <code>make reproduce CH={run.chapter}</code>" if run.stale else "")
    return (f"<dt>Recorded run</dt><dd>{what} (scale {esc(run.scale)}, {run.wall_seconds / 60:.0f} min on "
            f"{esc(run.device)}{state})</dd>")


def _render_scorecard(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    for node in list(doctree.findall(scorecard_placeholder)):
        records = ledger.load(ledger_dir(app))
        written = {p.number for p in all_papers() if p.docname in app.env.found_docs}
        recorded = {(r.chapter, r.id) for r in records}
        for chapter, cid in declared_claims():
            if chapter in written and (chapter, cid) not in recorded:
                logger.warning(f"claim {cid!r} of chapter {chapter} is declared in papers.toml but no "
                               f"ledger record was found in {ledger_dir(app)}", location=docname)
        links = {p.number: app.builder.get_relative_uri(docname, p.docname)
                 for p in all_papers() if p.number in written}
        summary, body = scorecard_html(records, links, {r.chapter: r for r in provenance.recorded_runs()})
        para = nodes.paragraph(classes=["papers30-score-summary"])
        para += nodes.strong(text=summary)
        node.replace_self([para, nodes.raw("", body, format="html")])


def _number_per_chapter(app: Sphinx, env) -> list[str]:
    """Renumber figures, tables and equations per chapter: "Fig. 13.2", "(3.4)".

    Sphinx numbers them across the whole book when the toctree is not
    numbered (chapter 13's first figure would be "Fig. 40"). This runs after
    Sphinx's own numbering (``env-get-updated``, later priority) and gives the
    items of each chapter the chapter's number and their order in the page.
    Returns the chapters whose numbers changed, so that they are written again.
    """
    previous = getattr(env, "papers30_numbers", {})
    changed = []
    for docname, types in env.toc_fignumbers.items():
        paper = _chapter_of(docname)
        if paper is None:
            continue
        for figtype, ids in types.items():
            order = sorted(ids, key=lambda k: ids[k])
            types[figtype] = {k: (paper.number, i) for i, k in enumerate(order, start=1)}
        if previous.get(docname) != types:
            changed.append(docname)
    env.papers30_numbers = {d: {t: dict(v) for t, v in types.items()} for d, types in env.toc_fignumbers.items()
                            if _chapter_of(d) is not None}
    return changed


def _resolve_links(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    for ref in doctree.findall(nodes.reference):
        if "papers30_doc" in ref.attributes:
            ref["refuri"] = app.builder.get_relative_uri(docname, ref["papers30_doc"])


def _always_reread(app: Sphinx, env, added, changed, removed) -> list[str]:
    return sorted(getattr(env, "papers30_dynamic", set()) & env.found_docs)


EXECUTED = execute.EXECUTED.relative_to(execute.ROOT)  # written by book/_ext/execute.py


def executed_since_read(stamps: dict[str, str], seen: dict[str, str], found: set[str]) -> list[str]:
    """Docnames of the chapters ``execute.py`` has run since Sphinx last read them.

    ``stamps`` maps a chapter's source (``book/part1/02_x.md``) to a token the
    executor renews at every run of it; ``seen`` holds the tokens of the last read.
    """
    return sorted(doc for key, stamp in stamps.items()
                  if seen.get(key) != stamp and (doc := key.removesuffix(".md")) in found)


def _reread_executed(app: Sphinx, env, added, changed, removed) -> list[str]:
    """Re-read a chapter the executor has run again since the last build.

    Sphinx re-reads a page when its source or an included file changes; a
    chapter re-executed because package code it imports (or its recorded run)
    changed has neither, and its page would keep the outputs of the earlier run.
    """
    import json

    try:
        stamps = json.loads((Path(app.srcdir) / EXECUTED).read_text())
    except (OSError, ValueError):
        stamps = {}
    docs = executed_since_read(stamps, getattr(env, "papers30_executed", {}), env.found_docs)
    env.papers30_executed = dict(stamps)
    return docs


def _purge(app: Sphinx, env, docname: str) -> None:
    if hasattr(env, "papers30_dynamic"):
        env.papers30_dynamic.discard(docname)


def _dedupe_scripts(app: Sphinx, pagename, templatename, context, doctree) -> None:
    """Drop repeated script tags from a page.

    With Sphinx 7.4, Jupyter Book 1 registers the inline scripts of
    sphinx-thebe and sphinx-togglebutton twice (once with filename None,
    once with ""), so Sphinx does not see them as equal; the second
    ``const THEBE_JS_URL`` is then a SyntaxError in the browser console.
    """
    files = context.get("script_files")
    if not isinstance(files, list):
        return
    seen, unique = set(), []
    for js in files:
        key = (getattr(js, "filename", js) or "", tuple(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    files[:] = unique  # in place: the builder's own list, which later handlers extend


def page_meta(app: Sphinx, pagename: str, title: str) -> list[tuple[str, str, str]]:
    """``(attribute, name, content)`` of the meta tags for a page.

    Every page gets OpenGraph tags; a chapter also gets Highwire ``citation_*``
    tags, which reference managers (Zotero, Mendeley) and Google Scholar read.
    """
    base = app.config.html_baseurl.rstrip("/")
    url = f"{base}/{pagename}.html"
    tags = [
        ("property", "og:site_name", BOOK_TITLE),
        ("property", "og:type", "article"),
        ("property", "og:title", title),
        ("property", "og:url", url),
    ]
    paper = _chapter_of(pagename)
    if paper is not None:
        tags[2] = ("property", "og:title", f"Chapter {paper.number}: {paper.title}")
        tags.append(("property", "og:description",
                     f"Executable chapter on {paper.short_authors} ({paper.year}): {paper.summary}"))
        tags += [
            ("name", "citation_title", f"Chapter {paper.number}: {paper.title}"),
            ("name", "citation_author", "papers30 contributors"),
            ("name", "citation_publication_date", str(app.config.papers30_year)),
            ("name", "citation_inbook_title", BOOK_TITLE),
            ("name", "citation_public_url", url),
        ]
    return tags


def _fix_citation_list_role(app: Sphinx, pagename, templatename, context, doctree) -> None:
    """Drop ``role="list"`` from docutils' citation list.

    Its children carry ``role="doc-biblioentry"``, which is not a list item,
    so assistive technology (and axe-core) sees a list without items.
    """
    body = context.get("body")
    if isinstance(body, str) and 'role="list" class="citation-list"' in body:
        context["body"] = body.replace('<div role="list" class="citation-list">', '<div class="citation-list">')


def _add_meta(app: Sphinx, pagename, templatename, context, doctree) -> None:
    if doctree is None:
        return
    title = html.unescape(re.sub(r"<[^>]+>", "", context.get("title", "")))
    tags = "".join(
        f'\n<meta {attr}="{name}" content="{html.escape(content, quote=True)}" />'
        for attr, name, content in page_meta(app, pagename, title)
    )
    context["metatags"] = context.get("metatags", "") + tags


def _write_sitemap(app: Sphinx, exception) -> None:
    """``sitemap.xml`` listing the stable URL of every content page."""
    if exception is not None or app.builder.format != "html":
        return
    base = app.config.html_baseurl.rstrip("/")
    pages = sorted(app.env.found_docs)
    urls = "".join(f"  <url><loc>{html.escape(base)}/{html.escape(p)}.html</loc></url>\n" for p in pages)
    xml = ('<?xml version="1.0" encoding="UTF-8"?>\n'
           '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n' + urls + "</urlset>\n")
    (Path(app.outdir) / "sitemap.xml").write_text(xml, encoding="utf-8")


def _downloads_with_outputs(app: Sphinx, exception) -> None:
    """Give the downloadable ``_sources/<chapter>.ipynb`` this build's outputs.

    In ``cache`` execution mode myst-nb writes ``jupyter_execute/<doc>.ipynb``
    (which the theme copies to ``_sources/`` for the download button) before
    merging the cached outputs, so the download would be an empty notebook.
    Here the outputs are merged from the execution cache into both copies.
    """
    if exception is not None or app.builder.format != "html":
        return
    import nbformat
    from jupyter_cache import get_cache

    cache_path = app.env.mystnb_config.execution_cache_path or Path(app.outdir).parent / ".jupyter_cache"
    if not Path(cache_path).exists():
        return
    cache = get_cache(str(cache_path))
    executed = Path(app.outdir).parent / "jupyter_execute"
    for ipynb in executed.rglob("*.ipynb"):
        nb = nbformat.read(ipynb, as_version=4)
        try:
            _, merged = cache.merge_match_into_notebook(nb)
        except KeyError:
            continue  # not executed through the cache (e.g. execution off)
        docname = ipynb.relative_to(executed).with_suffix("").as_posix()
        nbformat.write(merged, ipynb)
        download = Path(app.outdir) / "_sources" / f"{docname}.ipynb"
        if download.exists():
            nbformat.write(reader_download(docname, merged) if _chapter_of(docname) else merged, download)


def reader_download(docname: str, executed) -> object:
    """The chapter's reader notebook (book/_ext/reader.py) with this build's values and outputs."""
    import reader

    nb = reader.reader_notebook(docname, reader.glue_values_of(executed))
    outputs = [c.get("outputs", []) for c in executed.cells if c.cell_type == "code"
               and not ("%pip install" in c.source and "remove-cell" in c.metadata.get("tags", []))]
    code = [c for c in nb.cells if c.cell_type == "code" and "install" not in c.metadata.get("tags", [])]
    for cell, outs in zip(code, outputs):
        cell.outputs = outs
    return nb


def _reader_launch_buttons(app: Sphinx, pagename, templatename, context, doctree) -> None:
    """Point a chapter's Colab and Binder buttons at its reader notebook (notebooks/NN_slug.ipynb)."""
    paper = _chapter_of(pagename)
    if paper is None:
        return
    old, new = f"{pagename}.ipynb", f"notebooks/{Path(pagename).name}.ipynb"

    def fix(buttons) -> None:
        for b in buttons or []:
            if isinstance(b, dict):
                if isinstance(b.get("url"), str) and b["url"].startswith("http"):  # launchers, not the download
                    b["url"] = b["url"].replace(old, new)
                fix(b.get("buttons"))

    fix(context.get("header_buttons"))


def _config_inited(app: Sphinx, config) -> None:
    os.environ[ledger.LEDGER_ENV] = str(ledger_dir(app))
    os.environ[FIGURE_ENV] = str(figure_dir(app))


def figure_dir(app: Sphinx) -> Path:
    return Path(app.outdir).parent / "figures"


GLUE_FIGURE = re.compile(r"^```\{glue:figure\}\s+(\S+)\s*\n((?::[\w-]+:.*\n)*)", re.M)


def glued_figures(source: str) -> dict[str, str]:
    """``{figure name: glue key}`` of a chapter's ``{glue:figure}`` directives."""
    out = {}
    for key, options in GLUE_FIGURE.findall(source):
        name = re.search(r"^:name:\s*(\S+)", options, re.M)
        if name:
            out[name.group(1)] = key
    return out


def figure_tools_html(number: str, chapter: Paper, page_url: str, anchor: str, svg: str, png: str, year: int) -> str:
    """The links under a chapter figure: downloads, permalink and a one-line citation."""
    cite = (f"Fig. {number} in papers30 contributors, \u201cChapter {chapter.number}: {chapter.title}\u201d, "
            f"{BOOK_TITLE}, {year}. {page_url}#{anchor}")
    esc = html.escape
    return (f'<div class="papers30-figure-tools"><a href="{esc(svg)}" download>SVG</a> · '
            f'<a href="{esc(png)}" download>PNG (slide, 200 dpi)</a> · '
            f'<a class="papers30-permalink" href="#{esc(anchor)}">Permalink to Fig. {esc(number)}</a>'
            f'<p class="papers30-cite-figure">Cite this figure: {esc(cite)}</p></div>')


def _figure_tools(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    import shutil

    paper = _chapter_of(docname)
    if paper is None or app.builder.format != "html":
        return
    source = Path(app.env.doc2path(docname)).read_text(encoding="utf-8")
    keys = glued_figures(source)
    numbers = app.env.toc_fignumbers.get(docname, {}).get("figure", {})
    target = Path(app.outdir) / "_static" / "figures" / f"ch{paper.number:02d}"
    for fig in doctree.findall(nodes.figure):
        anchor = next((i for i in fig["ids"] if i in keys), None)
        if anchor is None:
            continue
        files = [figure_dir(app) / f"ch{paper.number:02d}" / f"{keys[anchor]}.{ext}" for ext in ("svg", "png")]
        if not all(f.exists() for f in files):
            logger.warning(f"figure {anchor}: no exported files {files[0].name}/.png in {files[0].parent} "
                           "(glue the figure with papers30.display.glue after opening the ChapterLedger)",
                           location=docname)
            continue
        target.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copyfile(f, target / f.name)
        rel = app.builder.get_target_uri(docname)
        depth = rel.count("/")
        prefix = "../" * depth + f"_static/figures/ch{paper.number:02d}/"
        number = ".".join(map(str, numbers.get(fig["ids"][0], ())))
        url = chapter_url(app.config.html_baseurl, paper)
        fig += nodes.raw("", figure_tools_html(number, paper, url, anchor, prefix + files[0].name,
                                               prefix + files[1].name, int(app.config.papers30_year)),
                         format="html")


def setup(app: Sphinx) -> dict:
    app.add_config_value("papers30_year", 2026, "env")
    app.add_node(scorecard_placeholder)
    app.add_directive("part-papers", PartPapers)
    app.add_directive("paper-timeline", PaperTimeline)
    app.add_directive("cite-this-chapter", CiteThisChapter)
    app.add_directive("scorecard", Scorecard)
    app.add_node(budget_placeholder)
    app.add_directive("execution-budget", ExecutionBudget)
    app.add_directive("kernel-benchmarks", KernelBenchmarks)
    app.connect("config-inited", _config_inited)
    app.connect("env-get-outdated", _always_reread)
    app.connect("env-get-outdated", _reread_executed)
    app.connect("env-get-updated", _number_per_chapter, priority=900)
    app.connect("env-purge-doc", _purge)
    app.connect("doctree-resolved", _render_scorecard)
    app.connect("doctree-resolved", _render_budget)
    app.connect("doctree-resolved", _resolve_links)
    app.connect("doctree-resolved", _figure_tools)
    app.connect("html-page-context", _dedupe_scripts, priority=100)
    app.connect("html-page-context", _add_meta)
    app.connect("html-page-context", _reader_launch_buttons, priority=600)
    app.connect("html-page-context", _fix_citation_list_role)
    app.connect("build-finished", _write_sitemap)
    app.connect("build-finished", _downloads_with_outputs)
    return {"version": "1.0", "parallel_read_safe": False, "parallel_write_safe": True}
