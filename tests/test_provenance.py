"""papers30.provenance: chapter dependencies against Python's own import system; recorded runs replayed."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from papers30 import provenance
from papers30.provenance import (
    RecordedRun,
    chapter_hash,
    run_files,
    run_hash,
    chapter_modules,
    module_closure,
    recorded_run,
    recorded_runs,
    replay,
    recorded_glance,
    show_recorded,
    traced,
)
from papers30.training import History
from tests._site import ROOT, chapter_files

CHAPTERS = [int(Path(f).name[:2]) for f in chapter_files()]


def _import_lines(chapter: int) -> list[str]:
    import ast
    import re

    text = provenance.chapter_source(chapter).read_text()
    stmts = []
    for cell in re.findall(r"^```\{code-cell\}[^\n]*\n(.*?)^```", text, re.S | re.M):
        code = "\n".join(ln for ln in cell.splitlines() if not ln.lstrip().startswith(("%", "!", ":")))
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        stmts += [ast.unparse(n) for n in ast.walk(tree)
                  if isinstance(n, (ast.Import, ast.ImportFrom)) and "papers30" in ast.unparse(n)]
    return stmts


@pytest.fixture(scope="module")
def imported_by_python() -> dict[int, set[str]]:
    """Reference: each chapter's import statements run in a fresh process; the papers30 modules in sys.modules.

    One interpreter imports the third-party libraries once, then forks a clean
    child per chapter, so no papers30 module is loaded before the chapter's own imports.
    """
    script = f"""
