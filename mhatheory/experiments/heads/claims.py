"""The source paper's claims about heads as rows answered "yes" / "no" / "depends" /
"undecided", from per-seed paired slopes against H with Student-t intervals and
Benjamini–Hochberg across slices (:mod:`mhatheory.trends`).

**Slices.** A claim is read on one or more slices: the whole η × init grid (failures, robustness),
each H at its tuned best (test error), a primary slice (η, init) named in the config before the
run (fixed-K quantities), or a primary slice at a training-loss target (matched quantities).
Per slice and seed s, the slope b_s of the quantity against H (log-log for ``log`` quantities,
per doubling of H for ``linear`` ones; :func:`mhatheory.trends.fit_slope`); the slice's estimate
is the mean of b_s with its t-interval and t-test p-value. The control *H heads against the
average of H one-head models* is a paired difference instead of a slope: per seed, the mean over
H ≥ 2 of the H-head model's test error minus the ensemble's, after K steps and with each model
stopped at its own best validation step. Robustness (the share of the grid
within δ of the best) is a statistic of all seeds at once (the best is selected on their mean),
so its slope is bootstrapped over seeds instead (:func:`_bootstrap_slice`).

**Answer.** The p-values of a claim's slices are adjusted by Benjamini–Hochberg at level α; a
slice is resolved where its adjusted p < α, in the claimed direction ("yes") or against it ("no").
The claim is "yes" or "no" when every resolved slice agrees, "depends" when resolved slices
disagree (the detail names them), "undecided" when none is resolved. ``measured`` is the
seed-wise mean of b_s over the slices that decided a "yes" or "no" (so that the printed
estimate is the one the answer rests on, not a pool with unresolved slices of the other sign),
over every slice that counts otherwise, with its 95 % t-interval (a single slice's own estimate
and interval when one slice is averaged).

**Failed runs** (non-finite, or L̂(θ_K) > ln 2) stay in every slice, never dropped: their count
is in each slice (``failed_runs`` of ``runs``) and in the claim's detail. A failed run's test
error is still its error (a diverged classifier's), so the test-error claims read it as it is;
its loss, gap, ε₁, distance or curvature measures the divergence, not the quantity, so a slice
of such a quantity with a failed run is left unresolved (``excluded`` says why, p is None) and
out of ``measured``, as is a test-error slice in which every run failed (its errors would
compare how the runs diverged).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mhatheory.trends import decide, fit_slope, slope, t_test

#: quantities whose value at a failed run is still a measurement of them (module docstring,
#: "Failed runs")
READ_AT_FAILURE = frozenset({"failed", "test_error", "excess_error"})

#: fixed-K quantity → (axis label with unit, fit kind)
QUANTITIES = {
    "failed": ("failed runs (fraction)", "linear"),
    "final_loss": ("training loss L̂(θ_K) (nats)", "log"),
    "test_error": ("test error (fraction)", "linear"),
    "excess_error": ("test error − Bayes floor", "linear"),
    "gen_gap": ("generalisation gap (nats)", "linear"),
    "eps1": ("ε₁ = mean ‖θ_K − θ_K^(i)‖", "log"),
    "theta_dist": ("‖θ_K − θ₀‖", "log"),
    "lambda_max0": ("λmax(∇²L̂(θ₀)) (nats/param²)", "log"),
    "ntk_margin": ("NTK max margin at θ₀", "linear"),
    "bound_lipschitz": ("Lipschitz bound G·ε₁ (nats)", "log"),
}
for _stage, _what in (("init", "θ₀"), ("early", "θ_{K/10}"), ("late", "θ_K")):
    QUANTITIES[f"neg_lambda_over_loss_{_stage}"] = (f"−λmin/L̂ at {_what}", "log")
    QUANTITIES[f"kappa_hat_{_stage}"] = (f"κ̂ = max(0,−λmin)·√H/L̂ at {_what}", "log")


class ClaimSpec(NamedTuple):
    """A claim: its row name, where it is read (``source``: "grid_failed", "grid_good",
    "tuned", "fixed_k", "matched", "ensemble", "ensemble_stopped"), the quantity, the arm, the
    claimed direction (−1: falls with H, +1: rises) and the fit kind."""

    name: str
    source: str
    quantity: str
    arm: str
    direction: int
    kind: str


CLAIMS = (
    ClaimSpec("more heads → fewer failed runs over the η × init grid", "grid_failed",
              "failed", "growing", -1, "linear"),
    ClaimSpec("more heads → more of the η × init grid within δ of the best (robustness)",
              "grid_good", "good_frac", "growing", +1, "linear"),
    ClaimSpec("more heads → lower test error, each H tuned on validation", "tuned",
              "test_error", "growing", -1, "linear"),
    ClaimSpec("more heads → lower test error at fixed K", "fixed_k", "test_error", "growing",
              -1, "linear"),
    ClaimSpec("more heads → faster training (lower L̂ after K steps)", "fixed_k", "final_loss",
              "growing", -1, "log"),
    ClaimSpec("more heads → smaller gap at fixed K", "fixed_k", "gen_gap", "growing", -1,
              "linear"),
    ClaimSpec("more heads → smaller gap at matched training loss", "matched", "gen_gap",
              "growing", -1, "linear"),
    ClaimSpec("more heads → smaller ε₁ at fixed K", "fixed_k", "eps1", "growing", -1, "log"),
    ClaimSpec("more heads → smaller ε₁ at matched training loss", "matched", "eps1", "growing",
              -1, "log"),
    ClaimSpec("fixed width: more heads → lower test error, each H tuned", "tuned", "test_error",
              "fixed_width", -1, "linear"),
    ClaimSpec("fixed width: more heads → more of the grid within δ of the best", "grid_good",
              "good_frac", "fixed_width", +1, "linear"),
    ClaimSpec("fixed width: more heads → smaller gap at matched training loss", "matched",
              "gen_gap", "fixed_width", -1, "linear"),
    ClaimSpec("averaging alone: the mean of H one-head models → lower test error", "fixed_k",
              "test_error", "average", -1, "linear"),
    ClaimSpec("H heads → lower test error than the average of H one-head models", "ensemble",
              "test_error", "growing", -1, "difference"),
    ClaimSpec("H heads → lower test error than the average of H one-head models, both "
              "early-stopped on validation", "ensemble_stopped", "test_error", "growing", -1,
              "difference"),
)


class Claim(NamedTuple):
    """One of Deora et al.'s claims, measured: ``measured`` the seed-averaged slope over the
    deciding slices (module docstring, "Answer"; exponent for log quantities, change per
    doubling of H for linear ones, or a mean difference), ``se`` its SE, ``lo``/``hi`` its
    Student-t interval, ``reference`` the no-effect value 0, ``answer`` "yes" / "no" /
    "depends" / "undecided"."""

    name: str
    measured: float | None
    se: float | None
    lo: float | None
    hi: float | None
    reference: float
    answer: str
    detail: str


def _by_heads(rows, key="heads"):
    return sorted(rows, key=lambda r: r[key])


def _slice(name, rows, values, kind, primary=True):
    rows = _by_heads(rows)
    fit = fit_slope([r["heads"] for r in rows], [values(r) for r in rows], kind)
    return {"slice": name, "primary": primary, "heads": [r["heads"] for r in rows],
            "means": fit["means"], "per_seed": fit["per_seed"], **t_test(fit["per_seed"])}


def _bootstrap_slice(name, rows, level: float = 0.95) -> dict:
    """The slope of ``good_frac`` per doubling of H with its bootstrap over seeds (the same
    resampled seeds at every H): SE, percentile interval and two-sided p = 2·min(share of
    resampled slopes ≤ 0, share ≥ 0), with the +1 correction of a finite bootstrap."""
    x = np.log2([r["heads"] for r in rows])
    est = float(slope(x, [r["good_frac"] for r in rows]))
    boot = slope(x, np.array([r["good_frac_boot"] for r in rows]))
    B = boot.size
    p = min(1.0, 2 * (min(np.sum(boot <= 0), np.sum(boot >= 0)) + 1) / (B + 1))
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return {"slice": name, "primary": True, "heads": [r["heads"] for r in rows],
            "means": [r["good_frac"] for r in rows], "per_seed": [], "mean": est,
            "se": float(np.std(boot, ddof=1)), "n": B, "lo": float(lo), "hi": float(hi),
            "p": float(p)}


def _slices(spec: ClaimSpec, summary, records, config) -> list[dict]:
    """The claim's slices with their per-seed slopes and t-tests."""
    if spec.source in ("grid_failed", "grid_good"):
        rows = _by_heads([r for r in summary["robustness"] if r["arm"] == spec.arm])
        if len(rows) < 2:
            return []
        if spec.source == "grid_failed":
            return [_slice("η × init grid", rows, lambda r: r["per_seed_failed_frac"],
                           spec.kind)]
        return [_bootstrap_slice("η × init grid", rows)]
    if spec.source == "tuned":
        rows = [r for r in summary["tuned"] if r["arm"] == spec.arm]
        if len(rows) < 2:
            return []
        out = _slice("tuned per H", rows, lambda r: r["per_seed_test_error"], spec.kind)
        runs = sum(len(r["per_seed_test_error"]) for r in rows)
        return [dict(out, runs=runs, failed_runs=int(round(sum(
            r["failed_frac"] * len(r["per_seed_test_error"]) for r in rows))))]
    recorded = {(r["arm"], r["heads"], r["lr"], r["init_scale"]): r for r in records
                if r["n"] == config.n}
    out = []
    for lr, init in config.primary:
        at = [r for r in records if r["arm"] == spec.arm and r["n"] == config.n
              and r["lr"] == lr and r["init_scale"] == init]
        if spec.source == "fixed_k" and len(at) > 1 and spec.quantity in at[0]["per_seed"]:
            out.append(_with_failures(
                _slice(f"η={lr:g}/init={init:g}", at, lambda r: r["per_seed"][spec.quantity],
                       spec.kind), at, spec.quantity))
        elif spec.source == "matched":
            for target in config.loss_targets:
                rows = [m for m in summary["matched"] if m["arm"] == spec.arm and m["lr"] == lr
                        and m["init_scale"] == init and m["target"] == target
                        and m["reached_frac"] > 0]
                if len(rows) > 1:
                    out.append(_slice(f"η={lr:g}/init={init:g}/L̂≤{target:g}", rows,
                                      lambda m: m["per_seed"][spec.quantity], spec.kind))
        elif spec.source in ("ensemble", "ensemble_stopped"):
            rows = [r for r in (records if spec.source == "ensemble"
                                else summary["early_stopped"])
                    if r.get("n", config.n) == config.n and r["lr"] == lr
                    and r["init_scale"] == init]

            def errors(r):
                return (r["per_seed"]["test_error"] if spec.source == "ensemble"
                        else r["per_seed_test_error"])

            heads_ = {r["heads"]: r for r in rows if r["arm"] == spec.arm}
            avg = {r["heads"]: r for r in rows if r["arm"] == "average"}
            pairs = [(heads_[h], avg[h]) for h in sorted(heads_) if h >= 2 and h in avg]
            if pairs:
                d = np.array([[a - b for a, b in zip(errors(r), errors(e), strict=True)]
                              for r, e in pairs])
                per_seed = d.mean(axis=0).tolist()
                runs = [recorded[(r["arm"], r["heads"], lr, init)] for pair in pairs
                        for r in pair]
                out.append(_with_failures(
                    {"slice": f"η={lr:g}/init={init:g}", "primary": True,
                     "heads": [r["heads"] for r, _ in pairs], "means": d.mean(axis=1).tolist(),
                     "per_seed": per_seed, **t_test(per_seed)}, runs, spec.quantity))
    return out


