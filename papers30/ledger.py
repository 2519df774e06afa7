"""The reproduction ledger: what each chapter measured, against what, and whether it held.

Every record is one of two kinds, declared in ``papers30/data/papers.toml``
before any run (see :class:`papers30.papers.Declaration`):

* a **claim** is a finding of the paper that the experiment could contradict.
  It is measured beside a *control* in the same run (the baseline, null or
  trivial model it must beat). The criterion is evaluated on the control too,
  and a claim whose control also meets it is vacuous:
  :meth:`ChapterLedger.record` raises :class:`VacuousClaimError` and the
  build fails.
* a **check** holds by construction or only shows that the code works
  (an invariance, equality with torch, learnability of a toy task).

A chapter passes only what it measured: one value per seed, the control
(one value, or one per seed), and the seeds. The criterion, the kind, the
headline flag, the paper's figure and any declared miss come from the data
file, so changing a criterion is a visible diff in one place::

    >>> ledger = ChapterLedger(10)                                       # doctest: +SKIP
    >>> ledger.record("plain_degradation", [1.31, 1.22, 1.40],           # doctest: +SKIP
    ...               control=[0.97, 1.01, 0.95], seeds=[0, 1, 2])

A record *holds* only when the criterion holds on every seed. Each chapter
has exactly one headline claim, measured on at least three seeds. When
``PAPERS30_LEDGER_DIR`` is set (the book build sets it to ``_build/ledger``),
records are written to ``<dir>/chNN.json`` as they are made.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from papers30 import _checks
from papers30.papers import RECORDED_SCALES, Declaration, declaration, declarations

LEDGER_ENV = "PAPERS30_LEDGER_DIR"
CLAIM_COLUMNS = ("Claim", "Paper", "Ours", "Control", "Criterion", "Result")
CHECK_COLUMNS = ("Check", "Value", "Criterion", "Result")
MIN_HEADLINE_SEEDS = 3


class VacuousClaimError(ValueError):
    """A claim whose control meets the claim's criterion: the criterion tests nothing."""


def _fmt(x: float, digits: int) -> str:
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    return f"{x:.{digits}g}"


def _value(x: float, digits: int) -> str:
    """A measured value to ``digits`` significant figures, trailing zeros kept (4.00, not 4), so that
    a mean and its range read at the same precision."""
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return str(x)
    if float(x) == 0.0:
        return "0"
    return f"{x:#.{digits}g}".rstrip(".")


def _declared(d: object) -> Declaration:
    if not isinstance(d, Declaration):
        raise TypeError(f"d must be a papers30.papers.Declaration, got {type(d).__name__}")
    return d


@_checks.typed
def criterion_text(d: Declaration) -> str:
    """Human-readable form of a declared criterion, e.g. ``"≥ 0.9"`` or ``"≥ control + 0.05"``."""
    n = _declared(d).digits
    if d.above_control is not None:
        return f"≥ control + {_fmt(d.above_control, n)}"
    if d.below_control is not None:
        return f"≤ control − {_fmt(d.below_control, n)}"
    if d.at_least is not None and d.at_most is not None:
        return f"{_fmt(d.at_least, n)} ≤ x ≤ {_fmt(d.at_most, n)}"
    if d.at_least is not None:
        return f"≥ {_fmt(d.at_least, n)}"
    return f"≤ {_fmt(d.at_most, n)}"  # type: ignore[arg-type]


@_checks.typed
def evaluate(value: float, d: Declaration, control: float | None = None) -> bool:
    """Whether ``value`` meets the declared criterion (``control`` for a relative one); NaN never does."""
    _declared(d)
    (value,) = _numbers("value", value)
    if control is not None:
        (control,) = _numbers("control", control)
    if math.isnan(value):
        return False
    if d.relative:
        if control is None or math.isnan(control):
            return False
        if d.above_control is not None:
            return value >= control + d.above_control
        return value <= control - d.below_control  # type: ignore[operator]
    if d.at_least is not None and value < d.at_least:
        return False
    if d.at_most is not None and value > d.at_most:
        return False
    return True


