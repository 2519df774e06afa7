"""papers30.papers: the registry against book/references.bib (parsed by pybtex) and by hand."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pybtex.database import parse_file

from papers30.papers import (Paper, all_papers, declaration, declarations, declared_claims, headline, paper,
                             paper_figure)

BIB = Path(__file__).resolve().parents[1] / "book" / "references.bib"


def test_thirty_papers_numbered_one_to_thirty_in_order():
    papers = all_papers()
    assert [p.number for p in papers] == list(range(1, 31))
    assert all(isinstance(p, Paper) for p in papers)


@pytest.mark.parametrize("number,part", [(1, 1), (10, 1), (11, 2), (20, 2), (21, 3), (30, 3)])
def test_parts_by_ranges_at_the_boundaries(number, part):
    assert paper(number).part == part


def test_every_part_is_ten_consecutive_chapters():
    assert [p.part for p in all_papers()] == [1] * 10 + [2] * 10 + [3] * 10


def test_docname_format_by_hand():
    for p in all_papers():
        assert p.docname == f"book/part{p.part}/{p.number:02d}_{p.slug}"
        assert re.fullmatch(r"book/part[123]/\d\d_[a-z0-9_]+", p.docname)
    assert paper(13).docname.startswith("book/part2/13_")


def test_slugs_and_bibkeys_are_unique():
    papers = all_papers()
    assert len({p.slug for p in papers}) == 30
    assert len({p.bibkey for p in papers}) == 30


def test_every_bibkey_is_an_entry_of_references_bib():
    entries = parse_file(str(BIB), bib_format="bibtex").entries
    missing = [p.bibkey for p in all_papers() if p.bibkey not in entries]
    assert missing == []


def test_fields_are_filled_and_plausible():
    for p in all_papers():
        assert p.title and p.short_authors and p.venue and p.summary
        assert 1940 <= p.year <= 2030
        assert p.url.startswith("https://")


def test_paper_returns_the_numbered_paper():
    assert paper(13) == all_papers()[12]


@pytest.mark.parametrize("number", [0, 31, -1])
def test_paper_rejects_out_of_range(number):
    with pytest.raises(ValueError, match="number"):
        paper(number)


@pytest.mark.parametrize("number", ["13", 13.0, True])
def test_paper_rejects_non_int(number):
    with pytest.raises(TypeError, match="number"):
        paper(number)


def test_declared_claims_have_chapters_in_range_and_unique_ids():
    claims = declared_claims()
    assert claims
    assert all(1 <= ch <= 30 for ch, _ in claims)
    assert len(set(claims)) == len(claims)
    assert all(paper_figure(ch, cid) for ch, cid in claims)


def test_declarations_filter_by_chapter_and_keep_file_order():
    every = declarations()
    for chapter in range(1, 31):
        mine = declarations(chapter)
        assert all(d.chapter == chapter for d in mine)
        assert mine == [d for d in every if d.chapter == chapter]
        assert declared_claims(chapter) == [(chapter, d.id) for d in mine]
        heads = [d for d in mine if d.headline]
        assert len(heads) <= 1 and headline(chapter) == (heads[0] if heads else None)


def test_every_declared_claim_has_a_control_and_every_miss_a_reason():
    """Reference: the protocol in papers30.papers.Declaration, read off the data file by hand."""
    for d in declarations():
        assert d.kind in ("claim", "check")
        if d.kind == "claim":
            assert d.control, f"ch{d.chapter} {d.id}: a claim without a control"
        if not d.expected:
            assert d.reason, f"ch{d.chapter} {d.id}: a declared miss without its reason"
        if d.headline:
            assert d.kind == "claim" and d.source, f"ch{d.chapter} {d.id}: the headline names its source"


def test_paper_figure_names_its_source():
    for d in declarations():
        text = paper_figure(d.chapter, d.id)
        assert text.startswith(d.paper) and (not d.source or text.endswith(f"({d.source})"))


def test_unknown_claim_raises_value_error_naming_it_and_the_declared_ones():
    with pytest.raises(ValueError, match="nope") as err:
        paper_figure(13, "nope")
    assert str(declared_claims(13)[0][1]) in str(err.value)
    with pytest.raises(ValueError, match="chapter"):
        declaration(31, "x")
    with pytest.raises(TypeError, match="claim"):
        declaration(13, 3)
    with pytest.raises(TypeError, match="chapter"):
        declarations("13")
