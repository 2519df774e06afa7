"""Argument validation shared by the package's public functions.

Each helper raises ``TypeError`` or ``ValueError`` with a message that starts
with the argument's name, so a reader sees at once which input was wrong.
Internal helpers trust their callers and do not validate.
"""

from __future__ import annotations

from collections import abc
from collections.abc import Sequence
from typing import Any, Callable, TypeVar

import numpy as np
import torch

F = TypeVar("F", bound=Callable[..., Any])


def tensor(
    name: str,
    x: object,
    *,
    ndim: int | Sequence[int] | None = None,
    kind: str | None = None,
) -> torch.Tensor:
    """Check that ``x`` is a tensor with ``ndim`` dimensions of dtype ``kind``.

    ``kind`` is one of ``"float"``, ``"int"`` (any integer dtype), ``"bool"``
    or ``None`` (any dtype). Returns ``x`` so calls can be chained.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.dim() not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(f"{name} must have {want} dimensions, got shape {tuple(x.shape)}")
    if kind == "float" and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if kind == "int" and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        raise TypeError(f"{name} must be an integer tensor, got {x.dtype}")
    if kind == "bool" and x.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor, got {x.dtype}")
    return x


def size_matches(name: str, got: int, want: int, what: str) -> None:
    """Raise ``ValueError`` when ``got != want``; ``what`` says which size."""
    if got != want:
        raise ValueError(f"{name} has {what} {got}, expected {want}")


def positive_int(name: str, value: object) -> int:
    """Check that ``value`` is an ``int`` (not a bool) greater than zero."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def probability(name: str, value: object, *, inclusive_one: bool = False) -> float:
    """Check that ``value`` is a real number in ``[0, 1)`` (or ``[0, 1]``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    upper_ok = value <= 1.0 if inclusive_one else value < 1.0
    if not (value >= 0.0 and upper_ok):
        bound = "1]" if inclusive_one else "1)"
        raise ValueError(f"{name} must be in [0, {bound}, got {value}")
    return float(value)


def one_of(name: str, value: object, options: Sequence[str]) -> str:
    """Check that ``value`` is a ``str`` and one of ``options``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}")
    return value


def _matches(value: object, hint: object) -> bool:
    """Whether ``value`` fits the type hint ``hint`` (the common hints; anything else is accepted)."""
    import types
    import typing

    origin = typing.get_origin(hint)
    if hint is typing.Any or isinstance(hint, typing.TypeVar):
        return True
    if hint is type(None) or hint is None:
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, set, frozenset, dict):
        if not isinstance(value, origin):
            return False
        args = typing.get_args(hint)
        if origin is dict:
            return not args or all(_matches(k, args[0]) and _matches(v, args[1]) for k, v in value.items())
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_matches(v, h) for v, h in zip(value, args))
        return not args or all(_matches(v, args[0]) for v in value)
    if isinstance(origin, type) and origin.__module__ == "collections.abc":
        if origin is abc.Sequence:
            return isinstance(value, (abc.Sequence, torch.Tensor, np.ndarray))
        return isinstance(value, origin)
    if isinstance(hint, type):
        if hint is abc.Sequence:
            return isinstance(value, (abc.Sequence, torch.Tensor, np.ndarray))
        return isinstance(value, hint)
    return True


def _hint_name(hint: object) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "").replace("collections.abc.", "")


def typed(fn: F) -> F:
    """Decorator: check each argument's top-level type against ``fn``'s annotations.

    Containers are checked by kind only (a ``dict`` argument must be a mapping,
    a ``Sequence`` a sequence, tensor or array), not element by element, so the
    check costs microseconds. Raises ``TypeError`` naming the argument.
    """
    import functools
    import inspect
    import typing

    signature = inspect.signature(fn)
    hints: dict[str, object] | None = None

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        nonlocal hints
        if hints is None:
            try:
                hints = typing.get_type_hints(fn)
            except Exception:  # noqa: BLE001 - an annotation that cannot be resolved is not checked
                hints = {}
        bound = signature.bind(*args, **kwargs)
        for name, value in bound.arguments.items():
            hint = hints.get(name)
            kind = signature.parameters[name].kind
            if hint is None or kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                continue
            if not _matches_shallow(value, hint):
                raise TypeError(f"{name} must be {_hint_name(hint)}, got {type(value).__name__} {value!r:.60}")
        return fn(*args, **kwargs)

    return typing.cast(F, wrapper)


