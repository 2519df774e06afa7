"""Glue measured values into a chapter's prose.

In the book build, :func:`glue` is ``myst_nb.glue``: a value glued under a
name can be pasted into the text with ``{glue:text}`name:.3f``` or
``{glue:md}`name```. Where myst-nb is absent (Colab), it falls back to
showing the value when ``display=True`` and to doing nothing otherwise, so the
same notebook runs everywhere.

Figures for lectures: while the book is built, ``PAPERS30_FIGURE_DIR`` is set
and every glued matplotlib figure is also saved as SVG and as a PNG at slide
resolution (200 dpi, light theme) under ``<dir>/chNN/<name>.svg|png``; the
site links them under each figure. The chapter is the one whose
:class:`papers30.ledger.ChapterLedger` was opened last (every chapter opens
one in its setup cell).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

FIGURE_ENV = "PAPERS30_FIGURE_DIR"
SLIDE_DPI = 200
_chapter: int | None = None


def set_chapter(chapter: int | None) -> None:
    """Name the chapter whose figures are being glued (the ledger calls this)."""
    global _chapter
    if chapter is not None and (isinstance(chapter, bool) or not isinstance(chapter, int)):
        raise TypeError(f"chapter must be an int or None, got {type(chapter).__name__}")
    _chapter = chapter


def export_figure(name: str, figure: Any) -> list[Path]:
    """Save ``figure`` as SVG and 200-dpi PNG for lecturers, when the build asks for it; return the files."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r:.60}")
    where = os.environ.get(FIGURE_ENV, "").strip()
    if not where or _chapter is None:
        return []
    folder = Path(where) / f"ch{_chapter:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / f"{name}.svg", folder / f"{name}.png"]
    for f in files:
        figure.savefig(f, dpi=SLIDE_DPI, facecolor="white", bbox_inches="tight")
    return files

try:  # pragma: no cover - which branch runs depends on the environment
    from myst_nb import glue as _myst_glue
except ImportError:  # pragma: no cover
    _myst_glue = None


def glue(name: str, value: Any, display: bool = False) -> None:
    """Store ``value`` under ``name`` for pasting into the page (see module docstring).

    Outside the book build (a reader notebook in Colab, Binder or Jupyter,
    where nothing pastes glued values), a figure glued with ``display=False``
    is shown where it is made instead, so the reader still sees it. A
    matplotlib figure is closed once glued, so that the notebook does not
    show it a second time at the end of the cell.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()  # a numpy scalar pastes as 0.93, not as np.float64(0.93)
    elif type(value).__module__ == "torch" and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    is_figure = type(value).__module__.startswith("matplotlib.figure")
    if is_figure:
        export_figure(name, value)
    in_build = bool(os.environ.get(FIGURE_ENV, "").strip())
    if _myst_glue is not None:
        _myst_glue(name, value, display=display)
    if display and _myst_glue is None or (is_figure and not display and not in_build):
        from IPython.display import display as show

        show(value)
    if is_figure:
        import matplotlib.pyplot as plt

        plt.close(value)


def glue_result(name: str, held: bool) -> None:
    """Glue a claim's outcome as bold Markdown (``**pass**`` or ``**miss**``) for ``{glue:md}``."""
    from IPython.display import Markdown

    glue(name, Markdown("**pass**" if held else "**miss**"))
