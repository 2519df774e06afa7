"""book/_ext/papers30_book.py: the scorecard and the execution budget, rendered from hand-made records."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests._site import ROOT
from tests.test_ledger import ENTRIES, declared  # noqa: F401 - the fixture

sys.path.insert(0, str(ROOT / "book" / "_ext"))
spec = importlib.util.spec_from_file_location("papers30_book", ROOT / "book" / "_ext" / "papers30_book.py")
ext = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ext)


def test_scorecard_summary_and_cards_by_hand(tmp_path, declared):  # noqa: F811
    from papers30.ledger import ChapterLedger, load

    book = ChapterLedger(13, directory=tmp_path)
    book.record("head", [0.95, 0.97, 0.93], control=[0.1, 0.12, 0.08])
    book.record("gap", 9.0, control=1.0)
    book.record("torch", 0.0)
    book.record("hard", 0.3, control=0.25)
    ChapterLedger(12, directory=tmp_path).record("head12", [0.6, 0.2, 0.3], control=0.9)  # misses on seed 0
    summary, body = ext.scorecard_html(load(tmp_path), {13: "ch13.html"})
    assert summary.startswith("1 of 2 headline claims hold, in the 2 chapters written.")
    assert "2 of 4 claims held and 2 missed (1 of those misses declared before the run)" in summary
    assert "1 of 1 checks passed" in summary
    assert body.count('class="papers30-score ') == 2
    assert 'papers30-score-held' in body and 'papers30-score-missed' in body and 'href="ch13.html"' in body
    assert "0.950 (0.930 to 0.970, 3 seeds)" in body and "<b>hard</b>" in body and "needs 100x" in body
    assert "<table" not in body  # cards, not a wide table


def test_scorecard_shows_each_chapters_recorded_run_and_flags_a_stale_one(tmp_path, declared):  # noqa: F811
    """Reference: two recorded runs made by hand, one current (headline held) and one stale (missed)."""
    from dataclasses import asdict

    from papers30.ledger import ChapterLedger, load
    from papers30.provenance import RecordedRun, run_hash

    ChapterLedger(13, directory=tmp_path).record("head", [0.95, 0.97, 0.93], control=[0.1, 0.12, 0.08])
    ChapterLedger(12, directory=tmp_path).record("head12", [0.6, 0.2, 0.3], control=0.9)
    build = load(tmp_path)
    big = tmp_path / "big"
    ChapterLedger(13, directory=big).record("head", [0.91, 0.92, 0.99], control=[0.2, 0.2, 0.2])
    ChapterLedger(12, directory=big).record("head12", [0.7, 0.7, 0.7], control=0.9)
    recs = {r.chapter: [asdict(r)] for r in load(big)}

    def run(chapter, chapter_hash):
        return RecordedRun(chapter=chapter, scale="large", command=f"make reproduce CH={chapter}", commit="abc",
                           chapter_hash=chapter_hash, device="CPU", threads=1, seeds=[0, 1, 2],
                           wall_seconds=600.0, date="2026-12-05", records=recs[chapter], traces={})

    summary, body = ext.scorecard_html(build, {}, {13: run(13, run_hash(13)), 12: run(12, "0" * 16),
                                                   7: run(13, run_hash(13))})  # 7: no build record, not shown
    assert summary.endswith("2 chapters also show a recorded larger run, not executed by this build; "
                            "its headline holds in 1 of them (1 of the runs stale).")
    cards = body.split('class="papers30-score ')[1:]
    by_chapter = {12: next(c for c in cards if "head12" in c), 13: next(c for c in cards if "head12" not in c)}
    assert "<dt>Recorded run</dt><dd><b>held</b>: 0.940 (0.910 to 0.990, 3 seeds) against the control's 0.200" \
        in by_chapter[13] and "stale" not in by_chapter[13] and "10 min on CPU" in by_chapter[13]
    assert "<b>missed</b>" in by_chapter[12].split("<dt>Recorded run</dt>")[1]
    assert "<b>stale</b>, rerun <code>make reproduce CH=12</code>" in by_chapter[12]
    assert "Recorded run" not in ext.scorecard_html(build, {})[1]


def test_budget_rows_by_hand():
    summary = {"chapters": {"book/part1/01_a.md": {"seconds": 40.0, "ok": True, "peak_rss_mb": 500.0},
                            "book/part1/02_b.md": {"seconds": 95.5, "ok": True, "peak_rss_mb": 800.0}},
               "full_run": {"wall_seconds": 70.0, "jobs": 2, "threads": 1, "chapters": 2, "cpus": 2}}
    sentence, rows = ext.budget_rows(summary, ["book/part1/01_a", "book/part1/02_b", "book/part1/03_c"])
    assert rows == [["01_a", "40.0", "500", "yes"], ["02_b", "95.5", "800", "NO"],
                    ["03_c", "not executed by execute.py", "—", "—"]]
    assert "took 70 s of wall time" in sentence and "against a budget of 720 s" in sentence
    assert "add up to 136 s" in sentence


def test_budget_sentence_gives_the_build_memory_when_measured():
    summary = {"chapters": {}, "full_run": {"wall_seconds": 70.0, "jobs": 2, "threads": 1, "chapters": 2,
                                            "cpus": 2, "peak_memory_mb": 3072.0, "sample_seconds": 2.5}}
    sentence, _ = ext.budget_rows(summary, [])
    assert "used at most 3.00 GB of memory together" in sentence and "budget of 4 GB" in sentence
    assert "sampled every 2.5 s" in sentence  # the interval the run used, not a typed one
    del summary["full_run"]["peak_memory_mb"]
    assert "GB" not in ext.budget_rows(summary, [])[0]


def test_the_executor_and_the_book_read_one_token_file():
    import execute

    assert ROOT / ext.EXECUTED == execute.EXECUTED


@pytest.mark.parametrize("missing", [{}, {"chapters": {}}])
def test_budget_without_a_full_run_says_so(missing):
    sentence, _ = ext.budget_rows(missing, [])
    assert sentence.startswith("No run has executed every chapter")


def test_a_chapter_executed_since_the_last_read_is_read_again():
    """Reference: the tokens by hand; a page whose chapter ran again must not keep the old outputs."""
    found = {"book/part1/01_a", "book/part1/02_b", "book/back/execution"}
    stamps = {"book/part1/01_a.md": "5", "book/part1/02_b.md": "7", "book/part1/09_gone.md": "1"}
    assert ext.executed_since_read(stamps, {}, found) == ["book/part1/01_a", "book/part1/02_b"]
    assert ext.executed_since_read(stamps, {"book/part1/01_a.md": "5", "book/part1/02_b.md": "6"}, found) \
        == ["book/part1/02_b"]
    assert ext.executed_since_read(stamps, dict(stamps), found) == []
