"""``verify`` group ``transformer-curvature``: the λmin–H law beyond one layer, on a causal
decoder Transformer trained on 3-digit addition (a tiny grid: H ∈ {1, 4} at d_model 16, one
layer, 2 seeds, 150 steps: the theorem at every probe; the slopes and the share of cells that
learned are reported)."""

from __future__ import annotations

from pathlib import Path

from mhatheory.checks import Check, figure, tendency
from mhatheory.experiments import transformer_curvature as tc
from mhatheory.verdicts import Verdict


def rows(full: bool, out, progress: bool = False) -> list[Check]:
    """The theorem λmin(∇²L̂) ≥ λmin(N) (Weyl, G ⪰ 0) over every probe, decided from the
    certified intervals, the share of cells that learned, the log-log slopes of −λmin/L̂ against
    H per stage (reference −1/2: the one-layer Deora bound) and the probe-batch comparison
    (tendency rows)."""
    cfg = tc.Config(**(tc.FULL if full else tc.VERIFY))
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
                                  (figure(summary.figures["law_addition"], out),)))
    return out_rows
