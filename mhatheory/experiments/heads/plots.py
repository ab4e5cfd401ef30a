"""Figures of the heads sweep (``mhatheory run heads``): each H at its tuned best, robustness,
H at matched training loss, cost, the controls, the claims slice by slice, phase diagrams over
H × η and the stability bounds against the gap. Axes carry their quantity and unit; H is on a
log₂ axis; error bars are ± 1 SE over seeds unless a panel says otherwise."""

from __future__ import annotations

import numpy as np

from mhatheory.plots import integer_ticks, log_scale, say_empty

_VERDICT_COLOR = {"yes": "tab:green", "no": "tab:red", "undecided": "tab:gray"}
_ARM = {"growing": ("H heads, width grows (d×d per head)", "o-", "tab:blue"),
        "fixed_width": ("H heads, fixed total width", "s-", "tab:orange"),
        "average": ("average of H one-head models", "^-", "tab:green")}


def _heads_axis(ax, heads):
    ax.set_xscale("log", base=2)
    integer_ticks(ax, heads)
    ax.set_xlabel("number of heads H")


def _select(records, **fixed):
    return [r for r in records if all(r[k] == v for k, v in fixed.items())]


def _nan(v):
    return np.nan if v is None else v


def phase_diagrams(records, n: int):
    """H × η heatmaps of the growing arm at training-set size ``n``: the failed fraction (top)
    and the test error at θ_K over all seeds (bottom), one column per init scale."""
    import matplotlib.pyplot as plt
    rs = _select(records, n=n, arm="growing")
    inits = sorted({r["init_scale"] for r in rs})
    heads = sorted({r["heads"] for r in rs})
    lrs = sorted({r["lr"] for r in rs})
    fig, axes = plt.subplots(2, len(inits), figsize=(0.55 * len(heads) * len(inits) + 2.5,
                                                     1.6 + 0.85 * len(lrs)), squeeze=False,
                             constrained_layout=True)
    rows = (("failed_frac", "fraction of seeds failed", "Reds"),
            ("test_error", "test error at θ_K, all seeds (fraction)", "viridis_r"))
    for row, (key, label, cmap) in enumerate(rows):
        mats, lam = {}, {}
        for init in inits:
            M = np.full((len(lrs), len(heads)), np.nan)
            for r in _select(rs, init_scale=init):
                v = r.get(key)
                M[lrs.index(r["lr"]), heads.index(r["heads"])] = np.nan if v is None else v
                if r.get("eta_lambda_max0") is not None:
                    lam.setdefault((init, r["lr"]), []).append(r["eta_lambda_max0"])
            mats[init] = M
        vals = np.concatenate([M[np.isfinite(M)] for M in mats.values()])
        lo, hi = (0.0, 1.0) if key == "failed_frac" else (
            (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0))
        for col, init in enumerate(inits):
            ax, M = axes[row, col], mats[init]
            im = ax.imshow(M, origin="lower", cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
            for i in range(len(lrs)):
                for j in range(len(heads)):
                    v = M[i, j]
                    dark = np.isfinite(v) and (v - lo) > 0.55 * (hi - lo + 1e-300)
                    if cmap == "viridis_r":
                        dark = np.isfinite(v) and (v - lo) > 0.45 * (hi - lo + 1e-300)
                    ax.text(j, i, "—" if not np.isfinite(v) else f"{v:.2f}", ha="center",
                            va="center", fontsize=6.5, color="w" if dark else "k")
            ax.set_xticks(range(len(heads)), heads)
            ax.set_yticks(range(len(lrs)), [
                f"{lr:g} ({np.median(lam[(init, lr)]):.2g})" if (init, lr) in lam else f"{lr:g}"
                for lr in lrs], fontsize=7)
            ax.set_xlabel("number of heads H")
            ax.set_ylabel("η  (median η·λmax(θ₀))", fontsize=8)
            ax.set_title(f"init scale {init:g}: {'failed' if row == 0 else 'test error'}",
                         fontsize=9)
        fig.colorbar(im, ax=list(axes[row]), shrink=0.9, label=label)
    fig.suptitle(f"Phase diagrams over H × η at n = {n} (each cell: mean over seeds)")
    return fig


def tuned(summary, bayes: float):
    """Each H at its tuned best: test error ± SE (validation error dashed; hollow marker: the
    selected setting is on the grid's edge), the selected η and init scale, and the stopping
    step."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    heads = sorted({t["heads"] for t in summary["tuned"]})
    for arm in ("growing", "fixed_width"):
        rows = sorted((t for t in summary["tuned"] if t["arm"] == arm), key=lambda t: t["heads"])
        if not rows:
            continue
        label, style, color = _ARM[arm]
        h = [t["heads"] for t in rows]
        axes[0].errorbar(h, [t["test_error"] for t in rows],
                         yerr=[_nan(t["test_error_se"]) for t in rows], fmt=style, color=color,
                         capsize=2, label=f"{label}: test")
        axes[0].plot(h, [t["val_error"] for t in rows], "--", color=color, alpha=0.6,
                     label=f"{label}: validation (selected on)")
        edge = [t for t in rows if t["on_edge"]]
        axes[0].plot([t["heads"] for t in edge], [t["test_error"] for t in edge], "o", ms=10,
                     mfc="none", color="k", label="on the grid's edge" if edge else None)
        axes[1].plot(h, [t["lr"] for t in rows], style, color=color, label=f"η ({arm})")
        axes[1].plot(h, [t["init_scale"] for t in rows], style[0] + ":", color=color,
                     alpha=0.5, label=f"init scale ({arm})")
        axes[2].plot(h, [t["stop_step"] for t in rows], style, color=color, label=label)
    if bayes is not None:
        axes[0].axhline(bayes, color="k", ls=":", lw=1, label="Bayes floor")
    axes[0].set_ylabel("0-1 error at the selected setting (fraction)")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("selected η and init scale")
    axes[2].set_ylabel("selected stopping step (GD steps)")
    for ax in axes:
        _heads_axis(ax, heads)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6.5)
    fig.suptitle("Each H at its best: η, init scale and stopping step selected on validation "
                 "error (mean over seeds); test error read there", fontsize=10)
    fig.tight_layout()
    return fig


def robustness(summary):
    """Share of the η × init grid whose validation error is within δ of each H's best (± bootstrap
    SE over seeds), and the share of all runs that failed."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    heads = sorted({r["heads"] for r in summary["robustness"]})
    for arm in ("growing", "fixed_width"):
        rows = sorted((r for r in summary["robustness"] if r["arm"] == arm),
                      key=lambda r: r["heads"])
        if not rows:
            continue
        label, style, color = _ARM[arm]
        h = [r["heads"] for r in rows]
        axes[0].errorbar(h, [r["good_frac"] for r in rows],
                         yerr=[r["good_frac_se"] for r in rows], fmt=style, color=color,
                         capsize=2, label=label)
        axes[1].plot(h, [r["failed_frac"] for r in rows], style, color=color, label=label)
    delta = summary["robustness"][0]["delta"] if summary["robustness"] else 0
    axes[0].set_ylabel(f"share of settings within δ = {delta:g} of the best")
    axes[1].set_ylabel("share of runs failed (non-finite or L̂(θ_K) > ln 2)")
    for ax in axes:
        _heads_axis(ax, heads)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Robustness to tuning over the η × init grid", fontsize=10)
    fig.tight_layout()
    return fig


