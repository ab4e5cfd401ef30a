"""Figures. Every axis is labelled with its quantity and unit ("step" for GD iterations);
log axes where the quantity spans decades.

Importing this module leaves matplotlib's backend alone: Jupyter's inline backend shows the
figures, a headless process (CI, ``mhatheory run``) gets matplotlib's non-interactive default
(``MPLBACKEND`` overrides it). Every function returns the figure; experiments save it with
:func:`mhatheory.results.save_figure_atomic`, which closes it. Here and in the experiments'
figure modules matplotlib is imported by the functions that draw, so that importing an
experiment (the CLI imports every one to build its parser) does not load it: ``mhatheory
--help`` takes 1.7 s instead of 2.9 s on a 2-core CPU.
"""

from __future__ import annotations

import numpy as np


def finish(fig, ax, *, xlabel: str, ylabel: str, title: str | None = None, legend: int = 7):
    """Axis labels (quantity and unit), title, legend, log-aware grid, tight layout."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=legend)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def log_scale(ax, axis: str = "y") -> bool:
    """Put ``axis`` ("x" or "y") of ``ax`` on a log scale where what is drawn there (call it
    after drawing) holds a positive finite value, and say in the panel that there is none
    otherwise, leaving the axis linear: a log axis over no positive data has no ticks to place,
    and matplotlib raises while laying the figure out (a heads sweep whose primary slice
    diverged in every run lost its results that way). Returns whether the axis is logarithmic."""
    lim = ax.dataLim
    top = lim.y1 if axis == "y" else lim.x1
    if np.isfinite(top) and top > 0:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
        return True
    say_empty(ax, "no positive finite values to draw")
    return False


def say_empty(ax, text: str) -> None:
    """Write why a panel is empty in its middle, in gray."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=8,
            color="0.4")


def step_axis(ax):
    """GD-step x axis that shows step 0: linear on [0, 1], logarithmic beyond."""
    ax.set_xscale("symlog", linthresh=1.0, linscale=0.5)
    ax.set_xlim(left=0)
    ax.set_xlabel("GD step k (linear on [0, 1], log beyond)")


def loss_curve(traj, title: str = "Gradient descent", bayes_error: float | None = None,
               bayes_error_se: float | None = None):
    """Left: training loss, gradient norm and any recorded ``*_loss`` metric (nats) against GD
    step; right: the recorded ``*_error`` metrics in % with the Bayes-error floor (a labelled
    horizontal line, its ±1 SE band shaded) when ``bayes_error`` (a fraction) is given. Step 0
    is kept (symlog step axis)."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    steps = np.arange(len(traj.loss))
    ax[0].semilogy(steps, traj.loss, label="training loss L̂(θ_k)")
    ax[0].semilogy(steps, traj.grad_norm, "--", label="‖∇L̂(θ_k)‖₂")
    errors = {k: v for k, v in traj.metrics.items() if k.endswith("error")}
    for name, values in traj.metrics.items():
        if name not in errors:
            ax[0].semilogy(steps, np.asarray(values), ":", label=name.replace("_", " "))
    step_axis(ax[0])
    ax[0].set_ylabel("loss (nats) / gradient norm")
    ax[0].legend(fontsize=8)
    ax[0].grid(True, which="both", alpha=0.3)
    for name, values in errors.items():
        ax[1].plot(steps, 100 * np.asarray(values), label=name.replace("_", " "))
    if bayes_error is not None:
        se = 100 * (bayes_error_se or 0.0)
        ax[1].axhline(100 * bayes_error, color="k", ls="--", lw=1,
                      label=f"Bayes error {100 * bayes_error:.2f} ± {se:.2f} % (±1 SE)")
        if se:
            ax[1].axhspan(100 * bayes_error - se, 100 * bayes_error + se, color="k", alpha=0.12)
    step_axis(ax[1])
    ax[1].set_ylim(bottom=0)
    ax[1].set_ylabel("0-1 error (%)")
    if ax[1].get_legend_handles_labels()[0]:
        ax[1].legend(fontsize=8)
    ax[1].grid(True, which="both", alpha=0.3)
    fig.suptitle(f"{title} (η = {traj.lr:g})")
    fig.tight_layout()
    return fig


def slq_density(densities: dict, exact: dict | None = None, sigma: float | None = None):
    """One panel per label: the SLQ density (a :class:`mhatheory.spectral.Density` from
    :func:`mhatheory.spectral.spectral_density`, Gaussian-smoothed) on a linear axis, with the
    dense eigenvalue histogram overlaid when ``exact[label]`` is given."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(densities), figsize=(5.2 * len(densities), 3.8),
                             squeeze=False)
    for ax, (label, dens) in zip(axes[0], densities.items(), strict=True):
        lo, hi = float(dens.nodes.min()), float(dens.nodes.max())
        pad = 0.05 * (hi - lo + 1e-12)
        grid = np.linspace(lo - pad, hi + pad, 800)
        s = sigma or 0.02 * (hi - lo + 1e-12)
        ax.semilogy(grid, np.maximum(dens.pdf(grid, s), 1e-12), label=f"SLQ (σ = {s:.2g})")
        if exact and label in exact:
            ax.hist(exact[label], bins=80, density=True, alpha=0.35, label="dense eigh")
        ax.axvline(0.0, color="k", lw=0.6)
        ax.set_ylim(1e-4, None)
        ax.set_xlabel("Hessian eigenvalue λ (loss units per parameter²)")
        ax.set_ylabel("spectral density")
        ax.set_title(label)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def by_heads(records, seed):
    """``(sorted H values, {H: that H's records of one seed, by step})``."""
    heads = sorted({r["heads"] for r in records})
    return heads, {h: sorted((r for r in records if r["heads"] == h and r["seed"] == seed),
                             key=lambda r: r["step"]) for h in heads}


def symlog_fit(ax, values, pad: float = 2.0):
    """A symlog y axis fitted to ``values``: the linear threshold a decade below the smallest
    nonzero |value| (so every point lies in the logarithmic part) and the limits a factor
    ``pad`` beyond the data on either side, so no half of the axis is left empty when all the
    values share one sign."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    nonzero = np.abs(v[v != 0])
    linthresh = float(nonzero.min()) / 10 if nonzero.size else 1.0
    ax.set_yscale("symlog", linthresh=linthresh)
    if not v.size:
        return
    lo, hi = float(v.min()), float(v.max())
    bottom = lo * pad if lo < 0 else (lo / pad if lo > 0 else -linthresh)
    top = hi / pad if hi < 0 else (hi * pad if hi > 0 else linthresh)
    ax.set_ylim(bottom, top)


def integer_ticks(ax, values):
    """Ticks at ``values`` on a log x axis, labelled as plain integers."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter
    ax.set_xticks(values)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


