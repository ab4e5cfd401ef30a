"""``verify`` group ``heads``: Deora et al.'s claims about the number of heads, measured on
a small H × η grid."""

from __future__ import annotations

from pathlib import Path

from mhatheory.checks import Check, tendency
from mhatheory.experiments import heads


def rows(full: bool, out, progress: bool = False) -> list[Check]:
    """Deora et al.'s claims about the number of heads, measured on a small H × η grid (tendency
    rows: each answered yes / no / undecided from its slope against H and that slope's SE)."""
    cfg = heads.Config(**(heads.FULL if full else heads.VERIFY))
    summary = heads.run(cfg, Path(out) / "heads", progress=progress)
    out_rows = []
    for c in summary["claims"]:
        out_rows.append(tendency(f"heads: {c['name']} → {c['answer']}", c["measured"],
                                 c["reference"], c["se"], c["detail"],
                                 ("heads/claims.png",) if not out_rows else ()))
    return out_rows
