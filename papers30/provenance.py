"""Where a result came from: the package code a chapter depends on, and recorded larger runs.

Two jobs share one idea, that a result is tied to the exact code behind it.

* :func:`chapter_hash` hashes the ``papers30`` modules a chapter imports,
  directly or through other modules, with the chapter's own entries of the
  data file. The book's executor re-runs a chapter only when this hash (or
  the chapter's source) changes. A recorded run is flagged *stale* when
  :func:`run_hash`, over the package definitions the chapter's code can
  reach (functions, classes and constants, followed name by name, without
  docstrings, argument validation or the presentation modules: checks,
  display, ledger, registry, provenance, plotting) and the chapter's
  declared criteria, no longer matches the one it was recorded with.
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
import pickle
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
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
    """16 hex digits over the chapter's package files, data assets in use, its declarations and its
    recorded run (``book/results/chNN.json``, which its page shows)."""
    h = hashlib.sha256()
    files = chapter_modules(chapter, source)
    if any(PACKAGE / "data" in f.parents for f in files):
        files += sorted((PACKAGE / "data" / "assets").glob("*"))
    for f in files:
        h.update(f.relative_to(PACKAGE).as_posix().encode())
        h.update(_read(f))
    h.update(json.dumps([asdict(d) for d in declarations(chapter)], sort_keys=True).encode())
    h.update(json.dumps(paper(chapter).__dict__, sort_keys=True).encode())
    recorded = results_path(chapter)
    if recorded.exists():  # the page shows its recorded run
        h.update(recorded.read_bytes())
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


_INSPECT = frozenset({"isinstance", "issubclass", "type", "len", "callable"})


def _clone(node):
    """A deep copy of a syntax tree (or a list of statements); pickle copies trees several times
    faster than ``copy.deepcopy``, which kept a chapter's staleness check at seconds."""
    return pickle.loads(pickle.dumps(node, protocol=pickle.HIGHEST_PROTOCOL))


