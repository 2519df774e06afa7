"""papers30.ledger: records round-trip through JSON, `held` follows the criterion by hand."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import numpy as np
import pytest
import torch

from papers30.ledger import COLUMNS, ChapterLedger, Claim, ClaimTable, criterion_text, evaluate, load
from papers30.papers import paper_figure


def test_record_writes_json_that_load_reads_back_equal(tmp_path):
    book = ChapterLedger(13, directory=tmp_path)
    a = book.record("bleu", 21.456, at_least=20, quantity="test BLEU")
    b = book.record("exact_match", 0.5, at_least=0.9, expected=False)
    c = book.record("alignment", 0.8, at_least=0.5, at_most=1.0)
    path = tmp_path / "ch13.json"
    assert path.exists() and not path.with_suffix(".tmp").exists()
    assert json.loads(path.read_text()) == [asdict(a), asdict(b), asdict(c)]  # the file, read by json itself
    assert load(tmp_path) == [a, b, c]


def test_claim_fields_by_hand(tmp_path):
    claim = ChapterLedger(13, directory=tmp_path).record("bleu", 21.456, at_least=20, quantity="test BLEU")
    assert claim.chapter == 13 and claim.id == "bleu" and claim.quantity == "test BLEU"
    assert claim.paper == paper_figure(13, "bleu") == "28.4 BLEU on WMT14 EN-DE (big); 27.3 (base)"
    assert claim.measured == 21.456 and claim.shown == "21.5" and claim.criterion == "≥ 20"
    assert claim.held and claim.expected and claim.result == "pass"
    assert claim.row() == ("13", "bleu", claim.paper, "21.5 (test BLEU)", "≥ 20", "pass")


@pytest.mark.parametrize(
    "measured,at_least,at_most,held",
    [
        (0.9, 0.9, None, True),  # boundary equality holds
        (0.8999, 0.9, None, False),
        (1.0, None, 1.0, True),
        (1.0001, None, 1.0, False),
        (0.5, 0.0, 1.0, True),
        (0.0, 0.0, 1.0, True),
        (1.0, 0.0, 1.0, True),
        (-1e-9, 0.0, 1.0, False),
        (math.nan, 0.0, None, False),  # NaN never holds
        (math.nan, None, 1.0, False),
        (math.inf, 0.0, None, True),
        (-math.inf, None, 0.0, True),
    ],
)
def test_held_is_computed_from_the_bounds_by_hand(tmp_path, measured, at_least, at_most, held):
    assert evaluate(measured, at_least, at_most) is held
    claim = ChapterLedger(13, directory=tmp_path).record("bleu", measured, at_least=at_least, at_most=at_most)
    assert claim.held is held
    assert claim.result == ("pass" if held else "miss")


def test_expected_false_changes_only_the_result_text(tmp_path):
    book = ChapterLedger(13, directory=tmp_path)
    missed = book.record("bleu", 1.0, at_least=20, expected=False)
    assert not missed.held and missed.result == "miss (expected at this scale)"
    passed = book.record("exact_match", 1.0, at_least=0.5, expected=False)
    assert passed.held and passed.result == "pass"


@pytest.mark.parametrize("value", [np.float32(0.25), np.int64(3), torch.tensor(0.25), 1])
def test_record_accepts_numpy_and_torch_scalars_as_floats(tmp_path, value):
    claim = ChapterLedger(13, directory=tmp_path).record("bleu", value, at_least=0)
    assert isinstance(claim.measured, float) and claim.measured == float(value)


@pytest.mark.parametrize("value", [None, [1.0], True, "0.5", "abc", torch.ones(2)])
def test_record_rejects_non_numbers(tmp_path, value):
    with pytest.raises(TypeError, match="measured"):
        ChapterLedger(13, directory=tmp_path).record("bleu", value, at_least=0)


def test_record_without_criterion_raises(tmp_path):
    with pytest.raises(ValueError, match="at_least"):
        ChapterLedger(13, directory=tmp_path).record("bleu", 1.0)


def test_unknown_claim_raises_key_error_naming_the_claim(tmp_path):
    book = ChapterLedger(13, directory=tmp_path)
    with pytest.raises(KeyError, match="no_such_claim"):
        book.record("no_such_claim", 1.0, at_least=0)
    assert book.claims == {}
    with pytest.raises(KeyError, match="bleu"):
        ChapterLedger(12, directory=tmp_path).record("bleu", 1.0, at_least=0)  # a claim of another chapter


def test_new_ledger_clears_the_chapters_previous_file(tmp_path):
    ChapterLedger(13, directory=tmp_path).record("bleu", 25.0, at_least=20)
    assert len(load(tmp_path)) == 1
    again = ChapterLedger(13, directory=tmp_path)
    assert load(tmp_path) == [] and json.loads((tmp_path / "ch13.json").read_text()) == []
    again.record("alignment", 1.0, at_least=0.5)
    assert [c.id for c in load(tmp_path)] == ["alignment"]


def test_recording_a_claim_twice_keeps_the_latest(tmp_path):
    book = ChapterLedger(13, directory=tmp_path)
    book.record("bleu", 1.0, at_least=20)
    book.record("bleu", 25.0, at_least=20)
    (only,) = load(tmp_path)
    assert only.measured == 25.0 and only.held


def test_load_orders_by_chapter_then_record_order(tmp_path):
    book = ChapterLedger(13, directory=tmp_path)
    book.record("exact_match", 1.0, at_least=0.5)
    book.record("bleu", 25.0, at_least=20)
    early = Claim(2, "x", "", "p", 1.0, "1", "≥ 0", True, True)  # written by hand for chapter 2
    (tmp_path / "ch02.json").write_text(json.dumps([asdict(early)]))
    (tmp_path / "notes.json").write_text("not a ledger file")
    assert [(c.chapter, c.id) for c in load(tmp_path)] == [(2, "x"), (13, "exact_match"), (13, "bleu")]


def test_ledger_dir_environment_variable_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERS30_LEDGER_DIR", str(tmp_path / "sub"))
    ChapterLedger(13).record("bleu", 25.0, at_least=20)
    assert [c.id for c in load(tmp_path / "sub")] == ["bleu"]


def test_without_directory_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    book = ChapterLedger(13)
    assert book.path is None
    book.record("bleu", 25.0, at_least=20)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("chapter,exc", [(0, ValueError), (31, ValueError), (13.0, TypeError), (True, TypeError)])
def test_ledger_rejects_bad_chapter(tmp_path, chapter, exc):
    with pytest.raises(exc, match="chapter"):
        ChapterLedger(chapter, directory=tmp_path)


@pytest.mark.parametrize(
    "at_least,at_most,digits,text",
    [
        (0.9, None, 3, "≥ 0.9"),
        (None, 0.12345, 3, "≤ 0.123"),
        (1, 2, 3, "1 ≤ x ≤ 2"),
        (0.123456, None, 5, "≥ 0.12346"),
    ],
)
def test_criterion_text_by_hand(at_least, at_most, digits, text):
    assert criterion_text(at_least, at_most, digits) == text


def test_claim_table_escapes_html_and_drops_chapter_column(tmp_path):
    book = ChapterLedger(13, directory=tmp_path)
    book.record("bleu", 25.0, at_least=20, quantity="<script>alert('x') & co</script>")
    table = book.table()
    head, rows = table.rows()
    assert head == COLUMNS[1:] and rows[0][0] == "bleu"
    html = table._repr_html_()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;) &amp; co&lt;/script&gt;" in html
    assert html.count("<tr>") == 2 and html.count("<th>") == len(COLUMNS) - 1
    assert repr(table).splitlines()[0] == " | ".join(COLUMNS[1:])


def test_claim_table_with_chapter_column(tmp_path):
    book = ChapterLedger(13, directory=tmp_path)
    book.record("bleu", 25.0, at_least=20)
    table = ClaimTable(load(tmp_path))
    head, rows = table.rows()
    assert head == COLUMNS and rows[0][:2] == ("13", "bleu")
    assert "<td>13</td>" in table._repr_html_()
