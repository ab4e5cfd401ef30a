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
