"""Benchmark: spectral probes on the Deora loss over P = H(d² + d) from ~300 to ~1,000,000.

Per row, all in this process: the dense route (``hessian`` + ``eigh``, where it fits), Lanczos
λmin (time, HVPs, relative agreement) with each reorthogonalisation (partial, in the unprefixed
columns as in earlier results; none, the default for k = 1; selective; full), the cost of one
HVP against one gradient (both amortised over 10 sequential evaluations in one program, one
P-vector in and one out each), each probe's cost (best of 3)
against its HVPs, the compiled program's memory, and λmax by 100 steps of power iteration (the
PyHessian route) against Lanczos with the same 100 HVPs. Where the dense route does not fit, the
reference is a Lanczos run with twice the Krylov space, and the certified interval of the
budgeted run is reported too.

A second table holds P fixed and makes the HVP dearer (n = 64 … 4,096 samples): a probe's cost
beyond its HVPs is Lanczos vector work, O(P) per step (plus O(P·krylov) per Gram–Schmidt pass),
independent of n, so probe/HVPs → 1 as the HVP grows; the table shows where each
reorthogonalisation gets within 1.2× of its HVPs.

    python experiments/bench/bench_spectral.py [--quick]

``--quick`` (P ≤ ~8,000) writes under ``results/quick/`` so that it never replaces the full run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

sys.path.insert(0, str(Path(__file__).parent))
import _util  # noqa: E402

from mhatheory import data, spectral  # noqa: E402
from mhatheory.models import deora  # noqa: E402

GRID = [(8, 4), (16, 8), (32, 8), (64, 16), (128, 16), (128, 64)]
OVERHEAD_GRID = [(32, 8), (64, 16)]        # P = 8,448 and 66,560
OVERHEAD_N = [64, 256, 1024, 4096]
N, T = 64, 8


@jax.jit
def _grads(points, batch):
    """One gradient at each of a stack of parameter points (sequentially): the amortised
    gradient cost, measured the way :func:`_hvps` measures an HVP (one P-vector in, one out)."""
    return jax.lax.map(lambda p: jax.grad(deora.loss_fn)(p, batch), points)


def _hvps(params, batch, vs):
    """Linearise once, then one HVP per row of ``vs`` (sequentially): amortised HVP cost."""
    H = spectral.linearise(deora.loss_fn, params, batch)
    return _map_products(H.lin, vs)


@jax.jit
def _map_products(lin, vs):
    return jax.lax.map(lin, vs)


def _power_iteration(params, batch, v0):
    """PyHessian's λmax: 100 steps of v ← Hv/‖Hv‖, λ = vᵀHv (100 HVPs)."""
    return _power_steps(spectral.linearise(deora.loss_fn, params, batch).lin, v0)


@jax.jit
def _power_steps(matvec, v0):
    def body(_, carry):
        v, _ = carry
        w = matvec(v)
        return w / jnp.linalg.norm(w), v @ w

    return jax.lax.fori_loop(0, 100, body, (v0 / jnp.linalg.norm(v0), 0.0))[1]


def memory_bytes(params, batch, krylov):
    """A probe's memory: the compiled HVP program's (arguments, temporaries, output) plus the
    stored Krylov basis, (krylov + 1) P-vectors."""
    H = spectral.linearise(deora.loss_fn, params, batch)
    compiled = jax.jit(lambda lin, v: lin(v)).lower(H.lin, H.flat).compile()
    m = compiled.memory_analysis()
    basis = (krylov + 1) * H.P * H.dtype.itemsize
    return (m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes + basis
            if m is not None else float("nan"))


MODES = ("none", "selective", "partial", "full")


def probe(params, batch, **kw):
    """A λmin probe: (result, best-of-3 seconds after a compiling call)."""
    res = spectral.lambda_min(deora.loss_fn, params, batch, **kw)
    return res, _util.best_time(lambda: spectral.lambda_min(deora.loss_fn, params, batch,
                                                             **kw).vector)


def problem(d, H, n):
    """Deora parameters, data (n samples), P, 10 random P-vectors and the amortised HVP time."""
    mixture = data.MixtureConfig(d=d, T=T, n=n, num_irrelevant=min(4, d - 2))
    batch = data.sample(mixture, jax.random.key(0))
    params = deora.init_params(jax.random.key(1), d, H)
    P = deora.parameter_count(d, H)
    vs = jax.random.normal(jax.random.key(2), (10, P))
    return params, batch, P, vs, _util.best_time(lambda: _hvps(params, batch, vs)) / 10


def krylov_for(P, budget_hvps=150):
    """One cycle within the HVP budget at large P; 60 vectors with restarts below."""
    return min(budget_hvps - 1, P - 1) if P > 50_000 else 60


