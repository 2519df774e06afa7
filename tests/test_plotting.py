"""papers30.plotting: the style and the figures' labels, read back from matplotlib (Agg backend)."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from papers30.plotting import PALETTE, attention_maps, curves, use_style


def test_use_style_sets_white_backgrounds_and_palette():
    with matplotlib.rc_context():
        use_style()
        assert plt.rcParams["figure.facecolor"] == "white"
        assert plt.rcParams["axes.facecolor"] == "white"
        assert plt.rcParams["savefig.facecolor"] == "white"
        assert plt.rcParams["axes.prop_cycle"].by_key()["color"] == list(PALETTE)
        fig, ax = plt.subplots()
        assert matplotlib.colors.to_hex(fig.get_facecolor()) == "#ffffff"
        assert matplotlib.colors.to_hex(ax.plot([0, 1])[0].get_color()) == PALETTE[0].lower()


def test_palette_is_okabe_ito_hex_colours():
    assert len(PALETTE) == 8 and len(set(PALETTE)) == 8
    assert all(matplotlib.colors.is_color_like(c) for c in PALETTE)


@pytest.mark.parametrize("n_series", [1, 3])
def test_curves_returns_labelled_figure_with_the_data(n_series):
    series = {f"s{i}": ([1, 2, 3], [i, i + 1, i + 4]) for i in range(n_series)}
    fig = curves(series, "step", "loss", title="T", hline=0.5)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "loss" and ax.get_title() == "T"
    lines = ax.get_lines()
    assert len(lines) == n_series + 1  # plus the horizontal line
    for i, line in enumerate(lines[:n_series]):
        assert list(line.get_ydata()) == [i, i + 1, i + 4] and line.get_label() == f"s{i}"
    assert list(lines[-1].get_ydata()) == [0.5, 0.5]
    assert (ax.get_legend() is not None) == (n_series > 1)


def test_curves_log_scale():
    fig = curves({"a": ([1, 2], [1.0, 10.0])}, "x", "y", logy=True)
    assert fig.axes[0].get_yscale() == "log"
    assert curves({"a": ([1, 2], [1.0, 10.0])}, "x", "y").axes[0].get_yscale() == "linear"


@pytest.mark.parametrize("n", [1, 3])
def test_attention_maps_returns_labelled_heat_maps(n):
    maps = [torch.softmax(torch.randn(4, 5), -1) for _ in range(n - 1)] + [np.full((4, 5), 0.2)]
    fig = attention_maps(maps, [f"head {i}" for i in range(n)], list("abcde"), list("wxyz"))
    assert isinstance(fig, Figure)
    heat, colorbar = fig.axes[:n], fig.axes[n:]
    assert len(colorbar) == 1 and colorbar[0].get_ylabel() == "attention weight"
    for i, ax in enumerate(heat):
        assert ax.get_xlabel() == "source position (key)"
        assert ax.get_title() == f"head {i}"
        assert [t.get_text() for t in ax.get_xticklabels()] == list("abcde")
        assert [t.get_text() for t in ax.get_yticklabels()] == list("wxyz")
        (image,) = ax.get_images()
        want = maps[i].numpy() if isinstance(maps[i], torch.Tensor) else maps[i]
        np.testing.assert_allclose(image.get_array(), want)
        assert image.get_clim() == (0.0, 1.0)
    assert heat[0].get_ylabel() == "target position (query)"


def test_attention_maps_accepts_tensors_that_require_grad():
    m = torch.rand(2, 2, requires_grad=True)
    fig = attention_maps([m], ["t"], ["a", "b"], ["c", "d"], xlabel="keys", ylabel="queries")
    assert fig.axes[0].get_xlabel() == "keys" and fig.axes[0].get_ylabel() == "queries"
