#!/usr/bin/env python3
"""Run every reader notebook (``notebooks/NN_slug.ipynb``) top to bottom in a fresh kernel, and time it.

Usage: python tools/run_notebooks.py [--threads 1] [--only NN ...] [--out _build/notebooks-run.json]

This is what a reader who opens the Colab or Binder button and presses "Run
all" gets: each notebook runs in its own fresh kernel from the ``notebooks/``
folder, with ``PAPERS30_THREADS`` threads. For each notebook the tool prints
the wall time, the kernel's CPU seconds (user + system; on a busy machine
the wall time grows while the CPU time stays what the notebook costs alone)
and the first error, and writes them with the total to a JSON file. Exit
status 1 when any notebook raises.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from machine import cores, cpu_name  # noqa: E402
from run_chapter import run_in_fresh_kernel  # noqa: E402


def run(path: Path, threads: int, timeout: int) -> dict:
    """Execute one notebook in a fresh kernel; return its wall and CPU seconds and first error."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    env = {"PAPERS30_THREADS": str(threads), "OMP_NUM_THREADS": str(threads), "MPLBACKEND": "Agg"}
    seconds, error, cpu = run_in_fresh_kernel(nb, path.parent, env, timeout)
    if error is not None:
        error = error[-400:]
    return {"notebook": path.name, "wall_seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "error": error}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", type=int, nargs="*", help="chapter numbers to run (default: all)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "notebooks-run.json")
    args = parser.parse_args()
    paths = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        paths = [p for p in paths if int(p.name[:2]) in args.only]
    rows = []
    for path in paths:
        row = run(path, args.threads, args.timeout)
        rows.append(row)
        print(f"{row['notebook']:40} {row['wall_seconds']:7.1f} s wall {row['cpu_seconds']:7.1f} s CPU"
              f"{'  ERROR ' + row['error'] if row['error'] else ''}", flush=True)
    total = {"wall_seconds": round(sum(r["wall_seconds"] for r in rows), 1),
             "cpu_seconds": round(sum(r["cpu_seconds"] for r in rows), 1)}
    print(f"{len(rows)} notebooks: {total['wall_seconds']} s wall, {total['cpu_seconds']} s CPU, "
          f"{sum(r['error'] is not None for r in rows)} failed")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": f"{cpu_name()}, {cores()} cores", "threads": args.threads,
                                    "load_average": os.getloadavg()[0], "rows": rows, "total": total}, indent=1))
    return 1 if any(r["error"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
