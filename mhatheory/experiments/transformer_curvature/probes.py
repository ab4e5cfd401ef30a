"""The probes of ``transformer-curvature``: every curvature quantity at one point on one probe
batch, through operators built once per model structure."""

from __future__ import annotations

import functools

import jax

from mhatheory import spectral
from mhatheory.experiments.transformer_curvature.training import apply
from mhatheory.verdicts import Interval, compare

#: the attention parameters of one head (head axis −2: query/key/value kernels [d, H, e] and
#: biases [H, e]) in the first layer
HEAD_SELECT = r"\['layers'\]\[0\]\['self_attn'\]\['(query|key|value)_(kernel|bias)'\]"


@functools.cache
def operators(graphdef, layers: int) -> dict:
    """The loss and N of one model structure, built once so that every probe of every cell with
    that structure reuses their compiled HVPs; layers and heads are blocks (masks) of the same
    operators, so they compile nothing more."""
    curv = spectral.Curvature(apply(graphdef), loss="cross_entropy")
    return {"curv": curv, "hess": spectral.Hessian(curv.value), "layers": layers}


def _block_row(op, key, value_key: str, **where) -> dict:
    r = spectral.Lanczos(which="smallest")(op, key=key)[0]
    return {**where, value_key: r.value, "interval": list(r.interval),
            "prob_interval": list(r.prob_interval), "converged": bool(r.converged)}


def probe(ops: dict, params, data, config, key) -> dict:
    """Every curvature quantity at one point on one probe batch ``data`` = (inputs, targets,
    weights): L̂, certified λmax and λmin of ∇²L̂, λmin(N), −λmin/L̂ and the theorem
    λmin(∇²L̂) ≥ λmin(N) decided from the intervals (and the blocks the config asks for);
    ``config`` is the experiment's ``Config`` (its Lanczos settings and block switches)."""
    opts = dict(krylov=config.krylov, tol=config.tol, max_restarts=config.max_restarts)
    hess = ops["hess"].linearise(params, *data)           # one linearisation each, shared by
    curv = ops["curv"].linearise(params, *data)           # every probe and block below
    loss = float(ops["curv"].value(params, *data))
    keys = jax.random.split(key, 4)
    hi = spectral.Lanczos(which="largest", **opts)(hess, key=keys[0])[0]
    loN = spectral.Lanczos(which="smallest", **opts)(curv, key=keys[1])[0]
    # the theorem's left side is probed until its probabilistic interval decides it against
    # λmin(N)'s (probability ≥ 1 − 2δ for both outer ends, whatever the spectrum)
    lo = spectral.Lanczos(which="smallest", failure_prob=spectral.DEFAULT_FAILURE_PROB,
                          **opts)(hess, key=keys[2], target=Interval(*loN.prob_interval))[0]
    verdict, margin = compare(Interval(*lo.prob_interval), Interval(*loN.prob_interval))
    rec = {"loss": loss,
           "lambda_min": lo.value, "lambda_min_interval": list(lo.interval),
           "lambda_min_prob_interval": list(lo.prob_interval),
           "lambda_min_converged": bool(lo.converged),
           "lambda_max": hi.value, "lambda_max_interval": list(hi.interval),
           "lambda_max_prob_interval": list(hi.prob_interval),
           "lambda_max_converged": bool(hi.converged),
           "lambda_min_N": loN.value, "lambda_min_N_interval": list(loN.interval),
           "lambda_min_N_prob_interval": list(loN.prob_interval),
           "lambda_min_N_converged": bool(loN.converged),
           "failure_prob": lo.failure_prob + loN.failure_prob,
           "neg_lambda_over_loss": (-lo.value / loss) if loss > 0 else None,
           "theorem_verdict": str(verdict), "theorem_margin": float(margin)}
    if config.layer_blocks:
        rec["layer_blocks"] = [
            _block_row(hess.restrict(rf"^\['layers'\]\[{i}\]"), jax.random.fold_in(keys[3], i),
                       "lambda_min", layer=i) for i in range(ops["layers"])]
    if config.head_blocks:
        heads = params["layers"][0]["self_attn"]["query_kernel"].shape[-2]
        rec["head_blocks_N"] = [
            _block_row(curv.restrict(HEAD_SELECT, -2, h), jax.random.fold_in(keys[3], 100 + h),
                       "lambda_min_N", head=h) for h in range(heads)]
        rec["head_block_min_N"] = min(r["lambda_min_N"] for r in rec["head_blocks_N"])
    return rec
