"""Record valid calls of the public API during the test run, then replay them with one argument made wrong.

How the public API is found, with no hand-kept list: every function and class
defined in a ``papers30`` module under a public name (no leading underscore).
How valid arguments are found: the package's own tests call every public
function and class; :func:`install` (run by ``conftest.py`` before the tests
are collected) wraps each of them so that the first successful call is kept
(arguments deep-copied before the call; for ``nn.Module`` subclasses also the
first ``forward`` call, with a copy of the module). ``tests/test_fuzz.py``,
which runs last, replays each kept call with one argument at a time replaced
by a wrong value and asserts that the outcome is a ``ValueError`` or
``TypeError`` (or a result, where the wrong value may be legitimate), never
another exception or a hang. A public callable that no test calls is itself
a failure: it has no test against a reference either.
"""

from __future__ import annotations

import copy
import enum
import functools
import importlib
import inspect
import math
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

RECORDED: dict[str, "Call"] = {}
API: dict[str, Any] = {}
SKIP_MODULES = ("papers30._checks",)  # the validators themselves; tested by hand in test_checks.py


@dataclass
class Call:
    """A recorded successful call: ``target`` is a function, a class (its constructor) or a bound forward."""

    name: str
    target: Callable[..., Any]
    args: tuple
    kwargs: dict
    module: nn.Module | None = None  # for forward calls: a copy of the module, called as module(*args)
    extra: dict = field(default_factory=dict)


def _copy(x: Any) -> Any:
    """A deep copy; tensors inside autograd graphs (which refuse deepcopy) are copied detached."""
    if isinstance(x, torch.Tensor) and not x.is_leaf:
        return x.detach().clone()
    if isinstance(x, (list, tuple)) and not hasattr(x, "_fields"):
        return type(x)(_copy(v) for v in x)
    if isinstance(x, dict):
        return {k: _copy(v) for k, v in x.items()}
    return copy.deepcopy(x)  # an object that cannot be copied (a live Pipeline) leaves the call unrecorded


def public_api() -> dict[str, Any]:
    """``{"module.name": object}`` for every public function and class defined in papers30."""
    import papers30

    if API:
        return API
    for info in pkgutil.walk_packages(papers30.__path__, "papers30."):
        if info.name in SKIP_MODULES:
            continue
        module = importlib.import_module(info.name)
        for key, obj in vars(module).items():
            if key.startswith("_") or getattr(obj, "__module__", None) != info.name:
                continue
            if inspect.isclass(obj) and (issubclass(obj, (BaseException, enum.Enum))):
                continue
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and key == getattr(obj, "__name__", key):
                API[f"{info.name}.{key}"] = obj  # an alias (Set2Set = ProcessBlock) is the same callable
    return API


def _too_big(args: tuple, kwargs: dict) -> bool:
    total = 0
    for v in [*args, *kwargs.values()]:
        if isinstance(v, torch.Tensor):
            total += v.numel()
    return total > 2_000_000


def _record(name: str, make: Callable[[], Call], args: tuple, kwargs: dict) -> tuple[bool, Call | None]:
    if name in RECORDED or _too_big(args, kwargs):
        return False, None
    try:
        return True, make()
    except Exception:  # noqa: BLE001 - an argument that cannot be copied is simply not recorded
        return False, None


