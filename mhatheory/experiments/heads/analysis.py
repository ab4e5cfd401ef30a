"""What the heads sweep concludes from its records: each H at its tuned best, robustness to
tuning, H compared at matched training loss, and cost.

**Tuned per H** (:func:`tuned`). For each arm and H, the setting (η, init scale, stopping step k)
with the lowest validation error, averaged over seeds, among all settings of the η × init grid at
the reference n and all recorded steps k (ties: the lower mean validation loss). Test error and
gap are then read at that setting only, over all seeds; selection never sees the test sets.
``stop_at_end`` says the selected k is K.

**Edges.** ``at_edge`` names the axes (η, init scale) whose selected value is the smallest or
largest of its grid. The optimum may then lie outside the grid, unless the validation error is
flat there: the setting is *on an edge* (``on_edge``) when, on such an axis, it beats the best
setting one grid step inside by more than 2 SE of their paired per-seed difference (each
setting at its own best stopping step). A selection at the edge of a plateau (equal within
noise to the next value inside) is at the edge but not on it.

**Robustness** (:func:`robustness`). Per setting, its validation error at its own best stopping
step (seed means); the setting is *good* when that is within δ of the best setting of its H.
``good_frac`` is the good share of the grid; its SE is the bootstrap SE over seeds (seeds
resampled, the whole selection redone; ``good_frac_boot`` keeps the resamples, the same seeds at
every H, for the slope's bootstrap in :mod:`.claims`). A per-seed share would not do: one seed's
validation error (SE ≈ 1.6 % at 256 samples) is noisier than δ, so its best setting is an
optimistic outlier and its share measures noise. ``stable_lr_range``: at the tuned init scale, the
contiguous range of η around the tuned η where no seed failed.

**Matched training loss** (:func:`matched`). On a primary slice, each run is read where its
training loss L̂ first reaches the target: between the last recorded step above it and the first
at or below it (``first_step_below``), every quantity (test error, test loss, ε₁ = mean
distance to the replace-one retrainings) is interpolated to the crossing, linearly in log L̂ (so
the gap is read at L̂ = target exactly; reading at the first recorded step below would overshoot
by an amount that depends on H, since the recorded steps are sparse). ``reached_frac`` is the
share of seeds that got there in K steps; the quantities are means over those seeds.

**Cost** (:func:`cost`): parameters, FLOPs of one GD step from the compiled program's
``cost_analysis()`` and warm seconds per step, per arm and H (an ensemble of H one-head models
costs H times one member).
"""

from __future__ import annotations

import math

import numpy as np

from mhatheory.trends import fit_slope, mean_se, t_test

#: bootstrap resamples of the seeds for the robustness SE
BOOTSTRAP = 2000


def _grid(records, arm, n):
    """Per H: the records of the η × init grid of ``arm`` at ``n``."""
    out = {}
    for r in records:
        if r["arm"] == arm and r["n"] == n:
            out.setdefault(r["heads"], []).append(r)
    return {h: sorted(rs, key=lambda r: (r["lr"], r["init_scale"])) for h, rs in
            sorted(out.items())}


def _arr(rec, q, seeds=None):
    """A curve as an array [seeds, recorded steps] (optionally a subset of seeds)."""
    a = np.asarray(rec["curves"][q], dtype=float)
    return a if seeds is None else a[seeds]


def _best_step(rec, seeds=None) -> tuple[int, float, float]:
    """(index of the recorded step, mean val error, mean val loss) minimising the mean val
    error over seeds (ties: mean val loss)."""
    err = np.nanmean(_arr(rec, "val_error", seeds), axis=0)
    loss = np.nanmean(_arr(rec, "val_loss", seeds), axis=0)
    order = np.lexsort((np.where(np.isfinite(loss), loss, np.inf),
                        np.where(np.isfinite(err), err, np.inf)))
    j = int(order[0])
    return j, float(err[j]), float(loss[j])


def _select(recs, seeds=None):
    """The (record, step index, val error) with the lowest mean val error (ties: val loss)."""
    best = [(*_best_step(r, seeds), r) for r in recs]
    j, err, _, rec = min(best, key=lambda b: (b[1], b[2]))
    return rec, j, err, best


