"""The ``heads`` experiment's config and run; see
:mod:`mhatheory.experiments.heads`."""

from __future__ import annotations

import dataclasses
import inspect
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from mhatheory import data, deora, results, spectral
from mhatheory.experiments import _batched
from mhatheory.experiments._common import DeoraFields, make_problem
from mhatheory.experiments.heads import plots
from mhatheory.experiments.heads.claims import (
    claims,
    gap_resolution,
    slopes_by_slice,
)
from mhatheory.experiments.heads.records import make_record
from mhatheory.experiments.sweep import run_cells


@dataclass(frozen=True)
class Config(DeoraFields):
    """The heads sweep (data and GD fields: see ``DeoraFields``; the data are harder than the
    other experiments' (ζ = 0.3, σ = 0.3: Bayes error ≈ 3 %) so test errors differ between H).

    Attributes:
        heads_grid: numbers of heads H to sweep (each ≥ 1).
        lr_grid: GD step sizes η to sweep (each > 0); λmax(θ_0) ≈ 0.05–0.09 here, so the default
            grid crosses η·λmax(θ_0) = 2 between η = 16 and 64.
        init_scale_grid: initialisation scales to sweep (each > 0; W, U entries ~ N(0, s²/d)).
        n_grid: training-set sizes n to sweep (each ≥ 2).
        seeds: training sets (and initialisations) per cell (≥ 2).
        lr: the reference step size η (in lr_grid): the H × init and H × n slices use it.
        init_scale: the reference initialisation scale (in init_scale_grid).
        n: the reference training-set size (in n_grid): H × η × init runs at it.
        full_product: sweep the full product H × η × init × n instead of the slices.
        steps: GD steps K per run.
        replace: replace-one retrainings per training set (random i; 1 ≤ replace ≤ min n).
        probe_seeds: seeds whose Hessian is probed (λmin, λmax at θ_0, θ_{K/10}, θ_K) and
            whose G, β the bounds use (at least the first seed is always used for G, β).
        krylov: Lanczos vectors per cycle for P > exact_max_params.
        exact_max_params: dense eigh for up to this many parameters.
        const_test: test samples added to the training set when measuring G and β.
        bayes_samples: Monte-Carlo samples for the Bayes error floor.
    """

    zeta: float = 0.3
    sigma: float = 0.3
    num_test: int = 10_000
    heads_grid: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    lr_grid: tuple[float, ...] = (1.0, 4.0, 16.0, 64.0, 256.0, 1024.0)
    init_scale_grid: tuple[float, ...] = (0.3, 3.0, 30.0)
    n_grid: tuple[int, ...] = (32, 128, 512)
    seeds: int = 6
    lr: float = 16.0
    init_scale: float = 3.0
    n: int = 128
    full_product: bool = False
    steps: int = 300
    replace: int = 2
    probe_seeds: int = 2
    krylov: int = 30
    exact_max_params: int = 300
    const_test: int = 128
    bayes_samples: int = 200_000

    def __post_init__(self):
        _check_grid("--heads-grid", self.heads_grid, "integers >= 1", lambda v: v >= 1)
        _check_grid("--lr-grid", self.lr_grid, "step sizes > 0", lambda v: v > 0)
        _check_grid("--init-scale-grid", self.init_scale_grid, "scales > 0", lambda v: v > 0)
        _check_grid("--n-grid", self.n_grid, "training-set sizes >= 2", lambda v: v >= 2)
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 2:
            raise ValueError(f"--seeds must be an integer >= 2 (expectations over training sets "
                             f"need at least two), got {self.seeds!r}.")
        for flag, value, grid in (("--lr", self.lr, self.lr_grid),
                                  ("--init-scale", self.init_scale, self.init_scale_grid),
                                  ("--n", self.n, self.n_grid)):
            if value not in grid:
                raise ValueError(f"{flag} (the reference value of the slices) must be one of "
                                 f"{flag}-grid {','.join(map(str, grid))}, got {value!r}.")
        if not 1 <= self.replace <= min(self.n_grid):
            raise ValueError(f"--replace must lie in [1, min(--n-grid) = {min(self.n_grid)}], "
                             f"got {self.replace!r}.")
        if not 1 <= self.const_test <= self.num_test:
            raise ValueError(f"--const-test must lie in [1, --num-test = {self.num_test}], got "
                             f"{self.const_test!r}.")
        if not 0 <= self.probe_seeds <= self.seeds:
            raise ValueError(f"--probe-seeds must lie in [0, --seeds = {self.seeds}], got "
                             f"{self.probe_seeds!r}.")
        super().__post_init__()


