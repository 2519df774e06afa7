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


def test_pipeline_gantt_draws_one_bar_per_event():
    from matplotlib.patches import Rectangle

    from papers30.distributed import gpipe_schedule
    from papers30.plotting import pipeline_gantt

    events = gpipe_schedule(3, 4)
    fig = pipeline_gantt(events, 3, scale=1.0)
    ax = fig.axes[0]
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(bars) == len(events)
    assert sorted(b.get_width() for b in bars) == sorted(e.end - e.start for e in events)
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["forward", "backward"]
    colours = [h.get_facecolor() for h in legend.legend_handles]
    assert colours[0] != colours[1]


def test_measured_vs_formula_draws_markers_and_lines():
    from papers30.plotting import measured_vs_formula

    fig = measured_vs_formula([1, 2, 4], {"a": [0.5, 0.3, 0.2]}, {"a": [0.5, 0.33, 0.2]},
                              "M", "bubble", logx=True)
    lines = fig.axes[0].get_lines()
    assert [ln.get_linestyle() for ln in lines] == ["None", "--"]
    assert list(lines[0].get_ydata()) == [0.5, 0.3, 0.2]
    assert fig.axes[0].get_xlabel() == "M" and fig.axes[0].get_ylabel() == "bubble"


def test_text_heatmap_places_one_square_per_character():
    from papers30.plotting import text_heatmap

    text = "ab\ncdef"
    fig = text_heatmap(text, torch.arange(7.0) - 3, width=3)
    ax = fig.axes[0]
    grid = ax.images[0].get_array()
    # brute force: rows "ab↵", "cde", "f" (wrapped at width 3)
    assert grid.shape == (3, 3)
    assert [t.get_text() for t in ax.texts] == ["a", "b", "\u21b5", "c", "d", "e", "f"]
    assert grid[1, 2] == 2.0 and grid[2, 0] == 3.0  # "e" and "f": values -3..3 in order
    assert np.ma.is_masked(grid[2, 1]) or np.isnan(grid[2, 1])  # no character there
    with pytest.raises(ValueError, match="values"):
        text_heatmap(text, [0.0])


def test_labelled_points_annotates_every_point():
    from papers30.plotting import labelled_points

    fig = labelled_points({"s": ([1, 2], [3, 4], ["x", "y"])}, "a (u)", "b (v)")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["x", "y"]
    assert ax.get_xlabel() == "a (u)" and ax.lines[0].get_ydata().tolist() == [3, 4]


def test_point_polygons_draws_each_closed_polygon_through_the_given_points():
    from papers30.plotting import point_polygons

    pts = [torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.2, 0.2]]), torch.rand(5, 2)]
    fig = point_polygons(pts, {"true": [[0, 1, 2], [0, 1]], "pred": [[0, 3, 2], []]}, ["a", "b"])
    assert len(fig.axes) == 2
    first = fig.axes[0].get_lines()
    assert len(first) == 2 and len(fig.axes[1].get_lines()) == 1  # an empty prediction draws nothing
    x, y = first[0].get_data()
    assert list(x) == [0.0, 1.0, 0.0, 0.0] and list(y) == [0.0, 0.0, 1.0, 0.0]  # closed ring
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["true", "pred"]


def test_curve_panels_draws_each_series_in_its_panel_with_shared_colours():
    from papers30.plotting import curve_panels

    panels = {"plain": {"8 layers": ([1, 2], [3.0, 2.0]), "20 layers": ([1, 2], [4.0, 3.5])},
              "residual": {"8 layers": ([1, 2], [2.5, 1.0])}}
    fig = curve_panels(panels, "step", "loss (nats)")
    left, right = fig.axes
    assert [a.get_title() for a in (left, right)] == ["plain", "residual"]
    assert [len(a.lines) for a in (left, right)] == [2, 1]
    assert left.lines[0].get_color() == right.lines[0].get_color() != left.lines[1].get_color()
    assert list(right.lines[0].get_ydata()) == [2.5, 1.0]
    assert left.get_ylabel() == "loss (nats)" and right.get_xlabel() == "step"
    assert left.get_ylim() == right.get_ylim()  # shared y scale


