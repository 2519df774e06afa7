"""papers30.display: glue closes glued figures (so a cell shows each figure once)."""

import matplotlib.pyplot as plt
import pytest

from papers30.display import glue, glue_result


def test_glue_closes_a_glued_figure_reference_pyplot_registry():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    assert fig.number in plt.get_fignums()
    glue("fig_test", fig, display=False)
    assert fig.number not in plt.get_fignums()


def test_glue_leaves_plain_values_alone():
    glue("value_test", 0.5)  # no exception, nothing to close
    glue_result("result_test", True)


@pytest.mark.parametrize("name", ["", None, 3])
def test_glue_rejects_a_bad_name(name):
    with pytest.raises(TypeError, match="name"):
        glue(name, 1.0)


def test_glued_figures_are_exported_as_svg_and_slide_png_during_a_build(tmp_path, monkeypatch):
    """Reference: the files themselves (SVG text, PNG header and pixel size at 200 dpi)."""
    from papers30 import display

    monkeypatch.setenv("PAPERS30_FIGURE_DIR", str(tmp_path))
    display.set_chapter(7)
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1])
    glue("fig_export", fig, display=False)
    svg, png = tmp_path / "ch07" / "fig_export.svg", tmp_path / "ch07" / "fig_export.png"
    assert svg.read_text().lstrip().startswith(("<?xml", "<svg"))
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(data[16:20], "big")
    assert width >= 3 * display.SLIDE_DPI  # a 4-inch figure, cropped tight: well over 600 px


def test_no_export_outside_a_build(tmp_path, monkeypatch):
    from papers30 import display

    monkeypatch.chdir(tmp_path)
    display.set_chapter(7)
    fig, _ = plt.subplots()
    assert display.export_figure("x", fig) == [] and list(tmp_path.iterdir()) == []


def test_outside_a_build_a_hidden_figure_is_shown_where_it_is_made(monkeypatch):
    """Reference: IPython's display hook, replaced by a recorder; in the build nothing extra is shown."""
    import IPython.display

    from papers30 import display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda v: shown.append(v))
    fig, _ = plt.subplots()
    glue("fig_reader", fig, display=False)
    assert shown == [fig]
    monkeypatch.setenv("PAPERS30_FIGURE_DIR", "/nonexistent-but-set")
    monkeypatch.setattr(display, "_chapter", None)  # no chapter: nothing is exported
    fig2, _ = plt.subplots()
    glue("fig_build", fig2, display=False)
    assert shown == [fig]


def test_glue_pastes_numpy_and_torch_scalars_as_plain_numbers(monkeypatch):
    """Reference: the Python float of the same value; np.float64's repr is not a number myst-nb can format."""
    import numpy as np
    import torch

    from papers30 import display

    seen = {}
    monkeypatch.setattr(display, "_myst_glue", lambda name, value, display=False: seen.__setitem__(name, value))
    display.glue("a", np.float64(0.25))
    display.glue("b", torch.tensor(3))
    display.glue("c", np.int64(7))
    assert seen == {"a": 0.25, "b": 3, "c": 7}
    assert all(type(v) in (float, int) for v in seen.values())
