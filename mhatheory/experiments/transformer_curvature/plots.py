"""Figures of ``mhatheory run transformer-curvature``
(:mod:`mhatheory.experiments.transformer_curvature`): the λmin–H law per task at every stage,
the training curves, the probe-batch comparison and (when probed) the per-head blocks of N.
Functions of the records the experiment writes, so a notebook can redraw them from
``results.json``."""

from __future__ import annotations

import numpy as np

from mhatheory import trends
from mhatheory.experiments.transformer_curvature.grid import scaling_members, stage_names
from mhatheory.plots import log_scale


def _slope_label(s) -> str:
    if s is None or s["slope"] is None:
        return "b n/a"
    ci = "" if s["lo"] is None else f" [{s['lo']:+.2f}, {s['hi']:+.2f}]"
    return f"b = {s['slope']:+.2f}{ci}"


def _stage_title(stage: str, entropy: float) -> str:
    if stage == "entropy":
        return f"L̂ first ≤ {entropy:.2f} (marginal entropy)"
    if stage.startswith("loss_"):
        return f"L̂ first ≤ {stage[5:]}"
    return {"init": "init (step 0)", "late": "end of training"}[stage]


def law(records: list[dict], summary: dict, config, task: str):
    """−λmin/L̂ against H (log-log) on one task: a row per scaling, a column per stage, a line per
    depth (seed mean ± SE, positive values only) with its slope and 95 % t-interval, and an
    H^(−1/2) reference through the first point."""
    import matplotlib.pyplot as plt
    stages = stage_names(config)
    scalings = list(config.scaling_grid)
    fig, axes = plt.subplots(len(scalings), len(stages),
                             figsize=(3.3 * len(stages), 3.1 * len(scalings)), squeeze=False,
                             constrained_layout=True)
    main = [r for r in records if r["task"] == task and r["probe_batch"] == config.probe_batch]
    for i, scaling in enumerate(scalings):
        members = scaling_members(config, scaling)
        for j, stage in enumerate(stages):
            ax = axes[i, j]
            drawn = False
            for layers in config.layers_grid:
                m, e = [], []
                for d, h in members:
                    v = [r["neg_lambda_over_loss"] for r in main if r["stage"] == stage
                         and r["layers"] == layers and (r["d_model"], r["heads"]) == (d, h)
                         and (r["neg_lambda_over_loss"] or 0) > 0]
                    mean, se = trends.mean_se(v)
                    m.append(np.nan if mean is None else mean)
                    e.append(0.0 if se is None else se)
                fit = next((s for s in summary["slopes"] if s["task"] == task
                            and s["scaling"] == scaling and s["layers"] == layers
                            and s["stage"] == stage), None)
                hs = [h for _, h in members]
                drawn = drawn or bool(np.isfinite(m).any())
                ax.errorbar(hs, m, yerr=e, marker="o", capsize=3,
                            label=f"{layers} layer{'s' if layers > 1 else ''}: "
                                  f"{_slope_label(fit)}")
                if layers == config.layers_grid[0] and np.isfinite(m[0]):
                    hh = np.array(hs, float)
                    ax.plot(hh, m[0] * (hh / hh[0]) ** -0.5, "k--", lw=1, label="∝ H^(−1/2)")
            ax.set_xscale("log", base=2)
            reached = any(r["stage"] == stage for r in main)
            if drawn:
                ax.set_yscale("log")
            else:
                ax.text(0.5, 0.5, "no cell with λmin < 0\nat this stage" if reached else
                        "no cell reached\nthis stage", ha="center", va="center",
                        transform=ax.transAxes, fontsize=8)
            ax.set_xlabel("heads H per layer")
            if j == 0:
                ax.set_ylabel(f"{scaling}\n−λmin(∇²L̂)/L̂  (1/param²)")
            title = _stage_title(stage, summary["entropy"][task])
            if stage == "late":
                t = summary["training"][task]
                title += f" ({t['learned']} of {t['cells']} cells learned)"
            ax.set_title(title, fontsize=9)
            ax.legend(fontsize=6)
    fig.suptitle(f"{task}: negative curvature relative to the loss vs heads, at matched loss "
                 "(seed mean ± SE)", fontsize=10)
    return fig