def matched(summary, records, config):
    """Test error, gap and ε₁ against H at each training-loss target (solid) and after K steps
    (dashed), one column per primary slice, growing arm."""
    import matplotlib.pyplot as plt
    qs = (("test_error", "test error (fraction)"), ("gen_gap", "gap = test − train loss (nats)"),
          ("eps1", "ε₁ = mean ‖θ − θ^(i)‖"))
    fig, axes = plt.subplots(len(qs), len(config.primary), squeeze=False,
                             figsize=(4.6 * len(config.primary), 2.9 * len(qs)))
    heads = list(config.heads_grid)
    for col, (lr, init) in enumerate(config.primary):
        for row, (q, label) in enumerate(qs):
            ax = axes[row, col]
            for target in config.loss_targets:
                ms = sorted((m for m in summary["matched"] if m["arm"] == "growing"
                             and (m["lr"], m["init_scale"], m["target"]) == (lr, init, target)
                             and m[q] is not None), key=lambda m: m["heads"])
                if ms:
                    ax.errorbar([m["heads"] for m in ms], [m[q] for m in ms],
                                yerr=[_nan(m[f"{q}_se"]) for m in ms], marker="o", ms=3,
                                capsize=2, label=f"at L̂ ≤ {target:g}")
            at_k = sorted(_select(records, arm="growing", lr=lr, init_scale=init, n=config.n),
                          key=lambda r: r["heads"])
            at_k = [r for r in at_k if r.get(q) is not None]
            ax.plot([r["heads"] for r in at_k], [r[q] for r in at_k], "k--", lw=1,
                    label=f"after K = {config.steps} steps")
            if q == "eps1":
                log_scale(ax)
            elif not np.isfinite(ax.dataLim.y1):        # every run of the slice failed
                say_empty(ax, "no finite values to draw")
            _heads_axis(ax, heads)
            ax.set_ylabel(label, fontsize=8)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=6)
            if row == 0:
                ax.set_title(f"η = {lr:g}, init = {init:g}, n = {config.n}", fontsize=9)
    fig.suptitle("H compared at matched training loss (each run read when L̂ first reaches the "
                 "target; means over the seeds that reached it)", fontsize=10)
    fig.tight_layout()
    return fig


