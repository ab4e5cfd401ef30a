"""Extreme eigenvalues by restarted Lanczos (partial or full reorthogonalisation) or dense eigh.

**Lanczos.** m steps build a Krylov basis Q (m × P) and a tridiagonal T with
H Qᵀ = Qᵀ T + r e_mᵀ (up to rounding); the wanted Ritz pairs (θ, s) of T give Ritz vectors
x = Qᵀ s. Three ways to keep Q orthonormal (``reortho``):

* ``"partial"`` (default, :func:`tridiag`): Simon's partial reorthogonalisation. An O(m)
  recurrence per step estimates how far q_{j+1} has drifted from orthogonality, and a
  Gram–Schmidt pass against all earlier vectors runs only at the steps where that estimate
  exceeds √ε. Semi-orthogonality is enough for T to be H projected onto span(Q) to O(ε‖H‖), so
  the Ritz values are as accurate as with full reorthogonalisation.
* ``"full"``: ``matfree.decomp.tridiag_sym(m, reortho="full")``, Gram–Schmidt against every
  vector at every step: O(P·m²) work, which dominates the probe when an HVP is cheap.
* ``"none"``: the three-term recurrence alone; ghost copies of converged Ritz values appear, so
  it is restricted to the single most extreme pair (k = 1).

(matfree has no partial reorthogonalisation, and its ``reortho="none"`` evaluates each HVP twice
per step, hence :func:`tridiag`.) Each cycle recomputes the true residual ρ = ‖Hx − θx‖ of the
normalised Ritz vectors (k HVPs), with θ their Rayleigh quotient xᵀHx; while some ρ exceeds
tol·‖H‖ (‖H‖ estimated by the largest |Ritz value|) Lanczos restarts from the sum of the wanted
Ritz vectors (explicit restart), up to ``max_restarts`` times. Reported values, residuals and
intervals are those of the returned unit vectors, whatever the orthogonality of Q was.

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


def tridiag(matvec, v, m: int, reortho: str = "partial"):
    """m Lanczos steps from v, one HVP each: ``(Q [m, P], T [m, m], r [P], reorthogonalisations)``
    with H Qᵀ = Qᵀ T + r e_mᵀ up to rounding (the contract of matfree's ``tridiag_sym``).

    ``reortho="partial"`` keeps the basis semi-orthogonal, |q_iᵀ q_k| ≤ √ε (i ≠ k), by Simon's
    recurrence for ω_{j+1,k} = q_{j+1}ᵀ q_k: from the Lanczos relation
    H q_j = β_j q_{j−1} + α_j q_j + β_{j+1} q_{j+1} and the symmetry of H,

        β_{j+1} ω_{j+1,k} = β_{k+1} ω_{j,k+1} + (α_k − α_j) ω_{j,k} + β_k ω_{j,k−1} − β_j ω_{j−1,k}

    plus a rounding term ±2ε‖T‖ (added in the direction that increases |ω|, so the estimate is
    pessimistic), and ω_{j+1,j} = ψ‖T‖/β_{j+1} for the rounding left by the local step (large
    when β_{j+1} is small, e.g. when restarting from a nearly converged Ritz vector). When some
    |ω_{j+1,k}| exceeds √ε, q_{j+1} and then q_{j+2} are orthogonalised against all earlier
    vectors (two passes of classical Gram–Schmidt, since the earlier vectors are themselves only
    semi-orthogonal) and their ω reset to ψ = ε√P. Semi-orthogonality is enough for T to be the
    projection of H onto span(Q) up to O(ε‖H‖) (Simon 1984), so the Ritz values are as accurate
    as with full reorthogonalisation at O(P·m) work plus a Gram–Schmidt pass only where
    orthogonality is lost. A breakdown (β ≤ ψ‖T‖, an invariant subspace) goes on from a fresh
    random direction orthogonal to Q with β = 0.

    ``reortho="none"`` is the plain three-term recurrence: ghost copies of converged Ritz values
    appear once orthogonality is lost, so only the most extreme Ritz pair is trustworthy.
    """
    if reortho not in ("partial", "none"):
        raise ValueError(f"tridiag: reortho must be 'partial' or 'none', got {reortho!r} (full "
                         "reorthogonalisation is matfree.decomp.tridiag_sym(m, reortho='full')).")
    P, dtype = v.shape[0], v.dtype
    eps = jnp.finfo(dtype).eps
    eta = jnp.sqrt(eps)
    psi = eps * jnp.sqrt(jnp.asarray(P, dtype))
    idx = jnp.arange(m + 1)
    partial = reortho == "partial"

    def passes(rows, Q, w):             # two passes: Q is itself only semi-orthogonal
        Qf = jax.lax.slice_in_dim(Q, 0, rows)
        w = w - Qf.T @ (Qf @ w)
        return w - Qf.T @ (Qf @ w)

    # only rows 0…j of Q are filled: pick the smallest block of rows that holds them
    block = 16
    branches = [functools.partial(passes, min(b + block, m)) for b in range(0, m, block)]

    def gram_schmidt(Q, w, j):
        return jax.lax.switch(j // block, branches, Q, w)

    def restart(Q, j):
        z = jax.random.normal(jax.random.fold_in(jax.random.key(0), j), (P,), dtype)
        z = gram_schmidt(Q, z, j)
        return z, jnp.zeros((), dtype), jnp.linalg.norm(z)

    def omega(om, om_prev, alpha, beta, a, b, j, anorm):
        up = jnp.roll(om, -1) * jnp.roll(beta, -1)                 # β_{k+1} ω_{j,k+1}
        down = jnp.where(idx > 0, jnp.roll(om, 1) * beta, 0.0)     # β_k ω_{j,k−1}
        alpha_k = jnp.concatenate([alpha, jnp.zeros(1, dtype)])
        new = up + (alpha_k - a) * om + down - beta[j] * om_prev
        b_safe = jnp.maximum(b, psi * anorm)
        new = (new + jnp.where(new < 0, -1.0, 1.0) * 2 * eps * anorm) / b_safe
        local = psi * anorm / b_safe                               # ω_{j+1,j}: rounding of α_j
        return jnp.where(idx < j, new, jnp.where(idx == j, local, (idx == j + 1).astype(dtype)))

    def step(j, state):
        Q, q, q_prev, alpha, beta, om, om_prev, force, anorm, count = state
        w = matvec(q) - beta[j] * q_prev
        a = q @ w
        w = w - a * q
        b = jnp.linalg.norm(w)
        anorm = jnp.maximum(anorm, jnp.abs(a) + b + beta[j])
        if partial:
            new = omega(om, om_prev, alpha, beta, a, b, j, anorm)
            need = force | (jnp.max(jnp.where(idx <= j, jnp.abs(new), 0.0)) > eta) \
                | (b <= psi * anorm)

            def reorthogonalise(w):
                w = gram_schmidt(Q, w, j)
                nw = jnp.linalg.norm(w)
                return jax.lax.cond(nw <= psi * anorm, lambda: restart(Q, j),
                                    lambda: (w, nw, nw))

            w, b, nw = jax.lax.cond(need, reorthogonalise, lambda w: (w, b, b), w)
            om, om_prev = jnp.where(need & (idx <= j), psi, new), om
            force, count = need & ~force, count + need
        else:
            nw = b
        q_next = w / nw
        Q = Q.at[j + 1].set(q_next, mode="drop")      # the last q_{j+1} = q_m is not stored
        return (Q, q_next, q, alpha.at[j].set(a), beta.at[j + 1].set(b), om, om_prev, force,
                anorm, count)

    q0 = v / jnp.linalg.norm(v)
    Q = jnp.zeros((m, P), dtype).at[0].set(q0)           # q_m is not stored: r = β_m q_m
    om = (idx == 0).astype(dtype)
    state = (Q, q0, jnp.zeros_like(q0), jnp.zeros(m, dtype), jnp.zeros(m + 1, dtype), om,
             jnp.zeros(m + 1, dtype), jnp.asarray(False), jnp.zeros((), dtype),
             jnp.zeros((), jnp.int32))
    Q, q_last, _, alpha, beta, *_, count = jax.lax.fori_loop(0, m, step, state)
    r = beta[m] * q_last
    T = jnp.diag(alpha) + jnp.diag(beta[1:m], 1) + jnp.diag(beta[1:m], -1)
    return Q, T, r, count


@functools.partial(jax.jit, static_argnames=("op", "which", "krylov", "max_restarts", "k",
                                             "reortho"))
def _restarted_lanczos(op, which, krylov, max_restarts, k, tol, params, args, v0,
                       reortho="partial"):
    matvec, _ = op.build(params, args)
    if reortho == "full":
        alg = decomp.tridiag_sym(krylov, reortho="full", materialize=True, custom_vjp=False)
    else:
        alg = functools.partial(tridiag, m=krylov, reortho=reortho)
    pick = jnp.arange(k) if which == "smallest" else krylov - 1 - jnp.arange(k)
    nxt = k if which == "smallest" else krylov - 1 - k

    def ritz(v):
        Q, T, _, _ = alg(matvec, v / jnp.linalg.norm(v))  # Q: (m, P)
        theta, S = jnp.linalg.eigh(T)                    # ascending
        vecs = S[:, pick].T @ Q                          # (k, P) Ritz vectors, one pass over Q
        vecs = vecs / jnp.linalg.norm(vecs, axis=1, keepdims=True)
        Hx = jax.vmap(matvec)(vecs)
        vals = jnp.sum(vecs * Hx, axis=1)                # Rayleigh quotients
        res = jnp.linalg.norm(Hx - vals[:, None] * vecs, axis=1)  # true residuals (k HVPs)
        scale = jnp.max(jnp.abs(theta))
        return vals, vecs, res, jnp.abs(theta[nxt] - theta[pick[-1]]), scale

    def cond(state):
        i, _, _, res, _, scale = state
        return (i < max_restarts) & (jnp.max(res) > tol * scale)

    def body(state):
        i, _, vecs, _, _, _ = state
        return (i + 1, *ritz(jnp.sum(vecs, axis=0)))

    state = (0, *ritz(v0))
    i, vals, vecs, res, gap, scale = jax.lax.while_loop(cond, body, state)
    return vals, vecs.T, res, gap, scale, i


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
                 tol: float = 1e-10, max_restarts: int = 20, reortho: str = "partial",
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
        reortho: "partial" (default; Simon's partial reorthogonalisation: semi-orthogonal
            Lanczos vectors, which keeps the Ritz values as accurate as full
            reorthogonalisation does, at O(P·krylov) work plus a Gram–Schmidt pass only at
            the steps where the estimated orthogonality is lost), "full" (matfree's full
            reorthogonalisation against every Lanczos vector at every step, O(P·krylov²)) or
            "none" (the plain three-term recurrence; ghost copies of converged Ritz
            values appear, so only k = 1 is allowed). ``converged`` and ``residual`` always
            come from the recomputed true residual.

    Cost (lanczos): (restarts + 1)·(krylov + k) HVPs, O(P·krylov) memory, one compilation per
    (operator, shapes, k, krylov). Returns a list of :class:`EigResult`, most extreme first.
    """
    if reortho not in ("partial", "full", "none"):
        raise ValueError(f"reortho must be 'partial', 'full' or 'none', got {reortho!r}.")
    if which not in ("smallest", "largest"):
        raise ValueError(f"which must be 'smallest' or 'largest', got {which!r}.")
    if method not in ("lanczos", "exact"):
        raise ValueError(f"method must be 'lanczos' or 'exact', got {method!r}.")
    k = _validate.positive_int("k", k)
    if reortho == "none" and k > 1:
        raise ValueError(f"reortho='none' cannot tell the {k} most extreme eigenvalues from ghost "
                         "copies of the first; use reortho='partial' (the default) for k > 1.")
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
    # the true residual carries the rounding of one HVP, ~100·ε·‖H‖, on top of tol·‖H‖
    threshold = tol + 100 * float(jnp.finfo(flat.dtype).eps)
    vals, vecs, res, gap, scale, restarts = _restarted_lanczos(
        op, which, krylov, int(max_restarts), k, jnp.asarray(threshold, flat.dtype), params, args,
        start, reortho=reortho)
    vals, res = np.asarray(vals), np.asarray(res)
    gap, scale, restarts = float(gap), float(scale), int(restarts)
    seconds = time.perf_counter() - t0
    hvps = (restarts + 1) * (krylov + k)
    converged = bool(np.max(res) <= threshold * scale)
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
