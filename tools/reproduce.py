#!/usr/bin/env python3
"""Make a chapter's recorded larger run: ``make reproduce CH=NN``.

Runs the chapter at ``PAPERS30_SCALE=paper`` on a GPU when there is one,
otherwise at ``PAPERS30_SCALE=large`` on every CPU core, and writes
``book/results/chNN.json``: the command, commit, the chapter's code hash,
device, threads, seeds and wall time, the ledger records the run produced,
and the first losses of every training run the chapter wraps in
``papers30.provenance.traced`` (the test suite replays them). The chapter's
page shows the stored run beside its small one, labelled as recorded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from machine import cores, cpu_name  # noqa: E402

# Chapters whose larger run reads an image set too large to commit, and the command that fills the
# local cache with it (downloading a pinned package from a registry); run only when it is missing.
CACHED_DATA = {7: ("cifar10_full", ["tools/data/make_cifar10.py", "--full"])}


def device_name() -> tuple[str, str]:
    import torch

    if torch.cuda.is_available():
        return "paper", f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    return "large", f"CPU: {cpu_name()}, {cores()} cores"


def commit() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "papers30", "book"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+uncommitted" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapter", type=int)
    parser.add_argument("--scale", choices=("large", "paper"), help="default: paper on a GPU, else large")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=ROOT / "book" / "results")
    args = parser.parse_args()
    from run_chapter import execute

    from papers30.data.images import cache_path
    from papers30.provenance import PICKED_FILE, run_hash

    if args.chapter in CACHED_DATA:
        name, make = CACHED_DATA[args.chapter]
        if not cache_path(name).is_file():
            subprocess.run([sys.executable, *make], cwd=ROOT, check=True)

    scale, device = device_name()
    scale = args.scale or scale
    with tempfile.TemporaryDirectory() as tmp:
        env = {"PAPERS30_SCALE": scale, "PAPERS30_THREADS": str(args.threads),
               "PAPERS30_LEDGER_DIR": tmp, "PAPERS30_TRACE_DIR": tmp,
               "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
        _, seconds, error, _cpu = execute(args.chapter, Path(tmp) / "nb", env, timeout=None)
        if error:
            print(f"reproduce: chapter {args.chapter} failed: {error[:3000]}")
            return 1
        records = json.loads((Path(tmp) / f"ch{args.chapter:02d}.json").read_text())
        traces_file = Path(tmp) / "traces.json"
        traces = json.loads(traces_file.read_text()) if traces_file.exists() else {}
        picked_file = Path(tmp) / PICKED_FILE  # what each pick() of the chapter returned at this scale
        settings = json.loads(picked_file.read_text()) if picked_file.exists() else None
    head = next((r for r in records if r["headline"]), None)
    run = {
        "chapter": args.chapter, "scale": scale, "command": f"make reproduce CH={args.chapter}",
        "commit": commit(), "chapter_hash": run_hash(args.chapter), "device": device,
        "threads": args.threads, "seeds": head["seeds"] if head else None, "wall_seconds": round(seconds, 1),
        "date": dt.date.today().isoformat(), "records": records, "traces": traces, "settings": settings,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"ch{args.chapter:02d}.json"
    path.write_text(json.dumps(run, indent=1) + "\n")
    print(f"reproduce: chapter {args.chapter} at scale {scale} on {device}: {seconds / 60:.1f} min -> "
          f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    if not traces:
        print("reproduce: warning: no traced training run; wrap the headline's training in provenance.traced")
    return 0


if __name__ == "__main__":
    sys.exit(main())
