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

from papers30 import _checks


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

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)

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


KINDS = ("claim", "check")
_BOUNDS = ("at_least", "at_most", "above_control", "below_control")
_FIELDS = {"chapter", "id", "kind", "headline", "quantity", "paper", "source", "setting", "control",
           "expected", "reason", "recorded_expected", "recorded_reason", "digits", "pilots", *_BOUNDS}
_PILOT_FIELDS = ("design", "setting", "outcome")


@dataclass(frozen=True)
class Pilot:
    """One design tried for a claim on seeds the chapter does not use, as declared in ``papers.toml``.

    ``design`` names what was changed, ``setting`` how it was run (the call
    that reproduces it, sizes, seeds) and ``outcome`` what it gave. A declared
    miss lists its pilots so that a reader can see every design tried before
    the miss was accepted, not only the one the chapter runs.
    """

    design: str
    setting: str
    outcome: str

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)
        for name in _PILOT_FIELDS:
            if not getattr(self, name).strip():
                raise ValueError(f"pilot {name} must not be empty")


RECORDED_SCALES = ("large", "paper")  # the scales of a recorded larger run (``make reproduce``)


@dataclass(frozen=True)
class Declaration:
    """What ``papers.toml`` declares about one record of a chapter, before any run.

    ``kind`` is ``"claim"`` (a finding of the paper the experiment could
    contradict, measured beside a control) or ``"check"`` (holds by
    construction or shows only that the code works). The criterion is one or
    two absolute bounds (``at_least``/``at_most``, applied to every seed's
    value and to the control) or a margin over the control measured in the
    same run (``above_control``: value >= control + margin;
    ``below_control``: value <= control - margin). ``expected = false``
    declares a miss, with its ``reason``, before the run. A recorded larger
    run (scale ``"large"`` or ``"paper"``) may be expected to end otherwise
    than the build: ``recorded_expected`` and ``recorded_reason`` declare that
    (by default they are ``expected`` and ``reason``); :meth:`expectation`
    gives the pair that applies at a scale. ``pilots`` are the designs tried
    before the outcome was declared (:class:`Pilot`); they enter no criterion.
    """

    chapter: int
    id: str
    kind: str
    headline: bool
    quantity: str
    paper: str
    source: str
    setting: str
    control: str
    at_least: float | None
    at_most: float | None
    above_control: float | None
    below_control: float | None
    expected: bool
    reason: str
    digits: int
    recorded_expected: bool
    recorded_reason: str
    pilots: tuple[Pilot, ...] = ()

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")

    def expectation(self, scale: str = "small") -> tuple[bool, str]:
        """``(expected, reason)`` at ``scale``: the build's (``"small"``) or a recorded run's."""
        _checks.one_of("scale", scale, ("small", *RECORDED_SCALES))
        if scale == "small":
            return self.expected, self.reason
        return self.recorded_expected, self.recorded_reason

    @property
    def relative(self) -> bool:
        """Whether the criterion is a margin over the control rather than absolute bounds."""
        return self.above_control is not None or self.below_control is not None


