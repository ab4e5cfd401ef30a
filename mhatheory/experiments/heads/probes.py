"""What the heads sweep measures on the trained models of a primary slice, besides their
curves: the theory's assumptions for any model family (:func:`assumption_probe`), and for the
Deora family λmax(θ_0), the NTK margin, the token norms, the weak-convexity chain and the
constants of the Lei–Ying stability bounds (:func:`probe`)."""

from __future__ import annotations

import functools
import math
import time
import warnings

import jax
import jax.numpy as jnp

from mhatheory import _validate, data, deora, spectral
from mhatheory.experiments.heads import seeds
from mhatheory.verdicts import Interval, compare


def _stage(k: int, steps: int) -> str:
    return "init" if k == 0 else ("late" if k == steps else "early")


def _eig(fn, params, batch, config, method, key):
    """An extreme eigenvalue; a probe that misses tol = 1e-8 after 5 restarts is kept with its
    residual (recorded) instead of warning once per probe."""
    P = _validate.num_params(params)[0]
    kw = ({} if method == "exact" else
          {"krylov": min(config.krylov, P - 1), "tol": 1e-8, "max_restarts": 5})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Lanczos did not converge")
        return fn(deora.loss_fn, params, batch, method=method, key=key, **kw)


@functools.cache
def _operators(phi, loss: str) -> dict:
    """∇²L̂ and the curvature term N of one model structure and loss, built once so that
    every probe of that structure reuses their compiled HVPs."""
    curv = spectral.Curvature(phi, loss=loss)
    return {"curv": curv, "hess": spectral.Hessian(curv.value)}


def assumption_probe(phi, loss: str, params, batch: data.Batch, key, krylov: int) -> dict:
    """At θ = ``params`` on ``batch``: L̂, certified λmin and λmax of ∇²L̂, λmin of the curvature
    term N (Gauss–Newton split), and the theorem λmin(∇²L̂) ≥ λmin(N) (G ⪰ 0, Weyl) decided
    from their probabilistic intervals (each holds with probability ≥ 1 − δ whatever the
    spectrum), for any model family."""
    ops = _operators(phi, loss)
    args = (batch.X, batch.y)
    P = _validate.num_params(params)[0]
    opts = {"krylov": max(2, min(krylov, P - 1)), "tol": 1e-8, "max_restarts": 5}
    hess, curv = ops["hess"].linearise(params, *args), ops["curv"].linearise(params, *args)
    L = float(ops["curv"].value(params, *args))
    k = jax.random.split(key, 3)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Lanczos did not converge")
        hi = spectral.Lanczos(which="largest", **opts)(hess, key=k[0])[0]
        loN = spectral.Lanczos(which="smallest", **opts)(curv, key=k[1])[0]
        lo = spectral.Lanczos(which="smallest", failure_prob=spectral.DEFAULT_FAILURE_PROB,
                              **opts)(hess, key=k[2], target=Interval(*loN.prob_interval))[0]
    verdict, margin = compare(Interval(*lo.prob_interval), Interval(*loN.prob_interval))
    return {"loss": L, "lambda_min": lo.value, "lambda_min_prob_interval": list(lo.prob_interval),
            "lambda_min_converged": bool(lo.converged), "lambda_max": hi.value,
            "lambda_min_N": loN.value, "lambda_min_N_prob_interval": list(loN.prob_interval),
            "theorem_verdict": str(verdict), "theorem_margin": float(margin),
            # None where L̂ underflowed to 0 (huge margins, large η)
            "neg_lambda_over_loss": -lo.value / L if L > 0 else None}


def probe(config, spec, sets, lrs, primary, out, steps_p, probe_s, curves, timing, layout,
          trivial) -> dict:
    """On the primary slices of the growing arm, at θ_0, θ_{K/10}, θ_K of the probe seeds:
    :func:`assumption_probe` (every family). For the Deora family also, per seed, λmax(θ_0),
    the NTK margin at θ_0 (realizability) and the token norms the theory assumes, the
    weak-convexity chain at θ_K of the probe seeds, and G, β for the stability bounds."""
    t0 = time.perf_counter()
    H, S, K = spec["heads"], spec["seeds"], config.steps
    key = jax.random.key(config.seed + 17)
    deora_family = config.model == "deora"
    phi = sets[0].phi
    out_ = {}
    if deora_family:
        P = deora.parameter_count(sets[0].train.X.shape[-1], H)
        method = "exact" if P <= config.exact_max_params else "lanczos"
        init = {"loss0": [], "lambda_max0": [], "ntk_margin": [], "ntk_separable": [],
                "token_norm_max": [], "query_norm_max": []}
        for s, sd in enumerate(sets):
            p0, tr = sd.members[0], sd.train
            mm = deora.max_margin(p0, tr.X, tr.y)
            norms = jnp.linalg.norm(tr.X, axis=-1)          # ‖x_t‖ per sample and token
            for name, v in (("loss0", float(curves[0, s])),
                            ("lambda_max0", _eig(spectral.lambda_max, p0, tr, config, method,
                                                 key).value),
                            ("ntk_margin", mm.margin), ("ntk_separable", bool(mm.separable)),
                            ("token_norm_max", float(norms.max())),
                            ("query_norm_max", float(norms[:, 0].max()))):
                init[name].append(v)
        out_["init"] = init
    snaps = out["snapshots"]
    probes = {lrs[e]: [] for e in primary}
    consts = {}
    for i, e in enumerate(primary):
        G = beta = 0.0
        for j, s in enumerate(probe_s):
            row = i * len(probe_s) + j
            sd = sets[s]
            for t, k in enumerate(steps_p):
                theta = seeds.take(snaps, (t, row))
                L = float(curves[k, e * S + s])
                if not math.isfinite(L):
                    continue
                if deora_family and L <= trivial:   # G, β along runs that did not fail
                    pool = (jnp.concatenate([sd.train.X, sd.fresh.X,
                                             sd.test.X[:config.const_test]]),
                            jnp.concatenate([sd.train.y, sd.fresh.y,
                                             sd.test.y[:config.const_test]]))
                    g, b = deora.per_sample_constants(theta, *pool)
                    G, beta = max(G, float(g.max())), max(beta, float(b.max()))
                if s >= config.probe_seeds:
                    continue
                rec = assumption_probe(phi, layout.loss, theta, sd.train,
                                       jax.random.fold_in(key, k), config.krylov)
                rec.update(seed=s, stage=_stage(k, K), step=k,
                           eta_lambda_max=lrs[e] * rec["lambda_max"],
                           kappa_hat=(max(0.0, -rec["lambda_min"]) * math.sqrt(H) / rec["loss"]
                                      if rec["loss"] > 0 else None))
                if deora_family and k == K:
                    with warnings.catch_warnings():   # an open interval is in the verdict
                        warnings.filterwarnings("ignore", message="Lanczos did not converge")
                        ch = deora.chain(theta, sd.train, key=jax.random.fold_in(key, 7 * k + 1),
                                         krylov=max(2, min(config.krylov,
                                                           _validate.num_params(theta)[0] - 1)))[0]
                    rec["chain_verdict"] = str(ch.verdict)
                probes[lrs[e]].append(rec)
        consts[lrs[e]] = {"G": G, "beta": beta}
    timing["probes"] = time.perf_counter() - t0
    out_.update(probes={str(k): v for k, v in probes.items()},
                constants={str(k): v for k, v in consts.items()})
    return out_
