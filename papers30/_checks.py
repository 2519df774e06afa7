"""Argument validation shared by the package's public functions.

Each helper raises ``TypeError`` or ``ValueError`` with a message that starts
with the argument's name, so a reader sees at once which input was wrong.
Internal helpers trust their callers and do not validate.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


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
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def dataclass_fields(obj: object) -> None:
    """Check every field of a dataclass instance against its annotation (call it in ``__post_init__``).

    Raises ``TypeError`` naming the field, what it got and what it expected,
    so a wrong value fails where it is made, not later.
    """
    import dataclasses
    import typing

    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        hint = hints.get(f.name)
        if hint is not None and not _matches(value, hint):
            name = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
            raise TypeError(f"{f.name} must be {name}, got {type(value).__name__} {value!r:.60}")