def _check_grid(flag, grid, what, ok) -> None:
    if not isinstance(grid, tuple) or not grid:
        raise ValueError(f"{flag} is empty; give at least one value (comma-separated).")
    bad = [v for v in grid if isinstance(v, bool) or not isinstance(v, (int, float))
           or not math.isfinite(v) or not ok(v)]
    if bad:
        raise ValueError(f"{flag} must hold {what}, got {','.join(map(str, grid))} "
                         f"(bad: {','.join(map(str, bad))}).")


#: GPU-sized: the full product, more seeds, retrainings, probes and steps.
FULL = {"full_product": True, "seeds": 10, "replace": 8, "probe_seeds": 5, "steps": 1000,
        "lr_grid": (1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0),
        "init_scale_grid": (0.3, 1.0, 3.0, 10.0, 30.0), "n_grid": (32, 128, 512, 2048)}

#: A grid for ``mhatheory verify`` (tendency rows): well under a minute on 2 CPU cores.
VERIFY = {"heads_grid": (1, 2, 8), "lr_grid": (16.0, 1024.0), "init_scale_grid": (3.0,),
          "n_grid": (32,), "n": 32, "seeds": 4, "steps": 100, "replace": 2, "probe_seeds": 0,
          "num_test": 2000, "const_test": 32, "bayes_samples": 20_000}


