"""The typed-number and typed-verdict scan of chapter sources (used by tests/test_prose.py).

A chapter's outcomes must be glued from the run, never typed. This scan reads
a chapter's prose (Markdown cells, captions and alt texts; not code, math,
roles or directive bodies that hold code) and reports:

* **typed numbers**: a number written with a decimal point or a percent sign
  that is neither one of the paper's figures or criteria (the chapter's
  entries of ``papers.toml``) nor a setting visible in the chapter's own code
  cells, nor listed on a ``% prose-allow: 37.5 17.0 (why)`` comment line of
  the chapter (for a figure of another paper, say). A measured number typed into the
  prose is always one of these: the run computes it, so the code does not
  contain it. Integers are not scanned (counts of layers, steps and classes
  are structural); where an integer is measured, glue it.
* **typed verdicts**: verdict words in bold (``**held**``, ``**pass**``,
  ``**miss**``...) or in a sentence about a claim, criterion or headline
  ("the headline claim holds"), which only the ledger may state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NUMBER = re.compile(r"(?<![\w.\-/^_])(\d+(?:,\d{3})*\.\d+|\d+(?:\.\d+)?(?=\s?%))")
VERDICT_BOLD = re.compile(r"\*\*(pass|passes|passed|miss|missed|misses|held|holds|fail|fails|failed)\*\*", re.I)
VERDICT_SENTENCE = re.compile(
    r"\b(claim|claims|criterion|headline)\b[^.;:]{0,40}?\b(holds|held|passes|passed|fails|failed|missed)\b", re.I)


@dataclass(frozen=True)
class Finding:
    line: int
    kind: str  # "number" or "verdict"
    text: str
    context: str


def _blank(match: re.Match) -> str:
    """Replace a match with spaces, keeping newlines so line numbers stay right."""
    return re.sub(r"[^\n]", " ", match.group(0))


def prose(source: str) -> str:
    """The chapter's prose with code, math, roles, targets and URLs blanked out (line numbers kept)."""
    text = re.sub(r"\A---\n.*?\n---\n", _blank, source, flags=re.S)  # front matter
    # fenced blocks whose body is code or diagram source; directives with prose bodies are kept
    text = re.sub(r"^(`{3,})\{(code-cell|literalinclude|mermaid|math|cite-this-chapter|footbibliography)\}.*?^\1\s*$",
                  _blank, text, flags=re.S | re.M)
    text = re.sub(r"^(`{3,})(?!\{).*?^\1\s*$", _blank, text, flags=re.S | re.M)  # plain code fences
    text = re.sub(r"\$\$.*?\$\$(\s*\([\w-]+\))?", _blank, text, flags=re.S)
    text = re.sub(r"(?<!\\)\$[^$\n]+?(?<!\\)\$", _blank, text)
    text = re.sub(r"\{[\w:-]+\}`[^`]*`", _blank, text)  # roles: glue, eq, numref, ref, doc, cite, math
    text = re.sub(r"`[^`\n]*`", _blank, text)
    text = re.sub(r"\]\([^)]*\)", _blank, text)  # link targets
    text = re.sub(r"https?://\S+", _blank, text)
    text = re.sub(r"\b(arXiv|doi):\S+", _blank, text, flags=re.I)
    text = re.sub(r"^%.*$", _blank, text, flags=re.M)  # MyST comments
    text = re.sub(r"^\([\w-]+\)=\s*$", _blank, text, flags=re.M)
    text = re.sub(r"^:(?!alt:)[\w-]+:.*$", _blank, text, flags=re.M)  # directive options, except alt text
    return text


def code_numbers(source: str) -> set[str]:
    """Every number literal in the chapter's code cells, normalised (``0.050`` -> ``0.05``)."""
    cells = re.findall(r"^```\{code-cell\}[^\n]*\n(.*?)^```", source, re.S | re.M)
    return {_norm(n) for cell in cells for n in re.findall(r"\d+(?:\.\d+)?(?:e-?\d+)?", cell)}


def _norm(n: str) -> str:
    n = n.replace(",", "")
    try:
        x = float(n)
    except ValueError:
        return n
    return repr(x)


def scan(source: str, paper_text: str, allow: set[str] = frozenset()) -> list[Finding]:
    """Typed numbers and typed verdicts in ``source`` (see the module docstring).

    ``paper_text`` holds the paper's figures the chapter may quote (its
    ``papers.toml`` entries); ``allow`` holds extra numbers as written.
    """
    text = prose(source)
    allow = set(allow) | {n for line in re.findall(r"^% prose-allow:(.*)$", source, re.M)
                          for n in re.findall(r"\d+(?:,\d{3})*(?:\.\d+)?", line)}
    allowed = code_numbers(source) | {_norm(a) for a in allow}
    allowed |= {_norm(n) for n in re.findall(r"\d+(?:,\d{3})*(?:\.\d+)?", paper_text)}
    lines = text.splitlines()
    found: list[Finding] = []
    for i, line in enumerate(lines, start=1):
        for m in NUMBER.finditer(line):
            if _norm(m.group(1)) not in allowed:
                found.append(Finding(i, "number", m.group(1), line.strip()[:160]))
        for m in VERDICT_BOLD.finditer(line):
            found.append(Finding(i, "verdict", m.group(0), line.strip()[:160]))
    for m in VERDICT_SENTENCE.finditer(text):
        found.append(Finding(text.count("\n", 0, m.start()) + 1, "verdict", m.group(0), m.group(0)))
    return found