def _with_failures(sl: dict, rows, quantity: str) -> dict:
    """``sl`` with the count of failed runs among the seeds of its ``rows`` (records), left
    unresolved where it has one and ``quantity`` is not read at a failure (module docstring,
    "Failed runs")."""
    failed = [bool(f) for r in rows for f in r["per_seed"]["failed"]]
    sl = dict(sl, failed_runs=int(sum(failed)), runs=len(failed))
    if sum(failed) and quantity not in READ_AT_FAILURE:
        sl.update(p=None, excluded=(f"{sum(failed)} of {len(failed)} runs failed: a diverged "
                                    f"run's {quantity} measures the divergence"))
    elif failed and all(failed):
        # with no run that trained, the errors compare how the runs diverged
        sl.update(p=None, excluded=f"all {len(failed)} runs failed")
    return sl


def slopes(records, summary, config) -> list[dict]:
    """Per claim: its slices (estimate, t-interval, p, BH-adjusted p, slice verdict); the claims
    of a control that the config turns off are left out."""
    ran = set(config.arms)
    out = []
    for spec in CLAIMS:
        if spec.arm not in ran or (spec.source.startswith("ensemble") and "average" not in ran):
            continue
        sl = _slices(spec, summary, records, config)
        for s, v in zip(sl, decide(sl, spec.direction, config.alpha), strict=True):
            s["verdict"] = v
        out.append({"claim": spec.name, "quantity": spec.quantity, "arm": spec.arm,
                    "source": spec.source, "direction": spec.direction, "kind": spec.kind,
                    "slices": sl})
    return out


