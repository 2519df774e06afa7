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
