"""Figures of the symmetry experiment (3-digit addition). Every axis is labelled with its quantity
and unit; see :mod:`mhatheory.plots` for the conventions."""

from __future__ import annotations

import numpy as np

from mhatheory.plots import log_scale


def _label(spec):
    return f"{spec['mode']}, PE={spec['positional']}, res={spec['residual']}"


def addition_curves(payloads, ceil):
    """Held-out exact match against training step per variant (mean over seeds, band = min/max),
    with the enumerated ceiling for non-causal models without positions."""
    import matplotlib.pyplot as plt
    groups = {}
    for p in payloads:
        groups.setdefault(_label(p["spec"]), []).append(p)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for label, ps in groups.items():
        ax = axes[0] if ps[0]["spec"]["mode"] == "causal" else axes[1]
        steps = [c["step"] for c in ps[0]["curve"]]
        em = np.array([[100 * c["exact_match"] for c in p["curve"]] for p in ps])
        line, = ax.plot(steps, em.mean(0), label=label)
        ax.fill_between(steps, em.min(0), em.max(0), color=line.get_color(), alpha=0.15)
    if any(ps[0]["spec"]["mode"] == "noncausal" for ps in groups.values()):
        axes[1].axhline(100 * ceil.exact_match, color="k", ls="--",
                        label=f"ceiling, non-causal no-PE ({100 * ceil.exact_match:.2f} %)")
    for ax, title in zip(axes, ("causal", "non-causal (prefix-wise)"), strict=True):
        ax.set_xlabel("AdamW step")
        ax.set_title(title)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, f"no {title} cells in this run", ha="center", va="center",
                    transform=ax.transAxes)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("held-out exact match (%)")
    fig.suptitle("3-digit addition (mean over seeds; band = min–max)")
    fig.tight_layout()
    return fig


def residual_ablation(payloads):
    """Causal models: training loss and exact match with and without residual connections."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    groups = {}
    for p in payloads:
        if p["spec"]["mode"] == "causal":
            groups.setdefault(_label(p["spec"]), []).append(p)
    for label, ps in groups.items():
        steps = [c["step"] for c in ps[0]["curve"]]
        for ax, key, scale in ((axes[0], "train_loss", 1), (axes[1], "exact_match", 100)):
            vals = np.array([[scale * c[key] for c in p["curve"]] for p in ps])
            ax.errorbar(steps, vals.mean(0), yerr=vals.std(0), capsize=2, label=label)
    log_scale(axes[0])
    axes[0].set_ylabel("training cross-entropy (nats/token)")
    axes[1].set_ylabel("held-out exact match (%)")
    for ax in axes:
        ax.set_xlabel("AdamW step")
        ax.grid(True, alpha=0.3)
        if groups:
            ax.legend(fontsize=7)
    fig.suptitle("Residual ablation, causal models (mean ± std over seeds)"
                 + ("" if groups else ": no causal cells in this run"))
    fig.tight_layout()
    return fig


def correlation_heatmaps(payloads):
    """The correlation analyses (a) and (b) (``experiment.correlations``) for seed-0 cells
    without positional encoding."""
    import matplotlib.pyplot as plt
    cells = [p for p in payloads if p["spec"]["positional"] == "none"
             and p["spec"]["seed"] == min(q["spec"]["seed"] for q in payloads)]
    fig, axes = plt.subplots(2, max(1, len(cells)), figsize=(3.4 * max(1, len(cells)), 7.0),
                             squeeze=False, constrained_layout=True)
    ticks = list("abc+def=")
    if not cells:
        axes[0, 0].text(0.5, 0.5, "no cells without positional encoding in this run",
                        ha="center", va="center")
        for ax in axes.flat:
            ax.axis("off")
        return fig
    for col, p in enumerate(cells):
        for row, key in enumerate(("slice_to_input", "cosine_top_vs_input")):
            ax = axes[row, col]
            im = ax.imshow(np.asarray(p["correlations"][key]), cmap="RdBu_r", vmin=-1, vmax=1)
            ax.set_xticks(range(8), ticks)
            ax.set_yticks(range(8), ticks)
            ax.set_xlabel("input position j")
            ax.set_ylabel("top-layer position k")
            ax.set_title(("(a) corr(h^L_k, E[x_j])" if row == 0 else "(b) cos(h^L_k, h^0_j)")
                         + f"\n{p['spec']['mode']}, res={p['spec']['residual']}", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.6, label="correlation / cosine")
    fig.suptitle("Vertical slices (constant tokens + and = have no variance: correlation 0)",
                 fontsize=8)
    return fig
