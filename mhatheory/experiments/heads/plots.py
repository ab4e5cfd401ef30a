"""Figures of the heads sweep (``mhatheory run heads``): phase diagrams over H × η, quantities
against H with error bars and fitted slopes, the stability bounds against the gap, and the
per-slice slopes behind each of Deora et al.'s claims. Axes carry their quantity and unit; H is on
a log₂ axis."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import NullFormatter, ScalarFormatter

from mhatheory.experiments.heads.claims import CLAIMS, QUANTITIES, claim_slices

#: the panels of :func:`heads_curves`
CURVES = ("diverged", "final_loss", "steps_to_0.01", "eta_lambda_max0", "kappa_hat_late",
          "neg_lambda_over_loss_late", "theta_dist", "ntk_margin", "test_error", "gen_gap",
          "eps1", "bound_lipschitz")

_VERDICT_COLOR = {"yes": "tab:green", "no": "tab:red", "undecided": "tab:gray"}


def _heads_axis(ax, heads):
    ax.set_xscale("log", base=2)
    ax.set_xticks(heads)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("number of heads H")


def _mean(rec, q):
    if q in ("diverged", "spiked"):
        p, S = rec[f"{q}_frac"], rec["seeds"]
        return p, np.sqrt(p * (1 - p) / S)          # binomial SE of a fraction
    return rec.get(q), rec.get(f"{q}_se")


def _select(records, **fixed):
    return [r for r in records if all(r[k] == v for k, v in fixed.items())]


def _slice_fit(slopes, lr, init, n, q):
    for sl in slopes:
        if (sl["lr"], sl["init_scale"], sl["n"]) == (lr, init, n):
            return sl["quantities"].get(q)
    return None


def phase_diagrams(records, n: int):
    """H × η heatmaps at training-set size ``n``: divergence fraction (top) and test error over
    the non-diverged seeds (bottom), one column per init scale."""
    rs = _select(records, n=n)
    inits = sorted({r["init_scale"] for r in rs})
    heads = sorted({r["heads"] for r in rs})
    lrs = sorted({r["lr"] for r in rs})
    fig, axes = plt.subplots(2, len(inits), figsize=(0.55 * len(heads) * len(inits) + 2.5,
                                                     1.6 + 0.85 * len(lrs)), squeeze=False,
                             constrained_layout=True)
    rows = (("diverged_frac", "fraction of seeds diverged", "Reds"),
            ("test_error", "test error (—: all seeds diverged)", "viridis_r"))
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
        lo, hi = (0.0, 1.0) if key == "diverged_frac" else (
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
            ax.set_title(f"init scale {init:g}: {'diverged' if row == 0 else 'test error'}",
                         fontsize=9)
        fig.colorbar(im, ax=list(axes[row]), shrink=0.9, label=label)
    fig.suptitle(f"Phase diagrams over H × η at n = {n} (each cell: mean over seeds)")
    return fig


def heads_curves(records, slopes, vary: str, fixed: dict, quantities=CURVES, title=""):
    """Each quantity against H (mean ± SE over seeds), one line per value of ``vary``
    ("lr", "init_scale" or "n") with the other two fixed; the legend gives the fitted slope
    ± SE (exponent for log axes, change per doubling of H for linear ones)."""
    rs = _select(records, **fixed)
    values = sorted({r[vary] for r in rs})
    heads = sorted({r["heads"] for r in rs})
    cols = 4
    nrow = -(-len(quantities) // cols)
    fig, axes = plt.subplots(nrow, cols, figsize=(4.0 * cols, 3.1 * nrow), squeeze=False)
    key = {"lr": "η", "init_scale": "init", "n": "n"}[vary]
    for ax, q in zip(axes.flat, quantities, strict=False):
        label, kind, _ = QUANTITIES[q]
        for v in values:
            line = sorted(_select(rs, **{vary: v}), key=lambda r: r["heads"])
            pts = [(r["heads"], *_mean(r, q)) for r in line]
            pts = [(h, m, se or 0.0) for h, m, se in pts if m is not None and np.isfinite(m)
                   and (kind == "linear" or m > 0)]
            if not pts:
                continue
            where = {"lr": fixed.get("lr", v), "init": fixed.get("init_scale", v),
                     "n": fixed.get("n", v)}
            where[{"lr": "lr", "init_scale": "init", "n": "n"}[vary]] = v
            fit = _slice_fit(slopes, where["lr"], where["init"], where["n"], q)
            lab = f"{key}={v:g}"
            if fit and fit["slope"] is not None:
                lab += f": {fit['slope']:+.2f}" + (f"±{fit['se']:.2f}" if fit["se"] else "")
            h, m, se = map(np.array, zip(*pts, strict=True))
            ax.errorbar(h, m, yerr=se, marker="o", ms=3, capsize=2, label=lab)
        if q == "test_error" and rs:
            ax.axhline(rs[0]["bayes_error"], color="k", ls=":", lw=1, label="Bayes floor")
        if kind == "log":
            ax.set_yscale("log")
        _heads_axis(ax, heads)
        ax.set_ylabel(label, fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(quantities):]:
        ax.axis("off")
    fixed_txt = ", ".join(f"{ {'lr': 'η', 'init_scale': 'init', 'n': 'n'}[k]} = {v:g}"
                          for k, v in fixed.items())
    fig.suptitle(title or f"Quantities against H at {fixed_txt} (mean ± SE over seeds; legend: "
                          "slope ± SE, log-log exponent or change per doubling of H)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def bounds_vs_gap(records, lr: float, init: float):
    """Generalisation gap (± 2 SE) and both Lei–Ying bounds against H, one panel per n (top);
    the tightness ratios bound / gap (bottom)."""
    rs = _select(records, lr=lr, init_scale=init)
    ns = sorted({r["n"] for r in rs})
    heads = sorted({r["heads"] for r in rs})
    fig, axes = plt.subplots(2, len(ns), figsize=(4.3 * len(ns), 6.4), squeeze=False)
    for col, n in enumerate(ns):
        line = sorted(_select(rs, n=n), key=lambda r: r["heads"])
        ok = [r for r in line if r.get("gen_gap") is not None]
        h = [r["heads"] for r in ok]
        ax = axes[0, col]
        ax.errorbar(h, [r["gen_gap"] for r in ok],
                    yerr=[2 * (r.get("gen_gap_se") or 0.0) for r in ok], marker="o", capsize=3,
                    label="gap = test − train loss ± 2 SE")
        ax.plot(h, [r.get("bound_lipschitz", np.nan) for r in ok], "v--", label="G·ε₁")
        ax.plot(h, [r.get("bound_smooth", np.nan) for r in ok], "^--", label="smooth, best γ")
        ax.set_yscale("symlog", linthresh=1e-2)
        ax.set_ylabel("nats")
        ax.set_title(f"n = {n}", fontsize=9)
        ax2 = axes[1, col]
        for key, mk in (("tightness_lipschitz", "v-"), ("tightness_smooth", "^-")):
            ax2.plot(h, [r.get(key) if r.get(key) is not None else np.nan for r in ok], mk,
                     label=QUANTITIES[key][0])
        ax2.axhline(1.0, color="k", lw=0.8, ls=":")
        ax2.set_yscale("log")
        ax2.set_ylabel("bound / gap (≥ 1 if the bound holds)")
        for a in (ax, ax2):
            _heads_axis(a, heads)
            a.grid(True, which="both", alpha=0.3)
            a.legend(fontsize=7)
    fig.suptitle(f"Stability bounds against the measured gap (η = {lr:g}, init = {init:g}; "
                 "expectations over seeds)", fontsize=10)
    fig.tight_layout()
    return fig


def claims_forest(slopes, claim_rows):
    """Per claim: every slice's slope (± 2 SE) coloured by its verdict; left of 0 = the
    quantity falls with H (the claim's direction)."""
    # three panels a row, so that each stays legible in a report page ~1,400 px wide
    cols = min(3, len(CLAIMS))
    nrow = -(-len(CLAIMS) // cols)
    fig, axes = plt.subplots(nrow, cols, figsize=(5.4 * cols, nrow * (1.9 + 0.24 *
                                                                   max(1, len(slopes)))),
                             squeeze=False)
    for ax in axes.flat[len(CLAIMS):]:
        ax.remove()
    for ax, (name, q), row in zip(axes.flat[:len(CLAIMS)], CLAIMS, claim_rows, strict=True):
        rows = claim_slices(slopes, q)
        for i, r in enumerate(rows):
            se = r["se"] or 0.0
            ax.errorbar(r["slope"], i, xerr=2 * se, fmt="o", ms=3, capsize=2,
                        color=_VERDICT_COLOR[r["verdict"]])
        ax.set_yticks(range(len(rows)), [f"η={r['lr']:g}, s={r['init_scale']:g}, n={r['n']}"
                                         for r in rows], fontsize=8)
        ax.axvline(0, color="k", lw=0.8)
        unit = "exponent" if QUANTITIES[q][1] == "log" else "per doubling of H"
        ax.set_xlabel(f"slope of {q} ({unit})", fontsize=9)
        m = "n/a" if row.measured is None else f"{row.measured:+.3g} ± {row.se or 0:.2g}"
        cond = " (conditional)" if row.detail.startswith("conditional") else ""
        ax.set_title(f"{name.replace('more heads → ', '→ ')}\noverall {m}: {row.answer}{cond}",
                     fontsize=10)
        ax.grid(True, axis="x", alpha=0.3)
        if not rows:
            ax.text(0.5, 0.5, "no informative slice", ha="center", va="center",
                    transform=ax.transAxes)
    fig.suptitle("Deora et al.'s claims, slice by slice (green: decreases with H at 2 SE; red: "
                 "increases; gray: unresolved)", fontsize=12)
    fig.tight_layout()
    return fig


def all_figures(records, slopes, claim_rows, config) -> dict:
    """The figures ``mhatheory run heads`` writes, by file name."""
    ref = {"lr": config.lr, "init_scale": config.init_scale, "n": config.n}
    return {
        "phase_diagram.png": phase_diagrams(records, config.n),
        "heads_vs_lr.png": heads_curves(records, slopes, "lr",
                                        {"init_scale": ref["init_scale"], "n": ref["n"]}),
        "heads_vs_init.png": heads_curves(records, slopes, "init_scale",
                                          {"lr": ref["lr"], "n": ref["n"]}),
        "heads_vs_n.png": heads_curves(records, slopes, "n",
                                       {"lr": ref["lr"], "init_scale": ref["init_scale"]}),
        "bounds_vs_gap.png": bounds_vs_gap(records, ref["lr"], ref["init_scale"]),
        "claims.png": claims_forest(slopes, claim_rows),
    }
