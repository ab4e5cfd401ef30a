"""The rows of ``mhatheory verify``: the :class:`Check` type and the builders that make one.

A check group (an experiment's ``check.py``, or a module of :mod:`mhatheory.verify`) has
``rows(full, out, progress) -> list[Check]``: it runs library functions or an experiment's
``run()`` at small size and turns the typed values they return into rows with these builders
(never re-reading ``results.json``). This module sits below the experiments, so that an
experiment's check needs nothing from :mod:`mhatheory.verify`, which names the groups, runs them
and writes the table and the report.

Row kinds:

* ``theorem``: an inequality that must hold at every point probed; FAIL is a bug or a finding.
* ``identity``: two computations that must agree to a stated tolerance (float64 unless noted).
* ``sanity``: a guard that the setup is not trivial (e.g. negative curvature is present, so the
  weak-convexity check is not vacuous); gated like a theorem.
* ``tendency``: an empirical trend from a paper, measured and reported with its uncertainty; it
  is never gated (status REPORT; for these rows ``margin`` holds the standard error).

Gated rows carry a three-valued :class:`~mhatheory.verdicts.Verdict`: status PASS when certified
to hold, FAIL when certified to fail, INCONCLUSIVE when the check could not decide.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from mhatheory.verdicts import Verdict

STATUS = {Verdict.HOLDS: "PASS", Verdict.VIOLATED: "FAIL", Verdict.INCONCLUSIVE: "INCONCLUSIVE"}


@dataclass(frozen=True)
class Check:
    """One row of the verification table.

    ``verdict`` is a :class:`~mhatheory.verdicts.Verdict` for gated rows (``None`` for a
    tendency). ``margin`` is signed so that ≥ 0 means the check holds (e.g. bound − measured for
    an upper bound, tolerance − error for an identity). ``figures`` are paths relative to the
    report folder.
    """

    name: str
    kind: str
    verdict: Verdict | None
    measured: float
    reference: float
    margin: float
    detail: str = ""
    figures: tuple = field(default=())

    @property
    def status(self) -> str:
        """PASS, FAIL or INCONCLUSIVE for gated rows; REPORT for a tendency."""
        if self.kind == "tendency":
            return "REPORT"
        return STATUS[self.verdict]

    @property
    def passed(self) -> bool:
        """A tendency, or a gated row certified to hold."""
        return self.kind == "tendency" or self.verdict == Verdict.HOLDS


def _two_valued(ok: bool, *values) -> Verdict:
    """An exact comparison (a stated tolerance): HOLDS or VIOLATED; NaN is INCONCLUSIVE."""
    if any(math.isnan(v) for v in values):
        return Verdict.INCONCLUSIVE
    return Verdict.HOLDS if ok else Verdict.VIOLATED


def upper(name, kind, measured, bound, detail="", figures=()) -> Check:
    """A check of ``measured ≤ bound`` (a stated tolerance or an exact bound).

    Example:
        >>> upper("rounding", "identity", 3e-13, 1e-12).status
        'PASS'
        >>> upper("nan is never a pass", "identity", float("nan"), 1.0).status
        'INCONCLUSIVE'
    """
    measured, bound = float(measured), float(bound)
    return Check(name, kind, _two_valued(measured <= bound, measured, bound), measured, bound,
                 bound - measured, detail, tuple(figures))


def lower(name, kind, measured, bound, detail="", figures=()) -> Check:
    """A check of ``measured ≥ bound``."""
    measured, bound = float(measured), float(bound)
    return Check(name, kind, _two_valued(measured >= bound, measured, bound), measured, bound,
                 measured - bound, detail, tuple(figures))


def tendency(name, measured, reference, se, detail="", figures=()) -> Check:
    """An empirical trend, reported with its standard error in the margin column."""
    nan = float("nan")
    return Check(name, "tendency", None, nan if measured is None else float(measured),
                 float(reference), nan if se is None else float(se), detail, tuple(figures))


def figure(path, out) -> str:
    """A figure written by an experiment, as a path relative to the report folder ``out``."""
    return Path(os.path.relpath(Path(path), Path(out))).as_posix()


__all__ = ["STATUS", "Check", "figure", "lower", "tendency", "upper"]
