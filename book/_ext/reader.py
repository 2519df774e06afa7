"""Reader notebooks: each chapter as a clean Jupyter notebook for Colab, Binder and plain Jupyter.

Usage: python book/_ext/reader.py [--check]   (``make notebooks``, after a build)

The chapter's MyST source is the single source; this turns it into
``notebooks/NN_slug.ipynb`` with no MyST syntax left:

* admonitions become block quotes, dropdown solutions become ``<details>``;
* each ``literalinclude`` becomes the package code it shows, as a Markdown
  code block headed by its module path and the ``import`` that brings it in;
* citations become author-year text, with a reference list at the end;
* glued values become the values of the build they were generated from
  (stored in the notebook's metadata, so ``--check`` can regenerate it);
* cross-references become links to the site's pages, equations keep their
  per-chapter numbers (``\\tag{13.2}``), glued figures become the site's
  slide-resolution images;
* the code cells are the chapter's own, except the first, which installs
  the package pinned to the book's version when it is missing.

The notebooks are committed, because Colab opens notebooks only from a
GitHub path and committed files work from any clone or fork at any commit;
``tests/test_reader.py`` checks that they are in sync with the sources.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "notebooks"
sys.path.insert(0, str(ROOT))

INSTALL = '''# Install papers30, pinned to this book's version, when it is missing (Colab, a fresh kernel).
try:
    import papers30
except ImportError:
    %pip install -q "papers30 @ git+{repo}@v{version}"'''
MASK = "\u27e8{}\u27e9"  # what a glued value becomes when no build is available: ⟨name⟩


# --- configuration ---------------------------------------------------------------


@lru_cache(maxsize=1)
def config() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "_config.yml").read_text())


def site_url() -> str:
    return config()["html"]["baseurl"].rstrip("/")


def chapters() -> list[str]:
    toc = (ROOT / "_toc.yml").read_text()
    return [f for f in re.findall(r"file:\s*(\S+)", toc) if re.match(r"\d\d_", Path(f).name)]


@lru_cache(maxsize=1)
def labels() -> dict[str, str]:
    """``{label: docname}`` for every ``(label)=`` target and figure/equation name in the book."""
    out: dict[str, str] = {}
    toc = (ROOT / "_toc.yml").read_text()
    docs = [re.search(r"^root:\s*(\S+)", toc, re.M).group(1), *re.findall(r"file:\s*(\S+)", toc)]
    for doc in docs:
        text = (ROOT / f"{doc}.md").read_text()
        for label in re.findall(r"^\(([\w-]+)\)=\s*$", text, re.M):
            out[label] = doc
    return out


# --- bibliography -----------------------------------------------------------------


@lru_cache(maxsize=1)
def bibliography():
    from pybtex.database import parse_file

    return parse_file(str(ROOT / "book" / "references.bib"), bib_format="bibtex").entries


def _surname(person) -> str:
    return " ".join(person.last_names).replace("{", "").replace("}", "")


def author_year(key: str) -> tuple[str, str]:
    entry = bibliography()[key]
    people = entry.persons.get("author", [])
    year = entry.fields.get("year", "n.d.")
    if not people:
        return entry.fields.get("title", key).strip("{}"), year
    if len(people) == 1:
        names = _surname(people[0])
    elif len(people) == 2:
        names = f"{_surname(people[0])} and {_surname(people[1])}"
    else:
        names = f"{_surname(people[0])} et al."
    return names, year


def reference(key: str) -> str:
    entry = bibliography()[key]
    people = ", ".join(" ".join([*p.first_names, *p.middle_names, *p.last_names]) for p in entry.persons.get("author", []))
    title = entry.fields.get("title", "").replace("{", "").replace("}", "")
    venue = entry.fields.get("booktitle") or entry.fields.get("journal") or entry.fields.get("publisher") or ""
    url = entry.fields.get("url", "")
    parts = [f"{people} ({entry.fields.get('year', 'n.d.')}). *{title}*."]
    if venue:
        parts.append(venue.replace("{", "").replace("}", "") + ".")
    if url:
        parts.append(f"<{url}>")
    return " ".join(parts)


# --- glued values -------------------------------------------------------------------


def glue_values(executed: Path) -> dict[str, dict]:
    """``{name: mime bundle}`` of every value glued in an executed notebook file.

    myst-nb writes the glued outputs beside the executed notebook
    (``NAME.glue.json``) and leaves them out of its cells; both are read.
    """
    import json

    import nbformat

    values = glue_values_of(nbformat.read(executed, as_version=4))
    store = executed.with_suffix(".glue.json")
    if store.exists():
        for name, out in json.loads(store.read_text(encoding="utf-8")).items():
            prefix = out.get("metadata", {}).get("scrapbook", {}).get("mime_prefix", "")
            bundle = {k.removeprefix(prefix): v for k, v in out.get("data", {}).items()}
            values.setdefault(name, {k: v for k, v in bundle.items() if k in ("text/plain", "text/markdown")})
    return values


def glue_values_of(nb) -> dict[str, dict]:
    """``{name: mime bundle}`` (plain text and Markdown) of every value glued in an executed notebook."""
    values = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook")
            if meta:
                cut = len(meta.get("mime_prefix", ""))
                values[meta["name"]] = {k[cut:]: v for k, v in out.get("data", {}).items()
                                        if k[cut:] in ("text/plain", "text/markdown")}
    return values


def glue_text(values: dict[str, dict] | None, spec: str) -> str:
    from myst_nb.core.variables import format_plain_text

    name, _, fmt = spec.partition(":")
    if values is None:
        return MASK.format(name)
    text = values[name]["text/plain"]
    wrapped = re.fullmatch(r"np\.\w+\((.*)\)", text)  # a numpy scalar glued by an older build
    return format_plain_text(wrapped.group(1) if wrapped else text, fmt)


def glue_md(values: dict[str, dict] | None, name: str) -> str:
    if values is None:
        return MASK.format(name)
    bundle = values[name]
    if "text/markdown" in bundle:
        return bundle["text/markdown"]
    return glue_text(values, name)


# --- the conversion -------------------------------------------------------------------


def _pyobject(path: Path, name: str) -> str:
    source = path.read_text()
    scope: list[ast.stmt] = ast.parse(source).body
    node = None
    for part in name.split("."):  # "Class.method" as Sphinx's :pyobject: takes it
        node = next((n for n in scope if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                     and n.name == part), None)
        if node is None:
            raise ValueError(f"{path}: no {name!r} to include")
        scope = node.body
    start = min([d.lineno for d in node.decorator_list] + [node.lineno])
    return "\n".join(source.splitlines()[start - 1 : node.end_lineno])


def _include(chapter_dir: Path, arg: str, options: dict[str, str]) -> str:
    path = (chapter_dir / arg).resolve()
    rel = path.relative_to(ROOT).as_posix()
    if "pyobject" in options:
        code = _pyobject(path, options["pyobject"])
        module = rel.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
        head = (f"From `{rel}`: `{options['pyobject']}` (use it with "
                f"`from {module} import {options['pyobject'].split('.')[0]}`).")
    else:
        text = path.read_text()
        if "start-after" in options:
            text = text.split(options["start-after"], 1)[1].split("\n", 1)[1]
        if "end-before" in options:
            text = text.split(options["end-before"], 1)[0]
        code = text.rstrip()
        head = f"From `{rel}`:"
    lang = options.get("language", "python")
    return f"{head}\n\n```{lang}\n{code}\n```"


def _options(body: str) -> tuple[dict[str, str], str]:
    opts, lines = {}, body.split("\n")
    while lines and re.match(r"^:[\w-]+:", lines[0]):
        key, _, value = lines.pop(0)[1:].partition(":")
        opts[key] = value.strip()
    return opts, "\n".join(lines).strip("\n")


class Converter:
    """Converts one chapter's Markdown cells, keeping numbering state across cells."""

    def __init__(self, doc: str, values: dict[str, dict] | None) -> None:
        self.doc = doc
        self.number = int(Path(doc).name[:2])
        self.values = values
        self.url = f"{site_url()}/{doc}.html"
        self.dir = (ROOT / doc).parent
        source = (ROOT / f"{doc}.md").read_text()
        self.equations = {lab: i for i, lab in
                          enumerate(re.findall(r"\$\$\s*\(([\w-]+)\)", source, re.S), start=1)}
        names = re.findall(r"^```\{(?:glue:figure|figure)\}.*\n(?::[\w-]+:.*\n)*?:name:\s*(\S+)", source, re.M)
        self.figures = {name: i for i, name in enumerate(names, start=1)}
        self.cited: list[str] = []

    # roles ---------------------------------------------------------------------
    def _cite(self, kind: str, keys: str) -> str:
        parts = []
        for key in [k.strip() for k in keys.split(",")]:
            if key not in self.cited:
                self.cited.append(key)
            names, year = author_year(key)
            parts.append(f"{names} ({year})" if kind == "t" else f"{names}, {year}")
        return "; ".join(parts) if kind == "t" else "(" + "; ".join(parts) + ")"

    def _link(self, label: str) -> str:
        doc = labels().get(label)
        if doc is None:
            return f"{site_url()}/{self.doc}.html#{label}"
        anchor = "" if doc != self.doc and re.match(r"ch\d\d$", label) else f"#{label}"
        return f"{site_url()}/{doc}.html{anchor}"

    def role(self, m: re.Match) -> str:
        name, content = m.group(1), m.group(2)
        if name in ("footcite:p", "footcite", "cite", "cite:p"):
            return self._cite("p", content)
        if name in ("footcite:t", "cite:t"):
            return self._cite("t", content)
        if name == "glue:text" or name == "glue":
            return glue_text(self.values, content)
        if name == "glue:md":
            return glue_md(self.values, content)
        if name == "eq":
            n = self.equations.get(content)
            return f"[({self.number}.{n})]({self.url}#equation-{content})" if n else f"({content})"
        if name == "numref":
            text, _, target = content.rpartition("<") if "<" in content else ("", "", content)
            target = target.rstrip(">").strip()
            n = self.figures.get(target)
            label = f"Fig. {self.number}.{n}" if n else target
            if text:
                label = text.strip().replace("%s", f"{self.number}.{n}")
            return f"[{label}]({self.url}#{target})"
        if name in ("ref", "doc"):
            m2 = re.match(r"^(.*?)\s*<([^>]+)>$", content)
            text, target = (m2.group(1), m2.group(2)) if m2 else (content, content)
            if name == "doc":
                path = (Path(self.doc).parent / target).as_posix() if not target.startswith("/") else target[1:]
                path = re.sub(r"[^/]+/\.\./", "", path)
                return f"[{text}]({site_url()}/{path}.html)"
            return f"[{text}]({self._link(target)})"
        if name == "math":
            return f"${content}$"
        return content

    def inline(self, text: str) -> str:
        return re.sub(r"\{([\w:-]+)\}`([^`]*)`", self.role, text)

    # blocks ----------------------------------------------------------------------
    def directive(self, name: str, arg: str, body: str) -> str:
        opts, content = _options(body)
        if name == "literalinclude":
            return _include(self.dir, arg, opts)
        if name == "mermaid":
            alt = opts.get("alt", "")
            return (f"```mermaid\n{content}\n```" + (f"\n\n*Diagram: {self.inline(alt)}*" if alt else ""))
        if name == "glue:figure":
            n = self.figures.get(opts.get("name", ""), 0)
            src = f"{site_url()}/_static/figures/ch{self.number:02d}/{arg}.png"
            alt = self.inline(opts.get("alt", "")).replace("]", ")").replace("[", "(")
            return f"![{alt}]({src})\n\n*Fig. {self.number}.{n}.* {self.convert(content)}"
        if name == "glue:md":
            return glue_md(self.values, arg)
        if name == "admonition":
            title = self.inline(arg) or "Note"
            inner = self.convert(content)
            if "dropdown" in opts.get("class", ""):
                return f"<details>\n<summary>{title}</summary>\n\n{inner}\n\n</details>"
            return "\n".join([f"> **{title}**", ">", *[f"> {ln}" if ln else ">" for ln in inner.split("\n")]])
        if name == "cite-this-chapter":
            from papers30_book import cite_this_chapter
            from papers30.papers import all_papers

            paper = next(p for p in all_papers() if p.docname == self.doc)
            return f"```bibtex\n{cite_this_chapter(paper, config()['html']['baseurl'], 2026)}\n```"
        if name == "footbibliography":
            return "\u0000REFERENCES\u0000"
        if name in ("math",):
            return f"$$\n{content}\n$$"
        return self.convert(content)

    def convert(self, text: str) -> str:
        """Convert a Markdown cell's text (recursively for directive bodies)."""
        text = re.sub(r"^\([\w-]+\)=\s*\n", "", text, flags=re.M)
        text = re.sub(r"^%.*\n?", "", text, flags=re.M)  # MyST comments

        def eq(m: re.Match) -> str:
            n = self.equations.get(m.group(2))
            return f"$$\n{m.group(1).strip()}\n\\tag{{{self.number}.{n}}}\n$$" if n else m.group(0)

        text = re.sub(r"\$\$(.*?)\$\$\s*\(([\w-]+)\)", eq, text, flags=re.S)

        pattern = r"^(`{3,}|:{3,})\{([\w:-]+)\}([^\n]*)\n(.*?)^\1\s*$"
        out, pos = [], 0
        for m in re.finditer(pattern, text, flags=re.S | re.M):
            out.append(self.inline(text[pos : m.start()]))
            out.append(self.directive(m.group(2), m.group(3).strip(), m.group(4)))
            pos = m.end()
        out.append(self.inline(text[pos:]))
        return "".join(out).strip("\n")

    def references(self) -> str:
        return "\n".join(f"- {reference(k)}" for k in sorted(self.cited, key=lambda k: author_year(k)))


