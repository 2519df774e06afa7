"""Where a result came from: the package code a chapter depends on, and recorded larger runs.

Two jobs share one idea, that a result is tied to the exact code behind it.

* :func:`chapter_hash` hashes the ``papers30`` modules a chapter imports,
  directly or through other modules, with the chapter's own entries of the
  data file. The book's executor re-runs a chapter only when this hash (or
  the chapter's source) changes. A recorded run is flagged *stale* when
  :func:`run_hash`, the same hash restricted to the code that computes
  numbers (without the presentation modules: argument checks, display,
  ledger, registry, provenance, plotting) and to the chapter's declared
  criteria, no longer matches the one it was recorded with.
* A **recorded larger run** is a chapter executed at a larger scale by
  ``make reproduce CH=NN`` (on a GPU when there is one, otherwise a long CPU
  run). It is saved to ``book/results/chNN.json`` with its command, commit,
  hash, device, seeds and wall time, the ledger records it produced, and the
  first losses of every training run the chapter wrapped in :func:`traced`.
  The test suite replays those first steps and checks that the losses match
  the record, so a recorded run cannot silently drift away from the code.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from papers30 import _checks
from papers30 import ledger as _ledger
from papers30.papers import declarations, paper

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent
RESULTS = ROOT / "book" / "results"
TRACE_ENV = "PAPERS30_TRACE_DIR"
TRACE_STEPS = 20  # losses kept per traced run: what the replay test compares


# --- which package code a chapter depends on -------------------------------------


def _imports(source: str) -> set[str]:
    """Dotted ``papers30`` module names imported by ``source`` (IPython magics ignored).

    ``from papers30 import x`` counts ``papers30.x`` when ``x`` is a module,
    and always ``papers30`` itself.
    """
    lines = [ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "papers30"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "papers30":
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _module_file(name: str) -> Path | None:
    rel = Path(*name.split(".")[1:])
    for candidate in (PACKAGE / rel / "__init__.py", (PACKAGE / rel).with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def module_closure(names: set[str]) -> list[Path]:
    """Files of the ``papers30`` modules in ``names`` and everything they import, with parent packages."""
    todo = {n for n in names if n == "papers30" or n.startswith("papers30.")} | {"papers30"}
    seen: dict[str, Path] = {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_file(name)
        if path is None:
            continue  # ``from papers30.x import function``: not a module
        seen[name] = path
        parts = name.split(".")
        todo |= {".".join(parts[:i]) for i in range(1, len(parts))}
        todo |= _imports(path.read_text(encoding="utf-8"))
    return sorted(seen.values())


def chapter_source(chapter: int) -> Path:
    """The MyST source of ``chapter`` (``book/partN/NN_slug.md``)."""
    return ROOT / f"{paper(chapter).docname}.md"


def chapter_modules(chapter: int, source: str | None = None) -> list[Path]:
    """The package files chapter ``chapter`` depends on (see :func:`module_closure`)."""
    if isinstance(chapter, bool) or not isinstance(chapter, int):
        raise TypeError(f"chapter must be an int, got {type(chapter).__name__}")
    if source is not None and not isinstance(source, str):
        raise TypeError(f"source must be a str or None, got {type(source).__name__}")
    text = source if source is not None else chapter_source(chapter).read_text(encoding="utf-8")
    cells = re.findall(r"^```\{code-cell\}[^\n]*\n(.*?)^```", text, re.S | re.M)
    names: set[str] = set()
    for cell in cells:
        names |= _imports(re.sub(r"^:[\w-]+:.*$", "", cell, flags=re.M))
    return module_closure(names)


def _read(path: Path) -> bytes:
    return path.read_bytes()


def chapter_hash(chapter: int, source: str | None = None) -> str:
    """16 hex digits over the chapter's package files, data assets in use, and its declarations."""
    h = hashlib.sha256()
    files = chapter_modules(chapter, source)
    if any(PACKAGE / "data" in f.parents for f in files):
        files += sorted((PACKAGE / "data" / "assets").glob("*"))
    for f in files:
        h.update(f.relative_to(PACKAGE).as_posix().encode())
        h.update(_read(f))
    h.update(json.dumps([d.__dict__ for d in declarations(chapter)], sort_keys=True).encode())
    h.update(json.dumps(paper(chapter).__dict__, sort_keys=True).encode())
    return h.hexdigest()[:16]


#: Modules that cannot change what a run computes, only how it is checked, shown or recorded.
PRESENTATION = ("__init__.py", "_checks.py", "display.py", "ledger.py", "papers.py", "provenance.py", "plotting.py")
CRITERION_FIELDS = ("id", "kind", "headline", "at_least", "at_most", "above_control", "below_control", "expected")