class _StripChecks(ast.NodeTransformer):
    """Remove what cannot change a computed number: docstrings, ``_checks`` calls and decorators,
    ``if ...: raise ...`` blocks (argument validation), functions and methods left empty by that,
    and the statements that only call them (``self._check_shapes(x)``)."""

    def __init__(self) -> None:
        self._functions: set[str] = set()  # module-level functions that only validate
        self._methods: set[str] = set()  # methods of the class being visited that only validate
        self._in_function = False

    @staticmethod
    def _package_import(stmt: ast.stmt) -> bool:
        if isinstance(stmt, ast.ImportFrom):
            return bool(stmt.level) or (stmt.module or "").split(".")[0] == "papers30"
        return isinstance(stmt, ast.Import) and all(a.name.split(".")[0] == "papers30" for a in stmt.names)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        # Annotations are never evaluated (``from __future__ import annotations``): they cannot change a number.
        node.returns = None
        for arg in node.args.posonlyargs + node.args.args + node.args.kwonlyargs + [node.args.vararg, node.args.kwarg]:
            if arg is not None:
                arg.annotation = None
        outer, self._in_function = self._in_function, True
        try:
            return self.generic_visit(node)
        finally:
            self._in_function = outer

    visit_AsyncFunctionDef = visit_FunctionDef

    @staticmethod
    def _validation_only(body: list[ast.stmt]) -> set[str]:
        names = set()
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                probe = _StripChecks().visit(_clone(stmt))
                if not _StripChecks._live(probe.body):
                    names.add(stmt.name)
        return names

    def _calls_validator(self, call: ast.Call) -> bool:
        func = call.func
        if isinstance(func, ast.Name):
            return func.id in self._functions
        return (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                and func.value.id in ("self", "cls") and func.attr in self._methods)

    def visit_Module(self, node: ast.Module) -> ast.AST:
        self._functions = self._validation_only(node.body)
        return self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        outer, self._methods = self._methods, self._validation_only(node.body)
        try:
            return self.generic_visit(node)
        finally:
            self._methods = outer

    @staticmethod
    def _is_check_call(node: ast.AST) -> bool:
        func = node.func if isinstance(node, ast.Call) else node
        # ``_checks.*`` validates; ``_provenance.*`` (this module, imported under that name) only keeps
        # notes for recorded runs. Neither can change a number.
        return isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
            and func.value.id in ("_checks", "_provenance")

    def _body(self, body: list[ast.stmt]) -> list[ast.stmt]:
        out = []
        for i, stmt in enumerate(body):
            if i == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
                    and isinstance(stmt.value.value, str):
                continue  # docstring
            if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and (
                    self._is_check_call(stmt.value) or self._calls_validator(stmt.value)):
                continue
            if isinstance(stmt, ast.ImportFrom) and [a.name for a in stmt.names] == ["_checks"]:
                continue
            if self._in_function and self._package_import(stmt):
                continue  # a local import binds names that reachability follows to their definitions
            if isinstance(stmt, ast.If) and not stmt.orelse and "TYPE_CHECKING" in ast.unparse(stmt.test):
                continue  # imports for the type checker only, never run
            if isinstance(stmt, ast.If) and not stmt.orelse and (
                    all(isinstance(b, ast.Raise) for b in stmt.body) or not self._body(list(stmt.body))):
                continue  # raises, or only validates
            if isinstance(stmt, ast.For) and all(isinstance(b, (ast.Expr, ast.If)) for b in stmt.body) \
                    and not self._body(stmt.body):
                continue  # a loop that only validates
            stmt = self.visit(stmt)
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                stmt.body = self._live(stmt.body)
                if not stmt.body:
                    continue  # a method that only validated (``__post_init__`` and the like)
            out.append(stmt)
        return out

    @staticmethod
    def _live(body: list[ast.stmt]) -> list[ast.stmt]:
        """A function body without what validation left behind: assignments of call-free
        expressions to local names nothing reads (``hidden = h.shape[-1]``), and call-free ``if``
        and ``for`` statements left with nothing but ``continue`` or ``pass``."""

        def pure(node: ast.AST) -> bool:  # no calls but to builtins that only inspect
            return not any(isinstance(n, (ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)) or (
                isinstance(n, ast.Call) and not (isinstance(n.func, ast.Name) and n.func.id in _INSPECT))
                for n in ast.walk(node))

        def prune(stmts: list[ast.stmt], read: set[str]) -> list[ast.stmt]:
            out = []
            for stmt in stmts:
                if isinstance(stmt, ast.Assign) and pure(stmt.value) and all(
                        isinstance(t, ast.Name) and t.id not in read for t in stmt.targets):
                    continue
                if isinstance(stmt, (ast.If, ast.For)) and not stmt.orelse:
                    head = stmt.test if isinstance(stmt, ast.If) else stmt.iter
                    inner = prune(stmt.body, read)
                    if pure(head) and all(isinstance(s, (ast.Continue, ast.Pass)) for s in inner):
                        continue
                    stmt.body = inner or [ast.Pass()]
                out.append(stmt)
            return out

        while True:
            read = {n.id for stmt in body for n in ast.walk(stmt)
                    if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Store)}
            pruned = prune(_clone(body), read)
            if ast.dump(ast.Module(body=pruned, type_ignores=[])) == ast.dump(ast.Module(body=body, type_ignores=[])):
                return pruned
            body = pruned

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


class _Scope:
    """One module, as reachability sees it: its top-level definitions (validation stripped), the
    ``papers30`` names it imports anywhere in its body, and its other top-level statements."""

    def __init__(self, name: str, text: bytes, is_package: bool) -> None:
        self.name = name
        try:
            raw = ast.parse(text)
        except SyntaxError:
            raw = ast.Module(body=[], type_ignores=[])  # a file missing at a commit, or unreadable
        tree = _StripChecks().visit(_clone(raw))
        self.defs: dict[str, list[ast.stmt]] = {}
        self.aliases: dict[str, tuple[str, str | None]] = {}  # local name -> (module, attribute or None)
        self.rest: list[ast.stmt] = []
        package = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(raw):  # imports inside functions too (stripped from their fingerprints)
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    module = f"{base}.{node.module}" if node.module else base
                else:
                    module = node.module or ""
                if module.split(".")[0] == "papers30":
                    for a in node.names:
                        self.aliases[a.asname or a.name] = (module, a.name)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "papers30":
                        self.aliases[a.asname or "papers30"] = (a.name if a.asname else "papers30", None)
        for stmt in tree.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.defs.setdefault(stmt.name, []).append(stmt)
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign)) and all(
                    isinstance(t, ast.Name) for t in (stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target])):
                for t in stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]:
                    self.defs.setdefault(t.id, []).append(stmt)
            elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
                for a in stmt.names:  # other libraries' names count where a reached definition uses them
                    local = a.asname or a.name.split(".")[0]
                    if local not in self.aliases:
                        self.defs.setdefault(local, []).append(stmt)
            else:
                self.rest.append(stmt)