def _numbers(name: str, x: object) -> list[float]:
    """One float per seed from a number or a sequence of numbers (numpy and 0-d torch included)."""
    items = list(x) if isinstance(x, Sequence) and not isinstance(x, str) else [x]
    if hasattr(x, "tolist") and not isinstance(x, Sequence):  # numpy array or torch tensor
        listed = x.tolist()
        items = listed if isinstance(listed, list) else [listed]
    if not items:
        raise ValueError(f"{name} must hold at least one value")
    out = []
    for v in items:
        if isinstance(v, (bool, str)) or isinstance(v, (list, tuple, dict)):
            raise TypeError(f"{name} must be a number or a sequence of numbers, got {type(v).__name__}")
        try:
            out.append(float(v))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a number or a sequence of numbers, got {type(v).__name__}") from None
    return out


@dataclass(frozen=True)
class Record:
    """One measured record: the declaration's text, the values per seed, the control, the verdict."""

    chapter: int
    id: str
    kind: str
    headline: bool
    quantity: str
    paper: str
    source: str
    setting: str
    values: list[float]
    seeds: list[int] | None
    mean: float
    lo: float
    hi: float
    control: float | None
    controls: list[float]
    control_label: str
    control_held: bool
    criterion: str
    held: bool
    held_per_seed: list[bool]
    expected: bool
    reason: str
    digits: int = 3
    shown: str = field(default="")

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)
        if self.kind not in ("claim", "check"):
            raise ValueError(f"kind must be 'claim' or 'check', got {self.kind!r}")

    @property
    def result(self) -> str:
        """The verdict as a word: claims hold or miss, checks pass or fail; a declared miss says so."""
        if self.kind == "check":
            return "pass" if self.held else ("fail (declared)" if not self.expected else "fail")
        if self.held:
            return "held"
        return "missed (declared)" if not self.expected else "missed"

    @property
    def shown_control(self) -> str:
        """The control's value as shown in tables (mean over seeds)."""
        return "—" if self.control is None else _value(self.control, self.digits)

    def seeds_text(self) -> str:
        """``"1.31 (1.22 to 1.40, 3 seeds)"``, or the single value."""
        if len(self.values) == 1:
            return self.shown
        return f"{self.shown} ({_value(self.lo, self.digits)} to {_value(self.hi, self.digits)}, {len(self.values)} seeds)"


def _make_record(d: Declaration, values: list[float], controls: list[float], seeds: list[int] | None) -> Record:
    from papers30.runtime import scale  # runtime imports this module through provenance

    expected, reason = d.expectation(scale())
    n = len(values)
    if controls and len(controls) not in (1, n):
        raise ValueError(f"control must hold one value or one per seed ({n}), got {len(controls)}")
    paired = controls * n if len(controls) == 1 else controls
    if d.relative:
        per_seed = [evaluate(v, d, c) for v, c in zip(values, paired)]
        control_held = False  # a positive margin over itself is never met: fairness is the chapter's job
    else:
        per_seed = [evaluate(v, d) for v in values]
        control_held = bool(controls) and any(evaluate(c, d) for c in controls)
    finite = [v for v in values if not math.isnan(v)]
    mean = sum(values) / n
    control = sum(controls) / len(controls) if controls else None
    return Record(
        chapter=d.chapter, id=d.id, kind=d.kind, headline=d.headline, quantity=d.quantity,
        paper=d.paper, source=d.source, setting=d.setting, values=values, seeds=seeds, mean=mean,
        lo=min(finite) if finite else math.nan, hi=max(finite) if finite else math.nan,
        control=control, controls=controls, control_label=d.control, control_held=control_held,
        criterion=criterion_text(d), held=all(per_seed), held_per_seed=per_seed, expected=expected,
        reason=reason, digits=d.digits, shown=_value(mean, d.digits),
    )