def row(d, H):
    params, batch, P, vs, t_hvp = problem(d, H, N)
    r = {"d": d, "H": H, "P": P}
    unravel = ravel_pytree(params)[1]
    points = jax.vmap(lambda v: jax.tree.map(lambda a, b: a + 1e-3 * b, params,
                                             unravel(v)))(vs)
    t_grad = _util.best_time(lambda: _grads(points, batch)) / 10
    r.update(grad_ms=1e3 * t_grad, hvp_ms=1e3 * t_hvp, hvp_over_grad=t_hvp / t_grad)

    fits = spectral.dense_bytes(P, jnp.float64) <= spectral.DEFAULT_DENSE_BUDGET
    if fits:
        t0 = time.perf_counter()
        ex = spectral.lambda_min(deora.loss_fn, params, batch, method="exact")
        exmax = spectral.lambda_max(deora.loss_fn, params, batch, method="exact")
        r["dense_s"] = time.perf_counter() - t0
        ref_min, ref_max = ex.value, exmax.value
        r["reference"] = "dense eigh"

    krylov = krylov_for(P)
    kw = dict(krylov=krylov, tol=1e-12, max_restarts=0 if P > 50_000 else 20)
    probes = {mode: probe(params, batch, reortho=mode, **kw) for mode in MODES}
    lo, t_lan = probes["partial"]    # unprefixed columns: partial, as in earlier results
    if not fits:
        ref = spectral.lambda_min(deora.loss_fn, params, batch, krylov=min(2 * krylov, P - 1),
                                  tol=1e-13, max_restarts=0, key=jax.random.key(5))
        ref_min = ref.value
        ref_max = spectral.lambda_max(deora.loss_fn, params, batch, krylov=min(2 * krylov, P - 1),
                                      tol=1e-13, max_restarts=0, key=jax.random.key(5)).value
        r["reference"] = f"lanczos {min(2 * krylov, P - 1) + 1} HVPs"
    r.update(lanczos_s=t_lan, lanczos_hvps=lo.num_hvps, lambda_min=lo.value,
             certified_rel_width=(lo.interval[1] - lo.interval[0]) / abs(lo.value))
    for mode, (res, t) in probes.items():
        pre = "" if mode == "partial" else f"{mode}_"
        r.update({f"{pre}lambda_min_rel_err": abs(res.value - ref_min) / abs(ref_min),
                  f"{pre}probe_over_hvps": t / (res.num_hvps * t_hvp)})
    if fits:
        r["dense_over_lanczos"] = r["dense_s"] / t_lan
    r["lanczos_mem_MB"] = memory_bytes(params, batch, krylov) / 2**20

    v0 = jax.random.normal(jax.random.key(3), (P,))
    lam_pi = float(_power_iteration(params, batch, v0))
    lam_l = spectral.lambda_max(deora.loss_fn, params, batch, krylov=99, max_restarts=0,
                                v0=v0).value  # 99 + 1 = 100 HVPs
    r.update(lambda_max=ref_max, power100_rel_err=abs(lam_pi - ref_max) / abs(ref_max),
             lanczos100_rel_err=abs(lam_l - ref_max) / abs(ref_max))
    return r


def overhead_row(d, H, n):
    """What a probe costs beyond its HVPs, per reorthogonalisation, as the HVP gets dearer
    (n samples of T tokens) at fixed P and Krylov size."""
    params, batch, P, _, t_hvp = problem(d, H, n)
    krylov = krylov_for(P)
    r = {"P": P, "n": n, "krylov": krylov, "hvp_ms": 1e3 * t_hvp}
    for mode in MODES:
        res, t = probe(params, batch, reortho=mode, krylov=krylov, tol=1e-12, max_restarts=0)
        r[f"{mode}_probe_over_hvps"] = t / (res.num_hvps * t_hvp)
        # the Lanczos work besides the HVPs, per Lanczos step
        r[f"{mode}_extra_ms_per_step"] = 1e3 * (t - res.num_hvps * t_hvp) / krylov
    return r


def main(quick: bool) -> None:
    grid = GRID[:3] if quick else GRID
    rows = []
    for d, H in grid:
        rows.append(row(d, H))
        print(f"done d={d} H={H} P={rows[-1]['P']}", flush=True)
    cols = ["P", "H", "d", "grad_ms", "hvp_ms", "hvp_over_grad", "dense_s", "lanczos_s",
            "dense_over_lanczos", "lanczos_hvps", "lambda_min_rel_err", "certified_rel_width",
            "probe_over_hvps", "none_probe_over_hvps", "selective_probe_over_hvps",
            "full_probe_over_hvps", "none_lambda_min_rel_err",
            "selective_lambda_min_rel_err", "full_lambda_min_rel_err", "lanczos_mem_MB",
            "power100_rel_err", "lanczos100_rel_err", "reference"]
    print(_util.table(rows, cols))
    overhead = [overhead_row(d, H, n) for d, H in OVERHEAD_GRID[:1 if quick else None]
                for n in OVERHEAD_N]
    print(_util.table(overhead, list(overhead[0])))
    out = _util.write("spectral", rows, {"problem": {"n": N, "T": T, "dtype": "float64"},
                                         "overhead": overhead}, quick=quick)
    print(f"wrote {out}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only P ≤ ~8,000")
    main(ap.parse_args().quick)
