"""The whole book as a PDF (``make pdf``; ``make test`` prints it before pytest runs)."""

from __future__ import annotations

import os
import unicodedata

import pytest

from papers30.papers import all_papers
from tests._site import BUILD, chapter_files

PDF = BUILD / "pdf" / "papers30.pdf"


@pytest.fixture(scope="module")
def pdf_text() -> str:
    if not PDF.exists():
        msg = "no PDF: run `make pdf` (or `make test`, which prints it)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    from pypdf import PdfReader

    return " ".join(page.extract_text() for page in PdfReader(PDF).pages)


def test_pdf_contains_every_chapter_title(pdf_text):
    """Reference: the paper registry's title for every chapter in the toc."""
    # NFKC undoes the typographic ligatures the PDF text layer keeps ("ﬀ" in "Effectiveness").
    flat = unicodedata.normalize("NFKC", " ".join(pdf_text.split()))
    for chapter in chapter_files():
        paper = next(p for p in all_papers() if p.docname == chapter)
        assert f"{paper.number}. {paper.title}" in flat, f"chapter {paper.number} is missing from the PDF"
    for back in ("Reproduction scorecard", "Execution statistics", "Bibliography"):
        assert back in flat


def test_pdf_shows_rendered_diagrams_not_mermaid_source(pdf_text):
    """A diagram that failed to render would print its source ('flowchart LR', '-->')."""
    assert "flowchart" not in pdf_text and "-->" not in pdf_text
    assert "3 LSTM" in pdf_text  # a label of the learning-path diagram, drawn as SVG text
