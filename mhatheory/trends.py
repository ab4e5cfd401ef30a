"""Trends against a grid variable (here: the number of heads H), for the experiments' tendency
rows: per-seed slopes with their SE, monotonicity, and a three-way verdict.

**Slopes.** For a quantity q, each seed s gives a curve q_s(H) over the grid (paired: a seed's
data are the same at every H). Per seed, least squares

* ``log`` quantities (positive): log q_s = a + b·log H; b is the exponent of a power law
  q ∝ H^b (points with q ≤ 0 are excluded and counted);
* ``linear`` quantities (signed, e.g. a gap, or 0/1 like divergence): q_s = a + b·log₂ H;
  b is the change per doubling of H;

and the mean of b over seeds ± its standard error (SE = sample std / √m, m seeds with a fit).
A slope summarises a trend; it does not claim a power law holds.
"""

from __future__ import annotations

import math

import numpy as np


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


__all__ = ["fit_slope", "mean_se", "monotone", "verdict"]
