"""Glue measured values into a chapter's prose.

In the book build, :func:`glue` is ``myst_nb.glue``: a value glued under a
name can be pasted into the text with ``{glue:text}`name:.3f``` or
``{glue:md}`name```. Where myst-nb is absent (Colab), it falls back to
showing the value when ``display=True`` and to doing nothing otherwise, so the
same notebook runs everywhere.
"""

from __future__ import annotations

from typing import Any

try:  # pragma: no cover - which branch runs depends on the environment
    from myst_nb import glue as _myst_glue
except ImportError:  # pragma: no cover
    _myst_glue = None


def glue(name: str, value: Any, display: bool = False) -> None:
    """Store ``value`` under ``name`` for pasting into the page (see module docstring).

    A matplotlib figure is closed once glued, so that the notebook does not
    show it a second time at the end of the cell.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    if _myst_glue is not None:
        _myst_glue(name, value, display=display)
    elif display:
        from IPython.display import display as show

        show(value)
    if type(value).__module__.startswith("matplotlib.figure"):
        import matplotlib.pyplot as plt

        plt.close(value)


def glue_result(name: str, held: bool) -> None:
    """Glue a claim's outcome as bold Markdown (``**pass**`` or ``**miss**``) for ``{glue:md}``."""
    from IPython.display import Markdown

    glue(name, Markdown("**pass**" if held else "**miss**"))