def claims(summary: dict, alpha: float = 0.05) -> list[Claim]:
    """Deora et al.'s claims as rows, from ``summary["slopes"]`` (:func:`slopes`)."""
    rows = []
    for c in summary["slopes"]:
        sl = c["slices"]
        if not sl:
            why = ("no primary slice has two H whose runs reached a loss target"
                   if c.get("source") == "matched" else "no slice of the grid has two H to compare")
            rows.append(Claim(c["claim"], None, None, None, None, 0.0, "undecided", why))
            continue
        by = {k: [s for s in sl if s["verdict"] == k] for k in ("yes", "no", "undecided")}
        counted = [s for s in sl if not s.get("excluded")]
        deciding = by["yes"] + by["no"] if bool(by["yes"]) != bool(by["no"]) else counted
        t = _estimate(deciding)
        unit = {"log": "exponent of H", "linear": "change per doubling of H",
                "difference": "mean difference, H heads − ensemble"}[c["kind"]]
        detail = (f"{c['quantity']} ({unit}), {len(sl)} slice(s); Benjamini–Hochberg at "
                  f"α = {alpha:g}: {len(by['yes'])} as claimed, {len(by['no'])} against, "
                  f"{len(by['undecided'])} unresolved")
        failed, runs = (sum(s.get(k, 0) for s in sl) for k in ("failed_runs", "runs"))
        if failed:
            left = len(sl) - len(counted)
            detail += (f"; {failed} of {runs} runs in its slices failed"
                       + (f" ({left} slice(s) left unresolved: a diverged run's "
                          f"{c['quantity']} measures the divergence)" if left
                          else " (read at their values)"))
        if by["yes"] and by["no"]:
            answer = "depends"
            detail = (f"as claimed at {_names(by['yes'])}; against at {_names(by['no'])}; "
                      + detail)
        elif by["yes"] or by["no"]:
            answer = "yes" if by["yes"] else "no"
        else:
            answer = "undecided"
        rows.append(Claim(c["claim"], t["mean"], t["se"], t["lo"], t["hi"], 0.0, answer,
                          detail))
    return rows


