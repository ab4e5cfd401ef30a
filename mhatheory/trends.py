"""Trends against the number of heads H (for ``mhatheory run heads``): slopes against H with
their SE, monotonicity, and the seed's claims as rows answered "yes" / "no" / "undecided".

**Slopes.** For a quantity q at one slice (η, init, n), each seed s gives a curve q_s(H) over the
heads grid (paired: heads 1..H of a seed are the same arrays for every H, and so is its data). We
fit, per seed, least squares

* ``log`` quantities (positive): log q_s = a + b·log H; b is the exponent of a power law
  q ∝ H^b (points with q ≤ 0 are excluded and counted);
* ``linear`` quantities (signed, e.g. the gap, or 0/1 like divergence): q_s = a + b·log₂ H;
  b is the change per doubling of H;

and report the mean of b over seeds ± its standard error (SE = sample std / √m, m seeds with a
fit). A slope summarises a trend; it does not claim a power law holds.

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

import math
from typing import NamedTuple

import numpy as np

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


def mean_se(values) -> tuple[float | None, float | None]:
    """Mean and standard error of the finite, non-None values (None where there are too few)."""
    v = np.array([float(x) for x in values if x is not None and math.isfinite(float(x))])
    if v.size == 0:
        return None, None
    return float(v.mean()), (float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else None)


def fit_slope(heads, per_seed, kind: str, min_points: int = 2) -> dict:
    """Per-seed least-squares slope of ``per_seed[h][s]`` against H (module docstring), mean ±
    SE over seeds, the seed-mean curve and whether it is monotone.

    Args:
        heads: the H values, one per row of ``per_seed``.
        per_seed: rows of per-seed values (None or non-finite = missing).
        kind: "log" (log-log; exponent) or "linear" (per doubling of H).
        min_points: the fewest distinct H with a valid value for a seed's slope.
    """
    if kind not in ("log", "linear"):
        raise ValueError(f"kind must be 'log' or 'linear', got {kind!r}.")
    H = np.asarray(heads, dtype=float)
    V = np.array([[np.nan if v is None else float(v) for v in row] for row in per_seed],
                 dtype=float).reshape(len(H), -1)
    x = np.log(H) if kind == "log" else np.log2(H)
    valid = np.isfinite(V) & ((V > 0) if kind == "log" else True)
    slopes = []
    for s in range(V.shape[1]):
        ok = valid[:, s]
        if len(np.unique(H[ok])) >= min_points:
            yv = np.log(V[ok, s]) if kind == "log" else V[ok, s]
            slopes.append(float(np.polyfit(x[ok], yv, 1)[0]))
        else:
            slopes.append(None)
    mean, se = mean_se(slopes)
    means = [float(np.mean(V[i, valid[i]])) if valid[i].any() else None for i in range(len(H))]
    return {"kind": kind, "slope": mean, "se": se, "per_seed": slopes, "means": means,
            "monotone": monotone(means), "excluded": int((~valid & np.isfinite(V)).sum()),
            "verdict": verdict(mean, se)}


def monotone(means) -> str:
    """"decreasing" / "increasing" (non-strict) / "flat" / "no" for the seed-mean curve."""
    m = np.array([v for v in means if v is not None], dtype=float)
    if m.size < 2:
        return "no"
    d = np.diff(m)
    if np.all(d == 0):
        return "flat"
    if np.all(d <= 0):
        return "decreasing"
    if np.all(d >= 0):
        return "increasing"
    return "no"


def verdict(slope, se) -> str:
    """"yes" (decreases: slope + 2 SE < 0), "no" (increases: slope − 2 SE > 0), "undecided"."""
    if slope is None or se is None:
        return "undecided"
    if slope + 2 * se < 0:
        return "yes"
    if slope - 2 * se > 0:
        return "no"
    return "undecided"


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
    """One of the seed's claims, measured. ``measured``: the seed-averaged slope over the slices
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
    """The seed's claims as rows, from ``summary["slopes"]`` (:func:`slopes_by_slice`)."""
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