def test_grouped_bars_draws_one_bar_per_value_at_its_height():
    """Reference: the bar heights and x positions read back from the axes."""
    from papers30.plotting import grouped_bars

    values = {"a": [0.1, 0.5, 0.9], "b": [0.2, 0.4, 0.6]}
    fig = grouped_bars(values, ["x", "y", "z"], "model", "accuracy", ylim=(0.0, 1.0))
    ax = fig.axes[0]
    heights = [round(p.get_height(), 6) for p in ax.patches]
    assert heights == [0.1, 0.5, 0.9, 0.2, 0.4, 0.6]
    centres = [p.get_x() + p.get_width() / 2 for p in ax.patches]
    assert centres[0] < centres[3] < centres[1] < centres[4]  # series side by side per category
    assert ax.get_xlabel() == "model" and ax.get_ylabel() == "accuracy"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    assert ax.get_ylim() == (0.0, 1.0)


def test_grouped_bars_puts_the_legend_above_the_bars_and_the_title_above_it():
    """Reference: the drawn extents of the legend, the axes and the title, in display pixels."""
    from papers30.plotting import grouped_bars

    values = {name: [0.95, 0.97, 0.99, 1.0] for name in ("P = 0", "P = 1", "P = 5", "LSTM encoder", "fifth")}
    fig = grouped_bars(values, ["w", "x", "y", "z"], "model", "accuracy", ylim=(0.0, 1.08), title="t")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent(renderer)
    assert legend.y0 >= ax.get_window_extent(renderer).y1 - 1  # clear of every bar, whatever its height
    assert ax.get_legend()._ncols == 4  # five series: a row of four, then one
    title = fig._suptitle
    assert title.get_text() == "t" and title.get_window_extent(renderer).y0 >= legend.y1 - 1
    assert legend.y1 <= fig.bbox.height and legend.x0 >= 0 and legend.x1 <= fig.bbox.width  # inside the figure
    long = {f"a long series label, number {k}": [0.5, 0.6] for k in range(3)}
    fig = grouped_bars(long, ["x", "y"], "model", "accuracy")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    legend = ax.get_legend()
    assert legend._ncols < 3  # three such labels do not fit side by side, so they wrap
    assert legend.get_window_extent(renderer).width <= ax.get_window_extent(renderer).width


@pytest.mark.parametrize("channels_first", [True, False])
def test_rgb_images_shows_each_image_with_its_pixels_clipped_to_unit_range(channels_first):
    from papers30.plotting import rgb_images

    rng = np.random.default_rng(0)
    imgs = [rng.uniform(-0.5, 1.5, size=(3, 4, 4)) for _ in range(2)]
    shown = [i if channels_first else i.transpose(1, 2, 0) for i in imgs]
    fig = rgb_images([torch.from_numpy(shown[0]), shown[1]], ["a", "b\nc"])
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["a", "b\nc"]
    for ax, img in zip(axes, imgs):
        drawn = np.asarray(ax.images[0].get_array())
        np.testing.assert_allclose(drawn, np.clip(img.transpose(1, 2, 0), 0, 1), rtol=1e-6)
    plt.close(fig)


def test_rgb_images_rejects_bad_input():
    from papers30.plotting import rgb_images

    with pytest.raises(ValueError, match="images"):
        rgb_images([], [])
    with pytest.raises(ValueError, match="titles"):
        rgb_images([np.zeros((3, 2, 2))], ["a", "b"])
    with pytest.raises(ValueError, match=r"images\[0\]"):
        rgb_images([np.zeros((2, 2))], ["a"])


def test_image_grid_draws_colour_photographs_without_a_colour_bar():
    """Reference: the RGB array matplotlib holds for each panel, and the count of axes."""
    from papers30.plotting import image_grid

    photos = [torch.rand(4, 5, 3, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    fig = image_grid([photos], ["train"], ["a", "b", "c"], xlabel="x (pixels)", ylabel="y (pixels)")
    assert len(fig.axes) == 3  # three panels and no colour bar
    for ax, photo in zip(fig.axes, photos):
        np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), photo.numpy(), rtol=0, atol=1e-7)
    grey = image_grid([[torch.rand(4, 5)]], ["train"], ["a"])
    assert len(grey.axes) == 2  # a grey grid keeps its colour bar
    plt.close("all")
