"""The reproduction ledger: every measured claim, its criterion and its outcome.

A chapter opens the ledger for itself, records each claim once with the
value its executed cells measured and a numeric criterion, and shows the
table; the book's scorecard page and the test suite read the same records.

    >>> book = ChapterLedger(13)                                   # doctest: +SKIP
    >>> book.record("copy_exact", 0.97, at_least=0.9,              # doctest: +SKIP
    ...             quantity="held-out exact match")

The paper's own figure is looked up in ``papers30/data/papers.toml`` (never
typed in a chapter). Whether a claim *held* is computed here from the
criterion, never passed in. ``expected=False`` marks a claim that the chapter
says, in its prose, does not reproduce at the small scale; it is reported as
a miss all the same.

When ``PAPERS30_LEDGER_DIR`` is set (the book build sets it to
``_build/ledger``), records are also written to ``<dir>/chNN.json``.
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from papers30.papers import paper_figure

LEDGER_ENV = "PAPERS30_LEDGER_DIR"
COLUMNS = ("Chapter", "Claim", "Paper", "Ours", "Criterion", "Result")


@dataclass(frozen=True)
class Claim:
    """One measured claim."""

    chapter: int
    id: str
    quantity: str
    paper: str
    measured: float
    shown: str
    criterion: str
    held: bool
    expected: bool

    @property
    def result(self) -> str:
        """``"pass"``, ``"miss"``, or ``"miss (expected at this scale)"``."""
        if self.held:
            return "pass"
        return "miss" if self.expected else "miss (expected at this scale)"

    def row(self) -> tuple[str, ...]:
        """The claim as the cells of a table row, in :data:`COLUMNS` order."""
        ours = f"{self.shown} ({self.quantity})" if self.quantity else self.shown
        return (str(self.chapter), self.id, self.paper, ours, self.criterion, self.result)


def _fmt(x: float, digits: int) -> str:
    return f"{x:.{digits}g}"


def criterion_text(at_least: float | None, at_most: float | None, digits: int = 3) -> str:
    """Human-readable form of a numeric criterion, e.g. ``"≥ 0.9"``."""
    if at_least is not None and at_most is not None:
        return f"{_fmt(at_least, digits)} ≤ x ≤ {_fmt(at_most, digits)}"
    if at_least is not None:
        return f"≥ {_fmt(at_least, digits)}"
    return f"≤ {_fmt(at_most, digits)}"  # type: ignore[arg-type]


def evaluate(measured: float, at_least: float | None, at_most: float | None) -> bool:
    """Whether ``measured`` meets the bounds; NaN never does."""
    if math.isnan(measured):
        return False
    if at_least is not None and measured < at_least:
        return False
    if at_most is not None and measured > at_most:
        return False
    return True


class ChapterLedger:
    """The claims of one chapter, recorded in the order the chapter measures them.

    Creating it clears the chapter's previous records in the ledger directory,
    so a renamed or removed claim does not linger.
    """

    def __init__(self, chapter: int, directory: str | os.PathLike[str] | None = None) -> None:
        if isinstance(chapter, bool) or not isinstance(chapter, int):
            raise TypeError(f"chapter must be an int, got {type(chapter).__name__}")
        if not 1 <= chapter <= 30:
            raise ValueError(f"chapter must be in 1..30, got {chapter}")
        self.chapter = chapter
        where = directory if directory is not None else os.environ.get(LEDGER_ENV)
        self.path = Path(where) / f"ch{chapter:02d}.json" if where else None
        self.claims: dict[str, Claim] = {}
        self._save()

    def record(
        self,
        claim: str,
        measured: float,
        *,
        at_least: float | None = None,
        at_most: float | None = None,
        quantity: str = "",
        expected: bool = True,
        digits: int = 3,
    ) -> Claim:
        """Record ``claim`` with its ``measured`` value against ``at_least``/``at_most``.

        At least one bound is required. Returns the :class:`Claim`, whose
        ``held`` the chapter can glue into its prose.
        """
        if at_least is None and at_most is None:
            raise ValueError("at_least or at_most must be given: a claim needs a criterion")
        if isinstance(measured, (bool, str)):  # float() would accept both
            raise TypeError(f"measured must be a number, got {type(measured).__name__}")
        if not isinstance(measured, (int, float)):
            try:
                measured = float(measured)  # numpy and 0-d torch scalars
            except (TypeError, ValueError):
                raise TypeError(f"measured must be a number, got {type(measured).__name__}") from None
        measured = float(measured)
        entry = Claim(
            chapter=self.chapter,
            id=claim,
            quantity=quantity,
            paper=paper_figure(self.chapter, claim),
            measured=measured,
            shown=_fmt(measured, digits),
            criterion=criterion_text(at_least, at_most, digits),
            held=evaluate(measured, at_least, at_most),
            expected=bool(expected),
        )
        self.claims[claim] = entry
        self._save()
        return entry

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps([asdict(c) for c in self.claims.values()], indent=1))
        tmp.replace(self.path)

    def table(self) -> "ClaimTable":
        """The chapter's reproduction table (renders as HTML in a notebook)."""
        return ClaimTable(list(self.claims.values()), show_chapter=False)


def load(directory: str | os.PathLike[str]) -> list[Claim]:
    """All claims written to ``directory``, ordered by chapter then record order."""
    claims: list[Claim] = []
    for path in sorted(Path(directory).glob("ch[0-9][0-9].json")):
        claims.extend(Claim(**d) for d in json.loads(path.read_text()))
    return claims


class ClaimTable:
    """A list of claims that displays as a table (HTML in notebooks, text otherwise)."""

    def __init__(self, claims: list[Claim], show_chapter: bool = True) -> None:
        self.claims = claims
        self.show_chapter = show_chapter

    def rows(self) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
        """Header and rows of cells."""
        skip = 0 if self.show_chapter else 1
        return COLUMNS[skip:], [c.row()[skip:] for c in self.claims]

    def _repr_html_(self) -> str:
        head, rows = self.rows()
        th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
        )
        return f'<table class="papers30-ledger"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'

    def __repr__(self) -> str:
        head, rows = self.rows()
        return "\n".join(" | ".join(r) for r in [head, *rows])