def tuned(records, config, arm: str = "growing") -> list[dict]:
    """Each H at its tuned best (module docstring)."""
    out = []
    lr_edges = (min(config.lr_grid), max(config.lr_grid))
    init_edges = (min(config.init_scale_grid), max(config.init_scale_grid))
    for h, recs in _grid(records, arm, config.n).items():
        rec, j, val, _ = _select(recs)
        test = _arr(rec, "test_error")[:, j]
        gap = _arr(rec, "test_loss")[:, j] - _arr(rec, "train_loss")[:, j]
        failed = np.asarray(rec["per_seed"]["failed"])
        te, te_se = mean_se(test)
        gp, gp_se = mean_se(gap)
        at_edge = {"lr": rec["lr"] in lr_edges and len(config.lr_grid) > 1,
                   "init_scale": rec["init_scale"] in init_edges
                   and len(config.init_scale_grid) > 1}
        edge = {axis: _beats_inside(recs, rec, j, axis, getattr(config, f"{axis}_grid"))
                for axis, at in at_edge.items() if at}
        out.append({"arm": arm, "heads": h, "lr": rec["lr"], "init_scale": rec["init_scale"],
                    "stop_step": rec["record_steps"][j],
                    "stop_at_end": rec["record_steps"][j] == config.steps,
                    "val_error": val, "test_error": te, "test_error_se": te_se,
                    "test_error_survivors": mean_se(test[~failed])[0],
                    "gen_gap": gp, "gen_gap_se": gp_se,
                    "train_loss": float(np.mean(_arr(rec, "train_loss")[:, j])),
                    "failed_frac": float(failed.mean()),
                    "at_edge": [a for a, at in at_edge.items() if at],
                    "on_edge": any(v["beats_inside"] for v in edge.values()), "edge": edge,
                    "per_seed_test_error": test.tolist()})
    return out


def _beats_inside(recs, rec, j, axis, grid) -> dict:
    """Whether ``rec`` (at recorded step ``j``), on the edge of ``axis``, beats the best setting
    one grid step inside by more than 2 SE of the paired per-seed difference of val errors."""
    values = sorted(grid)
    inner = values[1] if rec[axis] == values[0] else values[-2]
    inside = [r for r in recs if r[axis] == inner]
    if not inside:
        return {"inside": inner, "difference": None, "se": None, "beats_inside": False}
    best, k, _, _ = _select(inside)
    diff = _arr(rec, "val_error")[:, j] - _arr(best, "val_error")[:, k]
    mean, se = mean_se(diff)
    return {"inside": inner, "difference": mean, "se": se,
            "beats_inside": bool(mean is not None and mean + 2 * (se or 0.0) < 0)}


def _good_fractions(recs, resamples, delta) -> np.ndarray:
    """Per resample of the seeds (rows of ``resamples``): the share of the settings ``recs``
    whose best-step mean val error is within δ of the best one's."""
    # a setting's best-step error is the lowest of its seed-mean curve (NaN where every step
    # is NaN), whichever step _best_step's tie-break picks among equal errors
    vals = np.stack([np.nanmin(np.nanmean(_arr(r, "val_error")[resamples], axis=1), axis=-1)
                     for r in recs])          # [settings, resamples], one setting at a time
    return (vals <= np.nanmin(vals, axis=0) + delta).mean(axis=0)


def _good(recs, seeds, delta):
    """Per setting: its best-step mean val error over ``seeds``, and which are within δ."""
    vals = np.array([_best_step(r, seeds)[1] for r in recs])
    return vals, vals <= np.nanmin(vals) + delta


def robustness(records, config, tuned_rows, arm: str = "growing") -> list[dict]:
    """Per H: the share of the grid within δ of the best, with its bootstrap SE, per-seed
    shares, the share of failed runs and the failure-free η range (module docstring)."""
    grid = _grid(records, arm, config.n)
    S = next(iter(grid.values()))[0]["seeds"] if grid else 0
    # the same resampled seeds at every H (seeds are paired across H)
    rng = np.random.default_rng(config.seed)
    resamples = [rng.integers(0, S, S) for _ in range(BOOTSTRAP)]
    by_h = {t["heads"]: t for t in tuned_rows}
    out = []
    for h, recs in grid.items():
        _, good = _good(recs, None, config.delta)
        boot = _good_fractions(recs, np.asarray(resamples), config.delta).tolist()
        failed = np.array([r["per_seed"]["failed"] for r in recs], dtype=float)   # [settings, S]
        t = by_h[h]
        at_init = sorted((r for r in recs if r["init_scale"] == t["init_scale"]),
                         key=lambda r: r["lr"])
        lrs = [r["lr"] for r in at_init]
        ok = [r["failed_frac"] == 0 for r in at_init]
        i = lo = hi = lrs.index(t["lr"])
        while lo > 0 and ok[lo - 1]:
            lo -= 1
        while hi < len(lrs) - 1 and ok[hi + 1]:
            hi += 1
        out.append({"arm": arm, "heads": h, "delta": config.delta, "settings": len(recs),
                    "good_frac": float(good.mean()), "good_frac_se": float(np.std(boot, ddof=1)),
                    "good_frac_boot": np.round(boot, 6).tolist(),
                    "failed_frac": float(failed.mean()),
                    "per_seed_failed_frac": failed.mean(axis=0).tolist(),
                    "stable_lr_range": [lrs[lo], lrs[hi]] if ok[i] else None,
                    "stable_lrs": [lr for lr, o in zip(lrs, ok, strict=True) if o]})
    return out


