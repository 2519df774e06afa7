"""Peak memory of a process and all its descendants, sampled while they run (Linux).

The book's executor runs chapters in worker processes whose kernels are
forked from one server (``forkserver.py``); chapter 9's kernel starts stage
processes of its own. Each kernel's own peak is known exactly (``wait4``),
but the build's footprint is what they use *together*. Summing resident set
sizes would count each page that a forked kernel still shares with the
server (torch's libraries, the imported modules) once per process, so this
module sums the proportional set size (PSS, ``/proc/PID/smaps_rollup``): a
page shared by ``n`` processes counts ``1/n`` in each, so the sum is the
memory the tree occupies.

``PeakSampler(pid)`` samples that sum every ``interval`` seconds in a
thread; a peak shorter than the interval can be missed, so the figure is a
lower bound on the true peak, close to it for the book, whose kernels keep
the memory they have grown to until they exit. The default interval is 5 s
because reading ``smaps_rollup`` walks a process's page tables: about 13 ms
for a kernel of 850 MB, so sampling the build's ten or so processes every
0.5 s took about a tenth of a core, and the chapters ran about 4 % slower in
the build that sampled that often.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

PROC = Path("/proc")


def _parents() -> dict[int, int]:
    """pid -> parent pid for every process visible in /proc."""
    out = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        # Field 4 is the parent; field 2, the command, is in parentheses and may contain spaces.
        out[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, by parent links."""
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def pss_kb(pid: int) -> int:
    """Proportional set size of one process in kB (0 if it has exited or cannot be read)."""
    try:
        for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_pss_kb(pid: int) -> int:
    """PSS of ``pid`` and its descendants together, in kB."""
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise TypeError(f"pid must be an int, got {type(pid).__name__}")
    if pid <= 0:
        raise ValueError(f"pid must be positive, got {pid}")
    return sum(pss_kb(p) for p in descendants(pid))


def available() -> bool:
    """Whether this system exposes ``/proc/self/smaps_rollup`` (Linux 4.14 and later)."""
    return (PROC / "self" / "smaps_rollup").exists()


class PeakSampler:
    """Context manager: the largest :func:`tree_pss_kb` of ``pid`` seen every ``interval`` s.

    >>> with PeakSampler(os.getpid()) as s:
    ...     pass
    >>> s.peak_kb > 0
    True
    """

    def __init__(self, pid: int | None = None, interval: float = 5.0) -> None:
        if not (isinstance(interval, (int, float)) and not isinstance(interval, bool)) or not interval > 0:
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        self.pid = os.getpid() if pid is None else pid
        self.interval = float(interval)
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-memory", daemon=True)

    def _run(self) -> None:
        while True:
            self.peak_kb = max(self.peak_kb, tree_pss_kb(self.pid))
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, tree_pss_kb(self.pid))