class ChapterLedger:
    """The records of one chapter, in the order the chapter measures them.

    Creating it clears the chapter's previous file in the ledger directory, so
    a renamed or removed record does not linger.
    """

    def __init__(self, chapter: int, directory: str | os.PathLike[str] | None = None) -> None:
        if isinstance(chapter, bool) or not isinstance(chapter, int):
            raise TypeError(f"chapter must be an int, got {type(chapter).__name__}")
        if not 1 <= chapter <= 30:
            raise ValueError(f"chapter must be in 1..30, got {chapter}")
        if directory is not None and not isinstance(directory, (str, os.PathLike)):
            raise TypeError(f"directory must be a path, got {type(directory).__name__}")
        self.chapter = chapter
        where = directory if directory is not None else os.environ.get(LEDGER_ENV, "").strip()
        self.path = Path(where) / f"ch{chapter:02d}.json" if where else None
        if self.path is not None and self.path.parent.exists() and not self.path.parent.is_dir():
            raise ValueError(f"{LEDGER_ENV} must name a directory, got {str(self.path.parent)!r} (a file)")
        self.records: dict[str, Record] = {}
        self._save()
        from papers30.display import set_chapter

        set_chapter(chapter)

    def record(
        self,
        claim: str,
        values: object,
        *,
        control: object = None,
        seeds: Sequence[int] | None = None,
    ) -> Record:
        """Record ``claim`` (declared in papers.toml) with one value per seed and its control.

        ``values``: a number or one number per seed. ``control``: the value
        of the control measured in the same run, one number or one per seed;
        required for a claim. ``seeds``: the seeds behind ``values`` (as
        :func:`papers30.runtime.actual_seed` gives them), stored for the
        reader. Returns the :class:`Record`.

        Raises ``ValueError`` for an undeclared claim, a claim without a
        control, a headline on fewer than three seeds, and
        :class:`VacuousClaimError` when the control meets the criterion.
        """
        if not isinstance(claim, str):
            raise TypeError(f"claim must be a str, got {type(claim).__name__}")
        d = declaration(self.chapter, claim)
        vals = _numbers("values", values)
        controls = [] if control is None else _numbers("control", control)
        if d.kind == "claim" and not controls:
            raise ValueError(f"control is required: {claim!r} is a claim, to be measured against "
                             f"{d.control!r} in the same run")
        if d.relative and not controls:
            raise ValueError(f"control is required: the criterion of {claim!r} is relative to it")
        if d.headline and len(vals) < MIN_HEADLINE_SEEDS:
            raise ValueError(f"values must hold at least {MIN_HEADLINE_SEEDS} seeds for the headline claim "
                             f"{claim!r}, got {len(vals)}")
        seed_list: list[int] | None = None
        if seeds is not None:
            if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence):
                raise TypeError(f"seeds must be a sequence of ints, got {type(seeds).__name__}")
            seed_list = list(seeds)
            if any(isinstance(s, bool) or not isinstance(s, int) for s in seed_list):
                raise TypeError(f"seeds must be a sequence of ints, got {seed_list!r}")
            if len(seed_list) != len(vals):
                raise ValueError(f"seeds must name one seed per value ({len(vals)}), got {len(seed_list)}")
            if len(set(seed_list)) != len(seed_list):
                raise ValueError(f"seeds must be distinct, got {seed_list}")
        rec = _make_record(d, vals, controls, seed_list)
        if d.kind == "claim" and rec.control_held:
            raise VacuousClaimError(
                f"claim {claim!r} of chapter {self.chapter} is vacuous: its control ({d.control}) measured "
                f"{[_fmt(c, d.digits) for c in controls]}, which meets the criterion {rec.criterion}. "
                "Fix the experiment or the criterion in papers.toml, not this check.")
        self.records[claim] = rec
        self._save()
        return rec

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps([asdict(r) for r in self.records.values()], indent=1))
        tmp.replace(self.path)

    def missing(self) -> list[str]:
        """Declared ids of this chapter not recorded yet."""
        return [d.id for d in declarations(self.chapter) if d.id not in self.records]

    def table(self) -> "RecordTable":
        """The chapter's claims table (paper, ours over seeds, control, criterion, result)."""
        return RecordTable([r for r in self.records.values() if r.kind == "claim"], kind="claim")

    def checks(self) -> "RecordTable":
        """The chapter's checks table, shown apart from its claims."""
        return RecordTable([r for r in self.records.values() if r.kind == "check"], kind="check")

    def glance(self) -> "Markdown":
        """The At-a-glance box's text, rendered from the records (glue it as Markdown), followed by
        the headline of the chapter's recorded larger run when one is stored.

        Raises ``ValueError`` while the headline or another declared record is
        missing: the box must describe the whole chapter.
        """
        left = self.missing()
        if left:
            raise ValueError(f"glance needs every declared record of chapter {self.chapter}; not recorded: {left}")
        text = glance_text(self.chapter, list(self.records.values()))
        from papers30.provenance import recorded_glance  # provenance imports this module

        recorded = recorded_glance(self.chapter)
        return Markdown(text + ("\n\n" + recorded if recorded else ""))


class Markdown(str):
    """Markdown text that notebooks display rendered (a ``str`` for everything else)."""

    def __new__(cls, text: str = "") -> "Markdown":
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return super().__new__(cls, text)

    def _repr_markdown_(self) -> str:
        return str(self)


