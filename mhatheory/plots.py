"""Figures. Every axis is labelled with its quantity and unit ("step" for GD iterations);
log axes where the quantity spans decades.

Importing this module leaves matplotlib's backend alone: Jupyter's inline backend shows the
figures, a headless process (CI, ``mhatheory run``) gets matplotlib's non-interactive default
(``MPLBACKEND`` overrides it). Every function returns the figure; experiments save it with
:func:`mhatheory.results.save_figure_atomic`, which closes it.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def _finish(fig, ax, *, xlabel: str, ylabel: str, title: str | None = None, legend: int = 7):
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


def _step_axis(ax):
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
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    steps = np.arange(len(traj.loss))
    ax[0].semilogy(steps, traj.loss, label="training loss L̂(θ_k)")
    ax[0].semilogy(steps, traj.grad_norm, "--", label="‖∇L̂(θ_k)‖₂")
    errors = {k: v for k, v in traj.metrics.items() if k.endswith("error")}
    for name, values in traj.metrics.items():
        if name not in errors:
            ax[0].semilogy(steps, np.asarray(values), ":", label=name.replace("_", " "))
    _step_axis(ax[0])
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
    _step_axis(ax[1])
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


def _by_heads(records, seed):
    heads = sorted({r["heads"] for r in records})
    return heads, {h: sorted((r for r in records if r["heads"] == h and r["seed"] == seed),
                             key=lambda r: r["step"]) for h in heads}


def _symlog_fit(ax, values, pad: float = 2.0):
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


def chain_vs_step(records, seed: int = 0):
    """λmin(∇²L̂), λmin(N) and the bound −κ_blk·L̂/√H against GD step, one panel per H."""
    heads, by = _by_heads(records, seed)
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
        _symlog_fit(ax, [r[k] for r in rs for k in ("lambda_min", "lambda_min_N", "bound")])
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


def _integer_ticks(ax, values):
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xticks(values)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


def kappa_vs_heads(records, slopes, stages):
    """κ̂ and −λmin/L̂ against H on log-log axes, per stage, with the fitted slope (mean ± SE over
    seeds) and a −1/2 reference line."""
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
        _integer_ticks(ax, sorted({r["heads"] for r in records}))
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
    _integer_ticks(ax, heads)
    return _finish(
        fig, ax, xlabel="number of heads H",
        ylabel="loss ratio of the link (≥ 1; 1 = tight)",
        title="Where the weak-convexity chain is loose", legend=7)


def convergence(conv, lr):
    """Measured L̂(θ_K) and the finite-time bound against K (log-log)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    K = np.asarray(conv["K"])
    ax.loglog(K, conv["loss"], label="measured L̂(θ_K)")
    ax.loglog(K, conv["bound"], "--", label="bound L̂(θ*) + ‖θ*−θ₀‖²/(2ηK) + penalty")
    ax.axhline(np.log(2), color="gray", lw=0.8, ls=":", label="log 2 (trivial level)")
    return _finish(
        fig, ax, xlabel="GD steps K",
        ylabel="training loss (nats)",
        title=f"Finite-time bound, H = {conv['heads']}, η = {lr:g}", legend=8)


def _label(spec):
    return f"{spec['mode']}, PE={spec['positional']}, res={spec['residual']}"


def addition_curves(payloads, ceil):
    """Held-out exact match against training step per variant (mean over seeds, band = min/max),
    with the enumerated ceiling for non-causal models without positions."""
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
    axes[0].set_yscale("log")
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
    """Analyses (a) and (b) of notes §3 for seed-0 cells without positional encoding."""
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


def eps1_vs_n(records, slopes):
    """ε₁ against n on log-log axes per (H, K), with the fitted slope and an n^(−1) guide."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for s in slopes:
        rs = sorted((r for r in records if (r["heads"], r["steps"]) == (s["heads"], s["steps"])),
                    key=lambda r: r["n"])
        n = np.array([r["n"] for r in rs])
        per = np.array([r["eps1_per_seed"] for r in rs])
        line = ax.errorbar(n, per.mean(1), yerr=per.std(1), capsize=3, marker="o",
                           label=f"H={s['heads']}, K={s['steps']}: slope "
                                 f"{s['slope_mean']:.2f} ± {s['slope_se']:.2f}")
        ax.loglog(n, per.mean(1)[0] * (n / n[0]) ** -1.0, ":", color=line[0].get_color(),
                  alpha=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _integer_ticks(ax, sorted({r["n"] for r in records}))
    return _finish(
        fig, ax, xlabel="training-set size n",
        ylabel="ε₁ = mean ‖θ_K − θ_K^(i)‖ (parameter norm)",
        title="Replace-one model stability (mean ± std over seeds; dotted: n^(−1))", legend=7)


def gap_vs_bounds(records):
    """Generalisation gap (± 3 SE) against the Lipschitz and smooth bounds, per cell."""
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(records)), 4.2))
    x = np.arange(len(records))
    ax.errorbar(x, [r["gen_gap"] for r in records], yerr=[3 * r["gen_gap_se"] for r in records],
                fmt="o", capsize=3, label="generalisation gap ± 3 SE")
    ax.plot(x, [r["bound_lipschitz"] for r in records], "v", label="G·ε₁ (Lipschitz bound)")
    ax.plot(x, [r["bound_smooth"] for r in records], "^", label="smooth bound at best γ")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xticks(x, [f"n={r['n']}\nH={r['heads']}\nK={r['steps']}" for r in records],
                  fontsize=7)
    return _finish(fig, ax, xlabel="sweep cell", ylabel="test − train loss (nats)",
                   title="Stability bounds vs measured gap (expectation over seeds)")


def divergence_curves(payloads, lr):
    """Mean leave-one-out divergence ‖θ_t − θ_t^(−i)‖ along GD, seed 0, per cell."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for p in payloads:
        r = p["record"]
        d = np.asarray(p["seeds"][0]["divergence_mean"])
        stride = max(1, r["steps"] // 100)
        ax.loglog(1 + stride * np.arange(d.size), d, label=f"n={r['n']}, H={r['heads']}, "
                                                          f"K={r['steps']}")
    return _finish(fig, ax, xlabel="GD step t", ylabel="mean ‖θ_t − θ_t^(−i)‖",
                   title=f"Leave-one-out divergence along GD (η = {lr:g})", legend=6)