def answer_claims(records, summary: dict, config) -> dict:
    """``summary`` with its ``slopes`` (:func:`slopes`), ``claims`` (:func:`claims`, as dicts)
    and ``answers`` (each claim's answer by name) set from ``records``; returned."""
    summary["slopes"] = slopes(records, summary, config)
    summary["claims"] = [c._asdict() for c in claims(summary, config.alpha)]
    summary["answers"] = {c["name"]: c["answer"] for c in summary["claims"]}
    return summary


def _estimate(slices) -> dict:
    """``mean``, ``se``, ``lo``, ``hi`` of ``slices``: one slice's own, several slices'
    seed-wise average (:func:`_seed_average`), None for none."""
    if not slices:
        return dict.fromkeys(("mean", "se", "lo", "hi"))
    if len(slices) == 1:
        return {k: slices[0][k] for k in ("mean", "se", "lo", "hi")}
    return _seed_average(slices)


def _seed_average(slices) -> dict:
    """The t-test (95 % interval) of the seed-wise mean over slices of the per-seed
    estimates."""
    S = max(len(s["per_seed"]) for s in slices)
    per_seed = []
    for i in range(S):
        v = [s["per_seed"][i] for s in slices if i < len(s["per_seed"])
             and s["per_seed"][i] is not None]
        if v:
            per_seed.append(float(np.mean(v)))
    return t_test(per_seed)


def _names(slices, limit: int = 4) -> str:
    names = [s["slice"] for s in slices]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