PILOT_COLUMNS = ("Design", "Setting", "Outcome")


def pilots(chapter: int, claim: str) -> Markdown:
    """The designs declared as tried for ``claim`` of ``chapter``, as a Markdown table (empty if none).

    One row per :class:`papers30.papers.Pilot` in ``papers.toml``, in the
    order declared; a ``|`` in the text is escaped so that it cannot split a
    cell. Raises ``ValueError`` when the claim is not declared.
    """
    d = declaration(chapter, claim)
    if not d.pilots:
        return Markdown("")

    def cell(text: str) -> str:
        return " ".join(text.split()).replace("|", "\\|")

    lines = ["| " + " | ".join(PILOT_COLUMNS) + " |", "|" + "---|" * len(PILOT_COLUMNS)]
    lines += [f"| {cell(p.design)} | {cell(p.setting)} | {cell(p.outcome)} |" for p in d.pilots]
    return Markdown("\n".join(lines))


def _verdict_md(r: Record) -> str:
    word = {"held": "held on every seed" if len(r.values) > 1 else "held",
            "missed": "missed", "missed (declared)": "missed, as declared before the run"}[r.result]
    return f"**{word}**"


def glance_text(chapter: int, records: list[Record]) -> str:
    """The At-a-glance Markdown of ``chapter`` from its records (see :meth:`ChapterLedger.glance`)."""
    _records("records", records)
    if isinstance(chapter, bool) or not isinstance(chapter, int):
        raise TypeError(f"chapter must be an int, got {type(chapter).__name__}")
    heads = [r for r in records if r.headline]
    if len(heads) != 1:
        raise ValueError(f"chapter {chapter} must record exactly one headline claim, got {len(heads)}")
    h = heads[0]
    source = f" ({h.source})" if h.source else ""
    setting = f" The paper's setting: {h.setting.rstrip('.')}." if h.setting else ""
    seeds = f"Over {len(h.values)} seeds, mean {h.shown}, range {_value(h.lo, h.digits)} to {_value(h.hi, h.digits)}"
    lines = [
        f"**The paper's claim.** {h.paper}{source}.{setting}",
        "",
        f"**What we measure.** {h.quantity}, against the control: {h.control_label}. "
        f"Criterion, declared in `papers.toml` before the run: {h.criterion}.",
        "",
        f"**This build.** {seeds}; the control measured {h.shown_control} "
        f"(it {'meets' if h.control_held else 'does not meet'} the criterion). "
        f"The headline claim {_verdict_md(h)}.",
    ]
    if not h.held and not h.expected:
        lines.append(f"The miss was declared: {h.reason}")
    claims = [r for r in records if r.kind == "claim"]
    checks = [r for r in records if r.kind == "check"]
    lines += ["", f"**All records.** {sum(r.held for r in claims)} of {len(claims)} claims held; "
                  f"{sum(r.held for r in checks)} of {len(checks)} checks passed."]
    misses = [r for r in records if not r.held]
    for r in misses:
        why = f" Declared before the run: {r.reason}" if not r.expected else " Not declared: this is a defect to fix."
        lines.append(f"- *{r.id}* ({r.kind}) {r.result}: {r.seeds_text()} against {r.criterion}.{why}")
    return "\n".join(lines)


def _records(name: str, records: object) -> list[Record]:
    if not isinstance(records, (list, tuple)) or not all(isinstance(r, Record) for r in records):
        raise TypeError(f"{name} must be a list of ledger Records, got {type(records).__name__}")
    return list(records)


def load(directory: str | os.PathLike[str]) -> list[Record]:
    """All records written to ``directory``, ordered by chapter then record order."""
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory must be a path, got {type(directory).__name__}")
    records: list[Record] = []
    for path in sorted(Path(directory).glob("ch[0-9][0-9].json")):
        records.extend(Record(**d) for d in json.loads(path.read_text()))
    return records