def cost(summary):
    """Tuned test error against the FLOPs of one GD step, and seconds per step against H."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    cost_of = {(c["arm"], c["heads"]): c for c in summary["cost"]}
    for arm in ("growing", "fixed_width"):
        rows = sorted((t for t in summary["tuned"] if t["arm"] == arm
                       and (arm, t["heads"]) in cost_of), key=lambda t: t["heads"])
        if not rows:
            continue
        label, style, color = _ARM[arm]
        f = [cost_of[(arm, t["heads"])]["flops_per_step"] for t in rows]
        axes[0].errorbar(f, [t["test_error"] for t in rows],
                         yerr=[_nan(t["test_error_se"]) for t in rows], fmt=style, color=color,
                         capsize=2, label=label)
        for t, x in zip(rows, f, strict=True):
            axes[0].annotate(f"H={t['heads']}", (x, t["test_error"]), fontsize=6,
                             textcoords="offset points", xytext=(3, 3))
    for arm in ("growing", "fixed_width", "average"):
        rows = sorted((c for c in summary["cost"] if c["arm"] == arm), key=lambda c: c["heads"])
        if rows:
            label, style, color = _ARM[arm]
            axes[1].plot([c["heads"] for c in rows], [c["seconds_per_step"] for c in rows],
                         style, color=color, label=label)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("FLOPs of one full-batch GD step (compiled program's cost analysis)")
    axes[0].set_ylabel("tuned test error (fraction)")
    log_scale(axes[1])
    axes[1].set_ylabel("seconds per GD step (one run, warm)")
    _heads_axis(axes[1], sorted({c["heads"] for c in summary["cost"]}))
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("What the heads cost", fontsize=10)
    fig.tight_layout()
    return fig


def controls(records, config):
    """Test error after K steps against H on each primary slice: the growing model, the
    fixed-width control and the average of H one-head models."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(config.primary), squeeze=False,
                             figsize=(4.8 * len(config.primary), 3.8))
    for ax, (lr, init) in zip(axes[0], config.primary, strict=True):
        for arm in ("growing", "fixed_width", "average"):
            rs = sorted(_select(records, arm=arm, lr=lr, init_scale=init, n=config.n),
                        key=lambda r: r["heads"])
            if rs:
                label, style, color = _ARM[arm]
                ax.errorbar([r["heads"] for r in rs], [r["test_error"] for r in rs],
                            yerr=[_nan(r["test_error_se"]) for r in rs], fmt=style,
                            color=color, capsize=2, label=label)
        ax.set_title(f"η = {lr:g}, init = {init:g}, K = {config.steps}", fontsize=9)
        ax.set_ylabel("test error at θ_K, all seeds (fraction)")
        _heads_axis(ax, list(config.heads_grid))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Controls: heads against width and against averaging", fontsize=10)
    fig.tight_layout()
    return fig