def _crossing(above: float, below: float, target: float) -> float:
    """Where L̂ falls from ``above`` to ``below`` through ``target``, as a fraction t ∈ (0, 1] of
    the step: linear in log L̂ (linear in L̂ if ``below`` underflowed to 0)."""
    if below <= 0:
        return (above - target) / (above - below)
    return math.log(above / target) / math.log(above / below)


def read_matched(rec, target: float) -> dict:
    """Per seed, the quantities where the training loss first reaches ``target`` (module
    docstring), means over the seeds that reached it (``step`` None: not reached in K steps)."""
    train = _arr(rec, "train_loss")
    steps = np.asarray(rec["record_steps"], dtype=float)
    rows = {"step": [], "first_step_below": [], "train_loss": [], "test_error": [],
            "gen_gap": [], "eps1": []}
    for s in range(train.shape[0]):
        hit = np.nonzero(np.isfinite(train[s]) & (train[s] <= target))[0]
        if not hit.size:
            for v in rows.values():
                v.append(None)
            continue
        j = int(hit[0])
        # the crossing, linear in log L̂ between the last recorded step above the target and
        # the first below it (at j itself when the run starts below the target)
        t = 1.0
        if j > 0 and train[s, j] < target and np.isfinite(train[s, j - 1]):
            t = _crossing(float(train[s, j - 1]), float(train[s, j]), target)

        def at(curve, j=j, t=t):
            c = np.asarray(curve, dtype=float)
            return float(c[j] if t == 1.0 else c[j - 1] + t * (c[j] - c[j - 1]))

        rows["first_step_below"].append(rec["record_steps"][j])
        rows["step"].append(at(steps))
        rows["train_loss"].append(target if t < 1.0 else float(train[s, j]))
        rows["test_error"].append(at(rec["curves"]["test_error"][s]))
        rows["gen_gap"].append(at(rec["curves"]["test_loss"][s]) - rows["train_loss"][-1])
        eps = None
        if "pair_dist" in rec:
            d = [at(row) for row, bad in zip(rec["pair_dist"][s], rec["replaced_failed"][s],
                                             strict=True) if not bad]
            eps = float(np.mean(d)) if d else None
        rows["eps1"].append(eps)
    reached = [v is not None for v in rows["step"]]
    out = {"target": target, "reached_frac": float(np.mean(reached)), "per_seed": rows}
    for q in ("step", "test_error", "gen_gap", "eps1"):
        out[q], out[f"{q}_se"] = mean_se(rows[q])
    return out


def matched(records, config) -> list[dict]:
    """Every primary-slice record (both arms and the ensembles) read at each loss target."""
    out = []
    for r in records:
        if r["n"] != config.n or not r["primary"]:
            continue
        for target in config.loss_targets:
            m = read_matched(r, target)
            out.append({"arm": r["arm"], "heads": r["heads"], "lr": r["lr"],
                        "init_scale": r["init_scale"], **m})
    return out


def early_stopped(records, config) -> list[dict]:
    """Every primary-slice record at its own stopping step (the recorded step with the lowest
    seed-mean validation error): the per-seed test errors there, for comparisons of models
    that are each early-stopped on validation."""
    out = []
    for r in records:
        if r["n"] == config.n and r["primary"]:
            j, val, _ = _best_step(r)
            test = _arr(r, "test_error")[:, j]
            out.append({"arm": r["arm"], "heads": r["heads"], "lr": r["lr"],
                        "init_scale": r["init_scale"], "stop_step": r["record_steps"][j],
                        "val_error": val, "test_error": float(np.mean(test)),
                        "per_seed_test_error": test.tolist()})
    return out


