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

A chapter is re-executed when its source changes (the cache's own match)
or when the package code it depends on changes: the modules it imports,
directly or through other modules, and its entries of ``papers.toml``
(``papers30.provenance.chapter_hash``, stored per chapter in
``_build/.papers30-deps.json``). An edit to one module re-runs only the
chapters that import it. ``--dry-run`` lists what would run.

Kernels are forked from one process that has imported torch and the package
(``book/_ext/forkserver.py``), which saves each chapter the seconds a fresh
kernel spends importing them; ``PAPERS30_NO_FORKSERVER=1`` starts every kernel
from scratch instead. A chapter marked exclusive (it times real parallel work)
starts while the last shared chapters finish and waits, in
``papers30.runtime.wait_until_alone``, for them to end before it times.

Chapters run longest first, using the last run's times (``SUMMARY``), or on
a clean checkout the committed ``book/_ext/chapter-seconds.json``
(``--save-order`` refreshes it from the last run), so that the two workers
finish close together.

While the chapters run, ``treememory.PeakSampler`` samples the memory of this
process and everything below it (workers, fork server, kernels and their own
children) together; a full run stores the peak in ``SUMMARY``.

Each kernel gets ``PAPERS30_THREADS = cores // N`` (chapters call
``papers30.configure_threads()``), so for a given ``N`` the numbers do not
depend on how many chapters happen to need executing; another thread count
can change floating-point results in the last digits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "_build"
CACHE = BUILD / ".jupyter_cache"
STAMPS = BUILD / ".papers30-deps.json"
EXECUTED = BUILD / ".papers30-executed.json"  # chapter -> token of its last run; Sphinx re-reads a new one
SUMMARY = BUILD / "execution-summary.json"  # per-chapter times, read by the execution statistics page
# Committed per-chapter times, so that a clean checkout (no SUMMARY yet) still runs the longest
# chapters first; refreshed from SUMMARY with --save-order after a full run.
ORDER = Path(__file__).with_name("chapter-seconds.json")
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # forkserver, treememory

import treememory  # noqa: E402


def chapters() -> list[Path]:
    toc = (ROOT / "_toc.yml").read_text()
    return [ROOT / f"{f}.md" for f in re.findall(r"file:\s*(\S+)", toc) if re.match(r"\d\d_", Path(f).name)]


def save_stamps(stamps: dict[str, str]) -> None:
    STAMPS.parent.mkdir(parents=True, exist_ok=True)
    STAMPS.write_text(json.dumps(stamps, indent=1, sort_keys=True))


def read(path: Path):
    from myst_nb.core.read import read_myst_markdown_notebook

    return read_myst_markdown_notebook(path.read_text("utf8"), path=str(path))


def run_one(path: str) -> tuple[str, object, float, str | None, int]:
    """Execute one chapter in its own kernel; return (path, notebook, seconds, error, peak kernel RSS in kB)."""
    import resource

    from jupyter_cache.executors.utils import single_nb_execution

    nb = read(Path(path))
    extra = {}
    if os.environ.get("PAPERS30_FORKSERVER"):  # kernels forked from one that has imported torch (forkserver.py)
        import forkserver

        extra["kernel_manager_class"] = forkserver.manager_class()
        rss = BUILD / f".kernel-rss-{os.getpid()}"
        rss.unlink(missing_ok=True)
        os.environ["PAPERS30_KERNEL_RSS"] = str(rss)
    result = single_nb_execution(nb, cwd=str(Path(path).parent), timeout=300, allow_errors=False, **extra)
    error = None if result.err is None else f"{type(result.err).__name__}: {result.err}"
    if extra:  # the kernel was the fork server's child, which reported its peak memory (kB)
        try:
            peak = int(rss.read_text())
        except (OSError, ValueError):
            peak = 0
    else:
        # The kernel is this worker's child: once it has exited, its peak memory is in RUSAGE_CHILDREN
        # (a running maximum over this worker's kernels, so an upper bound for this chapter).
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return path, nb, result.time, error, peak


def start_forkserver():
    """Start book/_ext/forkserver.py for this build; return (process, socket path), or None if it fails."""
    import subprocess
    import tempfile

    if os.environ.get("PAPERS30_NO_FORKSERVER"):
        return None
    path = os.path.join(tempfile.mkdtemp(prefix="papers30-"), "forkserver")
    server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("forkserver.py")), "serve", path],
                              stdout=subprocess.PIPE, text=True)
    if server.stdout.readline().strip() != "ready":
        server.kill()
        print("execute: the fork server did not start; every kernel starts from scratch")
        return None
    return server, path


