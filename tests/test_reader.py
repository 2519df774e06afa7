"""Reader notebooks (book/_ext/reader.py): in sync with the chapters, free of MyST, runnable in a fresh venv."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests._site import BUILD, ROOT, chapter_files, require_site

sys.path.insert(0, str(ROOT / "book" / "_ext"))
spec = importlib.util.spec_from_file_location("reader", ROOT / "book" / "_ext" / "reader.py")
reader = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reader)

MYST = [
    (re.compile(r"\{[\w:-]+\}`"), "a role"),
    (re.compile(r"^\s*(`{3,}|~{3,})\{", re.M), "a directive"),
    (re.compile(r"^\s*:{3,}", re.M), "a colon fence"),
    (re.compile(r"^\([\w-]+\)=\s*$", re.M), "a label"),
    (re.compile(r"^:[\w-]+:", re.M), "a directive option"),
    (re.compile(r"\u27e8\w+\u27e9"), "an unfilled glued value"),
]
# The fresh-environment run: a fast chapter, so the suite stays within its budget.
FRESH_CHAPTER = "book/part3/25_kolmogorov"  # 14 s; imports data, complexity, clustering, plotting


def notebook(chapter: str):
    return nbformat.read(reader.OUT / f"{Path(chapter).name}.ipynb", as_version=4)


@pytest.mark.parametrize("chapter", chapter_files())
def test_reader_notebook_is_in_sync_with_its_chapter(chapter):
    """Reference: the generator run again on the current source, with the values the notebook stores."""
    path = reader.OUT / f"{Path(chapter).name}.ipynb"
    assert path.exists(), f"{path.relative_to(ROOT)} is missing: run make notebooks"
    old = notebook(chapter)
    new = reader.reader_notebook(chapter, old.metadata["papers30"]["glued"])
    assert nbformat.writes(new) == nbformat.writes(old), f"{path.name} is stale: run make notebooks"


@pytest.mark.parametrize("chapter", chapter_files())
def test_reader_code_cells_are_the_chapters_own(chapter):
    """Reference: jupytext's reading of the chapter; only the first (install) cell differs."""
    import jupytext

    ours = [c.source for c in notebook(chapter).cells if c.cell_type == "code"]
    theirs = [c.source for c in jupytext.read(ROOT / f"{chapter}.md").cells if c.cell_type == "code"
              and not ("%pip install" in c.source and "remove-cell" in c.metadata.get("tags", []))]
    assert "%pip install" in ours[0] and "@v" in ours[0]
    assert ours[1:] == theirs


@pytest.mark.parametrize("chapter", chapter_files())
def test_reader_markdown_has_no_myst_left(chapter):
    for i, cell in enumerate(notebook(chapter).cells):
        if cell.cell_type != "markdown":
            continue
        text = re.sub(r"```.*?```", "", cell.source, flags=re.S)  # code shown from the package
        for pattern, what in MYST:
            m = pattern.search(text)
            assert m is None, f"{chapter} cell {i}: {what} left: {text[max(0, m.start() - 40): m.end() + 40]!r}"


@pytest.mark.parametrize("chapter", chapter_files())
def test_reader_notebook_shows_the_package_code_and_numbers_equations(chapter):
    nb = notebook(chapter)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    number = int(Path(chapter).name[:2])
    includes = (ROOT / f"{chapter}.md").read_text().count("```{literalinclude}")
    assert text.count("From `papers30/") == includes
    assert f"\\tag{{{number}.1}}" in text
    assert "## References" in text and "- " in text.split("## References")[1]


@pytest.mark.parametrize("chapter", chapter_files())
def test_reader_notebook_values_come_from_this_build(chapter):
    """Reference: the glued values in this build's executed notebook."""
    require_site()
    stored = notebook(chapter).metadata["papers30"]["glued"]
    built = reader.glue_values(reader.executed_path(chapter))
    assert set(stored) == set(built), f"{chapter}: glued names changed; run make notebooks"


def test_launch_buttons_open_the_reader_notebooks():
    require_site()
    repo = reader.config()["repository"]["url"].removeprefix("https://github.com/")
    for chapter in chapter_files():
        text = (BUILD / "html" / f"{chapter}.html").read_text()
        name = f"notebooks/{Path(chapter).name}.ipynb"
        colab = re.search(r'https://colab\.research\.google\.com/github/([^"]+)"', text).group(1)
        assert colab == f"{repo}/blob/main/{name}" and (ROOT / name).exists()
        binder = re.search(r'https://mybinder\.org/v2/gh/([^"]+)"', text).group(1)
        assert binder == f"{repo}/main?urlpath=lab/tree/{name}"
        download = nbformat.read(BUILD / "html" / "_sources" / f"{chapter}.ipynb", as_version=4)
        assert "%pip install" in download.cells[0].source  # the reader notebook, with outputs
        assert sum(len(c.get("outputs", [])) for c in download.cells if c.cell_type == "code") >= 3


@pytest.mark.slow
def test_a_reader_notebook_runs_in_a_fresh_environment_with_declared_dependencies(tmp_path):
    """Reference: a new virtual environment with only `pip install .` (and a kernel): an undeclared
    dependency of the package makes this notebook fail."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    lock = ROOT / ".binder" / "constraints.txt"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "-c", str(lock), str(ROOT), "ipykernel", "nbclient"],
                   check=True, env=env, cwd=tmp_path)
    nb = notebook(FRESH_CHAPTER)
    nb.metadata["kernelspec"]["name"] = "python3"
    path = tmp_path / "reader.ipynb"
    nbformat.write(nb, path)
    script = ("import nbformat, sys; from nbclient import NotebookClient; "
              "nb = nbformat.read(sys.argv[1], as_version=4); "
              "NotebookClient(nb, timeout=600, kernel_name='python3').execute(); print('ran', len(nb.cells))")
    clean = {k: v for k, v in env.items() if not k.startswith("PAPERS30_")}
    clean["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    clean["PAPERS30_THREADS"] = "1"
    out = subprocess.run([str(py), "-c", script, str(path)], capture_output=True, text=True, env=clean, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    probe = subprocess.run([str(py), "-c", "import papers30, json; print(json.dumps(papers30.__file__))"],
                           capture_output=True, text=True, env=clean, cwd=tmp_path, check=True)
    assert str(ROOT) not in json.loads(probe.stdout)  # the installed copy ran, not the source tree
