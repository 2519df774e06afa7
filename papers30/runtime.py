"""Where and how experiments run: device, seeding and the scale setting.

Every chapter calls :func:`seed_everything` once and :func:`get_device` to place
its tensors, and chooses its experiment size with :func:`pick`, which reads the
``PAPERS30_SCALE`` environment variable (``small``, the default, fits a 2-core
CPU inside the chapter budget; ``paper`` runs the same code closer to the
paper's setting, meant for a GPU).

Seeds. A chapter names its seeds as small integers (``seed_everything(10)``,
``seeds(3)``, ``generator(7)``); ``PAPERS30_SEED`` (an integer, default 0) is
added to every one of them, so ``PAPERS30_SEED=100 make book`` reruns the whole
book on other seeds without editing a chapter. Results must not depend on the
default.
"""

from __future__ import annotations

import os
import random
from typing import TypeVar

import numpy as np
import torch

from papers30 import _checks
from papers30 import provenance as _provenance

SCALES = ("small", "large", "paper")
T = TypeVar("T")


def get_device(prefer: str | torch.device | None = None) -> torch.device:
    """Return CUDA when it is available, else the CPU.

    ``prefer`` (or the ``PAPERS30_DEVICE`` environment variable) forces a
    device, e.g. ``"cpu"`` on a GPU machine.
    """
    if isinstance(prefer, torch.device):
        prefer = str(prefer)
    choice = prefer or os.environ.get("PAPERS30_DEVICE", "").strip()
    if choice:
        where = "prefer" if prefer else "PAPERS30_DEVICE"
        if not isinstance(choice, str):
            raise TypeError(f"prefer must be a str, got {type(choice).__name__}")
        try:
            device = torch.device(choice)
        except RuntimeError:
            raise ValueError(f"{where} must be 'cpu' or 'cuda' (optionally 'cuda:N'), got {choice!r}") from None
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"{where} must be 'cpu' or 'cuda' (optionally 'cuda:N'), got {choice!r}")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"{where} asks for {choice!r}, but no CUDA GPU is available here")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_offset() -> int:
    """The shift ``PAPERS30_SEED`` adds to every seed (0 when unset)."""
    value = os.environ.get("PAPERS30_SEED", "").strip()
    if not value:
        return 0
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"PAPERS30_SEED must be an integer, got {value!r}") from None


def _seed(name: str, seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"{name} must be an int, got {type(seed).__name__}")
    return seed + seed_offset()


def seeds(n: int = 3, start: int = 0) -> list[int]:
    """``n`` consecutive seed names from ``start``: ``seeds(3) == [0, 1, 2]``.

    Pass each to :func:`seed_everything` or :func:`generator`, which add the
    ``PAPERS30_SEED`` shift; the ledger records the shifted values.
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if isinstance(start, bool) or not isinstance(start, int):
        raise TypeError(f"start must be an int, got {type(start).__name__}")
    return list(range(start, start + n))


def actual_seed(seed: int) -> int:
    """The seed really used for the seed name ``seed``: ``seed + PAPERS30_SEED``."""
    return _seed("seed", seed)


def generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch generator on ``device`` seeded with ``seed + PAPERS30_SEED``."""
    return torch.Generator(device).manual_seed(_seed("seed", seed))


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA) with ``seed + PAPERS30_SEED``.

    Returns a CPU generator seeded the same way. Also turns on deterministic
    algorithms where torch has them, so the same build twice gives the same
    numbers.
    """
    seed = _seed("seed", seed)
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
    """The experiment size from ``PAPERS30_SCALE``: ``"small"`` (default), ``"large"`` or ``"paper"``.

    ``small`` fits the chapter budget on two CPU cores; ``large`` is the
    longer CPU run of a recorded larger run (``make reproduce`` without a
    GPU); ``paper`` is the setting closest to the paper, for a GPU.
    """
    value = os.environ.get("PAPERS30_SCALE", "small").strip().lower() or "small"
    if value not in SCALES:
        raise ValueError(f"PAPERS30_SCALE must be one of {SCALES}, got {value!r}")
    return value


def pick(small: T, paper: T, large: T | None = None) -> T:
    """Return ``small``, ``large`` or ``paper`` according to :func:`scale`.

    A chapter without a ``large`` setting runs its ``paper`` one at ``large``.
    Each call is remembered (:func:`papers30.provenance.remember_pick`), so
    that a recorded run keeps the settings it was made with and a chapter's
    page can tell when they have changed since.
    """
    _checks.same_kind("paper", paper, small)
    if large is not None:
        _checks.same_kind("large", large, small)
    chosen = scale()
    _provenance.remember_pick(paper if large is None else large, paper, chosen)  # bookkeeping only
    if chosen == "small":
        return small
    if chosen == "large" and large is not None:
        return large
    return paper


def wait_until_alone(timeout: float = 900.0) -> float:
    """Wait until no other chapter of a book build is running; return the seconds waited.

    A chapter that times real parallel work needs every core to itself. The
    book's executor (``book/_ext/execute.py``) starts such a chapter while the
    last other chapters finish, sets ``PAPERS30_ALONE_FLAG`` to the path of a
    file, and creates that file once they have; call this just before the
    timing. Outside the build (the variable unset) it returns 0 at once.
    Raises ``TimeoutError`` if the file has not appeared after ``timeout`` seconds.
    """
    import time

    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, got {type(timeout).__name__}")
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    flag = os.environ.get("PAPERS30_ALONE_FLAG", "").strip()
    start = time.monotonic()
    while flag and not os.path.exists(flag):
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"no other chapter should be running after {timeout} s, but {flag} does not exist")
        time.sleep(0.1)
    return time.monotonic() - start
