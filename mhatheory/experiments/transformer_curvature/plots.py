"""Figures of ``mhatheory run transformer-curvature``
(:mod:`mhatheory.experiments.transformer_curvature`): the λmin–H law and the per-head blocks of
N. Functions of the records the experiment writes, so a notebook can redraw them from
``results.json``."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from mhatheory import trends


def _slope_label(v, se):
    return "n/a" if v is None else f"{v:+.2f}" + ("" if se is None else f" ± {se:.2f}")


def law(records: list[dict], summary: dict, config):
    """−λmin/L̂ against H (log-log), one panel per (scaling, stage), one line per depth, mean ±
    SE over seeds (positive values only), with an H^(−1/2) reference through the H=1 mean."""
    stages = list(dict.fromkeys(r["stage"] for r in records))   # in probing order
    scalings = list(config.scaling_grid)
    fig, axes = plt.subplots(len(scalings), len(stages), figsize=(4.2 * len(stages),
                                                                 3.4 * len(scalings)),
                             squeeze=False, constrained_layout=True)
    for i, scaling in enumerate(scalings):
        for j, stage in enumerate(stages):
            ax = axes[i, j]
            for layers in config.layers_grid:
                sel = [r for r in records if r["scaling"] == scaling and r["stage"] == stage
                       and r["layers"] == layers]
                hs = sorted({r["heads"] for r in sel})
                m, e = [], []
                for h in hs:
                    v = [r["neg_lambda_over_loss"] for r in sel if r["heads"] == h
                         and r["neg_lambda_over_loss"] is not None
                         and r["neg_lambda_over_loss"] > 0]
                    mean, se = trends.mean_se(v)
                    m.append(np.nan if mean is None else mean)
                    e.append(0.0 if se is None else se)
                fit = next((s for s in summary["slopes"] if s["scaling"] == scaling
                            and s["layers"] == layers and s["stage"] == stage), None)
                ax.errorbar(hs, m, yerr=e, marker="o", capsize=3,
                            label=f"{layers} layer{'s' if layers > 1 else ''}: b = "
                                  f"{_slope_label(fit and fit['slope'], fit and fit['se'])}")
                if layers == config.layers_grid[0] and np.isfinite(m[0]):
                    hh = np.array(hs, float)
                    ax.plot(hh, m[0] * (hh / hh[0]) ** -0.5, "k--", lw=1, label="∝ H^(−1/2)")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("heads H per layer")
            ax.set_ylabel("−λmin(∇²L̂)/L̂  (1/param²)")
            ax.set_title(f"{scaling}, {stage}", fontsize=10)
            ax.legend(fontsize=7)
    fig.suptitle("Negative curvature relative to the loss vs heads (3-digit addition, "
                 "answer-token cross-entropy)", fontsize=10)
    return fig


def head_block_minima(records: list[dict], config):
    """Per-head block λmin of N (first layer, Q/K/V of head h) at the late probe against H, each
    head of each seed a point, beside λmin(N) of the whole model (line: seed mean)."""
    combos = [(s, L) for s in config.scaling_grid for L in config.layers_grid]
    fig, axes = plt.subplots(1, len(combos), figsize=(4.2 * len(combos), 3.4), squeeze=False,
                             constrained_layout=True)
    for ax, (scaling, layers) in zip(axes[0], combos, strict=True):
        sel = [r for r in records if r["scaling"] == scaling and r["layers"] == layers
               and r["stage"] == "late"]
        hs = sorted({r["heads"] for r in sel})
        for r in sel:
            vals = [b["lambda_min_N"] for b in r.get("head_blocks_N", [])]
            jitter = np.linspace(0.9, 1.1, len(vals)) if len(vals) > 1 else np.ones(len(vals))
            ax.scatter(r["heads"] * jitter, vals, s=8, alpha=0.5, color="C0")
        full = [np.mean([r["lambda_min_N"] for r in sel if r["heads"] == h]) for h in hs]
        ax.plot(hs, full, "C3o-", label="λmin(N), whole model (seed mean)")
        ax.scatter([], [], s=8, color="C0", label="λmin of a head block of N (layer 1)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.axhline(0.0, color="k", lw=0.5)
        ax.set_xlabel("heads H per layer")
        ax.set_ylabel("eigenvalue (1/param²)")
        ax.set_title(f"{scaling}, {layers} layer{'s' if layers > 1 else ''}, late", fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle("Per-head blocks of the curvature term N at the end of training", fontsize=10)
    return fig
