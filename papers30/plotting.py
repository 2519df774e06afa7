"""The book's figure style and plot helpers (the only module that plots).

Colours are the Okabe-Ito palette, safe for the common colour-vision
deficiencies. Figures have an opaque white background so they stay readable
when the site is in dark mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")


def use_style() -> None:
    """Apply the book's matplotlib style (call once per chapter)."""
    plt.rcParams.update(
        {
            "figure.figsize": (6.4, 3.6),
            "figure.dpi": 110,
            "savefig.dpi": 110,
            "figure.facecolor": "white",
            "axes.facecolor": "white",
            "savefig.facecolor": "white",
            "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "font.size": 10,
            "legend.frameon": False,
        }
    )


def curves(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    *,
    title: str | None = None,
    logy: bool = False,
    hline: float | None = None,
):
    """Plot named ``(x, y)`` series on one labelled axis; return the figure."""
    fig, ax = plt.subplots()
    for name, (x, y) in series.items():
        ax.plot(x, y, label=name)
    if hline is not None:
        ax.axhline(hline, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    if len(series) > 1:
        ax.legend()
    fig.tight_layout()
    return fig


def attention_maps(
    maps: Sequence[torch.Tensor | np.ndarray],
    titles: Sequence[str],
    x_labels: Sequence[str],
    y_labels: Sequence[str],
    *,
    xlabel: str = "source position (key)",
    ylabel: str = "target position (query)",
):
    """Heat maps of attention weights ``(T, S)``, side by side; return the figure."""
    n = len(maps)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n + 0.6, 2.9), squeeze=False)
    for ax, m, title in zip(axes[0], maps, titles):
        m = m.detach().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m)
        im = ax.imshow(m, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_title(title, fontsize=9)
        ax.set_xticks(range(len(x_labels)), x_labels, fontsize=7, rotation=90)
        ax.set_yticks(range(len(y_labels)), y_labels, fontsize=7)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.grid(False)
    axes[0][0].set_ylabel(ylabel, fontsize=8)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="attention weight")
    return fig


def image_grid(
    images: Sequence[Sequence[torch.Tensor | np.ndarray]],
    row_labels: Sequence[str],
    col_titles: Sequence[str],
    *,
    extent: tuple[float, float] | None = None,
    xlabel: str = "x (cells)",
    ylabel: str = "y (cells)",
    colorbar_label: str = "value",
    vmin: float = 0.0,
    vmax: float = 1.0,
    cmap: str = "cividis",
):
    """Rows of 2-D images ``(H, W)`` on one colour scale, e.g. states over time; return the figure.

    ``images[r][c]`` is drawn in row ``r`` (labelled ``row_labels[r]``) and
    column ``c`` (titled ``col_titles[c]``). With ``extent=(width, height)``
    every image is stretched over the same coordinates, so a coarse-grained
    image lines up with the fine one it came from.
    """
    n_rows, n_cols = len(images), len(images[0])
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(1.5 * n_cols + 1.2, 1.55 * n_rows + 0.5), squeeze=False
    )
    for r, row in enumerate(images):
        for c, img in enumerate(row):
            ax = axes[r][c]
            img = img.detach().cpu().float().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
            box = None if extent is None else (0, extent[0], extent[1], 0)
            im = ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, extent=box, interpolation="nearest")
            ax.grid(False)
            ax.tick_params(labelsize=7)
            if r == 0:
                ax.set_title(col_titles[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(f"{row_labels[r]}\n{ylabel}", fontsize=8)
            else:
                ax.set_yticklabels([])
            if r == n_rows - 1:
                ax.set_xlabel(xlabel, fontsize=8)
            else:
                ax.set_xticklabels([])
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label=colorbar_label)
    return fig
