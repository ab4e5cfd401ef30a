"""What the ``transformer-curvature`` records say: the theorem tally, whether every cell learned,
the law's slopes at matched loss, and the probe-batch comparison.

**The law.** Per task, scaling, depth and stage, each seed's least-squares slope b of
log(−λmin(∇²L̂)/L̂) against log H (:func:`mhatheory.trends.fit_slope`; points with λmin ≥ 0 have no
logarithm and are counted, not fitted); the mean of the per-seed slopes with its Student-t 95 %
interval over seeds (:func:`mhatheory.trends.t_test`). Every slope of the run is one test of
"b = 0": Benjamini–Hochberg across all of them (:func:`mhatheory.trends.decide`) says which fall,
which rise and which stay undecided at false-discovery rate 5 %. The one-layer Deora bound
−λmin/L̂ ≤ κ/√H falls like H^(−1/2); these are tendencies, reported whatever they show.

**The probe batch.** At the end of training each cell is probed on the first n training samples
for every n of ``probe_sizes``. Per task and depth, the log of the ratio of −λmin/L̂ on the
fewest samples over the most, per cell, its mean and t-interval over cells: 0 means the negative
curvature relative to the loss does not depend on how many samples the probe sees
(Benjamini–Hochberg across the task × depth rows).
"""

from __future__ import annotations

import math

import numpy as np

from mhatheory import trends
from mhatheory.experiments.transformer_curvature.grid import scaling_members, stage_names
from mhatheory.verdicts import Verdict

CELL = ("task", "d_model", "heads", "layers", "seed")


def _probes(records: list[dict]) -> list[dict]:
    """One record per probe (stages that share a step and probe batch share a probe)."""
    seen = {}
    for r in records:
        seen.setdefault(tuple(r[k] for k in CELL) + (r["step"], r["probe_batch"]), r)
    return list(seen.values())


def theorem(records: list[dict]) -> dict:
    """Verdict counts of λmin(∇²L̂) ≥ λmin(N) over the probes, the smallest margin and how many
    probes' Lanczos runs did not converge."""
    probes = _probes(records)
    counts = {v.value: 0 for v in Verdict}
    for r in probes:
        counts[r["theorem_verdict"]] += 1
    margins = [r["theorem_margin"] for r in probes]
    return {"counts": counts, "probes": len(probes),
            "min_margin": min(margins) if margins else None,
            "unconverged_probes": sum(not (r["lambda_min_converged"]
                                           and r["lambda_min_N_converged"]) for r in probes)}


def training(cells: list[dict], late: list[dict]) -> dict:
    """Per task: cells, how many learned, the steps they took and the late accuracies."""
    out = {}
    for task in dict.fromkeys(c["task"] for c in cells):
        cs = [c for c in cells if c["task"] == task]
        ls = [r for r in late if r["task"] == task]
        out[task] = {
            "cells": len(cs), "learned": sum(c["trained"] for c in cs),
            "not_learned": [{k: c[k] for k in CELL} for c in cs if not c["trained"]],
            "steps": [min(c["steps"] for c in cs), float(np.median([c["steps"] for c in cs])),
                      max(c["steps"] for c in cs)],
            "accuracy": [min(r["accuracy"] for r in ls), max(r["accuracy"] for r in ls)],
            "test_accuracy": trends.t_test([r["test_accuracy"] for r in ls]),
            "loss": [min(r["loss"] for r in ls), max(r["loss"] for r in ls)]}
    return out


def slope(records: list[dict], members: list[tuple[int, int]]) -> dict:
    """The law's slope over one scaling's (d_model, H) cells: per-seed slopes, their mean, SE,
    t-interval and p-value (of b = 0), the seed-mean −λmin/L̂ and L̂ per H."""
    heads = [h for _, h in members]
    seeds = sorted({r["seed"] for r in records})
    table = {(r["d_model"], r["heads"], r["seed"]): r for r in records}
    per_seed = [[(table[(d, h, s)]["neg_lambda_over_loss"] if (d, h, s) in table else None)
                 for s in seeds] for d, h in members]
    losses = [[table[(d, h, s)]["loss"] for s in seeds if (d, h, s) in table]
              for d, h in members]
    fit = trends.fit_slope(heads, per_seed, "log")
    t = trends.t_test(fit["per_seed"])
    return {"heads": heads, "d_model": [d for d, _ in members], "seeds": len(seeds),
            "slope": t["mean"], "se": t["se"], "lo": t["lo"], "hi": t["hi"], "p": t["p"],
            "n": t["n"], "per_seed": fit["per_seed"], "means": fit["means"],
            "loss_means": [float(np.mean(v)) if v else None for v in losses],
            "excluded_nonpositive": fit["excluded"]}


def batch_effect(late: list[dict], small: int, large: int) -> dict:
    """log((−λmin/L̂) on ``small`` samples / on ``large``) per cell: mean, t-interval; and the
    mean λmin(N), λmin(∇²L̂) and L̂ on each batch."""
    by = {}
    for r in late:
        by.setdefault(tuple(r[k] for k in CELL), {})[r["probe_batch"]] = r
    pairs = [v for v in by.values() if small in v and large in v]
    logs = [math.log(v[small]["neg_lambda_over_loss"] / v[large]["neg_lambda_over_loss"])
            for v in pairs if (v[small]["neg_lambda_over_loss"] or 0) > 0
            and (v[large]["neg_lambda_over_loss"] or 0) > 0]

    def mean(key, b):
        return float(np.mean([v[b][key] for v in pairs])) if pairs else None

    return {"cells": len(pairs), "log_ratio": trends.t_test(logs),
            "excluded_nonpositive": len(pairs) - len(logs),
            **{f"{k}_{b}": mean(k, b) for k in ("lambda_min", "lambda_min_N", "loss")
               for b in (small, large)}}


