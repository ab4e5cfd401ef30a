"""``verify`` group ``weak-convexity``: the weak-convexity chain along GD for several H, the
descent lemma, the finite-time convergence bound, and the slopes against H."""

from __future__ import annotations

from pathlib import Path

from mhatheory.checks import Check, figure, lower, tendency, upper
from mhatheory.experiments import weak_convexity as wc

#: the small grid of a plain ``mhatheory verify`` (``--full`` uses ``weak_convexity.FULL``)
SMALL = dict(heads_grid=(1, 2, 4, 8, 16), seeds=3, steps=300, num_probes=4, n=64,
             convergence_steps=200)

#: −λmin/L̂ ∝ H^(−1/2) is the law (κ constant); κ̂ = −λmin·√H/L̂ is then flat (slope 0)
LAWS = {"neg_lambda_over_loss": ("−λmin/L̂", -0.5, "−1/2 (constant κ)"),
        "kappa_hat": ("κ̂", 0.0, "0 (constant κ)")}


def rows(full: bool, out, progress: bool = False) -> list[Check]:
    """The weak-convexity chain along GD for several H, slopes against H, convergence."""
    cfg = wc.Config(**(wc.FULL if full else SMALL))
    return summary_rows(wc.run(cfg, Path(out) / "weak-convexity", progress=progress), cfg, out)


def summary_rows(s: wc.Summary, cfg: wc.Config, out) -> list[Check]:
    """The rows of a finished run: its :class:`~mhatheory.experiments.weak_convexity.Summary`,
    its config, and the report folder ``out`` (figure paths are made relative to it)."""
    fig = {name: figure(path, out) for name, path in s.figures.items()}
    out_rows = [
        Check("weak convexity: chain holds at every probe", "theorem", s.chain_verdict,
              s.worst_link_margin, 0.0, s.worst_link_margin,
              f"{s.num_probes} probes over H={list(cfg.heads_grid)}, {cfg.seeds} seeds; "
              f"smallest certified link margin; verdicts {s.chain_verdict_counts}; "
              f"{s.unconverged_probes} unconverged, {s.escalations} escalated; eigenvalue "
              "outer ends probabilistic (each probe's holds with probability ≥ 1 − 1e-6 over "
              "its random start, any spectrum), Rayleigh ends rigorous",
              (fig["chain_vs_step"], fig["tightness"])),
        lower("weak convexity: negative curvature present (max −λmin)", "sanity",
              s.max_neg_lambda_min, 0.0, "the check is not vacuous"),
        Check("convergence: descent lemma where η·λmax ≤ 1", "theorem", s.descent_verdict,
              s.descent_min_margin, 0.0, s.descent_min_margin,
              f"{s.descent_applicable} of {s.num_probes} probed steps applicable (η times the "
              "certified upper end of λmax ≤ 1)"),
        upper("convergence: L̂(θ_K) ≤ finite-time bound, all K", "theorem",
              s.convergence_max_excess, 0.0,
              f"H={s.convergence_heads}; {s.convergence_certified_steps} K with certified "
              f"descent; NTK margin {s.ntk_margin:.3g} (separable: {s.ntk_separable}); "
              "measured: max_K L̂(θ_K) − bound", (fig["convergence"],)),
    ]
    for q, (label, ref, ref_text) in LAWS.items():
        for stage in ("init", "late"):
            for fits, which in ((s.slopes, "all H"),
                                (s.slopes_restricted, f"H ≥ {s.fit_min_heads}")):
                if q not in fits:
                    continue
                fit = fits[q][stage]
                shown = q == "kappa_hat" and stage == "init" and which == "all H"
                out_rows.append(tendency(
                    f"H-slope of {label} ({stage}, step {fit['step']}, {which})",
                    fit["slope_mean"], ref, fit["slope_se"],
                    f"log-log slope vs H, mean ± SE over seeds; reference {ref_text}",
                    (fig["kappa_vs_heads"],) if shown else ()))
    return out_rows
