"""``verify`` group ``transformer-curvature``: the λmin–H law beyond one layer, on a causal
decoder Transformer trained on 3-digit addition (a tiny grid: H ∈ {1, 4}, one layer, 2 seeds)."""

from __future__ import annotations

from pathlib import Path

from mhatheory.checks import Check, figure, tendency
from mhatheory.experiments import transformer_curvature as tc
from mhatheory.verdicts import Verdict


def rows(full: bool, out, progress: bool = False) -> list[Check]:
    """The theorem λmin(∇²L̂) ≥ λmin(N) (Weyl, G ⪰ 0) over every probe, decided from the
    certified intervals, and the log-log slopes of −λmin/L̂ against H per stage (tendency rows,
    reference −1/2: the one-layer Deora bound)."""
    cfg = tc.Config() if full else tc.Config(**tc.VERIFY)
    summary = tc.run(cfg, Path(out) / "transformer-curvature", progress=progress)
    out_rows = []
    for r in summary.rows:
        if r["kind"] == "tendency":
            out_rows.append(tendency(r["name"], r["measured"], r["reference"], r["se"],
                                     r["detail"]))
        else:
            out_rows.append(Check(r["name"], r["kind"], Verdict(r["verdict"]),
                                  float(r["measured"]), float(r["reference"]),
                                  float(r["margin"]), r["detail"],
                                  (figure(summary.figures["law"], out),)))
    return out_rows
