"""book/_ext/treememory.py: the memory of a process tree, with shared pages counted once.

References: a child and a grandchild that each touch a known number of
private bytes (the sum must grow by about that much), a forked child that
shares its parent's pages without touching them (the sum must not double),
and the parent links that ``ps`` reads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests._site import ROOT

sys.path.insert(0, str(ROOT / "book" / "_ext"))
import treememory  # noqa: E402

pytestmark = pytest.mark.skipif(not treememory.available(), reason="needs /proc/PID/smaps_rollup (Linux)")

MB = 1024

# A child that touches ``mb`` MB of its own, optionally starts a grandchild that touches as much, then waits.
CHILD = """
import subprocess, sys, time
mb = int(sys.argv[1])
block = bytearray(mb * 1024 * 1024)
for i in range(0, len(block), 4096):
    block[i] = 1
kids = [subprocess.Popen([sys.executable, sys.argv[0], sys.argv[1], "0"])] if sys.argv[2] == "1" else []
time.sleep(0.5)
print("ready", flush=True)
time.sleep(30)
"""


def _start(tmp_path, mb: int, grandchild: bool) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.Popen([sys.executable, str(script), str(mb), "1" if grandchild else "0"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(1.0)  # the grandchild has touched its block too
    return proc


def _stop(proc: subprocess.Popen) -> None:
    for pid in treememory.descendants(proc.pid)[1:]:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    proc.kill()
    proc.wait()


def test_descendants_follow_parent_links_like_ps(tmp_path):
    proc = _start(tmp_path, 1, grandchild=True)
    try:
        tree = treememory.descendants(proc.pid)
        ps = subprocess.run(["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True, text=True).stdout
        assert tree[0] == proc.pid and sorted(tree[1:]) == sorted(int(p) for p in ps.split())
        assert len(tree) == 2
    finally:
        _stop(proc)


def test_tree_memory_counts_child_and_grandchild(tmp_path):
    small = _start(tmp_path, 1, grandchild=True)
    try:
        base = treememory.tree_pss_kb(small.pid)
    finally:
        _stop(small)
    big = _start(tmp_path, 200, grandchild=True)
    try:
        grown = treememory.tree_pss_kb(big.pid) - base
        assert 2 * 195 * MB <= grown <= 2 * 215 * MB, f"grew by {grown / MB:.0f} MB, expected about 2 x 199"
    finally:
        _stop(big)


def test_shared_pages_are_not_counted_twice():
    """A forked child that only sleeps shares every page with its parent: PSS halves, RSS would double."""
    block = bytearray(150 * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    alone = treememory.tree_pss_kb(os.getpid())
    pid = os.fork()
    if pid == 0:
        time.sleep(5)
        os._exit(0)
    try:
        time.sleep(0.5)
        shared = treememory.tree_pss_kb(os.getpid())
        assert shared < alone + 40 * MB, f"{shared / MB:.0f} MB with a forked child, {alone / MB:.0f} MB alone"
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    del block


def test_peak_sampler_sees_a_child_that_has_exited(tmp_path):
    with treememory.PeakSampler(os.getpid(), interval=0.1) as sampler:
        before = treememory.tree_pss_kb(os.getpid())
        proc = _start(tmp_path, 100, grandchild=False)
        _stop(proc)
    assert sampler.peak_kb >= before + 90 * MB


@pytest.mark.parametrize("bad,error", [("1", TypeError), (True, TypeError), (0, ValueError), (-3, ValueError)])
def test_tree_pss_rejects_bad_pid(bad, error):
    with pytest.raises(error, match="pid"):
        treememory.tree_pss_kb(bad)


@pytest.mark.parametrize("bad", [0, -1.0, "1", True])
def test_sampler_rejects_bad_interval(bad):
    with pytest.raises(ValueError, match="interval"):
        treememory.PeakSampler(interval=bad)