class RecordTable:
    """Records of one kind that display as a table (HTML in notebooks, text otherwise)."""

    def __init__(self, records: list[Record], kind: str = "claim") -> None:
        _records("records", records)
        if kind not in ("claim", "check"):
            raise ValueError(f"kind must be 'claim' or 'check', got {kind!r}")
        self.records = records
        self.kind = kind

    def rows(self) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
        """Header and rows of cells."""
        if self.kind == "check":
            return CHECK_COLUMNS, [(f"{r.id}: {r.quantity}", r.seeds_text(), r.criterion, r.result)
                                   for r in self.records]
        rows = []
        for r in self.records:
            name = f"{r.id}{' (headline)' if r.headline else ''}: {r.quantity}"
            paper_fig = f"{r.paper} ({r.source})" if r.source else r.paper
            control = f"{r.shown_control} ({r.control_label})"
            result = r.result + (f": {r.reason}" if not r.held and not r.expected else "")
            rows.append((name, paper_fig, r.seeds_text(), control, r.criterion, result))
        return CLAIM_COLUMNS, rows

    def _repr_html_(self) -> str:
        head, rows = self.rows()
        if not rows:
            return f"<p>No {self.kind}s recorded.</p>"
        th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        body = "".join(
            "<tr>" + "".join(f'<td data-label="{html.escape(h)}">{html.escape(cell)}</td>'
                             for h, cell in zip(head, row)) + "</tr>" for row in rows
        )
        return (f'<div class="papers30-scroll"><table class="papers30-ledger papers30-{self.kind}s">'
                f"<thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>")

    def __repr__(self) -> str:
        head, rows = self.rows()
        return "\n".join(" | ".join(r) for r in [head, *rows])


@_checks.typed
def audit(records: list[Record], chapters: list[int], scale: str = "small") -> list[str]:
    """What breaks the claims protocol in the records of the written ``chapters``; empty when none.

    ``scale`` is the scale the records were made at: the build's ``"small"``,
    or a recorded run's, whose declared misses may differ
    (:meth:`papers30.papers.Declaration.expectation`).

    The problems it names: a chapter without exactly one headline claim
    (declared and recorded), a headline on fewer than three seeds, a claim
    without a control, a vacuous claim (its control meets the criterion), a
    miss not declared in ``papers.toml``, a record that disagrees with its
    declaration, a declared record that was never recorded, and, in a
    recorded run, a claim that held where a miss is declared for its scale.
    """
    _records("records", records)
    _checks.one_of("scale", scale, ("small", *RECORDED_SCALES))
    if not isinstance(chapters, (list, tuple, set)) or any(isinstance(c, bool) or not isinstance(c, int)
                                                           for c in chapters):
        raise TypeError(f"chapters must be a list of chapter numbers, got {chapters!r:.60}")
    problems: list[str] = []
    for chapter in chapters:
        decl = {d.id: d for d in declarations(chapter)}
        recs = [r for r in records if r.chapter == chapter]
        heads = [d for d in decl.values() if d.headline]
        if len(heads) != 1:
            problems.append(f"ch{chapter}: papers.toml declares {len(heads)} headline claims, not one")
        recorded = {r.id for r in recs}
        problems += [f"ch{chapter}: {i!r} is declared but was not recorded" for i in decl if i not in recorded]
        if not any(r.headline for r in recs):
            problems.append(f"ch{chapter}: no headline claim was recorded")
        for r in recs:
            d = decl.get(r.id)
            name = f"ch{chapter} {r.id}"
            if d is None:
                problems.append(f"{name}: recorded but not declared in papers.toml")
                continue
            if (r.kind, r.headline, r.expected, r.criterion) != (d.kind, d.headline, d.expectation(scale)[0],
                                                                 criterion_text(d)):
                problems.append(f"{name}: the record disagrees with its declaration (rebuild the chapter)")
            if r.headline and len(r.values) < MIN_HEADLINE_SEEDS:
                problems.append(f"{name}: headline measured on {len(r.values)} seed(s), fewer than "
                                f"{MIN_HEADLINE_SEEDS}")
            if r.kind == "claim" and r.control is None:
                problems.append(f"{name}: claim without a control")
            if r.kind == "claim" and r.control_held:
                problems.append(f"{name}: vacuous, its control meets the criterion {r.criterion}")
            if not r.held and r.expected:
                problems.append(f"{name}: missed ({r.seeds_text()} against {r.criterion}) and the miss is not "
                                "declared in papers.toml")
            if r.held and not r.expected and scale != "small":
                # A build may beat a declared miss on other seeds (PAPERS30_SEED); a recorded run is one
                # fixed run, and the declaration its page shows beside it must describe it.
                problems.append(f"{name}: held at scale {scale!r}, where papers.toml declares a miss; "
                                "declare recorded_expected = true (or a recorded_reason that fits)")
            if r.held != all(r.held_per_seed) or len(r.held_per_seed) != len(r.values):
                problems.append(f"{name}: held must mean held on every seed")
    return problems
