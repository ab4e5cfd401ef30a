"""Extreme eigenvalues by restarted Lanczos (matfree, full reorthogonalisation) or dense eigh.

**Lanczos.** ``matfree.decomp.tridiag_sym(m, reortho="full")`` builds an orthonormal Krylov
basis Q (m × P) and tridiagonal T with  H Qᵀ = Qᵀ T + r e_mᵀ.  For an eigenpair (θ, s) of T the
Ritz vector x = Qᵀ s has the residual  ‖H x − θ x‖ = ‖r‖·|s_m|  at no extra HVP. If the wanted
Ritz pairs are not converged (residual > tol·‖H‖, with ‖H‖ estimated by the largest |Ritz
value|), Lanczos restarts from the sum of the wanted Ritz vectors (explicit restart), up to
``max_restarts`` times. At the end the true residual ‖Hx − θx‖ is recomputed (k HVPs).

**Error bars (numerical).** For a unit vector x with Rayleigh quotient θ and residual ρ:

* there is an eigenvalue in [θ − ρ, θ + ρ] (the symmetric Bauer–Fike bound), and
* Kato–Temple: if (a, b) ∋ θ contains exactly that one eigenvalue λ,
  θ − ρ²/(b − θ) ≤ λ ≤ θ + ρ²/(θ − a).

For λmin, θ ≥ λmin always (Rayleigh quotient), and with the gap δ = θ₂ − θ estimated from the
next Ritz value, λmin ≥ θ − min(ρ, ρ²/δ). So the reported ``interval`` is
[θ − min(ρ, ρ²/δ), θ] for the smallest and [θ, θ + min(ρ, ρ²/δ)] for the largest eigenvalue; it
is certified under the assumption that Lanczos has not missed a more extreme eigenvalue (the
usual caveat of any Krylov method, which full reorthogonalisation and a random start make
unlikely but cannot exclude).
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from matfree import decomp

from mhatheory import _validate
from mhatheory.spectral import _exact
from mhatheory.spectral._operators import as_operator


class EigResult(NamedTuple):
    """An extreme eigenpair estimate.

    Attributes:
        value: the eigenvalue estimate (float).
        vector: the unit eigenvector estimate, flat ``[P]`` (θ order of ``ravel_pytree``).
        residual: ‖H v − λ v‖₂, recomputed with a final HVP (or densely for ``exact``).
        interval: (lo, hi) enclosing the eigenvalue (see module docstring).
        gap: estimated distance to the next eigenvalue.
        num_hvps: Hessian–vector products used (P for ``exact``).
        restarts: Lanczos restarts used.
        converged: residual ≤ tol·‖H‖ within the restart budget.
        seconds: wall time (compilation included on a first call).
        method: "lanczos" or "exact".
    """

    value: float
    vector: jax.Array
    residual: float
    interval: tuple
    gap: float
    num_hvps: int
    restarts: int
    converged: bool
    seconds: float
    method: str


@functools.partial(jax.jit, static_argnames=("op", "which", "krylov", "max_restarts", "k",
                                             "reortho"))
def _restarted_lanczos(op, which, krylov, max_restarts, k, tol, params, args, v0,
                       reortho="full"):
    matvec, _ = op.build(params, args)
    alg = decomp.tridiag_sym(krylov, reortho=reortho, materialize=True, custom_vjp=False)
    pick = jnp.arange(k) if which == "smallest" else krylov - 1 - jnp.arange(k)
    nxt = k if which == "smallest" else krylov - 1 - k

    def ritz(v):
        Q, T, r, _ = alg(matvec, v / jnp.linalg.norm(v))
        theta, S = jnp.linalg.eigh(T)                    # ascending
        vals, s = theta[pick], S[:, pick]                # (k,), (m, k)
        vecs = Q.T @ s                                   # (P, k)
        res = jnp.linalg.norm(r) * jnp.abs(s[-1])        # (k,) Lanczos-relation residuals
        scale = jnp.max(jnp.abs(theta))
        return vals, vecs, res, jnp.abs(theta[nxt] - vals[-1]), scale

    def cond(state):
        i, _, _, res, _, scale = state
        return (i < max_restarts) & (jnp.max(res) > tol * scale)

    def body(state):
        i, _, vecs, _, _, _ = state
        return (i + 1, *ritz(jnp.sum(vecs, axis=1)))

    state = (0, *ritz(v0))
    i, vals, vecs, res, gap, scale = jax.lax.while_loop(cond, body, state)
    true_res = jax.vmap(lambda x, lam: jnp.linalg.norm(matvec(x) - lam * x),
                        in_axes=(1, 0))(vecs, vals)
    return vals, vecs, true_res, gap, scale, i


def _start_vector(flat, key, v0):
    if v0 is not None:
        v0 = jnp.asarray(v0, flat.dtype).reshape(-1)
        if v0.shape != flat.shape:
            raise ValueError(f"v0 must have P={flat.size} entries, got {v0.size}.")
        return v0
    key = jax.random.key(0) if key is None else key
    return jax.random.normal(key, flat.shape, flat.dtype)


def _interval(value, residual, gap, which):
    slack = min(residual, residual**2 / gap) if gap > 0 else residual
    return (value - slack, value) if which == "smallest" else (value, value + slack)


def extreme_eigs(loss_fn, params, *args, k: int = 1, which: str = "smallest",
                 method: str = "lanczos", key=None, v0=None, krylov: int = 40,
                 tol: float = 1e-10, max_restarts: int = 20, reortho: str = "full",
                 memory_budget_bytes: int | None = None) -> list[EigResult]:
    """The k smallest or largest eigenpairs of ∇²_θ ``loss_fn(params, *args)``.

    Args:
        loss_fn: ``loss_fn(params, *args) -> scalar``, or a curvature operator
            (:class:`~mhatheory.spectral.GaussNewton`, :class:`~mhatheory.spectral.Curvature`).
        params: any pytree; the Hessian is in these parameters.
        *args: data, passed as traced arguments (not constants).
        k: how many; which: "smallest" or "largest".
        method: "lanczos" (matrix-free) or "exact" (dense ``eigh``; memory guarded).
        key / v0: random start vector key, or an explicit start vector (warm start).
        krylov: Lanczos vectors per cycle (m); tol: stop when ρ ≤ tol·‖H‖ for all k;
        max_restarts: restart budget.
        reortho: "full" (default; O(P·krylov²) work, Lanczos vectors stay orthonormal) or
            "none" (O(P·krylov); cheaper when an HVP costs less than the reorthogonalisation,
            but the Lanczos-relation residual is then only a heuristic for restarting, so
            ``converged`` and ``residual`` always come from the recomputed true residual).

    Cost (lanczos): (restarts + 1)·krylov + k HVPs, O(P·krylov) memory, one compilation per
    (operator, shapes, k, krylov). Returns a list of :class:`EigResult`, most extreme first.
    """
    if reortho not in ("full", "none"):
        raise ValueError(f"reortho must be 'full' or 'none', got {reortho!r}.")
    if which not in ("smallest", "largest"):
        raise ValueError(f"which must be 'smallest' or 'largest', got {which!r}.")
    if method not in ("lanczos", "exact"):
        raise ValueError(f"method must be 'lanczos' or 'exact', got {method!r}.")
    k = _validate.positive_int("k", k)
    op = as_operator(loss_fn)
    flat, _ = ravel_pytree(params)
    P = flat.size
    if k >= P:
        raise ValueError(f"k={k} must be smaller than the number of parameters P={P}.")
    t0 = time.perf_counter()
    if method == "exact":
        H = _exact.dense(op, params, *args, memory_budget_bytes=memory_budget_bytes)
        evals, evecs = _exact.eigh_extremes(H)
        idx = range(k) if which == "smallest" else range(P - 1, P - 1 - k, -1)
        out = []
        for i in idx:
            nb = i + 1 if which == "smallest" else i - 1
            gap = float(abs(evals[nb] - evals[i])) if 0 <= nb < P else float("inf")
            val, vec = float(evals[i]), evecs[:, i]
            res = _exact.residual_norm(H, val, vec)
            out.append(EigResult(val, vec, res, _interval(val, res, gap, which), gap, P, 0, True,
                                 time.perf_counter() - t0, "exact"))
        return out

    krylov = _validate.positive_int("krylov", min(krylov, P))
    if krylov <= k:
        raise ValueError(f"krylov={krylov} must exceed k={k}.")
    start = _start_vector(flat, key, v0)
    vals, vecs, res, gap, scale, restarts = _restarted_lanczos(
        op, which, krylov, int(max_restarts), k, jnp.asarray(tol, flat.dtype), params, args, start,
        reortho=reortho)
    vals, res = np.asarray(vals), np.asarray(res)
    gap, scale, restarts = float(gap), float(scale), int(restarts)
    seconds = time.perf_counter() - t0
    hvps = (restarts + 1) * krylov + k
    # the recomputed residual carries the rounding of one HVP, ~100·ε·‖H‖, on top of tol·‖H‖
    converged = bool(np.max(res) <= (tol + 100 * np.finfo(np.asarray(flat).dtype).eps) * scale)
    return [EigResult(float(vals[j]), vecs[:, j], float(res[j]),
                      _interval(float(vals[j]), float(res[j]), gap, which), gap, hvps, restarts,
                      converged, seconds, "lanczos") for j in range(k)]


def lambda_min(loss_fn, params, *args, method: str = "lanczos", key=None, **kwargs) -> EigResult:
    """λmin(∇²_θ loss_fn(params, *args)) with ``.value``, ``.residual`` and more (see
    :class:`EigResult`; options as :func:`extreme_eigs`)."""
    return extreme_eigs(loss_fn, params, *args, which="smallest", method=method, key=key,
                        **kwargs)[0]


def lambda_max(loss_fn, params, *args, method: str = "lanczos", key=None, **kwargs) -> EigResult:
    """λmax(∇²_θ loss_fn(params, *args)); see :func:`lambda_min`."""
    return extreme_eigs(loss_fn, params, *args, which="largest", method=method, key=key,
                        **kwargs)[0]
