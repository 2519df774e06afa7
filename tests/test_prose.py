"""No measured number or verdict typed into a chapter: the scan of tests/_prose.py, shown to catch both."""

from __future__ import annotations

from pathlib import Path

import pytest

from papers30.papers import declarations, paper
from tests._prose import prose, scan
from tests._site import ROOT, chapter_files


def paper_text(chapter: int) -> str:
    """The chapter's side of papers.toml: the paper's figures, sources, settings and the declared criteria."""
    parts = [paper(chapter).summary]
    for d in declarations(chapter):
        parts += [d.paper, d.source, d.setting]
        for bound in (d.at_least, d.at_most, d.above_control, d.below_control):
            if bound is not None:
                parts += [repr(bound), repr(round(100 * bound, 6))]
    return " ".join(parts)


CHAPTER = '''---
jupytext: x
---
# 10. A chapter

The deep net ends at 1.37 times the loss of the shallow one.
We train with learning rate 0.05 and report 93.1 % on the paper's task.
The figure shows {glue:text}`ratio:.2f` and $\\alpha = 0.73$ and `lr=0.25`.

```{code-cell} ipython3
cfg = dict(lr=0.05)
```

```{glue:figure} fig
:name: fig-1
:alt: Curves where the plain net ends 12.5 % higher.

Caption with **held** in it.
```

The headline claim holds on every seed.
% prose-allow: 4.4 (the essay's corpus size)
The essay used 4.4 MB of text.
'''


def test_scan_catches_typed_numbers_in_prose_and_alt_text():
    found = [(f.kind, f.text) for f in scan(CHAPTER, paper_text="93.1 % on the paper's task")]
    assert ("number", "1.37") in found and ("number", "12.5") in found


def test_scan_ignores_code_math_roles_settings_paper_figures_and_allowed_numbers():
    found = {f.text for f in scan(CHAPTER, paper_text="93.1 % on the paper's task") if f.kind == "number"}
    assert found == {"1.37", "12.5"}  # not 0.05 (a setting in the code), 93.1 (the paper's), 0.73 (math), 4.4


def test_scan_catches_typed_verdicts():
    verdicts = [f.text for f in scan(CHAPTER, paper_text="") if f.kind == "verdict"]
    assert "**held**" in verdicts and any("headline claim holds" in v for v in verdicts)


def test_prose_keeps_line_numbers():
    assert len(prose(CHAPTER).splitlines()) == len(CHAPTER.splitlines())
    (hit,) = [f for f in scan(CHAPTER, "93.1") if f.text == "1.37"]
    assert CHAPTER.splitlines()[hit.line - 1].startswith("The deep net ends at 1.37")


@pytest.mark.parametrize("chapter", chapter_files())
def test_no_measured_number_or_verdict_is_typed_into_a_chapter(chapter):
    number = int(Path(chapter).name[:2])
    found = scan((ROOT / f"{chapter}.md").read_text(), paper_text(number))
    assert found == [], "\n".join(f"{chapter}.md:{f.line}: typed {f.kind} {f.text!r} in: {f.context}"
                                  for f in found)
