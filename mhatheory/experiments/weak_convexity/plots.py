"""Figures of the weak-convexity experiment. Every axis is labelled with its quantity and unit; see
:mod:`mhatheory.plots` for the conventions."""

from __future__ import annotations

import numpy as np

from mhatheory.plots import by_heads, finish, integer_ticks, symlog_fit


def chain_vs_step(records, seed: int = 0):
    """λmin(∇²L̂), λmin(N) and the bound −κ_blk·L̂/√H against GD step, one panel per H."""
    import matplotlib.pyplot as plt
    heads, by = by_heads(records, seed)
    cols = min(4, len(heads))
    rows = -(-len(heads) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, h in zip(axes.flat, heads, strict=False):
        rs = by[h]
        st = np.array([max(r["step"], 0.5) for r in rs])
        ax.plot(st, [r["lambda_min"] for r in rs], "o-", label="λmin(∇²L̂)")
        ax.plot(st, [r["lambda_min_N"] for r in rs], ".:", label="λmin(N)")
        ax.plot(st, [r["bound"] for r in rs], "s--", label="−κ_blk·L̂/√H")
        ax.set_xscale("log")
        symlog_fit(ax, [r[k] for r in rs for k in ("lambda_min", "lambda_min_N", "bound")])
        ax.set_title(f"H = {h}")
        ax.set_xlabel("GD step (step 0 drawn at 0.5)")
        ax.set_ylabel("eigenvalue / bound")
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    for ax in list(axes.flat)[len(heads):]:
        ax.axis("off")
    fig.suptitle(f"Weak-convexity chain along GD (seed {seed}); the chain holds where the "
                 "circles lie above the squares")
    fig.tight_layout()
    return fig


def kappa_vs_heads(records, slopes, stages):
    """κ̂ and −λmin/L̂ against H on log-log axes, per stage, with the fitted slope (mean ± SE over
    seeds) and a −1/2 reference line."""
    import matplotlib.pyplot as plt
    names = {"kappa_hat": "κ̂ = max(0, −λmin)·√H/L̂", "neg_lambda_over_loss": "−λmin/L̂"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (q, label) in zip(axes, names.items(), strict=True):
        for stage, step in stages.items():
            pts = [(r["heads"], r[q]) for r in records if r["step"] == step and r[q] > 0]
            if not pts:
                continue
            hs = np.array(sorted({h for h, _ in pts}))
            med = np.array([np.median([v for h2, v in pts if h2 == h]) for h in hs])
            fit = slopes[q][stage]
            lab = f"{stage} (step {step})"
            if fit["slope_mean"] is not None:
                se = fit["slope_se"]
                lab += f": slope {fit['slope_mean']:.2f}" + (f" ± {se:.2f}" if se else "")
            ax.loglog(hs, med, "o-", label=lab)
            ax.scatter([h for h, _ in pts], [v for _, v in pts], s=8, alpha=0.4)
            if stage == "init":  # the 1/√H law: −λmin/L̂ ∝ H^(−1/2) ⇔ κ̂ independent of H
                power = 0.0 if q == "kappa_hat" else -0.5
                ax.loglog(hs, med[0] * (hs / hs[0]) ** power, "k:",
                          label="−1/2 law (κ̂ flat), from the init median at H = 1"
                          if q == "kappa_hat" else "H^(−1/2) from the init median at H = 1")
        integer_ticks(ax, sorted({r["heads"] for r in records}))
        ax.set_xlabel("number of heads H")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("Effect of H (medians over seeds; dots are seeds; slope = log-log fit, "
                 "mean ± SE over seeds)")
    fig.tight_layout()
    return fig


def tightness(records):
    """Geometric mean over probes of how much each link of the chain loses, against H."""
    import matplotlib.pyplot as plt
    heads = sorted({r["heads"] for r in records})
    names = [link["name"] for link in records[0]["links"]]
    fig, ax = plt.subplots(figsize=(7, 4))
    for j, name in enumerate(names):
        g = []
        for h in heads:
            v = [r["links"][j]["loss_ratio"] for r in records if r["heads"] == h]
            v = [x for x in v if np.isfinite(x) and x > 0]
            g.append(np.exp(np.mean(np.log(v))) if v else np.nan)
        ax.loglog(heads, g, "o-", label=name)
    integer_ticks(ax, heads)
    return finish(
        fig, ax, xlabel="number of heads H",
        ylabel="loss ratio of the link (≥ 1; 1 = tight)",
        title="Where the weak-convexity chain is loose", legend=7)


def convergence(conv, lr):
    """Measured L̂(θ_K) and the finite-time bound against K (log-log)."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4))
    K = np.asarray(conv["K"])
    ax.loglog(K, conv["loss"], label="measured L̂(θ_K)")
    ax.loglog(K, conv["bound"], "--", label="bound L̂(θ*) + ‖θ*−θ₀‖²/(2ηK) + penalty")
    ax.axhline(np.log(2), color="gray", lw=0.8, ls=":", label="log 2 (trivial level)")
    return finish(
        fig, ax, xlabel="GD steps K",
        ylabel="training loss (nats)",
        title=f"Finite-time bound, H = {conv['heads']}, η = {lr:g}", legend=8)
