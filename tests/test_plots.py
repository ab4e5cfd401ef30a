import importlib

import matplotlib
import matplotlib.pyplot as plt

from mhatheory import plots
from mhatheory.experiments.heads import plots as heads_plots


def test_importing_the_figure_modules_leaves_the_backend_alone():
    """In Jupyter the inline backend must survive ``import mhatheory.plots`` (forcing Agg
    would hide notebook figures): any backend chosen before the import is kept."""
    before = matplotlib.get_backend()
    plt.switch_backend("pdf")  # stands in for Jupyter's inline backend: not the Agg default
    try:
        for module in (plots, heads_plots):
            importlib.reload(module)
            assert matplotlib.get_backend() == "pdf", module.__name__
    finally:
        plt.switch_backend(before)


def test_a_log_axis_over_no_positive_data_stays_linear_and_the_figure_saves(tmp_path):
    """matplotlib cannot lay out a log axis whose data hold no positive value (it raises at
    ``tight_layout``); :func:`plots.log_scale` leaves such an axis linear and says why, and puts
    an axis with a positive value on the log scale."""
    fig, (empty, nonpositive, some) = plt.subplots(1, 3)
    empty.plot([1, 2], [float("nan")] * 2)
    nonpositive.plot([1, 2], [0.0, -1.0])
    some.plot([1, 2], [0.0, 3.0])
    assert [plots.log_scale(ax) for ax in (empty, nonpositive, some)] == [False, False, True]
    assert [ax.get_yscale() for ax in (empty, nonpositive, some)] == ["linear", "linear", "log"]
    assert "no positive" in empty.texts[0].get_text()
    fig.tight_layout()
    fig.savefig(tmp_path / "f.png")
    plt.close(fig)


def test_the_matched_figure_of_a_slice_with_nothing_to_draw_says_so():
    """Every run of a primary slice failed: each panel is empty and says why, none raises."""
    from mhatheory.experiments import heads
    cfg = heads.Config(primary_lrs=(4.0,), primary_inits=(0.3,), heads_grid=(1, 2))
    fig = heads_plots.matched({"matched": []}, [], cfg)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts == ["no finite values to draw"] * 2 + ["no positive finite values to draw"]
    fig.tight_layout()
    plt.close(fig)
