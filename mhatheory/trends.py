"""Trends against a grid variable (here: the number of heads H), for the experiments' tendency
rows: per-seed slopes with their SE, monotonicity, and a three-way verdict. ``scipy.stats`` is
imported by the functions that test (half a second, which every CLI start would pay
otherwise: :mod:`mhatheory.plots`).

**Slopes.** For a quantity q, each seed s gives a curve q_s(H) over the grid (paired: a seed's
data are the same at every H). Per seed, least squares

* ``log`` quantities (positive): log q_s = a + b·log H; b is the exponent of a power law
  q ∝ H^b (points with q ≤ 0 are excluded and counted);
* ``linear`` quantities (signed, e.g. a gap, or 0/1 like divergence): q_s = a + b·log₂ H;
  b is the change per doubling of H;

and the mean of b over seeds ± its standard error (SE = sample std / √m, m seeds with a fit).
A slope summarises a trend; it does not claim a power law holds.

**Tests across slices.** Seeds are the independent units, so a slope's uncertainty is the
Student-t interval of the per-seed slopes, mean ± t_{1−α/2, m−1}·SE, and its p-value that of the
one-sample t-test of "mean slope = 0" (:func:`t_test`). A claim read on several slices is a family
of tests: :func:`decide` adjusts their p-values by Benjamini–Hochberg
(``scipy.stats.false_discovery_control``), which keeps the expected share of false discoveries
among the resolved slices at most α, and resolves a slice only where its adjusted p < α.
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


def slope(x, y):
    """The least-squares slope of ``y`` against ``x`` (``y``: ``[len(x)]``, or ``[len(x), B]``
    for B curves at once): Σ(x − x̄)(y − y₀)/Σ(x − x̄)², y centred on its first value (the same
    slope, since Σ(x − x̄) = 0), so that a flat curve gives exactly 0 rather than a round-off
    slope (``np.polyfit`` gave −3.9e-17 for a constant 0.5, which a t-test of equal seeds
    would then resolve as a decrease)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    dx = (x - x.mean()).reshape((-1,) + (1,) * (y.ndim - 1))
    return np.sum(dx * (y - y[:1]), axis=0) / np.sum(dx * dx)


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
            slopes.append(float(slope(x[ok], yv)))
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


def t_test(values, level: float = 0.95) -> dict:
    """Mean of the finite values, its SE, the Student-t interval at ``level`` and the two-sided
    one-sample t-test p-value of "mean = 0" (None where fewer than two values). Where all n
    values are equal (seeds that agree exactly, as discrete test errors often do), the t
    statistic is undefined and p is that of the exact sign-flip test instead: 1 for values of
    0, else 2^(1−n), the share of the 2ⁿ sign patterns whose mean is as far from 0 (the two
    all-equal-sign ones): two seeds that agree decide nothing (p = 0.5), six can (0.031)."""
    from scipy import stats
    v = np.array([float(x) for x in values if x is not None and math.isfinite(float(x))])
    mean, se = mean_se(v)
    out = {"mean": mean, "se": se, "n": int(v.size), "lo": None, "hi": None, "p": None}
    if v.size < 2:
        return out
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1)) * se
    out.update(lo=mean - half, hi=mean + half)
    if se <= 1e-13 * abs(mean) or se == 0:
        # equal values up to float64 round-off of their mean (relative 1e-16 per term): no
        # spread, so the exact sign-flip test (docstring)
        out["p"] = 1.0 if mean == 0 else 2.0 ** (1 - v.size)
    else:
        out["p"] = float(stats.ttest_1samp(v, 0.0).pvalue)
    return out


def decide(tests, direction: int, alpha: float = 0.05) -> list[str]:
    """Benjamini–Hochberg across ``tests`` (:func:`t_test` results, one per slice of one claim):
    per slice "yes" (resolved in the claimed ``direction``, −1 a decrease, +1 an increase),
    "no" (resolved the other way) or "undecided" (adjusted p ≥ α or no test); each test gains
    its ``p_adjusted``."""
    from scipy import stats
    if direction not in (-1, 1):
        raise ValueError(f"direction must be -1 (a decrease) or +1 (an increase), got "
                         f"{direction!r}.")
    have = [i for i, t in enumerate(tests) if t.get("p") is not None]
    adjusted = (stats.false_discovery_control([tests[i]["p"] for i in have], method="bh")
                if have else [])
    out = ["undecided"] * len(tests)
    for i, q in zip(have, adjusted, strict=True):
        tests[i]["p_adjusted"] = float(q)
        if q < alpha:
            out[i] = "yes" if np.sign(tests[i]["mean"]) == direction else "no"
    for t in tests:
        t.setdefault("p_adjusted", None)
    return out


__all__ = ["decide", "fit_slope", "mean_se", "monotone", "slope", "t_test", "verdict"]