def _chapter_code(text: str) -> bytes:
    """The code cells of a MyST chapter that parse, joined (tags and IPython magics removed)."""
    cells = []
    for cell in re.findall(r"^```\{code-cell\}[^\n]*\n(.*?)^```", text, re.S | re.M):
        lines = [ln for ln in re.sub(r"^:[\w-]+:.*$", "", cell, flags=re.M).splitlines()
                 if not ln.lstrip().startswith(("%", "!"))]
        try:
            ast.parse("\n".join(lines))
        except SyntaxError:
            continue
        cells.append("\n".join(lines))
    return "\n".join(cells).encode()


_CHAPTER = "papers30.<chapter>"  # the chapter's own code: followed, and its numerical statements kept
#: Presentation names a chapter imports from other libraries (their roots), and builtins that only show.
_SHOWN_LIBRARIES = frozenset({"matplotlib", "IPython", "myst_nb"})
_SHOWN_BUILTINS = frozenset({"print", "display"})
#: Functions of the presentation modules that run a computation rather than show one.
_RUNS = frozenset({"traced"})
#: Methods whose arguments decide what a run records (``ledger.record(id, values, control=...)``).
_RECORDS = frozenset({"record"})


def _numerical(stmts: list[ast.stmt], shown: set[str]) -> list[ast.stmt]:
    """The statements of a chapter's code that can change what it computes, in order.

    ``shown`` holds the names that only show, record or check results (imported
    from a presentation module or library, or bound from one); it grows as
    statements bind new such names. Dropped: imports (reachability follows
    what they bring), assertions, expression statements that call nothing
    (a cell's displayed value) or that use a shown name (``glue(...)``,
    ``ax.plot(...)``), assignments to an attribute or item of a shown object
    (``ax.title = ...``), assignments whose value uses a shown name (the
    names they bind become shown), and compound statements whose header uses one
    or whose bodies keep nothing. Every other statement is kept, its bodies
    filtered the same way, and so is every ``<ledger>.record(...)`` call,
    since its arguments decide what the run records. So a literal in a
    training call, a seed list, a loop over settings or the values handed to
    the ledger count, while a new caption or figure does not.
    """
    kept: list[ast.stmt] = []

    def uses(node: ast.AST | None) -> bool:  # a shown name, other than a comprehension's or lambda's own
        if node is None:
            return False
        own = {n.id for c in ast.walk(node) if isinstance(c, ast.comprehension)
               for n in ast.walk(c.target) if isinstance(n, ast.Name)}
        own |= {a.arg for f in ast.walk(node) if isinstance(f, ast.Lambda) for a in ast.walk(f.args)
                if isinstance(a, ast.arg)}
        return any(isinstance(n, ast.Name) and n.id in shown - own for n in ast.walk(node))

    def bound(node: ast.AST) -> set[str]:
        return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}

    def sets_shown(target: ast.AST) -> bool:  # ``ax.title = ...``, ``fig.axes[0].x = ...``
        for t in target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]:
            base = t
            while isinstance(base, (ast.Attribute, ast.Subscript, ast.Starred)):
                base = base.value
            if t is not base and isinstance(base, ast.Name) and base.id in shown:
                return True
        return False

    for stmt in stmts:
        if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Assert, ast.Pass)):
            continue
        value = getattr(stmt, "value", None)
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and value.func.attr in _RECORDS:
            pass  # what is recorded, as value and as control, is part of the run
        elif isinstance(stmt, ast.Expr):
            if uses(stmt) or not any(isinstance(n, ast.Call) for n in ast.walk(stmt)):
                continue
        elif isinstance(stmt, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            if any(sets_shown(t) for t in targets):
                continue
            if uses(stmt.value):
                for target in targets:
                    shown |= bound(target)
                continue
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            stmt = _clone(stmt)
            stmt.body = _numerical(stmt.body, set(shown)) or [ast.Pass()]
        elif isinstance(stmt, (ast.For, ast.AsyncFor, ast.While, ast.If, ast.With, ast.AsyncWith, ast.Try)):
            head = [getattr(stmt, f, None) for f in ("iter", "test")] + [i.context_expr for i in getattr(stmt, "items", [])]
            if any(uses(h) for h in head):
                continue  # names it binds stay unshown: a later statement reading them is kept
            stmt = _clone(stmt)
            fields = [f for f in ("body", "orelse", "finalbody") if getattr(stmt, f, None)]
            for f in fields:
                setattr(stmt, f, _numerical(getattr(stmt, f), shown))
            for handler in getattr(stmt, "handlers", []):
                handler.body = _numerical(handler.body, shown) or [ast.Pass()]
            if not any(getattr(stmt, f) for f in fields) and not getattr(stmt, "handlers", None):
                continue
            if not stmt.body:
                stmt.body = [ast.Pass()]
        kept.append(stmt)
    return kept


def _chapter_statements(text: str, shown: set[str]) -> list[ast.stmt]:
    """What of a chapter's code cells can change its numbers (:func:`_numerical`), validation
    stripped, with the functions and classes it defines kept only where a kept statement uses them."""
    tree = _StripChecks().visit(ast.parse(_chapter_code(text)))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            for a in node.names:
                root = (module or a.name).split(".")[0]
                if root in _SHOWN_LIBRARIES:
                    shown.add(a.asname or (a.name if module else a.name.split(".")[0]))
    statements = _numerical(tree.body, shown | _SHOWN_BUILTINS)
    defined = {s.name: s for s in statements if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    used: set[str] = set()
    todo = [s for s in statements if getattr(s, "name", None) not in defined]
    while todo:
        for node in ast.walk(todo.pop()):
            if isinstance(node, ast.Name) and node.id in defined and node.id not in used:
                used.add(node.id)
                todo.append(defined[node.id])
    return [s for s in statements if getattr(s, "name", None) not in defined or s.name in used]


def run_definitions(chapter: int, source: str | None = None,
                    read: Callable[[Path], bytes] | None = None) -> dict[str, bytes]:
    """What can change chapter ``chapter``'s numbers, by definition: ``"module:name"`` -> fingerprint.

    Starting from the names the chapter's code cells import from ``papers30``,
    follow every name a reached definition uses (through imports, re-exports
    and ``module.attribute``) to the functions, classes and assignments it
    resolves to, and keep each one's syntax tree without validation (as
    :func:`code_fingerprint` does). A module used as a value rather than
    through an attribute counts whole. A reached module's other top-level
    statements count too (key ``"module:"``), and so do the data assets
    (key ``"assets/NAME"``) that a string in that code or in the chapter names,
    when the chapter uses ``papers30.data``.
    Definitions in the :data:`PRESENTATION` modules are followed, not kept.
    The chapter's own statements that can change a number (key
    ``"papers30.<chapter>:"``; see :func:`_numerical`) are kept too: a literal
    in a training call, a list of seeds, a helper the chapter defines, but not
    a caption, a figure or a ledger entry.
    A function or class no run of the chapter can reach (added for another
    chapter, say) does not count, so editing it leaves a recorded run current.
    ``read`` reads a file (default: from disk; ``tools/restamp.py`` reads a commit).
    """
    read = read or _read
    text = source if source is not None else read(chapter_source(chapter)).decode("utf-8")
    scopes: dict[str, _Scope | None] = {}

    def scope(module: str) -> _Scope | None:
        if module not in scopes:
            path = _module_file(module)
            scopes[module] = None if path is None else _Scope(module, read(path), path.name == "__init__.py")
        return scopes[module]

    kept: dict[str, bytes] = {}
    todo: list[tuple[str, str | None]] = []
    done: set[tuple[str, str | None]] = set()
    chapter_scope = scopes[_CHAPTER] = _Scope(_CHAPTER, _chapter_code(text), False)

    def resolve(module: str, name: str, hops: int = 0) -> tuple[str, str | None] | None:
        """Where ``name`` as seen from ``module`` is defined: ``(module, name)``, or ``(module, None)``."""
        sc = scope(module)
        if sc is None or hops > 20:
            return None
        if name in sc.defs:
            return (module, name)
        if name in sc.aliases:
            target, attr = sc.aliases[name]
            return (target, None) if attr is None else attribute(target, attr, hops + 1)
        return None

    def attribute(module: str, attr: str, hops: int = 0) -> tuple[str, str | None] | None:
        sc = scope(module)
        if (sc is None or (attr not in sc.defs and attr not in sc.aliases)) \
                and _module_file(f"{module}.{attr}") is not None:
            return (f"{module}.{attr}", None)  # a submodule, unless the package binds the name itself
        return resolve(module, attr, hops)

    def uses(module: str, nodes: list[ast.stmt]) -> None:
        parents: dict[ast.AST, ast.AST] = {}
        for root in nodes:
            for node in ast.walk(root):
                for child in ast.iter_child_nodes(node):
                    parents[child] = node
        for root in nodes:
            for node in ast.walk(root):
                if not isinstance(node, ast.Name):
                    continue
                target = resolve(module, node.id)
                at: ast.AST = node
                while target is not None and target[1] is None and isinstance(parents.get(at), ast.Attribute):
                    at = parents[at]
                    target = attribute(target[0], at.attr)
                if target is not None:
                    todo.append(target)

    uses(_CHAPTER, chapter_scope.rest + [stmt for stmts in chapter_scope.defs.values() for stmt in stmts])
    for module, attr in chapter_scope.aliases.values():  # every function or class imported by name counts
        target = attribute(module, attr) if attr is not None else None
        if target is not None and target[1] is not None:
            todo.append(target)
    while todo:
        item = todo.pop()
        if item in done:
            continue
        done.add(item)
        module, name = item
        sc = scope(module)
        if sc is None:
            continue
        if name is not None and name not in sc.defs:
            target = resolve(module, name)
            if target is not None:
                todo.append(target)
            continue
        path = _module_file(module)
        presentation = module == _CHAPTER or (path is not None and path.parent == PACKAGE and path.name in PRESENTATION)
        if (module, "") not in done:  # the module's other statements, once
            done.add((module, ""))
            uses(module, sc.rest)
            if not presentation and sc.rest:
                kept[f"{module}:"] = ast.dump(ast.Module(body=sc.rest, type_ignores=[])).encode()
        for def_name in ([name] if name is not None else list(sc.defs)):
            stmts = sc.defs[def_name]
            uses(module, stmts)
            if not presentation:
                kept[f"{module}:{def_name}"] = ast.dump(ast.Module(body=stmts, type_ignores=[])).encode()
    shown: set[str] = set()  # the chapter's names for presentation functions and modules
    for local, (module, attr) in chapter_scope.aliases.items():
        target = (module, None) if attr is None else attribute(module, attr)
        path = None if target is None else _module_file(target[0])
        if path is not None and path.parent == PACKAGE and path.name in PRESENTATION and target[1] not in _RUNS:
            shown.add(local)
    statements = _chapter_statements(text, shown)
    if statements:
        kept[f"{_CHAPTER}:"] = ast.dump(ast.Module(body=statements, type_ignores=[])).encode()
    if any(m == "papers30.data" or m.startswith("papers30.data.") for m, _ in done):
        code = text + "".join(v.decode(errors="replace") for v in kept.values())
        for f in sorted((PACKAGE / "data" / "assets").glob("*")):
            if _names_asset(code, f.name):
                kept[f"assets/{f.name}"] = read(f)
    return kept


def _names_asset(code: str, filename: str) -> bool:
    """Whether ``code`` (the chapter's source and the syntax trees it reaches) names the data asset
    ``filename`` in a string: its stem (``"cifar10"`` of ``cifar10.npz.xz``) begins a quoted string,
    as a loader's key or file name does. An asset no reachable string names (a new data set, the
    provenance notes in ``SOURCES.md``) cannot be read by the chapter, so it leaves its runs current."""
    stem = filename.split(".")[0]
    return any(f"{quote}{stem}" in code for quote in ("'", '"'))


def run_hash(chapter: int, source: str | None = None, read: Callable[[Path], bytes] | None = None) -> str:
    """16 hex digits over :func:`run_definitions` and the chapter's declared criteria; a recorded run
    made with a different hash is stale (its numbers may no longer follow from the code). ``read``
    reads a file (default: from disk; ``tools/restamp.py`` reads a commit)."""
    h = hashlib.sha256()
    for key, fingerprint in sorted(run_definitions(chapter, source, read).items()):
        h.update(key.encode() + b"\0")
        h.update(hashlib.sha256(fingerprint).digest())
    # A recorded run's own expectation enters only where it differs from the build's, so that
    # declaring it left the hashes of runs made before the field existed unchanged.
    criteria = [{k: getattr(d, k) for k in CRITERION_FIELDS}
                | ({"recorded_expected": d.recorded_expected} if d.recorded_expected != d.expected else {})
                for d in declarations(chapter)]
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
    settings: list[Any] | None = None  # what each pick() of the chapter returned; None in older runs

    def __post_init__(self) -> None:
        _checks.dataclass_fields(self)

    def settings_changed(self, picked: list[dict[str, Any]] | None = None) -> bool | None:
        """Whether the chapter's :func:`~papers30.runtime.pick` settings for this run's scale differ
        from those it was made with; ``None`` when the run stored none or no ``pick`` has run.

        ``picked`` defaults to :data:`PICKED`, the calls made so far in this
        process (a chapter's page calls :func:`show_recorded` after its ``pick``); only the calls
        made so far are compared.
        """
        picked = PICKED if picked is None else picked
        if self.settings is None or not picked:
            return None
        now = [_canonical(entry[self.scale]) for entry in picked]
        return len(now) > len(self.settings) or now != [_canonical(v) for v in self.settings[:len(now)]]

    @property
    def stale(self) -> bool:
        """Whether the chapter's numerical code or declared criteria changed since the run was recorded.

        ``chapter_hash`` holds the :func:`run_hash` the run was recorded with.
        """
        return self.chapter_hash != run_hash(self.chapter)

    def ledger_records(self) -> list[_ledger.Record]:
        """The run's ledger records, shown as the ledger shows them today: to the significant digits
        the record's declaration gives now (those it was stored with when it is no longer declared)."""
        declared = {d.id: d.digits for d in declarations(self.chapter)}
        records = []
        for r in self.records:
            digits = declared.get(r["id"], r.get("digits", 3))
            records.append(_ledger.Record(**{**r, "digits": digits, "shown": _ledger._value(r["mean"], digits)}))
        return records


#: Every :func:`papers30.runtime.pick` call of this process, in order: the value it returns at each
#: larger scale (``{"large": ..., "paper": ...}``), whichever scale runs.
PICKED: list[dict[str, Any]] = []
PICKED_FILE = "picked.json"  # written beside the traces while ``make reproduce`` runs


def remember_pick(large: Any, paper: Any, chosen: str) -> None:
    """Note one :func:`~papers30.runtime.pick` call: its ``large`` and ``paper`` values and the scale in use.

    While a recorded run is being made (``PAPERS30_TRACE_DIR`` set), also write the values picked so
    far at that scale to :data:`PICKED_FILE` there; ``make reproduce`` stores them with the run.
    Called only by ``pick``; it changes no number, so run hashes leave the call out.
    """
    _checks.one_of("chosen", chosen, ("small", "large", "paper"))
    PICKED.append({"large": large, "paper": paper})
    where = os.environ.get(TRACE_ENV, "").strip()
    if where and chosen != "small":
        path = Path(where) / PICKED_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([entry[chosen] for entry in PICKED], default=repr))


def _canonical(value: Any) -> str:
    """A setting as canonical JSON (tuples as lists, keys sorted), for comparing settings across runs."""
    return json.dumps(value, sort_keys=True, default=repr)


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


def recorded_glance(chapter: int, directory: Path | None = None,
                    picked: list[dict[str, Any]] | None = None) -> str:
    """One paragraph for the At-a-glance box: the recorded run's headline against its control and
    its verdict, or ``""`` when no run is stored. A stale run is called stale (see
    :func:`show_recorded`), so the box never presents an out-of-date run as current."""
    run = recorded_run(chapter, directory)
    head = None if run is None else next((r for r in run.ledger_records() if r.headline), None)
    if head is None:
        return ""
    state = ("stale: the code or settings changed after it was made"
             if run.stale or run.settings_changed(picked) else "current")
    return (f"**Recorded larger run.** At scale `{run.scale}` (`{run.command}`, {run.date}, {state}): "
            f"{head.seeds_text()} against the control's {head.shown_control}; the headline {_ledger._verdict_md(head)}. "
            "Its full record is in the section on the larger run.")


def show_recorded(chapter: int, directory: Path | None = None,
                  picked: list[dict[str, Any]] | None = None) -> "_ledger.Markdown":
    """Markdown describing chapter ``chapter``'s recorded run, labelled as recorded: its headline, then
    every other record of the run with its verdict.

    The run is marked stale when the chapter's numerical code or criteria changed since it was
    made (:attr:`RecordedRun.stale`) or when its ``pick`` settings did
    (:meth:`RecordedRun.settings_changed` with ``picked``, default this process's calls).
    """
    run = recorded_run(chapter, directory)
    if run is None:
        return _ledger.Markdown(f"No recorded larger run is stored for chapter {chapter} "
                                f"(`make reproduce CH={chapter}` makes one).")
    records = run.ledger_records()
    head = next((r for r in records if r.headline), None)
    changed = run.settings_changed(picked)
    if run.stale:
        state = ("**stale**: the chapter's numerical code or declared criteria changed after this run was "
                 f"recorded (recorded with hash `{run.chapter_hash}`, now `{run_hash(chapter)}`); "
                 f"rerun `make reproduce CH={chapter}`")
    elif changed:
        state = (f"**stale**: the chapter's `pick` settings for scale `{run.scale}` differ from those this "
                 f"run was made with; rerun `make reproduce CH={chapter}`")
    else:
        state = ("current: the chapter's numerical code and declared criteria are unchanged since it was "
                 f"recorded (hash `{run.chapter_hash}`)")
        if changed is False:
            state += ", and so are its `pick` settings"
        elif run.settings is None:
            state += "; its `pick` settings were not stored with it, so a change to them would not show here"
    lines = [
        f"**Recorded run, not executed by this build.** Scale `{run.scale}`, made with `{run.command}` "
        f"on {run.date} at commit `{run.commit}`, on {run.device} with {run.threads} thread(s), "
        f"in {run.wall_seconds / 60:.1f} minutes. It is {state}.",
    ]
    if head is not None:
        lines += ["", f"Headline *{head.id}*: {head.seeds_text()} against the control's "
                      f"{head.shown_control} ({head.control_label}); criterion {head.criterion}: "
                      f"**{head.result}**."]
    others = [r for r in records if not r.headline]
    if others:
        claims = [r for r in records if r.kind == "claim"]
        checks = [r for r in records if r.kind == "check"]
        lines += ["", f"All records of this run: {sum(r.held for r in claims)} of {len(claims)} claims held, "
                      f"{sum(r.held for r in checks)} of {len(checks)} checks passed. The others:", ""]
        for r in others:
            control = "" if r.control is None else f" against the control's {r.shown_control}"
            declared = " (**not declared** in `papers.toml`: a defect to fix)" if not r.held and r.expected else ""
            lines.append(f"- *{r.id}* ({r.kind}): {r.seeds_text()}{control}; criterion {r.criterion}: "
                         f"**{r.result}**{declared}.")
    return _ledger.Markdown("\n".join(lines))
