"""The ``stability-sweep`` experiment's config and run; see
:mod:`mhatheory.experiments.stability_sweep`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from mhatheory import data, deora, results, stability, train, trends
from mhatheory._numerics import ravel_stacked
from mhatheory.experiments._common import DeoraFields
from mhatheory.experiments.stability_sweep import plots
from mhatheory.experiments.sweep import run_cells, selector_fields
from mhatheory.verdicts import Interval, Verdict, combine, compare


@dataclass(frozen=True)
class Config(DeoraFields):
    """The stability sweep over (n, H, K) (data and GD fields: see ``DeoraFields``).

    Attributes:
        n_grid: training-set sizes n to sweep (each ≥ 2).
        heads_grid: numbers of heads H to sweep.
        steps_grid: numbers of GD steps K to sweep.
        seeds: training sets per cell (≥ 2); expectations are means over them.
        subset: retrain for at most this many sample indices i per training set (all if n ≤ subset).
        chunk: retrainings per vmapped batch (memory against speed).
        influence_samples: samples whose influence-function estimate is checked against exact
            leave-one-out retraining.
    """

    T: int = 6
    num_test: int = 10_000
    n_grid: tuple[int, ...] = (32, 64, 128, 256)
    heads_grid: tuple[int, ...] = (4,)
    steps_grid: tuple[int, ...] = (100, 400)
    seeds: int = 3
    subset: int = 32
    chunk: int = 64
    influence_samples: int = 4

    def __post_init__(self):
        super().__post_init__()
        for name in ("heads_grid", "steps_grid"):
            grid = getattr(self, name)
            if not grid or min(grid) < 1:
                raise ValueError(f"{name} must hold integers >= 1, got {grid}.")
        if not self.n_grid or min(self.n_grid) < 2 or self.seeds < 2:
            raise ValueError("need n >= 2 for every n in n_grid and seeds >= 2 (expectations "
                             f"over training sets), got n_grid={self.n_grid}, seeds={self.seeds}.")


FULL = {"n_grid": (32, 64, 128, 256, 512, 1024), "heads_grid": (2, 8, 32),
        "steps_grid": (100, 1000), "seeds": 5, "subset": 128}


def _cosine_and_error(est, true):
    cos = np.sum(est * true, 1) / (np.linalg.norm(est, axis=1) * np.linalg.norm(true, axis=1))
    err = np.linalg.norm(est - true, axis=1) / np.linalg.norm(true, axis=1)
    return cos.tolist(), err.tolist()


def one_seed(config: Config, n: int, heads: int, steps: int, seed: int, progress: bool):
    """One training set of a cell: retrainings, ε₁, ε₂², the gap, G, β and influence estimates."""
    mix = config.mixture(n)
    k_train, k_fresh, k_test, k_init, k_sub = jax.random.split(jax.random.key(seed), 5)
    k_inf = jax.random.fold_in(jax.random.key(seed), 5)      # the influence probe's start
    batch = data.check_batch(data.sample(mix, k_train), config.d)
    which = (np.arange(n) if n <= config.subset else
             np.sort(np.asarray(jax.random.choice(k_sub, n, (config.subset,), replace=False))))
    fresh = data.sample(mix, k_fresh, len(which))
    pool = data.Batch(np.concatenate([batch.X, fresh.X]), np.concatenate([batch.y, fresh.y]))
    test = data.sample(mix, k_test, config.num_test)
    params0 = deora.init_params(k_init, config.d, heads, config.init_scale)
    traj, base = stability.base_trajectory(deora.loss_fn, params0, batch, steps, config.lr)
    kw = dict(steps=steps, lr=config.lr, base_traj=base, chunk=config.chunk, progress=progress)
    rep = stability.retrain(deora.loss_fn, params0, pool, stability.replace_indices(n, which),
                            **kw)
    loo = stability.retrain(deora.loss_fn, params0, batch, stability.loo_indices(n, which), **kw)
    eps1, eps2 = stability.model_stability(traj.final_params, rep.params)
    probe_points = [traj.params(i) for i in train.log_schedule(steps, 5)]
    probe_points += [jax.tree.map(lambda a, r=r: a[r], rep.params)
                     for r in range(min(4, len(which)))]
    Xc = np.concatenate([pool.X, test.X[:1000]])
    yc = np.concatenate([pool.y, test.y[:1000]])
    G = beta = 0.0
    for p in probe_points:
        g, b = deora.per_sample_constants(p, Xc, yc)
        G, beta = max(G, float(g.max())), max(beta, float(b.max()))
    tl, tse = deora.test_loss(traj.final_params, test)
    out = {"eps1": eps1, "eps2": eps2, "train_loss": float(traj.loss[-1]), "test_loss": tl,
           "test_loss_se": tse, "gen_gap": tl - float(traj.loss[-1]), "G": G, "beta": beta,
           "distance_mean": loo.distance.mean(0)[:: max(1, steps // 100)].tolist()}
    m = min(config.influence_samples, len(which))
    theta = np.asarray(ravel_pytree(traj.final_params)[0])
    true = np.asarray(ravel_stacked(jax.tree.map(lambda a: a[:m], loo.params))) - theta
    for name, damping in (("spectral", 1e-6), ("gd_ridge", 1.0 / (config.lr * steps))):
        est, lam = stability.influence(deora.loss_fn, traj.final_params, batch, which[:m],
                                       damping=damping, key=k_inf)
        cos, err = _cosine_and_error(est, true)
        out[f"influence_{name}"] = {"damping": lam, "cosine": cos, "relative_error": err}
    return out


def run_cell(config: Config, spec: dict, progress: bool) -> dict:
    """One (n, H, K) cell: the means over ``seeds`` training sets and both bounds' verdicts."""
    per = [one_seed(config, spec["n"], spec["heads"], spec["steps"], config.seed + s, progress)
           for s in range(config.seeds)]
    S = len(per)
    mean = lambda k: float(np.mean([p[k] for p in per]))  # noqa: E731
    gaps = np.array([p["gen_gap"] for p in per])
    gap_se = math.sqrt(gaps.var(ddof=1) / S + np.mean([p["test_loss_se"] ** 2 for p in per]) / S)
    G = max(p["G"] for p in per)
    beta = max(p["beta"] for p in per)
    eps1, eps2 = mean("eps1"), mean("eps2")
    b_smooth, gamma = stability.smooth_bound(beta, mean("train_loss"), eps2)
    rec = {"n": spec["n"], "heads": spec["heads"], "steps": spec["steps"], "eps1": eps1,
           "eps2": eps2, "gen_gap": float(gaps.mean()), "gen_gap_se": gap_se,
           "train_loss": mean("train_loss"), "test_loss": mean("test_loss"), "G": G,
           "beta": beta, "bound_lipschitz": G * eps1, "bound_smooth": b_smooth,
           "best_gamma": gamma, "eps1_per_seed": [p["eps1"] for p in per]}
    # E[gen] ≤ bound, with E[gen] known to ± 3 SE (Monte-Carlo): HOLDS only when the whole
    # 3-SE interval lies under the bound, VIOLATED only when it lies above
    gap_iv = Interval.around(rec["gen_gap"], 3 * gap_se)
    for name in ("bound_lipschitz", "bound_smooth"):
        verdict, margin = compare(gap_iv, Interval(rec[name], rec[name]), "<=")
        rec[f"{name}_verdict"], rec[f"{name}_margin"] = str(verdict), margin
    rec["verdict"] = str(combine(Verdict(rec[f"{b}_verdict"])
                                 for b in ("bound_lipschitz", "bound_smooth")))
    rec["holds"] = rec["verdict"] == Verdict.HOLDS
    return {"record": rec, "seeds": per}


