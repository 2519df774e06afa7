"""The registry of the thirty papers and of the figures they report.

Everything the book says *about* a paper (title, authors, year, BibTeX key,
the figures it reports for each claim a chapter measures) lives in one data
file, ``papers30/data/papers.toml``, so a correction lands in one place.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True)
class Paper:
    """One paper of the list and the chapter that teaches it."""

    number: int
    part: int
    slug: str
    title: str
    short_authors: str
    venue: str
    year: int
    bibkey: str
    url: str
    summary: str

    @property
    def docname(self) -> str:
        """The chapter's path in the book without suffix, e.g. ``book/part2/13_attention``."""
        return f"book/part{self.part}/{self.number:02d}_{self.slug}"


@lru_cache(maxsize=1)
def _data() -> dict:
    text = resources.files("papers30").joinpath("data/papers.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def all_papers() -> list[Paper]:
    """The thirty papers in book order."""
    return [Paper(**p) for p in _data()["paper"]]


def paper(number: int) -> Paper:
    """The paper taught by chapter ``number`` (1-30)."""
    if isinstance(number, bool) or not isinstance(number, int):
        raise TypeError(f"number must be an int, got {type(number).__name__}")
    for p in all_papers():
        if p.number == number:
            return p
    raise ValueError(f"number must be a chapter number in 1..30, got {number}")


def paper_figure(chapter: int, claim: str) -> str:
    """The figure the paper reports for ``claim`` of ``chapter``, as text.

    Raises ``KeyError`` when the data file has no such claim: every claim a
    chapter records must have its paper figure in the data file.
    """
    for c in _data().get("claim", []):
        if c["chapter"] == chapter and c["id"] == claim:
            return str(c["paper"])
    raise KeyError(f"claim {claim!r} of chapter {chapter} is not in papers30/data/papers.toml")


def declared_claims(chapter: int | None = None) -> list[tuple[int, str]]:
    """``(chapter, id)`` of every claim in the data file, optionally for one chapter."""
    out = [(c["chapter"], c["id"]) for c in _data().get("claim", [])]
    return [c for c in out if chapter is None or c[0] == chapter]