import json, os, sys
import numpy, torch, matplotlib  # noqa: heavy third-party imports, shared by the children
chapters = json.loads(sys.argv[1])
for chapter, lines in chapters.items():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        exec("\\n".join(lines))
        os.write(w, json.dumps(sorted(m for m in sys.modules if m.startswith("papers30"))).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.waitpid(pid, 0)
    print(chapter, data.decode())
"""
    arg = json.dumps({c: _import_lines(c) for c in CHAPTERS})
    out = subprocess.run([sys.executable, "-c", script, arg], capture_output=True, text=True, check=True, cwd=ROOT)
    result = {}
    for line in out.stdout.splitlines():
        chapter, _, mods = line.partition(" ")
        result[int(chapter)] = set(json.loads(mods))
    return result


def as_module(path: Path) -> str:
    rel = path.relative_to(provenance.PACKAGE).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["papers30", *parts])


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_modules_equal_what_python_imports(chapter, imported_by_python):
    assert {as_module(p) for p in chapter_modules(chapter)} == imported_by_python[chapter]


def test_touching_one_module_changes_exactly_the_dependent_chapters(monkeypatch):
    """Reference: chapter_modules (itself checked against Python above); one module's bytes change."""
    target = provenance.PACKAGE / "residual.py"
    before = {c: chapter_hash(c) for c in CHAPTERS}
    monkeypatch.setattr(provenance, "_read", lambda p: p.read_bytes() + (b"# touched" if p == target else b""))
    changed = {c for c in CHAPTERS if chapter_hash(c) != before[c]}
    assert changed == {c for c in CHAPTERS if target in chapter_modules(c)}
    assert changed and changed != set(CHAPTERS)


def test_chapter_hash_depends_on_the_chapters_own_declarations_only(monkeypatch):
    from papers30 import papers

    before = {c: chapter_hash(c) for c in CHAPTERS}
    decls = papers._declarations()
    edited = tuple(d if d.chapter != CHAPTERS[0] else d.__class__(**{**d.__dict__, "digits": d.digits + 1})
                   for d in decls)
    monkeypatch.setattr(papers, "_declarations", lambda: edited)
    after = {c: chapter_hash(c) for c in CHAPTERS}
    assert {c for c in CHAPTERS if after[c] != before[c]} == {CHAPTERS[0]}


def test_chapter_hash_covers_declared_pilots(monkeypatch):
    """Reference: one pilot's outcome edited by hand changes its chapter's hash and no other."""
    from dataclasses import replace

    from papers30 import papers

    assert papers.declaration(8, "process_steps").pilots  # chapter 8 declares its pilots
    before = {c: chapter_hash(c) for c in (7, 8, 9)}
    def edit(d):  # chapter 8's first pilot, with another outcome
        return replace(d, pilots=(replace(d.pilots[0], outcome="edited"), *d.pilots[1:]))

    decls = tuple(edit(d) if d.chapter == 8 and d.pilots else d for d in papers._declarations())
    monkeypatch.setattr(papers, "_declarations", lambda: decls)
    assert {c for c in (7, 8, 9) if chapter_hash(c) != before[c]} == {8}


def test_module_closure_includes_parents_and_imports_by_hand():
    names = {as_module(p) for p in module_closure({"papers30.graphs"})}
    assert {"papers30", "papers30.runtime", "papers30.graphs", "papers30._checks", "papers30.recurrent",
            "papers30.sets", "papers30.attention", "papers30.pointer"} <= names
    assert "papers30.ntm" not in names


def toy_run(steps: int = 5, scale: float = 1.0, stop_after: int | None = None) -> History:
    """A deterministic 'training run' whose losses depend on its arguments."""
    h = History()
    for step in range(1, steps + 1):
        h.losses.append(scale / step)
        if stop_after is not None and step >= stop_after:
            break
    return h


def test_traced_records_and_replay_reproduces(tmp_path, monkeypatch):
    monkeypatch.setenv(provenance.TRACE_ENV, str(tmp_path))
    toy_run.__module__ = "papers30.fake"
    try:
        monkeypatch.setitem(sys.modules, "papers30.fake", sys.modules[__name__])
        out = traced("toy", toy_run, steps=30, scale=2.0)
    finally:
        toy_run.__module__ = __name__
    assert out.losses[0] == 2.0
    trace = json.loads((tmp_path / "traces.json").read_text())["toy"]
    assert trace["callable"] == "papers30.fake:toy_run" and trace["kwargs"] == {"steps": 30, "scale": 2.0}
    assert trace["losses"] == [2.0 / s for s in range(1, provenance.TRACE_STEPS + 1)]
    assert replay(trace, 4) == trace["losses"][:4]


def test_traced_without_a_recording_is_a_plain_call():
    assert traced("toy", toy_run, steps=3).losses == [1.0, 0.5, 1 / 3]


def test_traced_refuses_what_cannot_be_replayed(tmp_path, monkeypatch):
    monkeypatch.setenv(provenance.TRACE_ENV, str(tmp_path))
    with pytest.raises(ValueError, match="module-level function of papers30"):
        traced("toy", toy_run, steps=3)
    with pytest.raises(TypeError, match="name"):
        traced("", toy_run)
    with pytest.raises(TypeError, match="fn"):
        traced("toy", 3)


def _run(chapter: int, **changes) -> dict:
    run = dict(chapter=chapter, scale="large", command=f"make reproduce CH={chapter}", commit="abc",
               chapter_hash=run_hash(chapter), device="CPU", threads=2, seeds=[0, 1, 2], wall_seconds=600.0,
               date="2026-12-04", records=[], traces={})
    run.update(changes)
    return run


def test_run_hash_ignores_presentation_modules_but_not_numerical_code(tmp_path, monkeypatch):
    """Reference: the module closure; a recorded run goes stale only when code that computes numbers changes."""
    from papers30 import provenance

    chapter = CHAPTERS[0]
    files = run_files(chapter)
    names = {f.name for f in files if f.parent == provenance.PACKAGE}
    assert names.isdisjoint(provenance.PRESENTATION)
    assert set(files) <= set(provenance.chapter_modules(chapter)) | set((provenance.PACKAGE / "data" / "assets").glob("*"))
    before, chapter_before = run_hash(chapter), chapter_hash(chapter)
    reads = provenance._read

    def edited(target, extra=b"\nx_edit = 1\n"):
        return lambda path: reads(path) + (extra if path.name == target else b"")

    monkeypatch.setattr(provenance, "_read", edited("_checks.py"))
    assert run_hash(chapter) == before and chapter_hash(chapter) != chapter_before
    # A definition the chapter reaches, redefined at the end of its module, changes the hash.
    module, name = next(k.split(":") for k in sorted(provenance.run_definitions(chapter))
                        if ":" in k and k.split(":")[1] and not k.startswith("assets/")
                        and Path(provenance._module_file(k.split(":")[0])).parent.name == "papers30")
    target = Path(provenance._module_file(module)).name
    monkeypatch.setattr(provenance, "_read", edited(target, f"\n{name} = None\n".encode()))
    assert run_hash(chapter) != before


def _package(tmp_path, monkeypatch, files: dict[str, str]) -> None:
    """A throwaway ``papers30`` package (module name -> source) and a chapter importing from it."""
    from papers30 import provenance

    root = tmp_path / "papers30"
    for name, text in files.items():
        path = root / (name.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.setattr(provenance, "PACKAGE", root)
    monkeypatch.setattr(provenance, "declarations", lambda chapter: [])


CHAPTER = "```{code-cell} ipython3\nfrom papers30.models import train\nfrom papers30 import helpers\nhelpers.seed()\n```\n"


def test_run_definitions_follow_names_through_modules_and_re_exports(tmp_path, monkeypatch):
    """Reference: the reachable set worked out by hand for a small package."""
    from papers30 import provenance

    _package(tmp_path, monkeypatch, {
        "__init__": "from papers30.core import seed as _unused\n",
        "helpers": "import random\n\ndef seed():\n    random.seed(0)\n\ndef unrelated():\n    return 1\n",
        "core": "SCALE = 2\n\ndef step(x):\n    return x * SCALE\n\ndef seed():\n    return 0\n",
        "data/__init__": "from papers30.data.draw import draw\n",
        "data/draw": "def draw(n):\n    return list(range(n))\n\ndef other():\n    return 2\n",
        "models": ("from papers30 import core\nfrom papers30.data import draw\n\n"
                   "class Model:\n    def forward(self, x):\n        return core.step(x)\n\n"
                   "def train(n):\n    return [Model().forward(v) for v in draw(n)]\n\n"
                   "def unused():\n    return core.seed()\n"),
    })
    keys = set(provenance.run_definitions(1, source=CHAPTER))
    expected = {"papers30.models:train", "papers30.models:Model", "papers30.core:step", "papers30.core:SCALE",
                "papers30.data.draw:draw", "papers30.helpers:seed", "papers30.helpers:random",
                "papers30.<chapter>:"}  # the chapter's own ``helpers.seed()``
    assert {k for k in keys if not k.startswith("assets/")} == expected


def test_run_hash_ignores_unreached_and_validation_only_edits(tmp_path, monkeypatch):
    """Reference: pairs of packages that compute the same numbers for the chapter, and ones that do not."""
    from papers30 import provenance

    base = {
        "helpers": "def seed():\n    return 0\n",
        "models": ("def _check(x):\n    n = len(x)\n    if n > 9:\n        raise ValueError('x')\n\n"
                   "def train(x):\n    _check(x)\n    return [v * 2 for v in x]\n\n"
                   "def other(x):\n    return x\n"),
    }
    _package(tmp_path, monkeypatch, base)
    before = provenance.run_hash(1, source=CHAPTER)

    def rehash(module: str, text: str) -> str:
        _package(tmp_path, monkeypatch, {**base, module: text})
        return provenance.run_hash(1, source=CHAPTER)

    models = base["models"]
    assert rehash("models", models.replace("return x\n", "return x + 1\n")) == before  # unreached
    assert rehash("models", models + "\ndef added():\n    return 3\n") == before  # new, unreached
    assert rehash("models", models.replace("    _check(x)\n", "")) == before  # validation only
    assert rehash("models", models.replace("v * 2", "v * 3")) != before  # reached
    assert rehash("models", models.replace("n = len(x)\n    if n > 9:\n        raise ValueError('x')",
                                           "x.append(1)")) != before  # _check now computes
    assert rehash("helpers", "def seed():\n    return 1\n") != before  # reached through a module
    annotated = models.replace("def train(x):", "def train(x: list[int]) -> 'list[int]':")
    assert rehash("models", annotated) == before  # annotations are never evaluated
    typing_only = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import papers30.helpers\n" + models
    assert rehash("models", typing_only) == before  # runs only under a type checker


def test_run_hash_follows_local_imports_and_ignores_where_they_sit(tmp_path, monkeypatch):
    """Reference: the same function importing a package name locally or at module level."""
    from papers30 import provenance

    local = {"helpers": "def seed():\n    return 0\n",
             "models": "def train(x):\n    from papers30.helpers import seed\n    return [seed() + v for v in x]\n"}
    chapter = "```{code-cell} ipython3\nfrom papers30.models import train\n```\n"
    _package(tmp_path, monkeypatch, local)
    before = provenance.run_hash(1, source=chapter)
    assert set(provenance.run_definitions(1, source=chapter)) == {"papers30.models:train", "papers30.helpers:seed"}
    _package(tmp_path, monkeypatch, {**local, "models": "from papers30.helpers import seed\n\n\n"
                                     "def train(x):\n    return [seed() + v for v in x]\n"})
    assert provenance.run_hash(1, source=chapter) == before
    _package(tmp_path, monkeypatch, {**local, "helpers": "def seed():\n    return 2\n"})
    assert provenance.run_hash(1, source=chapter) != before


def test_code_fingerprint_ignores_docstrings_comments_and_validation_only():
    """Reference: hand-written pairs of sources that compute the same thing, and ones that do not."""
    from papers30.provenance import code_fingerprint

    base = """
def f(x, n):
    \"\"\"Doc.\"\"\"
    _checks.positive_int("n", n)
    if n > 10:
        raise ValueError("n")
    return x * n
"""
    same = """
def f(x, n):
    # a comment, no docstring, no checks
    return x * n
"""
    differs = """
def f(x, n):
    return x * n + 1
"""
    partial_raise = """
def f(x, n):
    if n > 10:
        n = 10
    return x * n
"""
    fp = code_fingerprint(base, "m.py")
    assert fp == code_fingerprint(same, "m.py")
    assert fp != code_fingerprint(differs, "m.py") and fp != code_fingerprint(partial_raise, "m.py")
    assert code_fingerprint(b"abc", "data.txt") == b"abc"


def test_recorded_run_round_trip_and_staleness(tmp_path):
    chapter = CHAPTERS[0]
    (tmp_path / f"ch{chapter:02d}.json").write_text(json.dumps(_run(chapter)))
    run = recorded_run(chapter, tmp_path)
    assert isinstance(run, RecordedRun) and not run.stale and recorded_runs(tmp_path) == [run]
    text = show_recorded(chapter, tmp_path)
    assert "Recorded run, not executed by this build" in text and "current" in text and "10.0 minutes" in text
    (tmp_path / f"ch{chapter:02d}.json").write_text(json.dumps(_run(chapter, chapter_hash="0" * 16)))
    assert recorded_run(chapter, tmp_path).stale and "**stale**" in show_recorded(chapter, tmp_path)
    assert recorded_run(chapter + 1, tmp_path) is None
    assert "No recorded larger run" in show_recorded(chapter + 1, tmp_path)



def _record(chapter: int, id: str, kind: str = "claim", headline: bool = False, held: bool = True,
            expected: bool = True, control: float | None = 1.0) -> dict:
    from papers30.ledger import Record
    from dataclasses import asdict

    return asdict(Record(
        chapter=chapter, id=id, kind=kind, headline=headline, quantity="q", paper="p", source="", setting="",
        values=[2.0, 3.0], seeds=[0, 1], mean=2.5, lo=2.0, hi=3.0, control=control,
        controls=[] if control is None else [control], control_label="c", control_held=False,
        criterion="≥ control + 1", held=held, held_per_seed=[held, held], expected=expected,
        reason="" if expected else "r", shown="2.5"))


def test_show_recorded_lists_every_record_and_flags_an_undeclared_miss(tmp_path):
    """Reference: the records written by hand; each non-headline one appears once with its verdict."""
    chapter = CHAPTERS[0]
    records = [_record(chapter, "head", headline=True), _record(chapter, "declared_miss", held=False, expected=False),
               _record(chapter, "surprise", held=False), _record(chapter, "works", kind="check", control=None)]
    (tmp_path / f"ch{chapter:02d}.json").write_text(json.dumps(_run(chapter, records=records)))
    text = show_recorded(chapter, tmp_path)
    assert "1 of 3 claims held, 1 of 1 checks passed" in text
    lines = {line.split("*")[1]: line for line in text.splitlines() if line.startswith("- *")}
    assert set(lines) == {"declared_miss", "surprise", "works"}
    assert "**missed (declared)**." in lines["declared_miss"] and "not declared" not in lines["declared_miss"]
    assert "**missed** (**not declared**" in lines["surprise"]
    assert "**pass**." in lines["works"] and "against the control" not in lines["works"]
    assert "against the control's 1.0" in lines["surprise"]


def test_recorded_glance_gives_the_recorded_headline_and_its_state(tmp_path):
    """Reference: records written by hand; the glance paragraph carries their verdict and never calls a
    stale run current."""
    chapter = CHAPTERS[0]
    assert recorded_glance(chapter, tmp_path) == ""
    path = tmp_path / f"ch{chapter:02d}.json"
    path.write_text(json.dumps(_run(chapter, records=[_record(chapter, "head", headline=True)])))
    text = recorded_glance(chapter, tmp_path, picked=[])
    assert text.startswith("**Recorded larger run.**") and "`make reproduce CH=" in text
    assert "2.50 (2.00 to 3.00, 2 seeds) against the control's 1.00" in text
    assert "**held on every seed**" in text and ", current)" in text
    missed = _record(chapter, "head", headline=True, held=False, expected=False)
    path.write_text(json.dumps(_run(chapter, chapter_hash="0" * 16, records=[missed])))
    text = recorded_glance(chapter, tmp_path, picked=[])
    assert "**missed, as declared before the run**" in text and "stale" in text and "current" not in text
    path.write_text(json.dumps(_run(chapter, records=[_record(chapter, "other")])))
    assert recorded_glance(chapter, tmp_path) == ""  # a run without a headline adds nothing


def test_recorded_records_are_shown_to_the_digits_declared_now():
    """Reference: the declaration's digits; a record stored with other digits is shown with today's,
    and an id no longer declared keeps the digits it was stored with."""
    from papers30.papers import declarations

    declared = next(d for d in declarations(7) if d.headline)
    stored = [dict(_record(7, declared.id, headline=True), digits=declared.digits - 1, mean=4.3333),
              dict(_record(7, "gone"), digits=2, mean=4.3333)]
    shown = {r.id: r for r in RecordedRun(**_run(7, records=stored)).ledger_records()}
    assert shown[declared.id].digits == declared.digits and shown["gone"].digits == 2
    assert len(shown[declared.id].shown.replace(".", "")) == declared.digits and shown["gone"].shown == "4.3"


def test_glance_box_ends_with_the_recorded_run(monkeypatch):
    """The chapter's At-a-glance text is the build's glance followed by recorded_glance's paragraph."""
    from papers30 import ledger, provenance

    book = ledger.ChapterLedger(CHAPTERS[0])
    monkeypatch.setattr(book, "missing", lambda: [])
    monkeypatch.setattr(ledger, "glance_text", lambda chapter, records: "BUILD")
    monkeypatch.setattr(provenance, "recorded_glance", lambda chapter: f"RECORDED {chapter}")
    assert str(book.glance()) == f"BUILD\n\nRECORDED {CHAPTERS[0]}"
    monkeypatch.setattr(provenance, "recorded_glance", lambda chapter: "")
    assert str(book.glance()) == "BUILD"


RUNS = recorded_runs()


@pytest.mark.parametrize("run", RUNS, ids=[f"ch{r.chapter:02d}" for r in RUNS])
def test_recorded_run_first_steps_replay(run):
    """Reference: the losses stored by `make reproduce`; the same code must produce them again.

    A stale run (numerical code changed since it was recorded: its page says so and names the
    command that refreshes it) must still replay: a change that alters its numbers fails here.
    """
    assert run.traces, "a recorded run must trace at least one training run"
    assert any(r["headline"] for r in run.records)
    executed: set[str] = set()

    def record(frame, event, arg):
        code = frame.f_code
        if event == "call" and code.co_filename.startswith(str(provenance.PACKAGE)) and code.co_name != "<module>":
            path = Path(code.co_filename)
            module = ".".join(["papers30", *path.relative_to(provenance.PACKAGE).with_suffix("").parts])
            if not (path.parent == provenance.PACKAGE and path.name in provenance.PRESENTATION):
                executed.add(f"{module.removesuffix('.__init__')}:{code.co_qualname.split('.')[0]}")

    for i, (name, trace) in enumerate(run.traces.items()):
        steps = min(5, len(trace["losses"]))
        sys.setprofile(record if i == 0 else None)
        try:
            got = replay(trace, steps)
        finally:
            sys.setprofile(None)
        # A GPU run replayed on the CPU differs in the last digits; the trajectory must not.
        assert got == pytest.approx(trace["losses"][:steps], rel=1e-3, abs=1e-5), name
    # Every package function the replay executed is in the definitions the run hash covers, or is
    # one that only validates its arguments (its stripped body is empty, so it cannot change a number).
    assert executed
    for key in sorted(executed - set(provenance.run_definitions(run.chapter))):
        module, name = key.split(":")
        path = provenance._module_file(module)
        source = {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)}
        kept = provenance._Scope(module, path.read_bytes(), path.name == "__init__.py").defs
        assert name in source and name not in kept, f"{key} ran but is not covered by the run hash"


@pytest.mark.parametrize("run", RUNS, ids=[f"ch{r.chapter:02d}" for r in RUNS])
def test_recorded_run_keeps_the_claims_protocol(run):
    """A current recorded run is held to the build's protocol at its own scale: every declared record
    present, none undeclared, no vacuous claim and no miss that papers.toml does not declare for it."""
    from papers30.ledger import audit

    if run.stale or run.settings_changed():
        pytest.skip("stale: its page says so and names the command that refreshes it")
    assert audit(run.ledger_records(), [run.chapter], scale=run.scale) == []


def test_chapter_hash_follows_the_chapters_recorded_run_only(tmp_path, monkeypatch):
    """A new or changed book/results/chNN.json re-executes that chapter (its page shows it), no other."""
    from papers30 import provenance

    before = {c: chapter_hash(c) for c in CHAPTERS}
    stored = {r.chapter for r in recorded_runs()}
    target = next(c for c in CHAPTERS if c not in stored)
    monkeypatch.setattr(provenance, "RESULTS", tmp_path)
    (tmp_path / f"ch{target:02d}.json").write_text("{}")
    after = {c: chapter_hash(c) for c in CHAPTERS}
    changed = {c for c in CHAPTERS if after[c] != before[c]}
    # chapters that had a stored run now see none (the directory moved), the target sees a new one
    assert changed == {target} | stored


# --- the pick() settings a recorded run was made with ---------------------------------------------


def test_pick_writes_its_settings_while_a_run_is_recorded(tmp_path, monkeypatch):
    """Reference: the values passed to pick, in call order, as JSON (tuples become lists)."""
    from papers30.runtime import pick

    monkeypatch.setattr(provenance, "PICKED", [])
    monkeypatch.setenv("PAPERS30_SCALE", "large")
    monkeypatch.setenv(provenance.TRACE_ENV, str(tmp_path))
    assert pick(small=dict(steps=10), large=dict(steps=100, widths=(8, 16)), paper=dict(steps=1000, widths=(1, 2))) \
        == dict(steps=100, widths=(8, 16))
    assert pick(3, 30) == 30  # no large setting: the paper one
    stored = json.loads((tmp_path / provenance.PICKED_FILE).read_text())
    assert stored == [{"steps": 100, "widths": [8, 16]}, 30]
    assert provenance.PICKED == [{"large": dict(steps=100, widths=(8, 16)), "paper": dict(steps=1000, widths=(1, 2))},
                                 {"large": 30, "paper": 30}]


def test_pick_writes_nothing_at_the_build_scale(tmp_path, monkeypatch):
    from papers30.runtime import pick

    monkeypatch.setattr(provenance, "PICKED", [])
    monkeypatch.delenv("PAPERS30_SCALE", raising=False)
    monkeypatch.setenv(provenance.TRACE_ENV, str(tmp_path))
    assert pick(1, 3, 2) == 1
    assert not (tmp_path / provenance.PICKED_FILE).exists() and provenance.PICKED == [{"large": 2, "paper": 3}]


def test_remember_pick_rejects_an_unknown_scale():
    with pytest.raises(ValueError, match="chosen"):
        provenance.remember_pick(1, 2, "huge")


def test_settings_changed_compares_the_calls_made_so_far(tmp_path):
    """Reference: equality of the stored and present settings, by hand."""
    chapter = CHAPTERS[0]
    run = RecordedRun(**_run(chapter, settings=[{"steps": 100, "widths": [8, 16]}, 30]))
    same = [{"large": {"widths": (8, 16), "steps": 100}, "paper": {}}, {"large": 30, "paper": 30}]
    assert run.settings_changed(same) is False
    assert run.settings_changed(same[:1]) is False  # a page that shows the run before its second pick
    assert run.settings_changed([{"large": {"steps": 200, "widths": (8, 16)}, "paper": {}}]) is True
    assert run.settings_changed(same + [{"large": 1, "paper": 1}]) is True  # a pick the run never made
    assert run.settings_changed([]) is None
    assert RecordedRun(**_run(chapter)).settings_changed(same) is None  # stored no settings
    paper = RecordedRun(**_run(chapter, scale="paper", settings=[{}, 30]))
    assert paper.settings_changed(same) is False


def test_show_recorded_flags_changed_settings(tmp_path):
    chapter = CHAPTERS[0]
    path = tmp_path / f"ch{chapter:02d}.json"
    path.write_text(json.dumps(_run(chapter, settings=[{"steps": 100}])))
    assert "and so are its `pick` settings" in show_recorded(chapter, tmp_path, picked=[{"large": {"steps": 100}}])
    text = show_recorded(chapter, tmp_path, picked=[{"large": {"steps": 200}}])
    assert "**stale**" in text and "`pick` settings for scale `large` differ" in text
    path.write_text(json.dumps(_run(chapter)))
    assert "were not stored with it" in show_recorded(chapter, tmp_path, picked=[{"large": {"steps": 200}}])


def test_run_hash_leaves_out_bookkeeping_calls_to_provenance():
    """Reference: the same function without the call; a ``_provenance`` note cannot change a number."""
    with_note = """
def f(x, n):
    from papers30 import provenance as _provenance

    _provenance.remember_pick(n, n, "small")
    return x * n
"""
    without = """
def f(x, n):
    return x * n
"""
    assert provenance.code_fingerprint(with_note, "m.py") == provenance.code_fingerprint(without, "m.py")
    assigned = """
def f(x, n):
    from papers30 import provenance as _provenance

    n = _provenance.remember_pick(n, n, "small") or n
    return x * n
"""
    assert provenance.code_fingerprint(assigned, "m.py") != provenance.code_fingerprint(without, "m.py")


def test_run_hash_covers_only_the_data_assets_the_code_names(tmp_path, monkeypatch):
    """Reference: a package whose loader names one of three asset files; editing the others
    (a data set no reached code reads, the provenance notes) leaves the hash unchanged."""
    from papers30 import provenance

    _package(tmp_path, monkeypatch, {
        "data/__init__": "",
        "data/load": "def load():\n    return open('alpha.npz').read()\n",
    })
    assets = tmp_path / "papers30" / "data" / "assets"
    assets.mkdir(parents=True)
    for name in ("alpha.npz", "beta.npz.xz", "SOURCES.md"):
        (assets / name).write_bytes(name.encode())
    chapter = "```{code-cell} ipython3\nfrom papers30.data.load import load\nload()\n```\n"
    kept = provenance.run_definitions(1, source=chapter)
    assert sorted(k for k in kept if k.startswith("assets/")) == ["assets/alpha.npz"]
    before = provenance.run_hash(1, source=chapter)
    (assets / "beta.npz.xz").write_bytes(b"another data set")
    (assets / "SOURCES.md").write_bytes(b"new notes")
    assert provenance.run_hash(1, source=chapter) == before
    (assets / "alpha.npz").write_bytes(b"changed data")
    assert provenance.run_hash(1, source=chapter) != before
    # A chapter that names the other set in its own code (a loader's key) depends on it too.
    named = chapter.replace("load()", "load()\nname = 'beta'")
    assert "assets/beta.npz.xz" in provenance.run_definitions(1, source=named)


NUMERICAL_CHAPTER = '''```{code-cell} ipython3
from papers30.models import train
from papers30.display import glue
from papers30.ledger import ChapterLedger
from papers30.provenance import traced
import matplotlib.pyplot as plt

SEEDS = (0, 1, 2)
ledger = ChapterLedger(1)
runs = [traced(f"seed {s}", train, n=3, seed=s) for s in SEEDS]
```

Some prose between the cells.

```{code-cell} ipython3
def helper(x):
    return x * 2

best = max(helper(r) for r in runs)
fig, ax = plt.subplots()
s = fig.dpi
for line, s in zip(ax.get_lines(), SEEDS):
    line.set_label(str(s))
ax.plot(runs)
glue("best", best)
ledger.record("claim", runs, control=[0, 0, 0])
top = [r + 1 for s, r in zip(SEEDS, runs)]
extra = {}
extra[s] = helper(3)
for s in SEEDS:
    print(s)
    glue(f"run_{s}", runs[s])
best
```
'''


def test_run_hash_covers_the_chapters_numerical_statements(tmp_path, monkeypatch):
    """Reference: edits worked out by hand; those that change what the chapter computes or records
    make its recorded run stale, those that change only what it shows leave it current."""
    from papers30 import provenance

    _package(tmp_path, monkeypatch, {
        "models": "def train(n, seed):\n    return n + seed\n",
        "display": "def glue(name, value):\n    return None\n",
        "ledger": "class ChapterLedger:\n    def record(self, *a, **k):\n        return None\n",
        "provenance": "def traced(name, fn, **kwargs):\n    return fn(**kwargs)\n",
    })
    before = provenance.run_hash(1, source=NUMERICAL_CHAPTER)
    assert "papers30.<chapter>:" in provenance.run_definitions(1, source=NUMERICAL_CHAPTER)

    def rehash(old: str, new: str) -> str:
        assert old in NUMERICAL_CHAPTER
        return provenance.run_hash(1, source=NUMERICAL_CHAPTER.replace(old, new))

    shown_only = [
        ('glue("best", best)', 'glue("top", best)'),  # a glue label
        ("ax.plot(runs)", "ax.plot(runs)\nax.set_title('runs')"),  # a figure
        ("ax.plot(runs)", "ax.plot(runs)\nax.xlim = (0, 3)\nfig.axes[0].label = 'x'"),  # a figure's attributes
        ("plt.subplots()", "plt.subplots(1, 2)"),
        ("line.set_label(str(s))", "line.set_label(f'seed {s}')"),  # a loop over what is shown
        ("    print(s)", "    print('seed', s)"),
        ("best\n```", "best + 0\n```"),  # a cell's displayed value
        ("from papers30.display import glue", "from papers30.display import glue  # shown"),
        ("Some prose between the cells.", "Other prose."),
        ("def helper(x):", "def plot_it(ax):\n    ax.plot([1])\n\ndef helper(x):"),  # a helper nothing computed uses
        ("SEEDS = (0, 1, 2)\n", "SEEDS = (0, 1, 2)\n```\n\n```{code-cell} ipython3\n"),  # one cell split in two
    ]
    for old, new in shown_only:
        assert rehash(old, new) == before, new
    numerical = [
        ("n=3", "n=4"),  # a literal in a traced training call
        ("(0, 1, 2)", "(0, 1, 3)"),  # the seeds
        ("x * 2", "x * 3"),  # a helper the chapter defines and uses
        ("control=[0, 0, 0]", "control=[1, 1, 1]"),  # what the ledger records
        ('ledger.record("claim", runs,', 'ledger.record("claim", top,'),
        ("r + 1 for s, r", "r + 2 for s, r"),  # its own ``s``, not the shown one bound from ``fig``
        ("helper(3)", "helper(4)"),  # stored under a shown key, into an object that is not shown
    ]
    for old, new in numerical:
        assert rehash(old, new) != before, new


def test_run_hash_reads_the_chapter_through_read(tmp_path, monkeypatch):
    """``tools/restamp.py`` computes the hash of a past commit: the chapter's cells must be read
    through ``read`` like the package's files, or a past run would be judged by today's cells."""
    from papers30 import provenance

    _package(tmp_path, monkeypatch, {"models": "def train(n, seed):\n    return n + seed\n"})
    chapter = tmp_path / "chapter.md"
    text = "```{code-cell} ipython3\nfrom papers30.models import train\nx = train(3, 0)\n```\n"
    chapter.write_text(text)
    monkeypatch.setattr(provenance, "chapter_source", lambda number: chapter)
    now = provenance.run_hash(1)
    assert now == provenance.run_hash(1, source=text)
    past = text.replace("train(3, 0)", "train(4, 0)").encode()
    assert provenance.run_hash(1, read=lambda p: past if p == chapter else p.read_bytes()) != now


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_run_hash_keeps_every_run_pick_and_record_of_the_chapter(chapter):
    """Reference: the chapter's cells parsed on their own; the filter that leaves out what only shows
    must keep every ``traced`` training run, every ``pick`` of settings and every ledger record."""
    text = provenance.chapter_source(chapter).read_text(encoding="utf-8")

    def calls(tree: ast.AST) -> list[str]:
        found = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                if name in ("traced", "pick", "record"):
                    found.append(ast.dump(node))
        return sorted(found)

    every = calls(ast.parse(provenance._chapter_code(text)))
    assert any("record" in c for c in every), "every chapter records its claims"
    kept = provenance.run_definitions(chapter).get("papers30.<chapter>:", b"")
    assert calls(eval(kept.decode(), vars(ast))) == every  # the kept syntax tree, as ast.dump wrote it
