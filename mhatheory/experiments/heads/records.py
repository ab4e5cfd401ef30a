"""Records of the heads sweep: one per (H, η, init, n) from a cell's raw per-seed output.

Means ± SE are over seeds, the non-diverged ones for every quantity but divergence; the gap's SE
adds the test-sample SE of each seed's test loss to the spread over training sets. The Lei–Ying
bounds use the cell's G and β (largest per-sample gradient norm and certified smoothness over the
probed points, :func:`mhatheory.deora.per_sample_constants`): G·ε₁ and
min_γ (β/γ)L̂ + ((β+γ)/2)ε₂² (:func:`mhatheory.stability.smooth_bound`), per seed and for the
seed means; tightness = bound / gap where the gap is positive.
"""

from __future__ import annotations

import math

import numpy as np

from mhatheory import stability
from mhatheory.experiments.heads.claims import QUANTITIES
from mhatheory.trends import mean_se

#: the probed steps θ_0, θ_{K/10}, θ_K
STAGES = ("init", "early", "late")

_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _restore(obj):
    """Cell files store non-finite floats as strings (JSON has no NaN); turn them back."""
    if isinstance(obj, dict):
        return {k: _restore(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_restore(v) for v in obj]
    return _NONFINITE.get(obj, obj) if isinstance(obj, str) else obj


def make_record(spec: dict, part: dict, init: dict, bayes: float) -> dict:
    """One record per (H, η, init, n): means ± SE over seeds (the non-diverged ones for every
    quantity but divergence), the Lei–Ying bounds and the per-seed values."""
    part, init = _restore(part), _restore(init)
    S = spec["seeds"]
    sd = dict(part["seeds"])
    stable = [not d for d in sd["diverged"]]
    sd["excess_error"] = [v - bayes for v in sd["test_error"]]
    sd["gen_gap"] = [tl - fl for tl, fl in zip(sd["test_loss"], sd["final_loss"], strict=True)]
    sd["eps2"] = [None if v is None else math.sqrt(v) for v in sd["eps2sq"]]
    sd["lambda_max0"] = list(init["lambda_max0"])
    sd["eta_lambda_max0"] = [part["lr"] * v for v in init["lambda_max0"]]
    sd["ntk_margin"] = list(init["ntk_margin"])
    G, beta = part["G"], part["beta"]
    sd["bound_lipschitz"] = [None if v is None else G * v for v in sd["eps1"]]
    sd["bound_smooth"] = [None if v is None else stability.smooth_bound(beta, fl, v)[0]
                          for v, fl in zip(sd["eps2sq"], sd["final_loss"], strict=True)]
    for name in ("lipschitz", "smooth"):
        sd[f"tightness_{name}"] = [None if b is None or g <= 0 else b / g for b, g in
                                   zip(sd[f"bound_{name}"], sd["gen_gap"], strict=True)]
    for stage in STAGES:
        for q in ("neg_lambda_over_loss", "kappa_hat", "eta_lambda_max"):
            vals = [None] * S
            for pr in part["probes"]:
                if pr["stage"] == stage:
                    vals[pr["seed"]] = pr[q]
            sd[f"{q}_{stage}"] = vals
    rec = {"heads": spec["heads"], "lr": part["lr"], "init_scale": spec["init_scale"],
           "n": spec["n"], "seeds": S, "stable_seeds": sum(stable),
           "diverged_frac": float(np.mean(sd["diverged"])),
           "spiked_frac": float(np.mean(sd["spiked"])),
           "diverged_steps": [v for v in sd["diverged_step"] if v is not None],
           "bayes_error": bayes, "ntk_separable_frac": float(np.mean(init["ntk_separable"])),
           "G": G, "beta": beta}
    for q, (_, _, stable_only) in QUANTITIES.items():
        if q in ("diverged", "spiked"):
            continue
        vals = [v for v, ok in zip(sd[q], stable, strict=True) if ok or not stable_only]
        rec[q], rec[f"{q}_se"] = mean_se(vals)
    # the gap's SE: spread over training sets plus the test-sample SE of each test loss
    gaps = [g for g, ok in zip(sd["gen_gap"], stable, strict=True) if ok]
    tses = [t for t, ok in zip(sd["test_loss_se"], stable, strict=True) if ok]
    if len(gaps) >= 2:
        rec["gen_gap_se"] = math.sqrt(np.var(gaps, ddof=1) / len(gaps)
                                      + np.mean(np.square(tses)) / len(gaps))
    eps1 = [v for v, ok in zip(sd["eps1"], stable, strict=True) if ok and v is not None]
    eps2sq = [v for v, ok in zip(sd["eps2sq"], stable, strict=True) if ok and v is not None]
    fl = [v for v, ok in zip(sd["final_loss"], stable, strict=True) if ok]
    if eps1 and rec["gen_gap"] is not None:
        rec["bound_lipschitz"] = G * float(np.mean(eps1))
        rec["bound_smooth"], rec["best_gamma"] = stability.smooth_bound(
            beta, float(np.mean(fl)), float(np.mean(eps2sq)))
        for name in ("lipschitz", "smooth"):
            b = rec[f"bound_{name}"]
            rec[f"tightness_{name}"] = b / rec["gen_gap"] if rec["gen_gap"] > 0 else None
        se = rec["gen_gap_se"] or 0.0
        rec["bounds_hold"] = bool(rec["gen_gap"] - 3 * se
                                  <= min(rec["bound_lipschitz"], rec["bound_smooth"]))
    rec["per_seed"] = sd
    return rec
