"""Figures of the stability experiment. Every axis is labelled with its quantity and unit; see
:mod:`mhatheory.plots` for the conventions."""

from __future__ import annotations

import numpy as np

from mhatheory.plots import finish, integer_ticks, log_scale


def eps1_vs_n(records, slopes):
    """ε₁ against n on log-log axes per (H, K), with the fitted slope and an n^(−1) guide."""
    import matplotlib.pyplot as plt
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
    log_scale(ax)
    integer_ticks(ax, sorted({r["n"] for r in records}))
    return finish(
        fig, ax, xlabel="training-set size n",
        ylabel="ε₁ = mean ‖θ_K − θ_K^(i)‖ (parameter norm)",
        title="Replace-one model stability (mean ± std over seeds; dotted: n^(−1))", legend=7)


def gap_vs_bounds(records):
    """Generalisation gap (± 3 SE) against the Lipschitz and smooth bounds, per cell."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(records)), 4.2))
    x = np.arange(len(records))
    ax.errorbar(x, [r["gen_gap"] for r in records], yerr=[3 * r["gen_gap_se"] for r in records],
                fmt="o", capsize=3, label="generalisation gap ± 3 SE")
    ax.plot(x, [r["bound_lipschitz"] for r in records], "v", label="G·ε₁ (Lipschitz bound)")
    ax.plot(x, [r["bound_smooth"] for r in records], "^", label="smooth bound at best γ")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xticks(x, [f"n={r['n']}\nH={r['heads']}\nK={r['steps']}" for r in records],
                  fontsize=7)
    return finish(fig, ax, xlabel="sweep cell", ylabel="test − train loss (nats)",
                   title="Stability bounds vs measured gap (expectation over seeds)")


def distance_curves(payloads, lr):
    """Mean leave-one-out parameter distance ‖θ_t − θ_t^(−i)‖ along GD, seed 0, per cell."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for p in payloads:
        r = p["record"]
        d = np.asarray(p["seeds"][0]["distance_mean"])
        stride = max(1, r["steps"] // 100)
        ax.loglog(1 + stride * np.arange(d.size), d, label=f"n={r['n']}, H={r['heads']}, "
                                                          f"K={r['steps']}")
    return finish(fig, ax, xlabel="GD step t", ylabel="mean ‖θ_t − θ_t^(−i)‖",
                   title=f"Leave-one-out parameter distance along GD (η = {lr:g})", legend=6)