def run_files(chapter: int, source: str | None = None) -> list[Path]:
    """The package files whose code can change chapter ``chapter``'s numbers: :func:`chapter_modules`
    without the :data:`PRESENTATION` modules, plus the data assets when the chapter uses ``papers30.data``."""
    files = [f for f in chapter_modules(chapter, source)
             if not (f.parent == PACKAGE and f.name in PRESENTATION)]
    if any(PACKAGE / "data" in f.parents for f in files):
        files += sorted((PACKAGE / "data" / "assets").glob("*"))
    return files


class _StripChecks(ast.NodeTransformer):
    """Remove what cannot change a computed number: docstrings, ``_checks`` calls and decorators,
    and ``if ...: raise ...`` blocks (argument validation)."""

    @staticmethod
    def _is_check_call(node: ast.AST) -> bool:
        func = node.func if isinstance(node, ast.Call) else node
        return isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "_checks"

    def _body(self, body: list[ast.stmt]) -> list[ast.stmt]:
        out = []
        for i, stmt in enumerate(body):
            if i == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
                    and isinstance(stmt.value.value, str):
                continue  # docstring
            if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and self._is_check_call(stmt.value):
                continue
            if isinstance(stmt, ast.ImportFrom) and [a.name for a in stmt.names] == ["_checks"]:
                continue
            if isinstance(stmt, ast.If) and not stmt.orelse and (
                    all(isinstance(b, ast.Raise) for b in stmt.body) or not self._body(list(stmt.body))):
                continue  # raises, or only validates
            if isinstance(stmt, ast.For) and all(isinstance(b, (ast.Expr, ast.If)) for b in stmt.body) \
                    and not self._body(stmt.body):
                continue  # a loop that only validates
            stmt = self.visit(stmt)
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and not stmt.body:
                continue  # a method that only validated (``__post_init__`` and the like)
            out.append(stmt)
        return out

    def generic_visit(self, node: ast.AST) -> ast.AST:
        for field in ("body", "orelse", "finalbody"):
            value = getattr(node, field, None)
            if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                setattr(node, field, self._body(value))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            node.decorator_list = [d for d in node.decorator_list if not self._is_check_call(d)]
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, ast.stmt):
                self.visit(child)
        return node


@_checks.typed
def code_fingerprint(text: str | bytes, name: str = "") -> bytes:
    """What of a file can change a run's numbers: for Python, its syntax tree without docstrings,
    comments, formatting or argument validation (see :class:`_StripChecks`); other files as they are."""
    if not name.endswith(".py"):
        return text if isinstance(text, bytes) else text.encode()
    tree = _StripChecks().visit(ast.parse(text))
    return ast.dump(tree, include_attributes=False).encode()


def run_hash(chapter: int, source: str | None = None, read: Callable[[Path], bytes] | None = None) -> str:
    """16 hex digits over the :func:`code_fingerprint` of :func:`run_files` and the chapter's declared
    criteria; a recorded run made with a different hash is stale (its numbers may no longer follow
    from the code). ``read`` reads a file (default: from disk; ``tools/restamp.py`` reads a commit)."""
    h = hashlib.sha256()
    for f in run_files(chapter, source):
        h.update(f.relative_to(PACKAGE).as_posix().encode())
        h.update(code_fingerprint((read or _read)(f), f.name))
    criteria = [{k: getattr(d, k) for k in CRITERION_FIELDS} for d in declarations(chapter)]
    h.update(json.dumps(criteria, sort_keys=True).encode())
    return h.hexdigest()[:16]


# --- traces of training runs, for replaying a recorded run -------------------------


def _losses(result: Any) -> list[float]:
    losses = getattr(result, "losses", result)
    if isinstance(losses, dict):
        losses = losses.get("losses")
    if not isinstance(losses, (list, tuple)):
        raise TypeError("a traced function must return a list of losses or an object with .losses, "
                        f"got {type(result).__name__}")
    return [float(x) for x in losses]