def eps1_slopes(records) -> list[dict]:
    """Per (H, K): log-log slope of ε₁ against n, fitted per seed; mean ± SE over seeds."""
    out = []
    for key in sorted({(r["heads"], r["steps"]) for r in records}):
        rs = sorted((r for r in records if (r["heads"], r["steps"]) == key), key=lambda r: r["n"])
        if len(rs) < 2:
            continue
        ns = np.log([r["n"] for r in rs])
        per_seed = np.log(np.array([r["eps1_per_seed"] for r in rs]))      # (n values, seeds)
        slopes = [float(s) for s in trends.slope(ns, per_seed)]
        out.append({"heads": key[0], "steps": key[1], "slope_mean": float(np.mean(slopes)),
                    "slope_se": float(np.std(slopes, ddof=1) / math.sqrt(len(slopes))),
                    "per_seed": slopes})
    return out


class BoundCheck(NamedTuple):
    """One bound against the gap over every cell: ``gap + 3 SE ≤ bound`` (HOLDS only when the
    whole ±3 SE interval of the gap lies under the bound)."""

    verdict: Verdict      #: combined over the cells
    worst_margin: float   #: smallest certified margin (bound − (gap + 3 SE)) over the cells


class Summary(NamedTuple):
    """What :func:`run` returns (and writes as ``summary`` in ``results.json``).

    Attributes:
        all_hold: both bounds HOLD in every cell.
        lipschitz: G·ε₁ against the gap (:class:`BoundCheck`).
        smooth: the smooth bound at its best γ against the gap.
        num_cells: (n, H, K) cells.
        seeds: training sets per cell.
        min_eps1: the smallest ε₁ over the cells (> 0: retraining differs).
        eps1_positive: ``min_eps1 > 0``.
        eps1_slopes: log-log slopes of ε₁ against n per (H, K) (:func:`eps1_slopes`).
        influence: per damping, the median cosine and relative error of the influence
            estimates against exact leave-one-out retraining.
        figures: figure name → file written.
    """

    all_hold: bool
    lipschitz: BoundCheck
    smooth: BoundCheck
    num_cells: int
    seeds: int
    min_eps1: float
    eps1_positive: bool
    eps1_slopes: list
    influence: dict
    figures: dict


