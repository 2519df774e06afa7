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
