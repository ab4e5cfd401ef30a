"""Records of the heads sweep: one per (arm, H, η, init, n) from a cell's raw per-seed output.

A record holds, per seed, the run's outcome (:func:`mhatheory.experiments._batched.failed`), its
curves at the recorded steps (training, validation and test loss and error, ‖θ_k − θ_0‖, and on
the primary slices ‖θ_k − θ_k^{(i)}‖ to each replace-one retraining) and the fixed-K values at
θ_K. Every fixed-K mean ± SE is over **all** seeds (a failed run counts with the values its last
finite iterate has); ``<q>_survivors`` beside it is over the runs that did not fail. Each seed
draws its own test set, so the SE over seeds of the gap includes the test-sample noise. On the
primary slices of the growing arm the Lei–Ying bounds use the slice's G and β (largest
per-sample gradient norm and certified smoothness over the probed points,
:func:`mhatheory.deora.per_sample_constants`): G·ε₁ and min_γ (β/γ)L̂ + ((β+γ)/2)ε₂²
(:func:`mhatheory.stability.smooth_bound`).

Ensemble records (arm ``"average"``) are the averaged logits (1/H) Σ_{m<H} f_m of H one-head
models trained independently on the seed's data; an ensemble *fails* when its own training loss
does.
"""

from __future__ import annotations

import math

import numpy as np

from mhatheory import stability
from mhatheory.trends import mean_se

#: the probed steps θ_0, θ_{K/10}, θ_K
STAGES = ("init", "early", "late")

#: the curves of a record (per seed, at the recorded steps)
CURVES = ("train_loss", "val_loss", "val_error", "test_loss", "test_error")