def assumptions(records, config) -> list[dict]:
    """Which of the theory's assumptions held on these data (primary slices, probe seeds):
    the theorem λmin(∇²L̂) ≥ λmin(N) at every probe (certified verdicts), the slope of
    −λmin/L̂ against H per stage (the one-layer bound's H^(−1/2)), and for the Deora family
    NTK separability at θ_0 (realizability), the weak-convexity chain at θ_K and the largest
    token norm."""
    prim = [r for r in records if r["primary"] and r["arm"] == "growing" and r["n"] == config.n]
    probes = [p for r in prim for p in r.get("probes", [])]
    rows = []
    if probes:
        rows.append({"assumption": "λmin(∇²L̂) ≥ λmin(N) at every probe (theorem, certified)",
                     **_verdicts([p["theorem_verdict"] for p in probes])})
    for stage in ("init", "early", "late"):
        slopes = []
        for lr, init in config.primary:
            at = sorted((r for r in prim if (r["lr"], r["init_scale"]) == (lr, init)),
                        key=lambda r: r["heads"])
            q = f"neg_lambda_over_loss_{stage}"
            if len(at) < 2 or q not in at[0]["per_seed"]:
                continue
            failed = [bool(f) for r in at for f in r["per_seed"]["failed"]]
            if any(failed) and stage != "init":
                # a diverged run's curvature measures its divergence (claims, "Failed runs");
                # at θ₀ every run is still a measurement
                slopes.append(f"η={lr:g}/init={init:g}: not read ({sum(failed)} of "
                              f"{len(failed)} runs failed)")
            else:
                fit = fit_slope([r["heads"] for r in at], [r["per_seed"][q] for r in at], "log")
                t = t_test(fit["per_seed"])
                if t["mean"] is not None:
                    slopes.append(f"η={lr:g}/init={init:g}: {t['mean']:+.2f}"
                                  + (f" [{t['lo']:+.2f}, {t['hi']:+.2f}]" if t["lo"] is not None
                                     else ""))
        if slopes:
            rows.append({"assumption": f"−λmin/L̂ ∝ H^b at {stage} (bound: b = −1/2)",
                         "held": None, "detail": "; ".join(slopes)})
    sep = [r["ntk_separable_frac"] for r in prim if "ntk_separable_frac" in r]
    if sep:
        rows.append({"assumption": "NTK features separable at θ₀ (realizability)",
                     "held": min(sep) == 1.0,
                     "detail": f"separable share per record {min(sep):.2f}–{max(sep):.2f}"})
    chains = [p["chain_verdict"] for p in probes if "chain_verdict" in p]
    if chains:
        rows.append({"assumption": "weak-convexity chain at θ_K (certified)",
                     **_verdicts(chains)})
    norms = [r["token_norm_max"] for r in prim if "token_norm_max" in r]
    if norms:
        rows.append({"assumption": "bounded tokens (the chain's R = max ‖x_t‖)", "held": None,
                     "detail": f"largest token norm {max(norms):.3g}"})
    return rows


def _verdicts(verdicts: list[str]) -> dict:
    """``held`` and ``detail`` of a row of certified verdicts, three-valued: False where one
    was VIOLATED, None (undecided) where none was and one was INCONCLUSIVE, which is never a
    pass, True where all HOLD; the detail counts each."""
    counts = {v: verdicts.count(v) for v in ("HOLDS", "VIOLATED", "INCONCLUSIVE")}
    held = False if counts["VIOLATED"] else None if counts["INCONCLUSIVE"] else True
    return {"held": held, "detail": ", ".join(f"{k} {v}" for k, v in counts.items())}


def cost(payloads, config) -> list[dict]:
    """Per arm and H: parameters, FLOPs per GD step, seconds per step (module docstring)."""
    out = {}
    for p in payloads:
        spec = p["spec"]
        if "cost" not in p:
            continue
        c = p["cost"]
        if spec["arm"] == "average":
            for h in config.heads_grid:
                out[("average", h)] = {"arm": "average", "heads": h, "params": h * c["params"],
                                       "flops_per_step": h * c["flops_per_step"],
                                       "seconds_per_step": h * c["seconds_per_step"]}
        else:
            out[(spec["arm"], spec["heads"])] = {"arm": spec["arm"], "heads": spec["heads"], **c}
    return [out[k] for k in sorted(out)]


def summarise(records, payloads, config) -> dict:
    """The sweep's summary: grid, tuned, robustness, matched and cost tables."""
    arms = [a for a in config.arms if a != "average"]
    tuned_rows = [t for arm in arms for t in tuned(records, config, arm)]
    robust = [r for arm in arms for r in robustness(
        records, config, [t for t in tuned_rows if t["arm"] == arm], arm)]
    return {
        "grid": {"full_product": config.full_product, "records": len(records),
                 "heads": list(config.heads_grid), "lr": list(config.lr_grid),
                 "init_scale": list(config.init_scale_grid), "n": list(config.n_grid),
                 "reference_n": config.n, "primary": [list(p) for p in config.primary],
                 "fixed_width_heads": list(config.fixed_width_heads if "fixed_width" in config.arms
                                           else ()),
                 "width": config.width if "fixed_width" in config.arms else None,
                 "arms": list(config.arms), "model": config.model, "data": config.data},
        "tuned": tuned_rows,
        "robustness": robust,
        "matched": matched(records, config),
        "early_stopped": early_stopped(records, config),
        "assumptions": assumptions(records, config),
        "cost": cost(payloads, config),
        "failed_runs": int(sum(round(r["failed_frac"] * r["seeds"]) for r in records)),
        "on_edge": [t["heads"] for t in tuned_rows if t["on_edge"] and t["arm"] == "growing"],
    }
