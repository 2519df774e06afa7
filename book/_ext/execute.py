"""Execute the book's chapters in parallel into the execution cache, before Sphinx runs.

Usage: python book/_ext/execute.py [--jobs N]

myst-nb executes notebooks one after another while Sphinx reads them. This
script runs the chapters listed in ``_toc.yml`` that the cache
(``_build/.jupyter_cache``) does not hold yet, ``N`` at a time (default: the
number of cores), each kernel limited to ``cores // N`` threads, and stores
the executed notebooks in the same cache with their run times. The Sphinx
build that follows then finds every chapter in the cache. A chapter that
fails here is left out of the cache, so the build executes it again and
reports its traceback as usual.

Each kernel gets ``PAPERS30_THREADS = cores // N`` (chapters call
``papers30.configure_threads()``), so for a given ``N`` the numbers do not
depend on how many chapters happen to need executing; another thread count
can change floating-point results in the last digits.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "_build"
CACHE = BUILD / ".jupyter_cache"


def chapters() -> list[Path]:
    toc = (ROOT / "_toc.yml").read_text()
    return [ROOT / f"{f}.md" for f in re.findall(r"file:\s*(\S+)", toc) if re.match(r"\d\d_", Path(f).name)]


def read(path: Path):
    from myst_nb.core.read import read_myst_markdown_notebook

    return read_myst_markdown_notebook(path.read_text("utf8"), path=str(path))


def run_one(path: str) -> tuple[str, object, float, str | None]:
    """Execute one chapter in its own kernel; return (path, notebook, seconds, error)."""
    from jupyter_cache.executors.utils import single_nb_execution

    nb = read(Path(path))
    result = single_nb_execution(nb, cwd=str(Path(path).parent), timeout=300, allow_errors=False)
    error = None if result.err is None else f"{type(result.err).__name__}: {result.err}"
    return path, nb, result.time, error


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(str(CACHE))
    todo = []
    for path in chapters():
        try:
            cache.match_cache_notebook(read(path))
        except KeyError:
            todo.append(str(path))
    if not todo:
        print("execute: every chapter is cached")
        return 0
    jobs = max(1, args.jobs)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    os.environ["PAPERS30_THREADS"] = str(threads)
    # Idle OpenMP threads sleep instead of spinning, so kernels running side by
    # side do not steal each other's cores (results are unchanged).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("PAPERS30_LEDGER_DIR", str(BUILD / "ledger"))
    print(f"execute: {len(todo)} chapter(s), {jobs} at a time, {threads} thread(s) each")
    start = time.perf_counter()
    failed = 0
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for path, nb, seconds, error in pool.map(run_one, todo):
            name = Path(path).relative_to(ROOT)
            if error:
                failed += 1
                print(f"execute: {name} FAILED ({error.splitlines()[0][:200]}); the build will re-run it")
                continue
            cache.cache_notebook_bundle(CacheBundleIn(nb, path, data={"execution_seconds": seconds}),
                                        check_validity=False, overwrite=True)
            print(f"execute: {name} {seconds:.1f} s")
    print(f"execute: done in {time.perf_counter() - start:.1f} s")
    return 0  # failures are reported by the Sphinx build that follows


if __name__ == "__main__":
    sys.exit(main())