def reader_notebook(doc: str, values: dict[str, dict] | None):
    """The reader notebook of chapter ``doc`` (``book/partN/NN_slug``) with glued ``values``."""
    import jupytext
    import nbformat

    import papers30

    md = jupytext.read(ROOT / f"{doc}.md")
    conv = Converter(doc, values)
    cells = [nbformat.v4.new_code_cell(INSTALL.format(repo=config()["repository"]["url"],
                                                      version=papers30.__version__))]
    cells[0].metadata["tags"] = ["install"]
    for cell in md.cells:
        if cell.cell_type == "markdown":
            text = conv.convert(cell.source)
            if text.strip():
                cells.append(nbformat.v4.new_markdown_cell(text))
        elif cell.cell_type == "code":
            if "%pip install" in cell.source and "remove-cell" in cell.metadata.get("tags", []):
                continue  # the chapter's own install cell: replaced by the pinned one above
            new = nbformat.v4.new_code_cell(cell.source)
            tags = cell.metadata.get("tags", [])
            if tags:
                new.metadata["tags"] = list(tags)
            if "hide-input" in tags:
                new.metadata["jupyter"] = {"source_hidden": True}
            cells.append(new)
    refs = conv.references()
    for c in cells:
        if c.cell_type == "markdown" and "\u0000REFERENCES\u0000" in c.source:
            c.source = c.source.replace("\u0000REFERENCES\u0000", refs or "No references.")
    for i, cell in enumerate(cells):
        cell.id = f"{Path(doc).name[:2]}-{i:03d}"  # stable ids, so regenerating changes nothing
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["papers30"] = {
        "chapter": conv.number, "source": f"{doc}.md", "site": conv.url,
        "glued": {k: v for k, v in sorted((values or {}).items())},
    }
    return nb