def _declaration(entry: dict) -> Declaration:
    where = f"papers.toml: claim {entry.get('id')!r} of chapter {entry.get('chapter')}"
    unknown = set(entry) - _FIELDS
    if unknown:
        raise ValueError(f"{where} has unknown fields {sorted(unknown)}")
    kind = entry.get("kind", "claim")
    if kind not in KINDS:
        raise ValueError(f"{where}: kind must be one of {KINDS}, got {kind!r}")
    bounds = {k: (None if entry.get(k) is None else float(entry[k])) for k in _BOUNDS}
    absolute = bounds["at_least"] is not None or bounds["at_most"] is not None
    relative = bounds["above_control"] is not None or bounds["below_control"] is not None
    if absolute == relative:
        raise ValueError(f"{where} needs a criterion: at_least/at_most, or one of above_control/below_control")
    if bounds["above_control"] is not None and bounds["below_control"] is not None:
        raise ValueError(f"{where}: give above_control or below_control, not both")
    for k in ("above_control", "below_control"):
        if bounds[k] is not None and not bounds[k] > 0:
            raise ValueError(f"{where}: {k} must be a positive margin, got {bounds[k]}")
    if kind == "claim" and not entry.get("control"):
        raise ValueError(f"{where} is a claim and must describe its control")
    if relative and not entry.get("control"):
        raise ValueError(f"{where} compares with a control and must describe it")
    headline = bool(entry.get("headline", False))
    if headline and kind != "claim":
        raise ValueError(f"{where}: only a claim can be the headline")
    expected = bool(entry.get("expected", True))
    if not expected and not entry.get("reason"):
        raise ValueError(f"{where} declares a miss (expected = false) without its reason")
    if "recorded_expected" in entry and not isinstance(entry["recorded_expected"], bool):
        raise TypeError(f"{where}: recorded_expected must be true or false, got {entry['recorded_expected']!r}")
    recorded_expected = entry.get("recorded_expected", expected)
    if "recorded_reason" in entry and "recorded_expected" not in entry:
        raise ValueError(f"{where} gives recorded_reason without recorded_expected")
    recorded_reason = str(entry.get("recorded_reason", entry.get("reason", "") if recorded_expected == expected else ""))
    if not recorded_expected and not recorded_reason:
        raise ValueError(f"{where} declares a miss of the recorded run (recorded_expected = false) "
                         "without its recorded_reason")
    pilots = entry.get("pilots", [])
    if not isinstance(pilots, list) or not all(isinstance(p, dict) for p in pilots):
        raise TypeError(f"{where}: pilots must be a list of tables, got {pilots!r:.60}")
    for i, p in enumerate(pilots):
        if sorted(p) != sorted(_PILOT_FIELDS) or not all(isinstance(v, str) and v.strip() for v in p.values()):
            raise ValueError(f"{where}: pilots[{i}] must give {', '.join(_PILOT_FIELDS)} as non-empty text, "
                             f"got fields {sorted(p)}")
    return Declaration(
        chapter=int(entry["chapter"]), id=str(entry["id"]), kind=kind, headline=headline,
        quantity=str(entry.get("quantity", "")), paper=str(entry.get("paper", "")),
        source=str(entry.get("source", "")), setting=str(entry.get("setting", "")),
        control=str(entry.get("control", "")), expected=expected, reason=str(entry.get("reason", "")),
        digits=int(entry.get("digits", 3)), recorded_expected=recorded_expected,
        recorded_reason=recorded_reason, pilots=tuple(Pilot(**p) for p in pilots), **bounds,
    )


@lru_cache(maxsize=1)
def _declarations() -> tuple[Declaration, ...]:
    return tuple(_declaration(c) for c in _data().get("claim", []))


def _chapter_number(chapter: object) -> int:
    if isinstance(chapter, bool) or not isinstance(chapter, int):
        raise TypeError(f"chapter must be an int, got {type(chapter).__name__}")
    if not 1 <= chapter <= 30:
        raise ValueError(f"chapter must be in 1..30, got {chapter}")
    return chapter


def declarations(chapter: int | None = None) -> list[Declaration]:
    """Every declared record, in file order, optionally only those of ``chapter``."""
    if chapter is not None:
        _chapter_number(chapter)
    return [d for d in _declarations() if chapter is None or d.chapter == chapter]


def declaration(chapter: int, claim: str) -> Declaration:
    """The declaration of ``claim`` in ``chapter``; ``ValueError`` naming the declared ids if absent."""
    _chapter_number(chapter)
    if not isinstance(claim, str):
        raise TypeError(f"claim must be a str, got {type(claim).__name__}")
    found = [d for d in _declarations() if d.chapter == chapter and d.id == claim]
    if not found:
        ids = [d.id for d in declarations(chapter)]
        raise ValueError(f"claim {claim!r} of chapter {chapter} is not declared in papers30/data/papers.toml "
                         f"(declared for this chapter: {ids})")
    return found[0]


def paper_figure(chapter: int, claim: str) -> str:
    """The figure the paper reports for ``claim`` of ``chapter``, with its source, as text."""
    d = declaration(chapter, claim)
    return f"{d.paper} ({d.source})" if d.source else d.paper


def declared_claims(chapter: int | None = None) -> list[tuple[int, str]]:
    """``(chapter, id)`` of every record declared in the data file, optionally for one chapter."""
    return [(d.chapter, d.id) for d in declarations(chapter)]


def headline(chapter: int) -> Declaration | None:
    """The chapter's declared headline claim, or ``None`` when it declares none."""
    heads = [d for d in declarations(chapter) if d.headline]
    return heads[0] if heads else None
