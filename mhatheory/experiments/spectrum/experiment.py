"""The ``spectrum`` experiment's config and run; see
:mod:`mhatheory.experiments.spectrum`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from mhatheory import _validate, data, plots, results, spectral, train
from mhatheory.experiments._common import DeoraFields, make_problem
from mhatheory.models import deora


@dataclass(frozen=True)
class Config(DeoraFields):
    """Hessian spectrum at initialisation and after GD (data and GD fields: see
    ``DeoraFields``).

    Attributes:
        heads: number of heads H.
        n: training-set size.
        steps: GD steps before the second probe.
        krylov: Krylov dimension of Lanczos and of each SLQ probe.
        num_probes: SLQ probe vectors (the density's standard errors come from their spread).
        trace_samples: Hutchinson samples (one HVP each) for the trace.
        dense_max_params: also compute the dense Hessian spectrum when P is at most this.
    """

    heads: int = 4
    n: int = 128
    steps: int = 1000
    krylov: int = 60
    num_probes: int = 10
    trace_samples: int = 100
    dense_max_params: int = 3000

    def __post_init__(self):
        super().__post_init__()
        _validate.positive_int("num_probes", self.num_probes, minimum=2)  # SLQ's SE needs two


FULL = {"heads": 16, "d": 32, "n": 512, "steps": 3000}


def probe(config: Config, params, batch, key) -> tuple[dict, spectral.Density, np.ndarray | None]:
    """Every spectral probe at θ = ``params``: ``(record, SLQ density, dense eigenvalues)``
    (the eigenvalues are None above ``dense_max_params``)."""
    k1, k2, k3 = jax.random.split(key, 3)
    lo = spectral.lambda_min(deora.loss_fn, params, batch, key=k1, krylov=config.krylov)
    hi = spectral.lambda_max(deora.loss_fn, params, batch, key=k1, krylov=config.krylov)
    tr = spectral.trace(deora.loss_fn, params, batch, key=k2, num_samples=config.trace_samples)
    dens = spectral.spectral_density(deora.loss_fn, params, batch, key=k3,
                                     num_probes=config.num_probes, krylov=config.krylov)
    rec = {"loss": float(deora.loss_fn(params, batch))}
    for name, r in (("lambda_min", lo), ("lambda_max", hi)):
        rec[name] = {"value": r.value, "residual": r.residual, "interval": list(r.interval),
                     "prob_interval": list(r.prob_interval),
                     "gap": r.gap, "hvps": r.num_hvps, "converged": r.converged}
    rec["trace_hutchinson"] = {"value": tr.value, "se": tr.se, "hvps": tr.num_hvps}
    for name, est in (("trace_slq", dens.trace()), ("negative_count_slq", dens.negative_count()),
                      ("negative_mass_slq", dens.negative_mass())):
        rec[name] = {"value": est.value, "se": est.se,
                     **({} if est.bracket is None else {"bracket": list(est.bracket)})}
    eigs = None
    P = deora.parameter_count(config.d, config.heads)
    if P <= config.dense_max_params:
        eigs = np.linalg.eigvalsh(np.asarray(spectral.dense_hessian(deora.loss_fn, params, batch)))
        rec["dense"] = {"lambda_min": float(eigs[0]), "lambda_max": float(eigs[-1]),
                        "trace": float(eigs.sum()), "negative_count": int((eigs < 0).sum()),
                        "negative_mass": float(-eigs[eigs < 0].sum())}
    return rec, dens, eigs


class Summary(NamedTuple):
    """What :func:`run` returns (``results.json`` holds ``parameters`` and ``stages``).

    Attributes:
        parameters: P.
        initial: the probes at θ_0 (:func:`probe`'s record).
        trained: the probes after ``steps`` GD steps.
        figures: figure name → file written.
    """

    parameters: int
    initial: dict
    trained: dict
    figures: dict


def run(config: Config, out_dir, progress: bool = True) -> Summary:
    """Probe at θ_0 and after GD; write ``results.json`` and ``spectral_density.png``."""
    results.retire(out_dir)
    prob = make_problem(config.mixture(), config.heads, config.init_scale, config.seed,
                        config.num_test)
    data.check_batch(prob.train, config.d)
    traj = train.gd(deora.loss_fn, prob.params0, prob.train, steps=config.steps, lr=config.lr,
                    progress=progress)
    key = jax.random.key(config.seed + 1)
    stages, dens, exact = {}, {}, {}
    for label, params in (("initialisation", prob.params0),
                          (f"after {config.steps} GD steps", traj.final_params)):
        stages[label], dens[label], eigs = probe(config, params, prob.train, key)
        if eigs is not None:
            exact[label] = eigs
    out = Path(out_dir)
    figure = results.save_figure_atomic(plots.slq_density(dens, exact),
                                        out / "spectral_density.png")
    P = deora.parameter_count(config.d, config.heads)
    initial, trained = stages.values()
    # the summary's names (what ``mhatheory run`` prints), each with its stage's label
    results.write_results(out, "spectrum", config, config.seed,
                          {"parameters": P, "initial": initial, "trained": trained,
                           "labels": dict(zip(("initial", "trained"), stages, strict=True))},
                          figures=[figure])
    return Summary(P, initial, trained, {"spectral_density": figure})
