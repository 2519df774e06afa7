"""Where and how experiments run: device, seeding and the scale setting.

Every chapter calls :func:`seed_everything` once and :func:`get_device` to place
its tensors, and chooses its experiment size with :func:`pick`, which reads the
``PAPERS30_SCALE`` environment variable (``small``, the default, fits a 2-core
CPU inside the chapter budget; ``paper`` runs the same code closer to the
paper's setting, meant for a GPU).
"""

from __future__ import annotations

import os
import random
from typing import TypeVar

import numpy as np
import torch

SCALES = ("small", "paper")
T = TypeVar("T")


def get_device(prefer: str | None = None) -> torch.device:
    """Return CUDA when it is available, else the CPU.

    ``prefer`` (or the ``PAPERS30_DEVICE`` environment variable) forces a
    device, e.g. ``"cpu"`` on a GPU machine.
    """
    choice = prefer or os.environ.get("PAPERS30_DEVICE")
    if choice:
        return torch.device(choice)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a seeded CPU generator.

    Also turns on deterministic algorithms where torch has them, so the same
    build twice gives the same numbers.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)


def configure_threads() -> int:
    """Set torch's intra-op thread count from ``PAPERS30_THREADS``; return the count in use.

    Unset, torch keeps its default (one thread per core). The book's parallel
    executor sets it so that chapters running side by side share the cores.
    """
    value = os.environ.get("PAPERS30_THREADS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"PAPERS30_THREADS must be a positive integer, got {value!r}")
        torch.set_num_threads(int(value))
    return torch.get_num_threads()


def scale() -> str:
    """The experiment size from ``PAPERS30_SCALE``: ``"small"`` (default) or ``"paper"``."""
    value = os.environ.get("PAPERS30_SCALE", "small").strip().lower() or "small"
    if value not in SCALES:
        raise ValueError(f"PAPERS30_SCALE must be one of {SCALES}, got {value!r}")
    return value


def pick(small: T, paper: T) -> T:
    """Return ``small`` or ``paper`` according to :func:`scale`."""
    return paper if scale() == "paper" else small