def traced(name: str, fn: Callable[..., Any], /, **kwargs: Any) -> Any:
    """Call ``fn(**kwargs)`` and, while a recorded run is being made, keep its first losses.

    ``fn`` must be a module-level function of ``papers30`` that returns a list
    of per-step losses (or an object with ``.losses``, such as
    :class:`papers30.training.History`), that accepts ``stop_after`` (stop
    after that many steps without changing any schedule), and whose keyword
    arguments are plain JSON values, so that the test suite can call it
    again. Outside ``make reproduce`` this is just ``fn(**kwargs)``.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    where = os.environ.get(TRACE_ENV, "").strip()
    if where:
        target = f"{fn.__module__}:{fn.__qualname__}"
        if not fn.__module__.startswith("papers30.") or "<" in fn.__qualname__:
            raise ValueError(f"fn must be a module-level function of papers30 to be traced, got {target}")
        try:
            json.dumps(kwargs)
        except TypeError as err:
            raise TypeError(f"kwargs of a traced run must be plain JSON values: {err}") from None
    result = fn(**kwargs)
    if where:
        path = Path(where) / "traces.json"
        traces = json.loads(path.read_text()) if path.exists() else {}
        traces[name] = {"callable": target, "kwargs": kwargs, "losses": _losses(result)[:TRACE_STEPS]}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(traces, indent=1))
    return result


def replay(trace: dict[str, Any], steps: int) -> list[float]:
    """Re-run the first ``steps`` steps of a traced run; return their losses."""
    if not isinstance(trace, dict) or not isinstance(trace.get("callable"), str):
        raise TypeError("trace must be a dict with a 'callable' string, as traced() writes it")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    module, _, qualname = trace["callable"].partition(":")
    try:
        fn = importlib.import_module(module)
        for part in qualname.split("."):
            fn = getattr(fn, part)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"trace['callable'] = {trace['callable']!r} names no importable function") from err
    return _losses(fn(**{**trace["kwargs"], "stop_after": steps}))[:steps]


# --- recorded larger runs --------------------------------------------------------


@dataclass(frozen=True)
class RecordedRun:
    """A chapter run at a larger scale, as ``make reproduce CH=NN`` saved it."""

    chapter: int
    scale: str
    command: str
    commit: str
    chapter_hash: str
    device: str
    threads: int
    seeds: list[int] | None
    wall_seconds: float
    date: str
    records: list[dict[str, Any]]
    traces: dict[str, dict[str, Any]]

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)

    @property
    def stale(self) -> bool:
        """Whether the chapter's numerical code or declared criteria changed since the run was recorded.

        ``chapter_hash`` holds the :func:`run_hash` the run was recorded with.
        """
        return self.chapter_hash != run_hash(self.chapter)

    def ledger_records(self) -> list[_ledger.Record]:
        """The run's ledger records."""
        return [_ledger.Record(**r) for r in self.records]


def results_path(chapter: int, directory: Path | None = None) -> Path:
    """Where chapter ``chapter``'s recorded run lives (``book/results/chNN.json``)."""
    return (directory or RESULTS) / f"ch{chapter:02d}.json"


def recorded_run(chapter: int, directory: Path | None = None) -> RecordedRun | None:
    """The recorded larger run of ``chapter``, or ``None`` when there is none."""
    path = results_path(chapter, directory)
    if not path.exists():
        return None
    return RecordedRun(**json.loads(path.read_text(encoding="utf-8")))


def recorded_runs(directory: Path | None = None) -> list[RecordedRun]:
    """Every recorded run in ``book/results``, by chapter."""
    where = directory or RESULTS
    return [RecordedRun(**json.loads(p.read_text(encoding="utf-8"))) for p in sorted(where.glob("ch[0-9][0-9].json"))]


def show_recorded(chapter: int, directory: Path | None = None) -> "_ledger.Markdown":
    """Markdown describing chapter ``chapter``'s recorded run and its headline, labelled as recorded."""
    run = recorded_run(chapter, directory)
    if run is None:
        return _ledger.Markdown(f"No recorded larger run is stored for chapter {chapter} "
                                f"(`make reproduce CH={chapter}` makes one).")
    records = run.ledger_records()
    head = next((r for r in records if r.headline), None)
    state = ("**stale**: the chapter's numerical code or declared criteria changed after this run was "
             f"recorded (recorded with hash `{run.chapter_hash}`, now `{run_hash(chapter)}`); "
             f"rerun `make reproduce CH={chapter}`" if run.stale else "current: the chapter's numerical "
             f"code and declared criteria are unchanged since it was recorded (hash `{run.chapter_hash}`)")
    lines = [
        f"**Recorded run, not executed by this build.** Scale `{run.scale}`, made with `{run.command}` "
        f"on {run.date} at commit `{run.commit}`, on {run.device} with {run.threads} thread(s), "
        f"in {run.wall_seconds / 60:.1f} minutes. It is {state}.",
    ]
    if head is not None:
        lines += ["", f"Headline *{head.id}*: {head.seeds_text()} against the control's "
                      f"{head.shown_control} ({head.control_label}); criterion {head.criterion}: "
                      f"**{head.result}**."]
    return _ledger.Markdown("\n".join(lines))