def exclusive(path: Path) -> bool:
    """Whether a chapter asks to run alone (front matter ``papers30: {exclusive: true}``).

    A chapter that measures wall-clock speed-up of real parallel processes
    (chapter 9) needs the machine's cores to itself; it runs after the others.
    """
    head = path.read_text("utf8").split("\n---", 1)[0]
    if re.search(r"^papers30:\s*\n\s+exclusive:\s*true\s*$", head, re.M):
        return True
    paired = path.with_suffix(".ipynb")  # jupytext keeps custom metadata in the paired notebook
    if paired.exists():
        meta = json.loads(paired.read_text("utf8")).get("metadata", {})
        return bool(meta.get("papers30", {}).get("exclusive", False))
    return False


def load_summary() -> dict:
    try:
        return json.loads(SUMMARY.read_text())
    except (OSError, ValueError):
        return {"chapters": {}}


def chapter_number(path: Path) -> int:
    return int(path.name[:2])


def load_stamps() -> dict[str, str]:
    try:
        return json.loads(STAMPS.read_text())
    except (OSError, ValueError):
        return {}


def outdated(cache, stamps: dict[str, str]) -> tuple[list[Path], dict[str, str]]:
    """Chapters to execute, and every chapter's current dependency hash.

    A cached chapter whose dependency hash differs from its stamp is dropped
    from the cache, so that the Sphinx build cannot reuse its old outputs.
    """
    from papers30.provenance import chapter_hash

    todo, hashes = [], {}
    for path in chapters():
        key = path.relative_to(ROOT).as_posix()
        hashes[key] = chapter_hash(chapter_number(path), path.read_text("utf8"))
        try:
            record = cache.match_cache_notebook(read(path))
        except KeyError:
            todo.append(path)
            continue
        if stamps.get(key) != hashes[key]:
            cache.remove_cache(record.pk)
            todo.append(path)
    return todo, hashes


