"""The ``weak-convexity`` experiment's config and run; see
:mod:`mhatheory.experiments.weak_convexity`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from mhatheory import data, deora, results, spectral, train, trends
from mhatheory.experiments._common import DeoraFields, error_metrics, make_problem
from mhatheory.experiments.sweep import run_cells, selector_fields
from mhatheory.experiments.weak_convexity import plots
from mhatheory.verdicts import Verdict, combine


@dataclass(frozen=True)
class Config(DeoraFields):
    """The H-sweep of the weak-convexity chain (data and GD fields: see ``DeoraFields``).

    Attributes:
        heads_grid: numbers of heads H to sweep (one cell per H and seed).
        seeds: seeds per H (seed, seed + 1, ...); slopes are mean ± SE over them.
        n: training-set size.
        steps: GD steps K in every cell.
        num_probes: about how many log-spaced GD steps to probe (step 0 is added).
        krylov: Lanczos Krylov dimension for λmin and λmax (when not exact).
        exact_max_params: use the dense Hessian when the parameter count P is at most this.
        convergence_heads: number of heads H of the finite-time convergence check.
        convergence_steps: GD steps of the finite-time convergence check.
        fit_min_heads: smallest H in the restricted (large-H) slope fits.
    """

    heads_grid: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    seeds: int = 3
    n: int = 128
    steps: int = 2000
    num_probes: int = 8
    krylov: int = 40
    exact_max_params: int = 300
    convergence_heads: int = 8
    convergence_steps: int = 500
    fit_min_heads: int = 4

    def __post_init__(self):
        super().__post_init__()
        if not self.heads_grid or min(self.heads_grid) < 1:
            raise ValueError(f"heads_grid must hold integers >= 1, got {self.heads_grid}.")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}.")


FULL = {"d": 16, "n": 512, "steps": 5000, "num_probes": 12, "seeds": 5, "krylov": 80}


def probe_cell(config: Config, heads: int, seed: int) -> dict:
    """Train one (H, seed) cell and evaluate the chain at every scheduled step."""
    prob = make_problem(config.mixture(), heads, config.init_scale, seed, config.num_test)
    data.check_batch(prob.train, config.d)
    schedule = train.log_schedule(config.steps, config.num_probes)
    traj = train.gd(deora.loss_fn, prob.params0, prob.train, steps=config.steps, lr=config.lr,
                    record_steps=schedule)
    P = deora.parameter_count(config.d, heads)
    method = "exact" if P <= config.exact_max_params else "lanczos"
    key = jax.random.key(seed + 17)
    v0 = v0_N = None
    records = []
    for i, step in enumerate(traj.record_steps):
        params = traj.params(i)
        kw = {} if method == "exact" else {"krylov": min(config.krylov, P - 1)}
        ch, v0, v0_N = deora.chain(params, prob.train, method=method, key=key,
                                    v0=None if method == "exact" else v0,
                                    v0_N=None if method == "exact" else v0_N, **kw)
        hi = spectral.lambda_max(deora.loss_fn, params, prob.train, method=method, key=key,
                                 **kw)
        rec = {"heads": heads, "seed": seed, "step": int(step), **ch.record(),
               "lambda_max": hi.value, "lambda_max_residual": hi.residual,
               "lambda_max_converged": hi.converged, "method": method,
               "descent": deora.descent_check(params, prob.train, config.lr, key=key,
                                              krylov=min(config.krylov, P - 1)).record()}
        records.append(rec)
    test = error_metrics(traj.final_params, prob.train, prob.test)
    return {"records": records, "final_test_error": float(test["test_error"]),
            "final_train_loss": float(traj.loss[-1])}


def fit_slopes(records: list[dict], quantity: str, steps_by_stage: dict) -> dict:
    """Per stage: log-log least-squares slope of ``quantity`` against H for each seed (points
    with a positive value only), then mean ± standard error over seeds."""
    out = {}
    for stage, step in steps_by_stage.items():
        slopes = []
        excluded = 0
        for seed in sorted({r["seed"] for r in records}):
            pts = [(r["heads"], r[quantity]) for r in records
                   if r["seed"] == seed and r["step"] == step]
            good = [(h, v) for h, v in pts if v > 0]
            excluded += len(pts) - len(good)
            if len({h for h, _ in good}) >= 2:
                x, yv = np.log([h for h, _ in good]), np.log([v for _, v in good])
                slopes.append(float(trends.slope(x, yv)))
        se = float(np.std(slopes, ddof=1) / math.sqrt(len(slopes))) if len(slopes) > 1 else None
        out[stage] = {"step": int(step), "slope_mean": float(np.mean(slopes)) if slopes else None,
                      "slope_se": se, "per_seed": slopes, "points_excluded_nonpositive": excluded}
    return out


def run_convergence(config: Config) -> dict:
    """GD for ``convergence_heads`` heads and the finite-time bound at every K."""
    H = config.convergence_heads
    prob = make_problem(config.mixture(), H, config.init_scale, config.seed, config.num_test)
    K = config.convergence_steps
    traj = train.gd(deora.loss_fn, prob.params0, prob.train, steps=K, lr=config.lr,
                    record_steps=range(K + 1))
    cb = deora.finite_time_bound(traj.params_at, traj.loss, traj.grad_norm, config.lr,
                                 prob.train, prob.params0)
    applicable = cb.descent_ok
    excess = cb.loss[applicable] - cb.bound[applicable]
    return {"heads": H, "K": cb.K, "loss": cb.loss, "bound": cb.bound, "alpha": cb.alpha,
            "descent_ok": cb.descent_ok,
            "holds_all": bool(np.all(excess <= 0)),
            "certified_steps": int(applicable.sum()),
            "max_excess": float(excess.max()) if excess.size else math.nan,
            "ntk_margin": cb.margin.margin, "ntk_margin_upper": cb.margin.upper,
            "ntk_separable": cb.margin.separable,
            "constants": {"c1": 1.0, "c2": 0.5, "source": "mhatheory.deora._convergence docstring"}}


class Summary(NamedTuple):
    """What :func:`run` returns (and writes as ``summary`` in ``results.json``).

    Attributes:
        chain_verdict: the combined verdict of every link at every probe.
        chain_verdict_counts: probes per verdict.
        chain_holds_everywhere: ``chain_verdict`` is HOLDS.
        worst_link_margin: the smallest certified link margin over all probes.
        num_probes: probed (H, seed, step) points.
        unconverged_probes: probes whose λmin did not converge.
        escalations: probes that spent more HVPs before deciding.
        negative_curvature_found: some probe has λmin < 0 (the check is not vacuous).
        max_neg_lambda_min: max over probes of −λmin.
        descent_verdict: the combined verdict of the descent lemma where applicable.
        descent_applicable: probes where η·λmax ≤ 1 is certified.
        descent_min_margin: the smallest descent margin there (NaN if none).
        descent_lemma_holds_where_applicable: every applicable descent check HOLDS.
        convergence_heads: H of the finite-time convergence run.
        convergence_bound_holds: L̂(θ_K) ≤ bound for every K with certified descent.
        convergence_certified_steps: the K with certified descent.
        convergence_max_excess: max over those K of L̂(θ_K) − bound (≤ 0 when it holds).
        ntk_margin: the attained NTK margin at θ_0 of the convergence run.
        ntk_separable: ``ntk_margin > 0``.
        slopes: log-log slopes against H, per quantity and stage (:func:`fit_slopes`).
        slopes_restricted: the same over H ≥ ``fit_min_heads`` (empty with < 2 such H).
        fit_min_heads: the smallest H of ``slopes_restricted``.
        figures: figure name → file written.
    """

    chain_verdict: Verdict
    chain_verdict_counts: dict
    chain_holds_everywhere: bool
    worst_link_margin: float
    num_probes: int
    unconverged_probes: int
    escalations: int
    negative_curvature_found: bool
    max_neg_lambda_min: float
    descent_verdict: Verdict
    descent_applicable: int
    descent_min_margin: float
    descent_lemma_holds_where_applicable: bool
    convergence_heads: int
    convergence_bound_holds: bool
    convergence_certified_steps: int
    convergence_max_excess: float
    ntk_margin: float
    ntk_separable: bool
    slopes: dict
    slopes_restricted: dict
    fit_min_heads: int
    figures: dict


def run(config: Config, out_dir, progress: bool = True, resume: bool = False) -> Summary:
    """Every (H, seed) cell (resumable), the slopes, convergence, figures, ``results.json``."""
    out = Path(out_dir)
    results.retire(out)
    cells = [(f"H{h}_seed{s}", {"heads": h, "seed": config.seed + s})
             for h in config.heads_grid for s in range(config.seeds)]
    # the convergence run and the fits read these fields, no cell does
    not_in_cells = {"convergence_heads", "convergence_steps", "fit_min_heads"}
    payloads = run_cells(out, cells, lambda c: probe_cell(config, c["heads"], c["seed"]),
                         resume=resume, progress=progress, desc="weak-convexity cells",
                         config=config, ignore=selector_fields(config) | not_in_cells)
    records = [r for p in payloads for r in p["records"]]
    for r in records:
        r["neg_lambda_over_loss"] = -r["lambda_min"] / r["loss"]
    steps = sorted({r["step"] for r in records})
    stages = {"init": steps[0], "early": min(steps, key=lambda s: abs(s - config.steps / 20)),
              "late": steps[-1]}
    slopes = {q: fit_slopes(records, q, stages)
              for q in ("neg_lambda_over_loss", "kappa_hat", "kappa_blk")}
    # models with very few heads can become nearly convex late in training (λmin → 0), so a
    # single power law over all H may not fit; the restricted fit shows the large-H trend
    large = [r for r in records if r["heads"] >= config.fit_min_heads]
    slopes_large = ({q: fit_slopes(large, q, stages) for q in ("neg_lambda_over_loss",
                                                                "kappa_hat")}
                    if len({r["heads"] for r in large}) >= 2 else {})
    conv = run_convergence(config)
    figs = {
        "chain_vs_step": plots.chain_vs_step(records, config.seed),
        "kappa_vs_heads": plots.kappa_vs_heads(records, slopes, stages),
        "tightness": plots.tightness(records),
        "convergence": plots.convergence(conv, config.lr),
    }
    figures = {name: results.save_figure_atomic(fig, out / f"{name}.png")
               for name, fig in figs.items()}
    chain_verdict = combine(Verdict(r["verdict"]) for r in records)
    applicable = [r["descent"] for r in records if r["descent"]["applicable"]]
    summary = Summary(
        chain_verdict=chain_verdict,
        chain_verdict_counts={str(v): sum(r["verdict"] == v for r in records) for v in Verdict},
        chain_holds_everywhere=chain_verdict == Verdict.HOLDS,
        worst_link_margin=min(link["margin"] for r in records for link in r["links"]),
        num_probes=len(records),
        unconverged_probes=sum(not r["converged"] for r in records),
        escalations=sum(r["escalations"] for r in records),
        negative_curvature_found=any(r["lambda_min"] < 0 for r in records),
        max_neg_lambda_min=max(-r["lambda_min"] for r in records),
        descent_verdict=(combine(Verdict(d["verdict"]) for d in applicable) if applicable
                         else Verdict.INCONCLUSIVE),
        descent_applicable=len(applicable),
        descent_min_margin=min((d["margin"] for d in applicable), default=math.nan),
        descent_lemma_holds_where_applicable=all(d["holds"] for d in applicable),
        convergence_heads=conv["heads"],
        convergence_bound_holds=conv["holds_all"],
        convergence_certified_steps=conv["certified_steps"],
        convergence_max_excess=conv["max_excess"],
        ntk_margin=conv["ntk_margin"],
        ntk_separable=conv["ntk_separable"],
        slopes=slopes,
        slopes_restricted=slopes_large,
        fit_min_heads=config.fit_min_heads,
        figures=figures,
    )
    results.write_results(out, "weak-convexity", config, config.seed,
                          {"summary": summary, "records": records, "convergence": conv,
                           "sweep": payloads.info}, figures=figures.values())
    return summary