def executed_path(doc: str) -> Path:
    return ROOT / "_build" / "jupyter_execute" / f"{doc}.ipynb"


def write_all(check: bool = False) -> list[str]:
    """Write (or with ``check``, compare) every chapter's reader notebook; return the stale ones."""
    import nbformat

    stale = []
    OUT.mkdir(exist_ok=True)
    for doc in chapters():
        target = OUT / f"{Path(doc).name}.ipynb"
        if check:
            old = nbformat.read(target, as_version=4) if target.exists() else None
            values = old.metadata.get("papers30", {}).get("glued") if old else None
            new = reader_notebook(doc, values)
            if old is None or nbformat.writes(new) != nbformat.writes(old):
                stale.append(doc)
            continue
        executed = executed_path(doc)
        if not executed.exists():
            raise SystemExit(f"reader: {executed} is missing: build the book first (make book)")
        nbformat.write(reader_notebook(doc, glue_values(executed)), target)
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report notebooks out of sync with their sources")
    args = parser.parse_args()
    stale = write_all(check=args.check)
    if args.check and stale:
        print("reader: out of sync (run make notebooks):", *stale, sep="\n  ")
        return 1
    print("reader: notebooks " + ("in sync" if args.check else f"written to {OUT.relative_to(ROOT)}/"))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
