"""book/_ext/forkserver.py: kernels forked from a process that has imported torch behave as fresh ones.

Reference: the same notebook executed by an ordinary kernel (``python -m ipykernel_launcher``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import nbformat
import pytest

from tests._site import ROOT

spec = importlib.util.spec_from_file_location("papers30_execute", ROOT / "book" / "_ext" / "execute.py")
execute = importlib.util.module_from_spec(spec)
spec.loader.exec_module(execute)
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import forkserver  # noqa: E402

CELLS = [
    "import os, sys, torch\nprint(os.getcwd())\nprint(os.environ.get('PAPERS30_PROBE'))",
    "from papers30 import seed_everything\ng = seed_everything(3)\nprint(torch.rand(3, generator=g).tolist())",
    "print(torch.randn(2).tolist(), torch.get_num_threads())",
    "import random\nprint(random.random())",
]


def outputs(tmp_path, **kwargs) -> list[str]:
    from jupyter_cache.executors.utils import single_nb_execution

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    result = single_nb_execution(nb, cwd=str(tmp_path), timeout=120, allow_errors=False, **kwargs)
    assert result.err is None, result.exc_string
    return ["".join(o.get("text", "") for o in c.outputs) for c in nb.cells]


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERS30_PROBE", "probe")
    monkeypatch.setenv("PAPERS30_THREADS", "1")
    started = execute.start_forkserver()
    assert started, "the fork server did not start"
    process, path = started
    monkeypatch.setenv("PAPERS30_FORKSERVER", path)
    yield process
    process.kill()
    process.wait()


def test_a_forked_kernel_prints_what_a_fresh_kernel_prints(tmp_path, server, monkeypatch):
    rss = tmp_path / "rss"
    monkeypatch.setenv("PAPERS30_KERNEL_RSS", str(rss))
    forked = outputs(tmp_path, kernel_manager_class=forkserver.manager_class())
    fresh = outputs(tmp_path)
    assert forked == fresh
    assert forked[0] == f"{os.path.realpath(tmp_path)}\nprobe\n"  # the chapter's directory and environment
    assert int(rss.read_text()) > 50_000  # the kernel's own peak memory, kB (torch alone takes more)
    again = outputs(tmp_path, kernel_manager_class=forkserver.manager_class())
    assert again == forked  # a second child starts from the same clean state


def test_the_server_stops_when_the_build_that_started_it_ends(tmp_path):
    import subprocess
    import time

    script = (f"import sys; sys.path.insert(0, {str(ROOT / 'book' / '_ext')!r}); import execute; "
              "s = execute.start_forkserver(); print(s[0].pid, flush=True)")
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    pid = int(child.stdout.split()[-1])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return  # gone
        if state == "Z":
            return  # exited, not yet reaped by whoever adopted it
        time.sleep(0.2)
    os.kill(pid, 9)
    pytest.fail("the fork server outlived the process that started it")


def test_a_forked_kernel_glues_a_chapters_figures_as_images(tmp_path, server, monkeypatch):
    """Reference: chapter 23 in a fresh kernel. Preloading matplotlib_inline in the server once
    left every glued figure without its image (the inline backend hooks into the IPython it finds)."""
    from jupyter_cache.executors.utils import single_nb_execution

    monkeypatch.setenv("PAPERS30_FIGURE_DIR", str(tmp_path / "figures"))
    monkeypatch.setenv("PAPERS30_LEDGER_DIR", str(tmp_path / "ledger"))
    chapter = ROOT / "book" / "part3" / "23_mdl_tutorial.md"

    def mimes(**kwargs) -> list[list[str]]:
        nb = execute.read(chapter)
        result = single_nb_execution(nb, cwd=str(chapter.parent), timeout=120, allow_errors=False, **kwargs)
        assert result.err is None, result.exc_string
        return [sorted(o.get("data", {})) for c in nb.cells if c.cell_type == "code" for o in c.outputs]

    forked = mimes(kernel_manager_class=forkserver.manager_class())
    assert forked == mimes()
    assert any(m.endswith("image/png") for kinds in forked for m in kinds)