def _matches_shallow(value: object, hint: object) -> bool:
    """Like ``_matches`` but without looking inside containers."""
    import types
    import typing

    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches_shallow(value, h) for h in typing.get_args(hint))
    if origin in (list, tuple, set, frozenset):
        return isinstance(value, (abc.Sequence, abc.Set, torch.Tensor, np.ndarray)) and not isinstance(value, str)
    if origin is dict:
        return isinstance(value, abc.Mapping)
    if origin is abc.Callable or hint is abc.Callable:
        return callable(value)
    if origin is not None and not (isinstance(origin, type) and origin.__module__ == "collections.abc"):
        return True
    return _matches(value, hint if origin is None else origin)


def record(base: type) -> type:
    """Class decorator for a ``NamedTuple``: the returned subclass checks each field's top-level type
    against its annotation when constructed, raising ``TypeError`` naming the field."""
    import typing

    fields = base._fields  # type: ignore[attr-defined]
    cache: dict[str, object] = {}

    class Checked(base):  # type: ignore[misc, valid-type]
        __slots__ = ()

        def __new__(cls, *args, **kwargs):
            obj = super().__new__(cls, *args, **kwargs)
            if "hints" not in cache:
                try:
                    cache["hints"] = typing.get_type_hints(base)
                except Exception:  # noqa: BLE001 - unresolvable annotations are not checked
                    cache["hints"] = {}
            hints = cache["hints"]
            for name in fields:
                value, hint = getattr(obj, name), hints.get(name)
                if hint is not None and not _matches_shallow(value, hint):
                    raise TypeError(f"{name} must be {_hint_name(hint)}, got {type(value).__name__} {value!r:.60}")
            return obj

    for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
        setattr(Checked, attr, getattr(base, attr))
    return Checked


def same_kind(name: str, value: object, like: object) -> None:
    """Raise ``TypeError`` unless ``value`` has the type of ``like`` (any two numbers count as alike)."""
    numbers = (int, float)
    same = isinstance(value, type(like)) or isinstance(like, type(value))
    if not same and not (isinstance(value, numbers) and isinstance(like, numbers)):
        raise TypeError(f"{name} must be of the same type as {type(like).__name__}, got {type(value).__name__}")


def nonempty(name: str, value: object) -> None:
    """Raise ``ValueError`` when the sequence ``value`` is empty."""
    if len(value) == 0:  # type: ignore[arg-type]
        raise ValueError(f"{name} must not be empty")


def dataclass_fields(obj: object, deep: bool = True) -> None:
    """Check every field of a dataclass instance against its annotation (call it in ``__post_init__``).

    Raises ``TypeError`` naming the field, what it got and what it expected,
    so a wrong value fails where it is made, not later. ``deep=False`` checks
    containers by kind only, as :func:`typed` does, for records made at every
    training step (a batch), where looking at each element would cost more
    than the step's arithmetic.
    """
    import dataclasses
    import typing

    kind = type(obj)
    hints = _DATACLASS_HINTS.get(kind)
    if hints is None:
        hints = _DATACLASS_HINTS[kind] = typing.get_type_hints(kind)
    fits = _matches if deep else _matches_shallow
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        hint = hints.get(f.name)
        if hint is not None and not fits(value, hint):
            name = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
            raise TypeError(f"{f.name} must be {name}, got {type(value).__name__} {value!r:.60}")


_DATACLASS_HINTS: dict[type, dict[str, object]] = {}  # resolved annotations, per dataclass
