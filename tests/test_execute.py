"""book/_ext/execute.py: which chapters re-execute, checked with a stand-in cache.

Reference: papers30.provenance.chapter_modules, itself checked against
Python's import system in tests/test_provenance.py.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from papers30 import provenance
from tests._site import ROOT

spec = importlib.util.spec_from_file_location("papers30_execute", ROOT / "book" / "_ext" / "execute.py")
execute = importlib.util.module_from_spec(spec)
spec.loader.exec_module(execute)


class FakeCache:
    """Holds every chapter, as after a full build; remembers which records were dropped."""

    def __init__(self, missing: set[str] = frozenset()):
        self.missing = missing
        self.removed: list[int] = []

    def match_cache_notebook(self, nb):
        path = nb.metadata.get("papers30_path")
        if path in self.missing:
            raise KeyError(path)
        return SimpleNamespace(pk=hash(path) % 10_000)

    def remove_cache(self, pk):
        self.removed.append(pk)


def test_fake_cache_has_the_real_caches_methods():
    """Reference: jupyter_cache's JupyterCacheBase. The fake once had a method the real cache lacks, so a
    rebuild after a package edit crashed while these tests passed."""
    import inspect

    from jupyter_cache.cache.main import JupyterCacheBase

    for name, method in inspect.getmembers(FakeCache, inspect.isfunction):
        if name.startswith("_"):
            continue
        real = getattr(JupyterCacheBase, name, None)
        assert real is not None, f"jupyter_cache has no {name}"
        assert list(inspect.signature(method).parameters) == list(inspect.signature(real).parameters)[:2]


@pytest.fixture
def tagged_read(monkeypatch):
    """execute.read, with the chapter's path in its metadata so FakeCache can tell chapters apart."""
    original = execute.read

    def read(path: Path):
        nb = original(path)
        nb.metadata["papers30_path"] = path.relative_to(ROOT).as_posix()
        return nb

    monkeypatch.setattr(execute, "read", read)


def current_stamps():
    return {p.relative_to(ROOT).as_posix(): provenance.chapter_hash(execute.chapter_number(p), p.read_text())
            for p in execute.chapters()}


def test_nothing_runs_when_sources_and_package_are_unchanged(tagged_read):
    cache = FakeCache()
    todo, _ = execute.outdated(cache, current_stamps())
    assert todo == [] and cache.removed == []


def test_touching_one_module_reruns_exactly_the_chapters_that_import_it(tagged_read, monkeypatch):
    stamps = current_stamps()
    target = provenance.PACKAGE / "residual.py"
    monkeypatch.setattr(provenance, "_read", lambda p: p.read_bytes() + (b"#" if p == target else b""))
    cache = FakeCache()
    todo, _ = execute.outdated(cache, stamps)
    want = [p for p in execute.chapters() if target in provenance.chapter_modules(execute.chapter_number(p))]
    assert todo == want and 0 < len(todo) < len(execute.chapters())
    assert len(cache.removed) == len(want)  # their old outputs are dropped from the cache


def test_a_chapter_missing_from_the_cache_runs(tagged_read):
    first = execute.chapters()[0].relative_to(ROOT).as_posix()
    todo, _ = execute.outdated(FakeCache(missing={first}), current_stamps())
    assert [p.relative_to(ROOT).as_posix() for p in todo] == [first]


def test_exclusive_chapters_are_read_from_the_front_matter(tmp_path):
    page = tmp_path / "09_x.md"
    page.write_text("---\njupytext:\n  x: 1\npapers30:\n  exclusive: true\n---\n# 9. X\n")
    assert execute.exclusive(page)
    page.write_text("---\njupytext:\n  x: 1\n---\n# 9. X\npapers30:\n  exclusive: true\n")
    assert not execute.exclusive(page)  # only the front matter counts
    page.with_suffix(".ipynb").write_text(json.dumps({"metadata": {"papers30": {"exclusive": True}}}))
    assert execute.exclusive(page)  # or the paired notebook's metadata, where jupytext keeps it
    assert execute.exclusive(ROOT / "book/part1/09_gpipe.md")  # the chapter that times real processes


def test_the_exclusive_chapter_starts_when_little_shared_work_is_left():
    """Reference: the choices worked out by hand (overlap 20 s)."""
    assert execute.pick_next(["a", "b"], ["x"], remaining=45.0) == "a"
    assert execute.pick_next(["a", "b"], ["x"], remaining=19.5) == "x"
    assert execute.pick_next([], ["x"], remaining=60.0) == "x"  # nothing else to start
    assert execute.pick_next(["a"], [], remaining=5.0) == "a"


def test_the_exclusive_chapter_waits_for_the_machine():
    """Reference: book/part1/09_gpipe.md times real processes only after papers30.runtime.wait_until_alone()."""
    text = (ROOT / "book/part1/09_gpipe.md").read_text()
    wait, timing = text.find("wait_until_alone()"), text.find("timed_rounds(pipe")
    assert 0 < wait < timing
