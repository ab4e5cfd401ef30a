"""Recompute the claims of a finished heads sweep from its ``results.json`` with the installed
code (:func:`recompute_claims`): what changes when the analysis rules do, without the cells."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from mhatheory import results
from mhatheory.experiments.heads import analysis, plots
from mhatheory.experiments.heads.claims import answer_claims
from mhatheory.experiments.heads.experiment import Config


def recompute_claims(out_dir) -> list[dict]:
    """Recompute the claims of a finished sweep's ``results.json`` from its records with the
    installed code, without its cells: the per-slice slopes and verdicts, the claims and the
    assumption rows (which read only the primary slices' records and the stored tuned,
    robustness, matched and early-stopped tables), and ``claims.png``; the summary gains
    ``claims_recomputed`` (when, and the versions that did it; the run's own provenance stays).
    Written atomically; returns the new claims."""
    out = Path(out_dir)
    payload = json.loads((out / "results.json").read_text(encoding="utf-8"))
    if payload.get("experiment") != "heads":
        raise ValueError(f"{out / 'results.json'} is not a heads sweep's results (experiment "
                         f"{payload.get('experiment')!r}).")
    fields = {f.name for f in dataclasses.fields(Config)}
    config = Config(**{k: v for k, v in payload["config"].items() if k in fields})
    summary, records = payload["summary"], payload["records"]
    summary["assumptions"] = analysis.assumptions(records, config)
    answer_claims(records, summary, config)
    summary["claims_recomputed"] = {"created_utc": results.provenance()["created_utc"],
                                    "versions": results.versions()}
    if "claims.png" in payload.get("figures", ()):
        results.save_figure_atomic(plots.claims_forest(summary), out / "claims.png")
    results.write_json_atomic(out / "results.json", results.to_jsonable(payload))
    return summary["claims"]