def claims_forest(summary):
    """Per claim: every slice's estimate with its Student-t interval, coloured by its
    Benjamini–Hochberg verdict; the claimed direction is the sign of ``direction``."""
    import matplotlib.pyplot as plt
    rows = summary["slopes"]
    cols = 3
    nrow = -(-len(rows) // cols)
    fig, axes = plt.subplots(nrow, cols, figsize=(5.6 * cols, 2.6 * nrow), squeeze=False)
    for ax in axes.flat[len(rows):]:
        ax.remove()
    answers = {c["name"]: c for c in summary["claims"]}
    for ax, c in zip(axes.flat, rows, strict=False):
        for i, s in enumerate(c["slices"]):
            if s["mean"] is None:
                continue
            # a bootstrap percentile interval need not contain its point estimate
            color = _VERDICT_COLOR.get(s["verdict"], "tab:gray")
            ax.plot([_nan(s["lo"]), _nan(s["hi"])], [i, i], "|-", color=color)
            ax.plot(s["mean"], i, "o", ms=3, color=color)
        ax.set_yticks(range(len(c["slices"])), [s["slice"] for s in c["slices"]], fontsize=7)
        ax.axvline(0, color="k", lw=0.8)
        unit = {"log": "exponent of H", "linear": "per doubling of H",
                "difference": "H heads − ensemble"}[c["kind"]]
        ax.set_xlabel(f"{c['quantity']} ({unit}); claimed sign "
                      f"{'−' if c['direction'] < 0 else '+'}", fontsize=8)
        a = answers[c["claim"]]
        ax.set_title(f"{c['claim']}\n→ {a['answer']}", fontsize=8.5)
        ax.grid(True, axis="x", alpha=0.3)
        if not c["slices"]:
            ax.text(0.5, 0.5, "no slice", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle("Deora et al.'s claims slice by slice (95 % t-intervals over seeds; green: as "
                 "claimed, red: against, gray: unresolved after Benjamini–Hochberg)",
                 fontsize=11)
    fig.tight_layout()
    return fig


def bounds_vs_gap(records, lr: float, init: float):
    """Generalisation gap (± 2 SE) and both Lei–Ying bounds against H, one panel per n, on the
    reference slice of the growing arm."""
    import matplotlib.pyplot as plt
    rs = [r for r in _select(records, arm="growing", lr=lr, init_scale=init)
          if r.get("bound_lipschitz") is not None]
    ns = sorted({r["n"] for r in rs}) or [None]
    fig, axes = plt.subplots(1, len(ns), figsize=(4.3 * len(ns), 3.6), squeeze=False)
    for ax, n in zip(axes[0], ns, strict=True):
        line = sorted(_select(rs, n=n), key=lambda r: r["heads"])
        h = [r["heads"] for r in line]
        ax.errorbar(h, [r["gen_gap_survivors"] for r in line],
                    yerr=[2 * _nan(r["gen_gap_survivors_se"]) for r in line], marker="o",
                    capsize=3, label="gap = test − train loss ± 2 SE")
        ax.plot(h, [r["bound_lipschitz"] for r in line], "v--", label="G·ε₁")
        ax.plot(h, [r["bound_smooth"] for r in line], "^--", label="smooth, best γ")
        ax.set_yscale("symlog", linthresh=1e-2)
        ax.set_ylabel("nats")
        ax.set_title(f"n = {n}", fontsize=9)
        if h:
            _heads_axis(ax, h)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Stability bounds against the measured gap (η = {lr:g}, init = {init:g}; "
                 "runs that did not fail)", fontsize=10)
    fig.tight_layout()
    return fig


def all_figures(records, summary, config) -> dict:
    """The figures ``mhatheory run heads`` writes, by file name."""
    bayes = records[0]["bayes_error"] if records else None
    return {
        "tuned.png": tuned(summary, bayes),
        "robustness.png": robustness(summary),
        "matched.png": matched(summary, records, config),
        "cost.png": cost(summary),
        "controls.png": controls(records, config),
        "claims.png": claims_forest(summary),
        "phase_diagram.png": phase_diagrams(records, config.n),
        "bounds_vs_gap.png": bounds_vs_gap(records, config.lr, config.init_scale),
    }
