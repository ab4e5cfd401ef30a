"""The source paper's claims about heads as rows answered "yes" / "no" / "undecided", from
per-slice slopes against H (:func:`mhatheory.trends.fit_slope`; a slice is one (η, init, n)).

**Claims.** Each claim says a quantity *decreases* with H. Per slice the verdict is "yes" when
b + 2·SE < 0, "no" when b − 2·SE > 0 (it increases), else "undecided". The overall row averages
each seed's slopes over the slices (so seeds, the independent units, carry the uncertainty), and
answers the same way, except that when some slices resolve a decrease and others an increase the
claim is conditional and the row says "undecided" with the minority's slices in its detail. The
detail counts the per-slice verdicts. Divergence rows use only slices where some run diverged
(elsewhere the slope is exactly 0 and says nothing). For 0/1 data such as divergence, seeds whose
curves coincide give SE = 0: the seeds agree exactly.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mhatheory.trends import fit_slope, mean_se, verdict

#: quantity → (axis label with unit, fit kind, over non-diverged seeds only)
QUANTITIES = {
    "diverged": ("diverged (fraction of seeds)", "linear", False),
    "spiked": ("L̂ rose above L̂(θ₀) (fraction)", "linear", False),
    "final_loss": ("training loss L̂(θ_K) (nats)", "log", True),
    "steps_to_0.1": ("GD steps to L̂ ≤ 0.1", "log", True),
    "steps_to_0.01": ("GD steps to L̂ ≤ 0.01", "log", True),
    "lambda_max0": ("λmax(∇²L̂(θ₀)) (nats/param²)", "log", False),
    "eta_lambda_max0": ("η·λmax(θ₀) (dimensionless)", "log", False),
    "theta_dist": ("‖θ_K − θ₀‖ (parameter norm)", "log", True),
    "ntk_margin": ("NTK max margin at θ₀", "linear", False),
    "test_error": ("test error (fraction)", "log", True),
    "excess_error": ("test error − Bayes floor", "linear", True),
    "gen_gap": ("generalisation gap (nats)", "linear", True),
    "eps1": ("ε₁ = mean ‖θ_K − θ_K^(i)‖", "log", True),
    "eps2": ("ε₂ = (mean ‖θ_K − θ_K^(i)‖²)^½", "log", True),
    "bound_lipschitz": ("Lipschitz bound G·ε₁ (nats)", "log", True),
    "bound_smooth": ("smooth bound, best γ (nats)", "log", True),
    "tightness_lipschitz": ("G·ε₁ / gap", "log", True),
    "tightness_smooth": ("smooth bound / gap", "log", True),
}
for _stage, _what in (("init", "θ₀"), ("early", "θ_{K/10}"), ("late", "θ_K")):
    QUANTITIES[f"neg_lambda_over_loss_{_stage}"] = (f"−λmin/L̂ at {_what}", "log", True)
    QUANTITIES[f"kappa_hat_{_stage}"] = (f"κ̂ = max(0,−λmin)·√H/L̂ at {_what}", "log", True)
    QUANTITIES[f"eta_lambda_max_{_stage}"] = (f"η·λmax at {_what}", "log", True)


def _seed_values(rec, q):
    vals = rec["per_seed"][q]
    if q in ("diverged", "spiked"):
        return [float(v) for v in vals]
    if QUANTITIES[q][2]:
        return [None if d else v for v, d in zip(vals, rec["per_seed"]["diverged"], strict=True)]
    return vals


def slopes_by_slice(records) -> list[dict]:
    """For each slice (η, init, n) with ≥ 2 values of H: every quantity's fit against H."""
    out = []
    for key in sorted({(r["lr"], r["init_scale"], r["n"]) for r in records}):
        rs = sorted((r for r in records if (r["lr"], r["init_scale"], r["n"]) == key),
                    key=lambda r: r["heads"])
        if len({r["heads"] for r in rs}) < 2:
            continue
        fits = {q: fit_slope([r["heads"] for r in rs], [_seed_values(r, q) for r in rs], kind)
                for q, (_, kind, _) in QUANTITIES.items() if q in rs[0]["per_seed"]}
        out.append({"lr": key[0], "init_scale": key[1], "n": key[2],
                    "heads": [r["heads"] for r in rs], "quantities": fits})
    return out