_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def restore(obj):
    """Cell files store non-finite floats as strings (JSON has no NaN); turn them back."""
    if isinstance(obj, dict):
        return {k: restore(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [restore(v) for v in obj]
    return _NONFINITE.get(obj, obj) if isinstance(obj, str) else obj


def _summarise(rec: dict, sd: dict, failed: list[bool], quantities) -> None:
    """Means ± SE over all seeds and over the survivors, for each quantity."""
    for q in quantities:
        rec[q], rec[f"{q}_se"] = mean_se(sd[q])
        rec[f"{q}_survivors"], rec[f"{q}_survivors_se"] = mean_se(
            [v for v, f in zip(sd[q], failed, strict=True) if not f])


def _ensemble_records(spec, payload, bayes) -> list[dict]:
    out = []
    for part in payload["per_lr"]:
        for j, H in enumerate(part["prefixes"]):
            curves = {q: part["curves"][q][j] for q in CURVES}
            last = {q: [c[-1] for c in v] for q, v in curves.items()}
            trivial = payload.get("trivial_loss", math.log(2))
            failed = [not (math.isfinite(v) and v <= trivial) for v in last["train_loss"]]
            sd = {"failed": failed, "final_loss": last["train_loss"],
                  "test_error": last["test_error"], "val_error": last["val_error"],
                  "test_loss": last["test_loss"],
                  "gen_gap": [t - f for t, f in zip(last["test_loss"], last["train_loss"],
                                                    strict=True)]}
            sd["excess_error"] = [None if bayes is None else v - bayes
                                  for v in sd["test_error"]]
            rec = {"arm": "average", "heads": H, "lr": part["lr"],
                   "init_scale": spec["init_scale"], "n": spec["n"], "seeds": spec["seeds"],
                   "primary": True, "bayes_error": bayes, "failed_frac": float(np.mean(failed)),
                   "record_steps": payload["record_steps"], "curves": curves}
            _summarise(rec, sd, failed, ("final_loss", "test_error", "val_error", "test_loss",
                                         "gen_gap", "excess_error"))
            rec["per_seed"] = sd
            out.append(rec)
    return out


def _stage_values(probes, S, q):
    return {stage: [next((p[q] for p in probes if p["stage"] == stage and p["seed"] == s),
                         None) for s in range(S)] for stage in STAGES}


def make_records(payloads, bayes: float) -> list[dict]:
    """Every record of the sweep, in cell order (module docstring)."""
    records = []
    for payload in payloads:
        spec, payload = payload["spec"], restore(payload)
        if spec["arm"] == "average":
            records += _ensemble_records(spec, payload, bayes)
            continue
        for part in payload["per_lr"]:
            records.append(_record(spec, payload, part, bayes))
    return records


def _record(spec, payload, part, bayes) -> dict:
    S = spec["seeds"]
    curves = {q: part["curves"][q] for q in CURVES}
    sd = dict(part["outcome"])
    failed = sd["failed"]
    last = {q: [c[-1] for c in part["curves"][q]] for q in part["curves"]}
    sd.update({"final_loss": part["final_loss"], "test_error": last["test_error"],
               "val_error": last["val_error"], "train_error": last["train_error"],
               "test_loss": last["test_loss"], "theta_dist": last["theta_dist"]})
    sd["gen_gap"] = [t - f for t, f in zip(sd["test_loss"], sd["final_loss"], strict=True)]
    sd["excess_error"] = [None if bayes is None else v - bayes for v in sd["test_error"]]
    rec = {"arm": spec["arm"], "heads": spec["heads"], "lr": part["lr"],
           "init_scale": spec["init_scale"], "n": spec["n"], "seeds": S,
           "primary": part["primary"], "bayes_error": bayes,
           "failed_frac": float(np.mean(failed)), "spiked_frac": float(np.mean(sd["spiked"])),
           "failed_steps": [v for v in sd["failed_step"] if v is not None],
           "record_steps": payload["record_steps"], "curves": curves}
    quantities = ["final_loss", "test_error", "val_error", "train_error", "test_loss", "gen_gap",
                  "excess_error", "theta_dist"]
    if "pair_dist" in part:
        rec["pair_dist"] = part["pair_dist"]
        rec["replaced_failed"] = part["replaced_failed"]
        ok = [[not f for f in row] for row in part["replaced_failed"]]
        final = [[c[-1] for c in row] for row in part["pair_dist"]]
        sd["eps1"] = [float(np.mean([d for d, o in zip(r, k, strict=True) if o]))
                      if any(k) else None for r, k in zip(final, ok, strict=True)]
        sd["eps2sq"] = [float(np.mean([d * d for d, o in zip(r, k, strict=True) if o]))
                        if any(k) else None for r, k in zip(final, ok, strict=True)]
        sd["eps2"] = [None if v is None else math.sqrt(v) for v in sd["eps2sq"]]
        quantities += ["eps1", "eps2"]
    if "probes" in payload and part["primary"]:
        probes = payload["probes"][str(part["lr"])]
        rec["probes"] = probes
        for q in ("neg_lambda_over_loss", "kappa_hat", "eta_lambda_max"):
            for stage, vals in _stage_values(probes, S, q).items():
                sd[f"{q}_{stage}"] = vals
                quantities.append(f"{q}_{stage}")
    if "init" in payload and part["primary"]:
        init = payload["init"]
        sd["lambda_max0"] = list(init["lambda_max0"])
        sd["eta_lambda_max0"] = [part["lr"] * v for v in init["lambda_max0"]]
        sd["ntk_margin"] = list(init["ntk_margin"])
        rec["ntk_separable_frac"] = float(np.mean(init["ntk_separable"]))
        rec["token_norm_max"] = max(init.get("token_norm_max", [math.nan]))
        quantities += ["lambda_max0", "eta_lambda_max0", "ntk_margin"]
        c = payload["constants"][str(part["lr"])]
        rec["G"], rec["beta"] = c["G"], c["beta"]
        _bounds(rec, sd, failed)
    _summarise(rec, sd, failed, quantities)
    rec["per_seed"] = sd
    return rec


def _bounds(rec, sd, failed) -> None:
    """Lei–Ying bounds per seed and for the seed means, over the runs that did not fail."""
    G, beta = rec["G"], rec["beta"]
    if not G or sd.get("eps1") is None:
        return
    sd["bound_lipschitz"] = [None if v is None else G * v for v in sd["eps1"]]
    sd["bound_smooth"] = [None if v is None else stability.smooth_bound(beta, fl, v)[0]
                          for v, fl in zip(sd["eps2sq"], sd["final_loss"], strict=True)]
    ok = [not f for f in failed]
    eps1 = [v for v, o in zip(sd["eps1"], ok, strict=True) if o and v is not None]
    eps2sq = [v for v, o in zip(sd["eps2sq"], ok, strict=True) if o and v is not None]
    fl = [v for v, o in zip(sd["final_loss"], ok, strict=True) if o]
    gap, se = mean_se([g for g, o in zip(sd["gen_gap"], ok, strict=True) if o])
    if not eps1 or gap is None:
        return
    rec["bound_lipschitz"] = G * float(np.mean(eps1))
    rec["bound_smooth"], rec["best_gamma"] = stability.smooth_bound(
        beta, float(np.mean(fl)), float(np.mean(eps2sq)))
    # the bounds are on the expected gap; the seed mean estimates it (3 SE of slack)
    rec["bounds_hold"] = bool(gap - 3 * (se or 0.0)
                              <= min(rec["bound_lipschitz"], rec["bound_smooth"]))


def compact(records) -> list[dict]:
    """Records as written to ``results.json``: per-seed curves only on the primary slices
    (where the matched comparison reads them); elsewhere the seed-mean curves
    (``curves_mean``), since the cell files hold every seed's."""
    out = []
    for r in records:
        if r["primary"]:
            out.append(r)
            continue
        r = dict(r)
        curves = r.pop("curves")
        r["curves_mean"] = {q: np.round(np.nanmean(np.asarray(v, dtype=float), axis=0),
                                        7).tolist() for q, v in curves.items()}
        out.append(r)
    return out