def _bound_check(records, name: str) -> BoundCheck:
    return BoundCheck(combine(Verdict(r[f"{name}_verdict"]) for r in records),
                      min(r[f"{name}_margin"] for r in records))


def run(config: Config, out_dir, progress: bool = True, resume: bool = False) -> Summary:
    """Every cell (resumable), the ε₁ slopes, the figures and ``results.json``."""
    out = Path(out_dir)
    results.retire(out)
    cells = [(f"n{n}_H{h}_K{k}", {"n": n, "heads": h, "steps": k})
             for h in config.heads_grid for k in config.steps_grid for n in config.n_grid]
    # every cell averages over `seeds` data sets, so `seeds` enters each cell's result
    payloads = run_cells(out, cells, lambda spec: run_cell(config, spec, progress),
                         resume=resume, progress=progress, desc="stability cells",
                         config=config, ignore=selector_fields(config) - {"seeds"})
    records = [p["record"] for p in payloads]
    slopes = eps1_slopes(records)
    figs = {"eps1_vs_n": plots.eps1_vs_n(records, slopes),
            "gap_vs_bounds": plots.gap_vs_bounds(records),
            "distance": plots.distance_curves(payloads, config.lr)}
    figures = {name: results.save_figure_atomic(fig, out / f"{name}.png")
               for name, fig in figs.items()}
    infl = {name: {"cosine_median": float(np.median([c for p in payloads for s in p["seeds"]
                                                      for c in s[f"influence_{name}"]["cosine"]])),
                   "relative_error_median": float(np.median(
                       [e for p in payloads for s in p["seeds"]
                        for e in s[f"influence_{name}"]["relative_error"]]))}
            for name in ("spectral", "gd_ridge")}
    min_eps1 = min(r["eps1"] for r in records)
    summary = Summary(all_hold=all(r["holds"] for r in records),
                      lipschitz=_bound_check(records, "bound_lipschitz"),
                      smooth=_bound_check(records, "bound_smooth"), num_cells=len(records),
                      seeds=config.seeds, min_eps1=min_eps1, eps1_positive=min_eps1 > 0,
                      eps1_slopes=slopes, influence=infl, figures=figures)
    results.write_results(out, "stability", config, config.seed,
                          {"summary": summary, "records": records, "sweep": payloads.info},
                          figures=figures.values())
    return summary