def probe_steps(steps: int) -> tuple[int, ...]:
    """θ_0, θ_{K/10}, θ_K: the "init", "early" and "late" probes."""
    return tuple(sorted({0, max(1, steps // 10), steps}))


def _stage(k: int, steps: int) -> str:
    return "init" if k == 0 else ("late" if k == steps else "early")


def plan(config: Config) -> list[tuple[str, dict]]:
    """The cells: (name, spec) with spec = (heads, init_scale, n, the step sizes of the cell's
    slice, seeds). A cell depends on its step sizes and on ``seeds``, so both are in its spec."""
    cells = []
    for init in config.init_scale_grid:
        for n in config.n_grid:
            if config.full_product or n == config.n:
                lrs = list(config.lr_grid)
            elif init == config.init_scale:
                lrs = [config.lr]
            else:
                continue
            for h in config.heads_grid:
                cells.append((f"H{h}_init{init:g}_n{n}",
                              {"heads": h, "init_scale": init, "n": n, "lrs": lrs,
                               "seeds": config.seeds}))
    return cells


def _stack(trees):
    return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def _take(tree, idx):
    return jax.tree.map(lambda a: a[idx], tree)


def _replacements(mix, seed: int, n: int, R: int):
    """R distinct indices i and a fresh sample for each (keyed by the seed only)."""
    k_idx, k_new = jax.random.split(jax.random.fold_in(jax.random.key(seed), 7919))
    which = np.sort(np.asarray(jax.random.choice(k_idx, n, (R,), replace=False)))
    return which, data.sample(mix, k_new, R)


def _eig(fn, params, batch, config, method, key):
    """An extreme eigenvalue; a probe that misses tol = 1e-8 after 5 restarts is kept with its
    residual (recorded) instead of warning once per probe."""
    P = sum(a.size for a in jax.tree.leaves(params))
    kw = ({} if method == "exact" else
          {"krylov": min(config.krylov, P - 1), "tol": 1e-8, "max_restarts": 5})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Lanczos did not converge")
        return fn(deora.loss_fn, params, batch, method=method, key=key, **kw)


def run_cell(config: Config, spec: dict) -> dict:
    """Train, retrain, probe and evaluate one (H, init, n) cell for all its η and seeds."""
    t0 = time.perf_counter()
    H, init, n, lrs, S = (spec[k] for k in ("heads", "init_scale", "n", "lrs", "seeds"))
    E, R, K = len(lrs), config.replace, config.steps
    mix = config.mixture(n)
    seeds = [config.seed + s for s in range(S)]
    probs = [make_problem(mix, H, init, sd, config.num_test) for sd in seeds]
    Xs, ys, pools = [], [], []
    for p, sd in zip(probs, seeds, strict=True):
        which, fresh = _replacements(mix, sd, n, R)
        pools.append((jnp.concatenate([p.train.X, fresh.X, p.test.X[:config.const_test]]),
                      jnp.concatenate([p.train.y, fresh.y, p.test.y[:config.const_test]])))
        Xs.append(p.train.X)
        ys.append(p.train.y)
        for r, i in enumerate(which):
            Xs.append(p.train.X.at[i].set(fresh.X[r]))
            ys.append(p.train.y.at[i].set(fresh.y[r]))
    # runs ordered (η, seed, r): r = 0 trains on the full set, r ≥ 1 with sample which[r-1] replaced
    X = jnp.concatenate([jnp.stack(Xs)] * E)
    y = jnp.concatenate([jnp.stack(ys)] * E)
    params0 = _stack([p.params0 for p in probs for _ in range(R + 1)] * E)
    lr_runs = jnp.repeat(jnp.asarray(lrs, dtype=X.dtype), S * (R + 1))
    steps_p = probe_steps(K)
    out = _batched.gd_runs(params0, X, y, lr_runs, steps=K, probe_steps=steps_p)
    shape = (E, S, R + 1)
    curves = np.asarray(out["loss"]).reshape(shape + (K + 1,))
    timing = {"gd": time.perf_counter() - t0}
    nonfinite = np.asarray(out["nonfinite_step"]).reshape(shape)
    final = jax.tree.map(lambda a: a.reshape(shape + a.shape[1:]), out["final"])
    snaps = jax.tree.map(lambda a: a.reshape(shape + a.shape[1:]), out["snapshots"])
    base = _take(final, (slice(None), slice(None), 0))                       # [E, S, ...]
    base_flat = jax.tree.map(lambda a: a.reshape((E * S,) + a.shape[2:]), base)
    reps = _take(final, (slice(None), slice(None), slice(1, None)))          # [E, S, R, ...]
    rep_dist = np.asarray(_batched.flat_distance(
        jax.tree.map(lambda a: jnp.repeat(a[:, :, None], R, 2).reshape((-1,) + a.shape[2:]),
                     base),
        jax.tree.map(lambda a: a.reshape((-1,) + a.shape[3:]), reps))).reshape(E, S, R)
    p0_flat = _stack([p.params0 for p in probs] * E)
    theta_dist = np.asarray(_batched.flat_distance(base_flat, p0_flat)).reshape(E, S)
    which_seed = jnp.asarray(np.tile(np.arange(S), E))
    test_loss, test_se, test_err = (np.asarray(a).reshape(E, S) for a in _batched.evaluate(
        base_flat, which_seed, jnp.stack([p.test.X for p in probs]),
        jnp.stack([p.test.y for p in probs])))
    train_err = np.asarray(_batched.evaluate(
        base_flat, which_seed, jnp.stack([p.train.X for p in probs]),
        jnp.stack([p.train.y for p in probs]))[2]).reshape(E, S)
    timing["evaluate"] = time.perf_counter() - t0 - sum(timing.values())

    P = deora.parameter_count(config.d, H)
    method = "exact" if P <= config.exact_max_params else "lanczos"
    key = jax.random.key(config.seed + 17)
    init_part = {"loss0": [], "lambda_max0": [], "lambda_max0_residual": [], "ntk_margin": [],
                 "ntk_margin_upper": [], "ntk_separable": []}
    lmin0 = []
    for s, p in enumerate(probs):
        hi = _eig(spectral.lambda_max, p.params0, p.train, config, method, key)
        mm = deora.max_margin(p.params0, p.train.X, p.train.y)
        for k, v in (("loss0", float(curves[0, s, 0, 0])), ("lambda_max0", hi.value),
                     ("lambda_max0_residual", hi.residual), ("ntk_margin", mm.margin),
                     ("ntk_margin_upper", mm.upper), ("ntk_separable", bool(mm.separable))):
            init_part[k].append(v)
        if s < config.probe_seeds:
            lmin0.append(_eig(spectral.lambda_min, p.params0, p.train, config, method, key))

    timing["init_probes"] = time.perf_counter() - t0 - sum(timing.values())
    timing["probes"] = timing["constants"] = 0.0
    per_lr = []
    for e, lr in enumerate(lrs):
        runs = [[_batched.classify(curves[e, s, r], int(nonfinite[e, s, r]))
                 for r in range(R + 1)] for s in range(S)]
        seeds_out = {k: [runs[s][0][k] for s in range(S)]
                     for k in ("diverged", "diverged_step", "spiked", "max_loss_ratio")}
        ok_rep = [[not runs[s][r + 1]["diverged"] for r in range(R)] for s in range(S)]
        seeds_out.update({
            "final_loss": curves[e, :, 0, -1].tolist(),
            "steps_to_0.1": [_batched.steps_to(curves[e, s, 0], 0.1) for s in range(S)],
            "steps_to_0.01": [_batched.steps_to(curves[e, s, 0], 0.01) for s in range(S)],
            "theta_dist": theta_dist[e].tolist(), "train_error": train_err[e].tolist(),
            "test_error": test_err[e].tolist(), "test_loss": test_loss[e].tolist(),
            "test_loss_se": test_se[e].tolist(),
            "eps1": [float(np.mean(rep_dist[e, s][ok_rep[s]])) if any(ok_rep[s]) else None
                     for s in range(S)],
            "eps2sq": [float(np.mean(rep_dist[e, s][ok_rep[s]] ** 2)) if any(ok_rep[s])
                       else None for s in range(S)],
            "replaced_diverged": [R - sum(ok_rep[s]) for s in range(S)],
        })
        probes, points = [], []
        t1 = time.perf_counter()
        for s in range(S):
            if nonfinite[e, s, 0] >= 0:
                continue
            for j, k in enumerate(steps_p):
                theta = _take(snaps, (e, s, 0, j))
                if (s < max(1, config.probe_seeds) and (k > 0 or e == 0)
                        and not runs[s][0]["diverged"]):
                    points.append((s, theta))
                if s >= config.probe_seeds:
                    continue
                batch = probs[s].train
                lo = lmin0[s] if k == 0 else _eig(spectral.lambda_min, theta, batch, config,
                                                  method, key)
                hi_v = (init_part["lambda_max0"][s] if k == 0 else
                        _eig(spectral.lambda_max, theta, batch, config, method, key).value)
                L = float(curves[e, s, 0, k])
                probes.append({"seed": s, "stage": _stage(k, K), "step": k, "loss": L,
                               "lambda_min": lo.value, "lambda_min_residual": lo.residual,
                               "lambda_min_converged": bool(lo.converged),
                               "lambda_max": hi_v, "eta_lambda_max": lr * hi_v,
                               # None where L̂ underflowed to 0 (huge margins, large η)
                               "neg_lambda_over_loss": -lo.value / L if L > 0 else None,
                               "kappa_hat": (max(0.0, -lo.value) * math.sqrt(H) / L if L > 0
                                             else None)})
        t2 = time.perf_counter()
        G = beta = 0.0
        for s, theta in points:
            g, b = deora.per_sample_constants(theta, *pools[s])
            G, beta = max(G, float(g.max())), max(beta, float(b.max()))
        timing["probes"] += t2 - t1
        timing["constants"] += time.perf_counter() - t2
        per_lr.append({"lr": lr, "seeds": seeds_out, "probes": probes, "G": G, "beta": beta,
                       "constant_points": len(points)})
    return {"init": init_part, "per_lr": per_lr, "method": method,
            "probe_steps": list(steps_p), "seconds": time.perf_counter() - t0, "timing": timing}


def run(config: Config, out_dir, progress: bool = True, resume: bool = False,
        figures: bool = True) -> dict:
    """Run (or resume) the sweep; write ``results.json`` and (unless ``figures=False``) the
    figures; return the summary."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    cells = plan(config)
    kwargs = {}
    if "config" in inspect.signature(run_cells).parameters:
        # a cell's spec holds its step sizes and seed count; the reference values and the
        # product switch only choose which cells exist
        kwargs = {"config": config, "ignore": {
            f.name for f in dataclasses.fields(config) if f.name.endswith("_grid")
            or f.name in ("seeds", "lr", "init_scale", "n", "full_product")}}
    payloads = run_cells(out, cells, lambda spec: run_cell(config, spec), resume=resume,
                         progress=progress, desc="heads cells", **kwargs)
    bayes, bayes_se = data.bayes_error(config.mixture(), jax.random.key(config.seed + 99),
                                       num=config.bayes_samples)
    records = [make_record(p["spec"], part, p["init"], bayes)
               for p in payloads for part in p["per_lr"]]
    slopes = slopes_by_slice(records)
    rows = claims({"slopes": slopes})
    figs = plots.all_figures(records, slopes, rows, config) if figures else {}
    for name, fig in figs.items():
        results.save_figure_atomic(fig, out / name)
    summary = {
        "grid": {"full_product": config.full_product, "cells": len(cells),
                 "records": len(records), "heads": list(config.heads_grid),
                 "lr": list(config.lr_grid), "init_scale": list(config.init_scale_grid),
                 "n": list(config.n_grid), "reference": {"lr": config.lr,
                                                         "init_scale": config.init_scale,
                                                         "n": config.n}},
        "bayes_error": bayes, "bayes_error_se": bayes_se,
        "claims": [c._asdict() for c in rows],
        "gap_resolution": gap_resolution(records, min(config.n_grid)),
        "divergences": sum(r["diverged_frac"] * r["seeds"] for r in records),
        "cell_seconds": sum(p["seconds"] for p in payloads),
        "wall_seconds": time.perf_counter() - t0,
        "slopes": slopes,
    }
    results.write_results(out, "heads", config, config.seed,
                          {"summary": summary, "records": records, "figures": list(figs),
                           "sweep": getattr(payloads, "info", None)})
    return {k: v for k, v in summary.items() if k != "slopes"}