def pick_next(waiting: list[str], exclusive: list[str], remaining: float, overlap: float = 20.0) -> str:
    """The chapter to start on a free worker: the exclusive one once the shared work left
    (``remaining`` expected seconds: ``waiting``, and what the running chapters still need) is at
    most ``overlap`` seconds, else the next of ``waiting`` (longest first).

    An exclusive chapter times real parallel work, so that part must have the machine to itself;
    it calls :func:`papers30.runtime.wait_until_alone` just before, which waits for the flag the
    executor sets once every shared chapter has finished. Started this way, its set-up (imports,
    checks, schedules that sleep), about ``overlap`` seconds, runs beside the last shared work
    instead of after it, and it waits for little.
    """
    if exclusive and (not waiting or remaining <= overlap):
        return exclusive[0]
    return waiting[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--dry-run", action="store_true", help="list the chapters that would execute")
    parser.add_argument("--save-order", action="store_true",
                        help=f"write the last run's chapter times to {ORDER.relative_to(ROOT)} and stop")
    args = parser.parse_args()
    if args.save_order:
        seconds = {k: v["seconds"] for k, v in sorted(load_summary().get("chapters", {}).items())}
        ORDER.write_text(json.dumps(seconds, indent=1) + "\n")
        print(f"execute: wrote {len(seconds)} chapter times to {ORDER.relative_to(ROOT)}")
        return 0
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(str(CACHE))
    stamps = load_stamps()
    if args.dry_run:
        from papers30.provenance import chapter_hash

        for path in chapters():
            key = path.relative_to(ROOT).as_posix()
            try:
                cache.match_cache_notebook(read(path))
                fresh = stamps.get(key) == chapter_hash(chapter_number(path), path.read_text("utf8"))
            except KeyError:
                fresh = False
            if not fresh:
                print(key)
        return 0
    todo_paths, hashes = outdated(cache, stamps)
    todo = [str(p) for p in todo_paths]
    for key in hashes:  # chapters that stay cached keep their stamp
        if str(ROOT / key) not in todo:
            stamps[key] = hashes[key]
    if not todo:
        save_stamps(stamps)
        print("execute: every chapter is cached and its package code is unchanged")
        return 0
    jobs = max(1, args.jobs)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    os.environ["PAPERS30_THREADS"] = str(threads)
    # Idle OpenMP threads sleep instead of spinning, so kernels running side by
    # side do not steal each other's cores (results are unchanged).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("PAPERS30_LEDGER_DIR", str(BUILD / "ledger"))
    os.environ.setdefault("PAPERS30_FIGURE_DIR", str(BUILD / "figures"))
    summary = load_summary()
    known = summary.get("chapters", {})
    # Longest first (times of the previous run, else the committed ones), so that the workers finish close together.
    hint = json.loads(ORDER.read_text()) if ORDER.exists() else {}

    def expected(p: str) -> float:
        key = Path(p).relative_to(ROOT).as_posix()
        return known.get(key, {}).get("seconds", hint.get(key, 1e9))

    print(f"execute: {len(todo)} chapter(s), {jobs} at a time, {threads} thread(s) each")
    start = time.perf_counter()
    alone = [p for p in todo if exclusive(Path(p))]
    shared = [p for p in todo if p not in alone]
    flag = BUILD / ".alone-flag"  # created once every shared chapter has finished
    flag.unlink(missing_ok=True)
    os.environ["PAPERS30_ALONE_FLAG"] = str(flag)
    waiting = sorted(shared, key=lambda p: -expected(p))  # longest first
    forkserver = start_forkserver()  # after the environment above is set: the kernels inherit the server's
    if forkserver:
        os.environ["PAPERS30_FORKSERVER"] = forkserver[1]

    def results():
        exclusive = alone[:1]
        running: dict = {}  # future -> (path, start time)
        pending = set(shared)
        if not pending:
            flag.touch()

        def fill(pool) -> None:
            while len(running) < jobs and (waiting or exclusive):
                now = time.perf_counter()
                left = sum(expected(p) for p in waiting) + sum(
                    max(0.0, expected(p) - (now - t)) for p, t in running.values() if p not in alone)
                path = pick_next(waiting, exclusive, left)
                (exclusive if path in exclusive else waiting).remove(path)
                running[pool.submit(run_one, path)] = (path, now)

        with ProcessPoolExecutor(max_workers=jobs) as pool:
            fill(pool)
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                finished = [(f, running.pop(f)[0]) for f in done]
                pending.difference_update(p for _, p in finished)
                if not pending and not flag.exists():
                    flag.touch()  # the exclusive chapter may now time its work
                fill(pool)
                for f, path in finished:
                    yield f.result(), (1 if path in alone else jobs)
        # Further exclusive chapters run one after another, alone.
        with ProcessPoolExecutor(max_workers=1) as pool:
            yield from ((r, 1) for r in pool.map(run_one, alone[1:]))

    def record(result, ran_with: int) -> None:
        path, nb, seconds, error, peak = result
        key = Path(path).relative_to(ROOT).as_posix()
        known[key] = {"seconds": round(seconds, 1), "ok": not error, "peak_rss_mb": round(peak / 1024, 1),
                      "threads": threads, "jobs": ran_with}
        name = Path(path).relative_to(ROOT)
        if error:
            print(f"execute: {name} FAILED ({error.splitlines()[0][:200]}); the build will re-run it")
            return
        cache.cache_notebook_bundle(CacheBundleIn(nb, path, data={"execution_seconds": seconds}),
                                    check_validity=False, overwrite=True)
        stamps[key] = hashes[key]
        save_stamps(stamps)
        executed = json.loads(EXECUTED.read_text()) if EXECUTED.exists() else {}
        executed[key] = str(time.time_ns())  # book/_ext/papers30_book.py re-reads the page
        EXECUTED.write_text(json.dumps(executed, indent=1, sort_keys=True))
        print(f"execute: {name} {seconds:.1f} s")

    sampler = treememory.PeakSampler() if treememory.available() else contextlib.nullcontext()
    with sampler:
        for result, ran_with in results():
            record(result, ran_with)
    wall = time.perf_counter() - start
    if forkserver:
        forkserver[0].kill()
        forkserver[0].wait()
    summary["chapters"] = known
    if len(todo) == len(chapters()):
        summary["full_run"] = {"wall_seconds": round(wall, 1), "jobs": jobs, "threads": threads,
                               "chapters": len(todo), "cpus": os.cpu_count()}
        if isinstance(sampler, treememory.PeakSampler):  # this process and all below it, together
            summary["full_run"]["peak_memory_mb"] = round(sampler.peak_kb / 1024, 1)
            summary["full_run"]["sample_seconds"] = sampler.interval
    SUMMARY.write_text(json.dumps(summary, indent=1, sort_keys=True))
    print(f"execute: done in {wall:.1f} s"
          + (f", peak memory {sampler.peak_kb / 1024:.0f} MB" if isinstance(sampler, treememory.PeakSampler) else ""))
    return 0  # failures are reported by the Sphinx build that follows


if __name__ == "__main__":
    sys.exit(main())
