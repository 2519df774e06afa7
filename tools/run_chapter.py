#!/usr/bin/env python3
"""Execute one chapter as the book build does, and report its time, errors and ledger.

Usage: python tools/run_chapter.py NN [--threads 1] [--scale small] [--seed 0] [--out DIR]

For chapter authors: runs ``book/partN/NN_slug.md`` in a fresh kernel with
``PAPERS30_THREADS`` threads (default 1, as in the build), writes the executed
notebook to ``<out>/chNN.ipynb`` and the ledger to ``<out>/ledger/chNN.json``
(default ``_build/run``), and prints the wall time, the first error if any,
and every ledger record with its seeds, control and verdict. Exit status 1
when the chapter raises.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_in_fresh_kernel(nb, workdir: Path, env: dict[str, str], timeout: int | None = 600):
    """Execute notebook ``nb`` in place in a fresh kernel from ``workdir`` with ``env`` added.

    Returns (seconds, error or None, cpu seconds). The CPU seconds are the
    kernel's own (user + system): on a busy machine the wall time grows while
    the CPU time stays what the notebook costs alone.
    """
    import resource

    from nbclient import NotebookClient

    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    error = None
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(workdir)}}).execute()
    except Exception as err:  # noqa: BLE001 - reported, not hidden
        error = f"{type(err).__name__}: {err}"
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return seconds, error, cpu


def execute(chapter: int, out: Path, env: dict[str, str], timeout: int | None = 600):
    """Execute chapter ``chapter`` with ``env`` added; return (notebook, seconds, error or None, cpu seconds)."""
    import nbformat
    from myst_nb.core.read import read_myst_markdown_notebook

    from papers30.provenance import chapter_source

    path = chapter_source(chapter)
    nb = read_myst_markdown_notebook(path.read_text("utf8"), path=str(path))
    seconds, error, cpu = run_in_fresh_kernel(nb, path.parent, env, timeout)
    out.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out / f"ch{chapter:02d}.ipynb")
    return nb, seconds, error, cpu


def summary(ledger_file: Path) -> str:
    if not ledger_file.exists():
        return "  (no ledger file written)"
    lines = []
    for r in json.loads(ledger_file.read_text()):
        vals = ", ".join(f"{v:.4g}" for v in r["values"])
        control = "—" if r["control"] is None else f"{r['control']:.4g}"
        head = " HEADLINE" if r["headline"] else ""
        lines.append(f"  {r['kind']:5} {r['id']}{head}: [{vals}] control {control} "
                     f"criterion {r['criterion']} -> {'held' if r['held'] else 'MISSED'}"
                     f"{'' if r['expected'] else ' (declared miss)'}")
    return "\n".join(lines) or "  (no records)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapter", type=int)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scale", default="small")
    parser.add_argument("--seed", type=int, default=0, help="PAPERS30_SEED, the shift added to every seed")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "run")
    args = parser.parse_args()
    ledger_dir = args.out / "ledger"
    env = {"PAPERS30_THREADS": str(args.threads), "PAPERS30_SCALE": args.scale,
           "PAPERS30_SEED": str(args.seed), "PAPERS30_LEDGER_DIR": str(ledger_dir),
           "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": os.pathsep.join(
               p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    nb, seconds, error, cpu = execute(args.chapter, args.out, env)
    print(f"chapter {args.chapter}: {seconds:.1f} s wall, {cpu:.1f} s CPU (the kernel's; what the 90 s budget "
          f"means on an idle core) with {args.threads} thread(s), scale {args.scale}, seed shift {args.seed}")
    if error:
        print(f"ERROR: {error[:3000]}")
    print(summary(ledger_dir / f"ch{args.chapter:02d}.json"))
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main())
