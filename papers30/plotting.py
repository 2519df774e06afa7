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

from papers30 import _checks

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


@_checks.typed
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


@_checks.typed
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
    _checks.nonempty("maps", maps)
    _checks.size_matches("titles", len(titles), len(maps), "entries (one per map)")
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


@_checks.typed
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
    image lines up with the fine one it came from. Colour photographs
    ``(H, W, 3)`` with red, green and blue in ``[0, 1]`` are drawn as they
    are, and a grid of them has no colour bar (``cmap``, ``vmin``, ``vmax``
    and ``colorbar_label`` are then unused).
    """
    _checks.nonempty("images", images)
    _checks.nonempty("images[0]", images[0])
    n_rows, n_cols = len(images), len(images[0])
    _checks.size_matches("row_labels", len(row_labels), n_rows, "entries (one per row)")
    _checks.size_matches("col_titles", len(col_titles), n_cols, "entries (one per column)")
    if extent is not None and len(extent) != 2:
        raise ValueError(f"extent must be (width, height), got {extent!r}")
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
    if not all(np.ndim(img) == 3 for row in images for img in row):  # colour photographs need no scale
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label=colorbar_label)
    return fig


@_checks.typed
def point_polygons(
    points: Sequence[torch.Tensor | np.ndarray],
    polygons: dict[str, Sequence[Sequence[int]]],
    titles: Sequence[str],
    *,
    xlabel: str = "x (unit square)",
    ylabel: str = "y (unit square)",
):
    """Panels of planar point sets ``(n, 2)``, each with closed polygons through chosen points; return the figure.

    ``polygons[label][k]`` lists the indices of ``points[k]`` visited in
    order (closed back to the first); each label gets one colour and line
    style across panels, e.g. ``{"true hull": ..., "predicted": ...}``.
    Used by chapter 6 (pointer networks).
    """
    _checks.nonempty("points", points)
    _checks.size_matches("titles", len(titles), len(points), "entries (one per panel)")
    for i, pts in enumerate(points):
        if not isinstance(pts, (torch.Tensor, np.ndarray)) or pts.ndim != 2 or pts.shape[1] != 2:
            raise ValueError(f"points[{i}] must be an (n, 2) tensor or array, got {pts!r:.60}")
    k = len(points)
    fig, axes = plt.subplots(1, k, figsize=(2.2 * k + 0.4, 2.9), squeeze=False)
    styles = ("-", "--", ":", "-.")
    for i, ax in enumerate(axes[0]):
        p = points[i].detach().cpu().double().numpy() if isinstance(points[i], torch.Tensor) else np.asarray(points[i])
        ax.scatter(p[:, 0], p[:, 1], s=12, color="#555555", zorder=3)
        for j, (label, seqs) in enumerate(polygons.items()):
            seq = list(seqs[i])
            if seq:
                ring = p[seq + seq[:1]]
                ax.plot(ring[:, 0], ring[:, 1], styles[j % len(styles)], color=PALETTE[j % len(PALETTE)],
                        linewidth=1.6, label=label if i == 0 else None)
        ax.set_title(titles[i], fontsize=9)
        ax.set_aspect("equal")
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(-0.05, 1.05)
        ax.tick_params(labelsize=7)
        ax.set_xlabel(xlabel, fontsize=8)
        if i == 0:
            ax.set_ylabel(ylabel, fontsize=8)
        else:
            ax.set_yticklabels([])
    fig.legend(loc="lower center", ncol=max(1, len(polygons)), fontsize=8, bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


@_checks.typed
def text_heatmap(
    text: str,
    values: Sequence[float] | torch.Tensor | np.ndarray,
    *,
    width: int = 64,
    colorbar_label: str = "activation",
    title: str | None = None,
    cmap: str = "RdBu_r",
):
    """Characters of ``text`` as printed (newlines break lines, long lines wrap at ``width``),
    each on a background coloured by ``values[i]`` (one value per character); return the figure.

    A newline is drawn as ``↵``. The colour scale is symmetric about zero, so
    with the default diverging map a unit's sign reads as red/blue.
    """
    values = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, float)
    if len(values) != len(text):
        raise ValueError(f"values must hold one value per character ({len(text)}), got {len(values)}")
    cells, row, col = [], 0, 0
    for ch in text:
        if col == width:
            row, col = row + 1, 0
        cells.append((row, col, "\u21b5" if ch == "\n" else ch))
        row, col = (row + 1, 0) if ch == "\n" else (row, col + 1)
    rows = max(r for r, _, _ in cells) + 1
    grid = np.full((rows, width), np.nan)
    for (r, c, _), v in zip(cells, values):
        grid[r, c] = v
    lim = float(np.nanmax(np.abs(values))) or 1.0
    fig, ax = plt.subplots(figsize=(0.13 * width + 1.4, 0.24 * rows + 0.9))
    im = ax.imshow(grid, cmap=cmap, vmin=-lim, vmax=lim, aspect="auto", interpolation="nearest")
    for r, c, ch in cells:
        ax.text(c, r, ch, ha="center", va="center", fontsize=7, family="monospace")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    ax.set_xlabel("characters along the line")
    ax.set_ylabel("printed lines")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8, label=colorbar_label)
    return fig


@_checks.typed
def labelled_points(
    series: dict[str, tuple[Sequence[float], Sequence[float], Sequence[str]]],
    xlabel: str,
    ylabel: str,
    *,
    title: str | None = None,
):
    """Named ``(x, y, labels)`` series drawn as joined markers, each point annotated
    with its label (e.g. the setting that produced it); return the figure."""
    fig, ax = plt.subplots()
    for name, (x, y, labels) in series.items():
        ax.plot(x, y, marker="o", label=name)
        for xi, yi, lab in zip(x, y, labels):
            ax.annotate(lab, (xi, yi), textcoords="offset points", xytext=(5, -11), fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


@_checks.typed
def measured_vs_formula(
    x: Sequence[float],
    measured: dict[str, Sequence[float]],
    formula: dict[str, Sequence[float]],
    xlabel: str,
    ylabel: str,
    *,
    logx: bool = False,
    logy: bool = False,
    title: str | None = None,
):
    """Measured values as markers and a formula's values as dashed lines, same colour per key.

    ``measured`` and ``formula`` map the same series names (e.g. ``"K = 2"``)
    to values at the points ``x``; return the figure.
    """
    fig, ax = plt.subplots()
    for i, (name, ys) in enumerate(measured.items()):
        colour = PALETTE[i % len(PALETTE)]
        ax.plot(x, ys, marker="o", linestyle="none", color=colour, label=f"{name}, measured")
        if name in formula:
            ax.plot(x, formula[name], linestyle="--", color=colour, label=f"{name}, formula")
    if logx:
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(x), [f"{v:g}" for v in x])
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


@_checks.typed
def grouped_bars(
    values: dict[str, Sequence[float]],
    categories: Sequence[str],
    xlabel: str,
    ylabel: str,
    *,
    title: str | None = None,
    ylim: tuple[float, float] | None = None,
    annotate: str | None = "{:.2f}",
):
    """Bars grouped by category: ``values[series][k]`` is the bar of ``series`` at ``categories[k]``.

    One colour per series, with a legend above the plot (and ``title`` above
    that); ``annotate`` (a format string, or None) writes each bar's value
    above it. Return the figure.
    """
    fig, ax = plt.subplots()
    n = len(values)
    width = 0.8 / max(n, 1)
    centres = np.arange(len(categories))
    for i, (name, ys) in enumerate(values.items()):
        pos = centres - 0.4 + width * (i + 0.5)
        bars = ax.bar(pos, list(ys), width=width, label=name, color=PALETTE[i % len(PALETTE)])
        if annotate:
            ax.bar_label(bars, labels=[annotate.format(y) for y in ys], fontsize=7, padding=1)
    ax.set_xticks(centres, list(categories))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(axis="x", visible=False)
    if title:
        fig.suptitle(title)
    if n > 1:  # above the plot, so that it never covers a bar: as many columns (up to 4) as fit its width
        renderer = fig.canvas.get_renderer()
        for ncol in range(min(n, 4), 0, -1):
            legend = ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=ncol)
            if legend.get_window_extent(renderer).width <= ax.get_window_extent(renderer).width:
                break
    fig.tight_layout()
    return fig


@_checks.typed
def pipeline_gantt(
    events: Sequence,
    num_stages: int,
    *,
    xlabel: str = "time (ms)",
    scale: float = 1000.0,
    title: str | None = None,
):
    """Gantt chart of a pipeline step: one row per stage, a bar per operation; return the figure.

    ``events`` have ``stage``, ``kind`` (``"F"`` forward or ``"B"``
    backward), ``microbatch``, ``start`` and ``end`` (e.g.
    :class:`papers30.distributed.Event`). Times are shifted to start at zero
    and multiplied by ``scale`` (seconds to milliseconds by default). Each bar
    is labelled with its micro-batch; idle time is the white space.
    """
    from matplotlib.patches import Patch

    _checks.nonempty("events", events)
    if isinstance(events, str) or not all(hasattr(e, a) for e in events for a in ("stage", "kind", "microbatch", "start", "end")):
        raise TypeError("events must be a sequence of objects with stage, kind, microbatch, start and end")
    t0 = min(e.start for e in events)
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * num_stages + 1.5))
    colours = {"F": PALETTE[0], "B": PALETTE[1]}
    for e in events:
        left, width = (e.start - t0) * scale, (e.end - e.start) * scale
        ax.barh(e.stage, width, left=left, height=0.7, color=colours.get(e.kind, PALETTE[2]),
                edgecolor="white", linewidth=0.8)
        ax.text(left + width / 2, e.stage, str(e.microbatch), ha="center", va="center",
                fontsize=7, color="white")
    handles = [Patch(color=colours["F"], label="forward"), Patch(color=colours["B"], label="backward")]
    ax.set_yticks(range(num_stages), [f"stage {k}" for k in range(num_stages)])
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.grid(axis="y", visible=False)
    if title:
        ax.set_title(title)
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2)
    fig.tight_layout()
    return fig


@_checks.typed
def curve_panels(
    panels: dict[str, dict[str, tuple[Sequence[float], Sequence[float]]]],
    xlabel: str,
    ylabel: str,
    *,
    logy: bool = False,
):
    """Side-by-side axes sharing the y scale, one per panel, each with its named ``(x, y)`` series.

    ``panels[title][name] = (x, y)``; a series name keeps its colour across
    panels (e.g. the same depth in a plain and a residual panel), so one
    legend, on the last panel, serves all. Return the figure.
    """
    names = list(dict.fromkeys(name for series in panels.values() for name in series))
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n + 0.4, 3.4), sharey=True, squeeze=False)
    for ax, (title, series) in zip(axes[0], panels.items()):
        for name, (x, y) in series.items():
            ax.plot(x, y, label=name, color=colours[name])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        if logy:
            ax.set_yscale("log")
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend()
    fig.tight_layout()
    return fig


@_checks.typed
def rgb_images(
    images: Sequence[torch.Tensor | np.ndarray],
    titles: Sequence[str],
    *,
    xlabel: str = "x (pixels)",
    ylabel: str = "y (pixels)",
):
    """A row of RGB images, each ``(3, P, P)`` (channels first) or ``(P, P, 3)``, in ``[0, 1]``; return the figure.

    Each image gets its title (several lines are fine) and pixel axes.
    """
    _checks.nonempty("images", images)
    _checks.size_matches("titles", len(titles), len(images), "entries (one per image)")
    for i, img in enumerate(images):
        if not isinstance(img, (torch.Tensor, np.ndarray)) or img.ndim != 3 or 3 not in (img.shape[0], img.shape[-1]):
            raise ValueError(f"images[{i}] must be a (3, P, P) or (P, P, 3) tensor or array, got {img!r:.60}")
    n = len(images)
    fig, axes = plt.subplots(1, n, figsize=(2.0 * n + 0.4, 2.9), squeeze=False)
    for k, (ax, img) in enumerate(zip(axes[0], images)):
        arr = img.detach().cpu().float().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        if arr.shape[0] == 3 and arr.shape[-1] != 3:
            arr = arr.transpose(1, 2, 0)
        ax.imshow(np.clip(arr, 0.0, 1.0), interpolation="nearest")
        ax.grid(False)
        ax.set_title(titles[k], fontsize=7)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
        if k == 0:
            ax.set_ylabel(ylabel, fontsize=8)
    fig.tight_layout()
    return fig