def _adjust(tests: list[dict], direction: int, words: tuple[str, str]) -> None:
    """Benjamini–Hochberg across ``tests`` (each with ``slope``/``mean`` and ``p``): each gains
    ``p_adjusted`` and ``verdict``, words[0] when resolved in ``direction``, words[1] when
    resolved the other way, else "undecided"."""
    view = [{"mean": t.get("slope", t.get("mean")), "p": t["p"]} for t in tests]
    for t, v, decided in zip(tests, view, trends.decide(view, direction), strict=True):
        t["p_adjusted"] = v["p_adjusted"]
        t["verdict"] = {"yes": words[0], "no": words[1]}.get(decided, "undecided")


def summarise(records: list[dict], cells: list[dict], config, entropy: dict) -> dict:
    """The theorem tally, the training tally, the slopes and the probe-batch comparison.

    Args:
        records: every probe record of the sweep.
        cells: per cell its coordinates, ``trained`` and ``steps``.
        config: the experiment's configuration.
        entropy: per task the marginal entropy (the first matched level).
    """
    main = [r for r in records if r["probe_batch"] == config.probe_batch]
    late = [r for r in records if r["stage"] == "late"]
    slopes = []
    for task in config.tasks:
        for scaling in config.scaling_grid:
            members = scaling_members(config, scaling)
            for layers in config.layers_grid:
                for stage in stage_names(config):
                    sel = [r for r in main if r["task"] == task and r["layers"] == layers
                           and r["stage"] == stage and (r["d_model"], r["heads"]) in members]
                    if len({r["heads"] for r in sel}) < 2:
                        continue
                    slopes.append({"task": task, "scaling": scaling, "layers": layers,
                                   "stage": stage, **slope(sel, members)})
    _adjust(slopes, direction=-1, words=("falls", "rises"))
    small, large = min(config.probe_sizes), max(config.probe_sizes)
    batch = [{"task": task, "layers": layers, "small": small, "large": large,
              **batch_effect([r for r in late if r["task"] == task and r["layers"] == layers],
                             small, large)}
             for task in config.tasks for layers in config.layers_grid]
    _adjust([b["log_ratio"] for b in batch], direction=1,
            words=("larger on fewer samples", "smaller on fewer samples"))
    return {"theorem": theorem(records),
            "training": training(cells, [r for r in late
                                         if r["probe_batch"] == config.probe_batch]),
            "entropy": entropy, "slopes": slopes, "probe_batch": batch}


def _interval(s) -> str:
    return ("n/a" if s["lo"] is None else f"[{s['lo']:+.2f}, {s['hi']:+.2f}]")


def rows(summary: dict) -> list[dict]:
    """Verify rows: the theorem λmin(∇²L̂) ≥ λmin(N) over every probe, the share of cells that
    learned, one tendency row per slope of −λmin/L̂ against H (reference −1/2) and one per
    probe-batch comparison (reference 0)."""
    th = summary["theorem"]
    c = th["counts"]
    verdict = ("VIOLATED" if c.get("VIOLATED") else "HOLDS"
               if c.get("HOLDS") == th["probes"] and th["probes"] else "INCONCLUSIVE")
    out = [{"name": "Transformer: λmin(∇²L̂) ≥ λmin(N) (cross-entropy)",
            "kind": "theorem", "verdict": verdict, "measured": th["min_margin"],
            "reference": 0.0, "margin": th["min_margin"],
            "detail": f"{c.get('HOLDS', 0)} HOLDS, {c.get('VIOLATED', 0)} VIOLATED, "
                      f"{c.get('INCONCLUSIVE', 0)} INCONCLUSIVE of {th['probes']} probes"}]
    for task, t in summary["training"].items():
        out.append({"name": f"Transformer ({task}): share of cells that learned",
                    "kind": "tendency", "verdict": None, "measured": t["learned"] / t["cells"],
                    "reference": 1.0, "se": None,
                    "detail": f"{t['learned']} of {t['cells']}; late validation accuracy "
                              f"{t['accuracy'][0]:.3f}–{t['accuracy'][1]:.3f}, loss "
                              f"{t['loss'][0]:.2g}–{t['loss'][1]:.2g}"})
    for s in summary["slopes"]:
        layers = f"{s['layers']} layer{'s' if s['layers'] > 1 else ''}"
        out.append({"name": f"Transformer ({s['task']}) −λmin/L̂ ∝ H^b ({s['scaling']}, "
                            f"{layers}, {s['stage']})",
                    "kind": "tendency", "verdict": None, "measured": s["slope"],
                    "reference": -0.5, "se": s["se"],
                    "detail": f"H ∈ {s['heads']}, {s['n']} seeds, 95 % t-interval "
                              f"{_interval(s)}, {s['verdict']} after Benjamini–Hochberg; "
                              f"{s['excluded_nonpositive']} points with λmin ≥ 0 excluded"})
    for b in summary["probe_batch"]:
        t = b["log_ratio"]
        out.append({"name": f"Transformer ({b['task']}, {b['layers']} layer"
                            f"{'s' if b['layers'] > 1 else ''}): log of −λmin/L̂ on "
                            f"{b['small']} over {b['large']} samples, late",
                    "kind": "tendency", "verdict": None, "measured": t["mean"],
                    "reference": 0.0, "se": t["se"],
                    "detail": f"{t['n']} cells, 95 % t-interval {_interval(t)}, "
                              f"{t['verdict']} after Benjamini–Hochberg"})
    return out