def _wrap_function(name: str, fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        keep, call = _record(name, lambda: Call(name, fn, _copy(args), _copy(kwargs)), args, kwargs)
        result = fn(*args, **kwargs)
        if keep and name not in RECORDED:
            RECORDED[name] = call
        return result

    wrapper.__papers30_fuzz__ = fn
    return wrapper


def _wrap_class(name: str, cls: type) -> None:
    if cls.__init__ is object.__init__:  # a class built in __new__ (NamedTuple and the like)
        new = cls.__new__

        def __new__(klass, *args, **kwargs):
            own = klass is cls
            keep, call = (_record(name, lambda: Call(name, cls, _copy(args), _copy(kwargs)), args, kwargs)
                          if own else (False, None))
            obj = new(klass, *args, **kwargs)
            if keep and name not in RECORDED:
                RECORDED[name] = call
            return obj

        cls.__new__ = __new__
        return
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        own = type(self) is cls
        keep, call = (_record(name, lambda: Call(name, cls, _copy(args), _copy(kwargs)), args, kwargs)
                      if own else (False, None))
        init(self, *args, **kwargs)
        if keep and name not in RECORDED:
            RECORDED[name] = call

    cls.__init__ = __init__
    if issubclass(cls, nn.Module) and "forward" in cls.__dict__:
        forward = cls.__dict__["forward"]
        fname = f"{name}.forward"

        @functools.wraps(forward)
        def fwd(self, *args, **kwargs):
            own = type(self) is cls
            keep, call = (_record(fname, lambda: Call(fname, forward, _copy(args), _copy(kwargs),
                                                       module=_copy(self)), args, kwargs)
                          if own else (False, None))
            result = forward(self, *args, **kwargs)
            if keep and fname not in RECORDED:
                RECORDED[fname] = call
            return result

        cls.forward = fwd


def install() -> None:
    """Wrap every public function (everywhere it is bound in papers30) and every public class, once."""
    import sys

    api = public_api()
    modules = [m for n, m in sys.modules.items() if n == "papers30" or n.startswith("papers30.")]
    for name, obj in api.items():
        if inspect.isclass(obj):
            if not obj.__dict__.get("__papers30_fuzz__", False):  # not inherited from a wrapped base
                _wrap_class(name, obj)
                obj.__papers30_fuzz__ = True
            continue
        wrapper = _wrap_function(name, obj)
        for module in modules:
            for key, value in list(vars(module).items()):
                if value is obj:
                    setattr(module, key, wrapper)
        api[name] = obj


# --- wrong values ---------------------------------------------------------------

@dataclass(frozen=True)
class Wrong:
    label: str
    value: Any
    must_raise: bool  # a result is a failure: the value cannot be a legitimate input


def wrong_values(original: Any) -> list[Wrong]:
    """The wrong values tried in place of ``original`` (chosen by its type)."""
    out: list[Wrong] = []
    if isinstance(original, bool):
        return [Wrong("a string", "not-a-bool", False)]
    if isinstance(original, torch.Tensor):
        out += [Wrong("a string", "not-a-tensor", True), Wrong("a list", [1.0, 2.0], False)]
        if original.dim() > 0:
            out += [Wrong("a 0-d tensor", torch.tensor(1.5), False),
                    Wrong("an extra dimension", original.unsqueeze(0).clone(), False)]
        if original.dtype != torch.bool:
            out.append(Wrong("a bool tensor", torch.zeros_like(original, dtype=torch.bool), False))
        if original.is_floating_point() and original.numel() > 0:
            nan = original.clone().contiguous()  # channels-last or transposed inputs too
            nan.view(-1)[0] = math.nan
            out.append(Wrong("a NaN entry", nan, False))
        return out
    if isinstance(original, int):
        return [Wrong("a string", "3", True), Wrong("a fraction", 2.5, False), Wrong("a negative size", -3, False),
                Wrong("None", None, False)]
    if isinstance(original, float):
        return [Wrong("a string", "0.5", True), Wrong("NaN", math.nan, False), Wrong("a list", [0.5], True)]
    if isinstance(original, str):
        return [Wrong("an unknown choice", "no-such-choice", False), Wrong("an int", 3, True)]
    if isinstance(original, (list, tuple)):
        return [Wrong("a string", "not-a-sequence", False), Wrong("an empty sequence", [] if isinstance(original, list) else (), False)]
    if isinstance(original, nn.Module):
        return [Wrong("a string", "not-a-module", True)]
    if original is None:
        return [Wrong("a string", "not-valid", False)]
    return [Wrong("a string", "not-valid", False)]