class Claim(NamedTuple):
    """One of Deora et al.'s claims, measured. ``measured``: the seed-averaged slope over the slices
    (exponent for log quantities, change per doubling of H for linear ones), ``se`` its SE,
    ``reference`` the no-effect value 0, ``answer`` "yes" / "no" / "undecided"."""

    name: str
    measured: float | None
    se: float | None
    reference: float
    answer: str
    detail: str


#: (claim, quantity): each claims that the quantity decreases as H grows.
CLAIMS = (
    ("more heads → fewer divergences at the same η", "diverged"),
    ("more heads → faster training (lower L̂ after K steps)", "final_loss"),
    ("more heads → smaller ε₁ (replace-one stability)", "eps1"),
    ("more heads → smaller generalisation gap", "gen_gap"),
    ("more heads → test error nearer the Bayes floor", "excess_error"),
)


def _informative(sl, q) -> bool:
    fit = sl["quantities"][q]
    if q == "diverged":
        return any(m is not None and m > 0 for m in fit["means"])
    return fit["slope"] is not None


def claims(summary: dict) -> list[Claim]:
    """Deora et al.'s claims as rows, from ``summary["slopes"]`` (:func:`slopes_by_slice`)."""
    rows = []
    for name, q in CLAIMS:
        slices = [sl for sl in summary["slopes"]
                  if q in sl["quantities"] and _informative(sl, q)]
        unit = ("exponent of H" if QUANTITIES[q][1] == "log" else "change per doubling of H")
        if not slices:
            why = ("no run diverged anywhere in the grid" if q == "diverged"
                   else "no slice has a fit")
            rows.append(Claim(name, None, None, 0.0, "undecided", why))
            continue
        S = max(len(sl["quantities"][q]["per_seed"]) for sl in slices)
        per_seed = []
        for s in range(S):
            v = [sl["quantities"][q]["per_seed"][s] for sl in slices
                 if s < len(sl["quantities"][q]["per_seed"])]
            v = [x for x in v if x is not None]
            if v:
                per_seed.append(float(np.mean(v)))
        measured, se = mean_se(per_seed)
        by = {k: [sl for sl in slices if sl["quantities"][q]["verdict"] == k]
              for k in ("yes", "no", "undecided")}
        detail = (f"slope of {QUANTITIES[q][0]} ({unit}), seed-averaged over {len(slices)} "
                  f"slice(s) (η, init, n); per slice: {len(by['yes'])} decrease, "
                  f"{len(by['no'])} increase, {len(by['undecided'])} unresolved at 2 SE")
        answer = verdict(measured, se)
        if by["yes"] and by["no"]:
            # resolved slices disagree: the claim holds under some conditions only
            answer = "undecided"
            few = min((by["yes"], "decreases"), (by["no"], "increases"), key=lambda x: len(x[0]))
            detail = f"conditional: {few[1]} only at {_where(few[0])}; " + detail
        rows.append(Claim(name, measured, se, 0.0, answer, detail))
    return rows


def _where(slices, limit: int = 6) -> str:
    """``η=…/init=…/n=…`` for a few slices."""
    names = [f"η={sl['lr']:g}/init={sl['init_scale']:g}/n={sl['n']}" for sl in slices]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def claim_slices(slopes, q) -> list[dict]:
    """Per slice: the slope of ``q`` ± SE, its verdict and monotonicity (for tables/figures)."""
    return [{"lr": sl["lr"], "init_scale": sl["init_scale"], "n": sl["n"],
             "slope": sl["quantities"][q]["slope"], "se": sl["quantities"][q]["se"],
             "verdict": sl["quantities"][q]["verdict"],
             "monotone": sl["quantities"][q]["monotone"]}
            for sl in slopes if q in sl["quantities"] and _informative(sl, q)]


def gap_resolution(records, n: int) -> dict:
    """At training-set size ``n``: how many cells with ≥ 2 stable seeds have gap > 2 SE."""
    cells = [r for r in records if r["n"] == n and r.get("gen_gap_se")]
    resolved = [r for r in cells if r["gen_gap"] > 2 * r["gen_gap_se"]]
    return {"n": n, "stable_cells": len(cells), "resolved": len(resolved),
            "fraction": len(resolved) / len(cells) if cells else None}
