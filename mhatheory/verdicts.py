"""Three-valued verdicts for theorem checks: HOLDS, VIOLATED or INCONCLUSIVE.

A numerical check of ``lhs ≥ rhs`` never sees the two sides exactly: each is known to lie in an
interval (a certified eigenvalue interval, or a computed value ± its rounding bound). With
lhs ∈ [a, b] and rhs ∈ [c, d]:

* HOLDS        when a ≥ d: every pair of values consistent with the intervals satisfies it;
* VIOLATED     when b < c: every pair violates it;
* INCONCLUSIVE otherwise: the intervals overlap (too wide, or the inequality is tight to
  within rounding), or a side is not certified at all (an unconverged eigenvalue's interval is
  open on its outer side).

No slack is ever added in the lenient direction: uncertainty widens the intervals, and a wider
interval can only move a verdict towards INCONCLUSIVE. An inconclusive check first spends more
work (:meth:`mhatheory.spectral.Lanczos.escalated`), and never passes an assertion.
"""

from __future__ import annotations

import enum
import math
from typing import NamedTuple


class Verdict(str, enum.Enum):
    """The outcome of a theorem check (a ``str``, so it serialises as its name)."""

    HOLDS = "HOLDS"
    VIOLATED = "VIOLATED"
    INCONCLUSIVE = "INCONCLUSIVE"

    def __str__(self) -> str:
        return self.value


class Interval(NamedTuple):
    """A closed interval ``[lo, hi]`` known to contain a quantity (``±inf`` allowed)."""

    lo: float
    hi: float

    @classmethod
    def around(cls, value: float, radius: float) -> Interval:
        """``[value − radius, value + radius]``; a negative radius is an error (it would make
        an interval narrower than its point, which :func:`compare` could then pass)."""
        if float(radius) < 0:
            raise ValueError(f"Interval.around needs a radius ≥ 0, got {radius!r}.")
        return cls(float(value) - float(radius), float(value) + float(radius))

    @property
    def width(self) -> float:
        """hi − lo."""
        return self.hi - self.lo


def compare(lhs: Interval, rhs: Interval, relation: str = ">=") -> tuple[Verdict, float]:
    """Decide ``lhs ≥ rhs`` (or ``≤``) from intervals; returns ``(verdict, margin)``.

    The margin is the certified distance from the boundary: ``lhs.lo − rhs.hi`` (≥ 0 when
    HOLDS) for ``>=``; when the verdict is not HOLDS it is the worst case, which is < 0.
    NaN anywhere gives INCONCLUSIVE.

    Example:
        >>> compare(Interval(2.0, 3.0), Interval(0.5, 1.0))
        (<Verdict.HOLDS: 'HOLDS'>, 1.0)
        >>> compare(Interval(0.0, 2.0), Interval(0.5, 1.0))[0]
        <Verdict.INCONCLUSIVE: 'INCONCLUSIVE'>
    """
    for side, iv in (("left", lhs), ("right", rhs)):
        if iv[0] > iv[1]:
            raise ValueError(f"compare needs intervals with lo ≤ hi; the {side}-hand side is "
                             f"[{iv[0]!r}, {iv[1]!r}] (swap its ends, or build it with "
                             "Interval.around(value, radius))")
    if relation == "<=":
        lhs, rhs = rhs, lhs
    elif relation != ">=":
        raise ValueError(f"relation must be '>=' or '<=', got {relation!r}.")
    values = (*lhs, *rhs)
    if any(math.isnan(v) for v in values):
        return Verdict.INCONCLUSIVE, math.nan
    margin = lhs.lo - rhs.hi
    if margin >= 0:
        return Verdict.HOLDS, margin
    if lhs.hi < rhs.lo:
        return Verdict.VIOLATED, margin
    return Verdict.INCONCLUSIVE, margin


def combine(verdicts) -> Verdict:
    """Several checks at once: VIOLATED if any is, else INCONCLUSIVE if any is, else HOLDS."""
    verdicts = list(verdicts)
    if any(v == Verdict.VIOLATED for v in verdicts):
        return Verdict.VIOLATED
    if any(v == Verdict.INCONCLUSIVE for v in verdicts):
        return Verdict.INCONCLUSIVE
    return Verdict.HOLDS