def training_curves(cells: list[dict], config):
    """Probe-batch loss (nats, log scale) and validation exact-match accuracy against AdamW step,
    one line per cell, coloured by H, a column per task."""
    import matplotlib.pyplot as plt
    tasks = list(config.tasks)
    fig, axes = plt.subplots(2, len(tasks), figsize=(5.0 * len(tasks), 6.0), squeeze=False,
                             constrained_layout=True)
    heads = sorted({c["heads"] for c in cells})
    colour = {h: f"C{i}" for i, h in enumerate(heads)}
    for j, task in enumerate(tasks):
        for c in (c for c in cells if c["task"] == task):
            kw = dict(color=colour[c["heads"]], lw=0.6, alpha=0.6)
            axes[0, j].plot(c["curve"]["step"], c["curve"]["loss"], **kw)
            axes[1, j].plot(c["curve"]["step"], c["curve"]["accuracy"], **kw)
        for h in heads:
            axes[0, j].plot([], [], color=colour[h], label=f"H = {h}")
        axes[0, j].axhline(config.target_loss, color="k", ls=":", lw=1,
                           label=f"target loss {config.target_loss:g}")
        axes[1, j].axhline(config.target_accuracy, color="k", ls=":", lw=1,
                           label=f"target accuracy {config.target_accuracy:g}")
        log_scale(axes[0, j])
        axes[0, j].set_ylabel("L̂ on the probe batch (nats)")
        axes[1, j].set_ylabel("validation exact match")
        for ax in axes[:, j]:
            ax.set_xlabel("AdamW step")
            ax.legend(fontsize=7)
        axes[0, j].set_title(task, fontsize=10)
    fig.suptitle("Training until each cell has learned (every cell, every seed)", fontsize=10)
    return fig


def probe_batch(records: list[dict], config):
    """At the end of training, −λmin/L̂ on the fewest probe samples against the most, a point
    per cell, a marker per task, with the diagonal."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.0, 4.6), constrained_layout=True)
    late = [r for r in records if r["stage"] == "late"]
    for i, task in enumerate(config.tasks):
        by = {}
        for r in late:
            if r["task"] == task:
                key = (r["d_model"], r["heads"], r["layers"], r["seed"])
                by.setdefault(key, {})[r["probe_batch"]] = r["neg_lambda_over_loss"]
        small, large = min(config.probe_sizes), max(config.probe_sizes)
        pts = [(v[large], v[small]) for v in by.values()
               if (v.get(large) or 0) > 0 and (v.get(small) or 0) > 0]
        if pts:
            x, y = np.array(pts).T
            ax.scatter(x, y, s=14, marker="os"[i % 2], label=task, alpha=0.7)
    if ax.collections:
        lim = ax.get_xlim() + ax.get_ylim()
        lo, hi = min(lim), max(lim)
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="equal")
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(f"−λmin/L̂ on {max(config.probe_sizes)} samples (1/param²)")
    ax.set_ylabel(f"−λmin/L̂ on the first {min(config.probe_sizes)} (1/param²)")
    ax.set_title("Does the probe batch change the negative curvature? (end of training)",
                 fontsize=9)
    ax.legend(fontsize=8)
    return fig


def head_block_minima(records: list[dict], config):
    """Per-head block λmin of N (first layer, Q/K/V of head h) at the end of training against
    H, each head of each seed a point, beside λmin(N) of the whole model (seed mean)."""
    import matplotlib.pyplot as plt
    combos = [(t, L) for t in config.tasks for L in config.layers_grid]
    fig, axes = plt.subplots(1, len(combos), figsize=(4.2 * len(combos), 3.4), squeeze=False,
                             constrained_layout=True)
    for ax, (task, layers) in zip(axes[0], combos, strict=True):
        sel = [r for r in records if r["task"] == task and r["layers"] == layers
               and r["stage"] == "late" and r["probe_batch"] == config.probe_batch]
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
        ax.set_title(f"{task}, {layers} layer{'s' if layers > 1 else ''}, end", fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle("Per-head blocks of the curvature term N at the end of training", fontsize=10)
    return fig


def figures(records: list[dict], cells: list[dict], summary: dict, config) -> dict:
    """Every figure of a run, by file stem."""
    out = {f"law_{task}": law(records, summary, config, task) for task in config.tasks}
    out["training"] = training_curves(cells, config)
    out["probe_batch"] = probe_batch(records, config)
    if config.head_blocks:
        out["head_blocks"] = head_block_minima(records, config)
    return out
