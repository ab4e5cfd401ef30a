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

**Rounding.** The certificate is computed from the final Ritz vectors x_j (k wanted + one
neighbour) and their HVPs Ĥx_j = Hx_j + e_j. With u the unit roundoff of the recurrence's dtype
(float64 under x64, also for a float32 model), m = ⌈log₂ P⌉ + 2 and γ = m·u/(1 − m·u):

* every dot product and norm is a *pairwise* sum (:func:`pairwise_sum`), so its rounding is at
  most γ·Σ|terms| (Higham, Accuracy and Stability, §4.2), whatever order XLA picks;
* the HVP's own error is estimated, not bounded a priori (an HVP is an arbitrary program): for a
  random unit z, Ĥ(x+z) − Ĥz − Ĥx is zero in exact arithmetic (linearity), so its norm measures
  the rounding of three HVPs; δ = 4·max_j ‖that defect‖ + u_h‖Ĥx‖ (u_h of the HVP's dtype). A
  float32 softmax inside a float64 loss shows up here as a δ of ≈1e-7·‖H‖;
* the computed quotient θ̂ = fl(xᵀĤx)/fl(xᵀx) then satisfies |θ̂ − xᵀHx/xᵀx| ≤ τ with
  τ = (δ‖x‖ + γΣ|x_i(Ĥx)_i| + γ|θ̂|‖x‖²)/‖x‖² + u|θ̂|, and the true residual of x/‖x‖ satisfies
  ρ ≤ (ρ̂(1 + γ) + 2u(‖Ĥx‖ + |θ̂|‖x‖) + δ‖x‖)/‖x‖ + τ.

**Certificate.** For λmin, λmin ≤ xᵀHx/xᵀx ≤ θ̂ + τ always (Rayleigh quotient): the upper end
is rigorous up to the estimate δ. For the lower end, Bauer–Fike puts an eigenvalue within ρ of
the exact quotient, and Kato–Temple sharpens it: if no other eigenvalue lies within g of it,
λ ≥ θ − ρ²/g. The gap lower bound is g = |θ̂_nb − θ̂| − τ_nb − τ − ρ_nb from the neighbouring
Ritz pair, and Kato–Temple is used only when g > 1000·ρ (:data:`KATO_TEMPLE_RATIO`): an
eigenvalue hidden in a cluster the HVP's rounding cannot resolve makes a measured gap
meaningless (a test found it: a float32 problem with eigenvalues −1e-3 and 1.5e-3 at ‖H‖ = 1e3).
So the interval is [θ̂ − τ − s, θ̂ + τ] with s = ρ or ρ²/g (mirrored for λmax). It assumes, as
every Krylov method must, that Lanczos has not missed a more extreme eigenvalue (a random start
and the extra neighbour pair make that unlikely, but no residual can exclude it). An
**unconverged** run (ρ̂ > tol·‖H‖ after the restart budget) warns with a
:class:`ConvergenceWarning` and reports (−∞, θ̂ + τ] for λmin ([θ̂ − τ, +∞) for λmax): only the
Rayleigh side is claimed. The exact route's interval is ±(2‖Ĥ − Ĥᵀ‖_F + P·u·‖H‖): the asymmetry
of the materialised columns estimates their rounding, and P·u·‖H‖ covers ``eigh``'s backward
error.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from matfree import decomp

from mhatheory import _validate
from mhatheory.spectral import _exact
from mhatheory.spectral._operators import (
    as_operator,
    check_probe,
    operator_flat,
    operator_size,
)


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
        rounding: τ, the bound on |value − xᵀHx| from rounding (module docstring).
        hvp_error: δ, the estimated rounding error ‖Ĥx − Hx‖ of one HVP (for ``exact``: the
            asymmetry ‖Ĥ − Ĥᵀ‖_F of the dense matrix).
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
    rounding: float = 0.0
    hvp_error: float = 0.0


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


def work_dtype(dtype):
    """The dtype of the Lanczos recurrence for an HVP in ``dtype``: float64 when JAX has x64
    enabled (mixed precision: a float32 model's HVP runs in float32, while the recurrence,
    Rayleigh quotients, tridiagonal and certificate run in float64), else ``dtype``."""
    if jax.config.jax_enable_x64 and jnp.finfo(dtype).bits < 64:
        return jnp.dtype(jnp.float64)
    return jnp.dtype(dtype)


def pairwise_sum(v):
    """Σ over the last axis by pairwise (tree) summation, ``⌈log₂ P⌉`` levels, so the rounding
    of the sum is at most γ_{⌈log₂P⌉}·Σ|v_i| (Higham, *Accuracy and Stability*, §4.2) whatever
    order XLA would otherwise pick."""
    n = v.shape[-1]
    levels = max(1, math.ceil(math.log2(max(n, 2))))
    v = jnp.pad(v, [(0, 0)] * (v.ndim - 1) + [(0, 2**levels - n)])
    for _ in range(levels):
        v = v[..., 0::2] + v[..., 1::2]
    return v[..., 0]


def _gamma(n_ops: int, u):
    return n_ops * u / (1 - n_ops * u)


def _certify(matvec, vecs, Hx, z, hvp_dtype):
    """Rayleigh quotients, residual bounds and rounding bounds of unit vectors (module docstring,
    "Rounding"): returns ``(θ, ρ*, τ, δ)`` per vector."""
    wdt = vecs.dtype
    P = vecs.shape[-1]
    u = jnp.finfo(wdt).eps / 2
    u_h = jnp.asarray(jnp.finfo(hvp_dtype).eps / 2, wdt)
    g = _gamma(math.ceil(math.log2(max(P, 2))) + 2, u)
    nx2 = pairwise_sum(vecs * vecs)
    nx = jnp.sqrt(nx2)
    theta = pairwise_sum(vecs * Hx) / nx2
    nHx = jnp.sqrt(pairwise_sum(Hx * Hx))
    # δ: the HVP's own rounding, estimated by its linearity defect Ĥ(x+z) − Ĥ(z) − Ĥ(x) (zero
    # in exact arithmetic), ×4, plus one rounding of the output
    nd = min(2, vecs.shape[0])
    Hs = jax.vmap(matvec)(jnp.concatenate([z[None], vecs[:nd] + z[None]]))   # one traced HVP copy
    defect = jnp.sqrt(pairwise_sum((Hs[1:] - Hs[:1] - Hx[:nd]) ** 2))
    delta = 4 * jnp.max(defect) + u_h * jnp.max(nHx)
    # τ: |θ̂ − xᵀHx/xᵀx| from δ, the two pairwise dot products and the division
    tau = (delta * nx + g * pairwise_sum(jnp.abs(vecs * Hx)) + g * jnp.abs(theta) * nx2) / nx2 \
        + u * jnp.abs(theta)
    r = Hx - theta[:, None] * vecs
    rho_hat = jnp.sqrt(pairwise_sum(r * r))
    rho = (rho_hat * (1 + g) + 2 * u * (nHx + jnp.abs(theta) * nx) + delta * nx) / nx + tau
    return theta, rho, tau, delta


@functools.partial(jax.jit, static_argnames=("op", "which", "krylov", "max_restarts", "k",
                                             "reortho"))
def _restarted_lanczos(op, which, krylov, max_restarts, k, tol, params, args, v0, key,
                       reortho="partial"):
    matvec_h, flat = op.build(params, args)
    wdt = v0.dtype
    if wdt != flat.dtype:                      # mixed precision: HVP in the model's dtype
        def matvec(v):
            return matvec_h(v.astype(flat.dtype)).astype(wdt)
    else:
        matvec = matvec_h
    if reortho == "full":
        alg = decomp.tridiag_sym(krylov, reortho="full", materialize=True, custom_vjp=False)
    else:
        alg = functools.partial(tridiag, m=krylov, reortho=reortho)
    kk = min(k + 1, krylov)                     # the k wanted pairs and one neighbour (the gap)
    pick = jnp.arange(kk) if which == "smallest" else krylov - 1 - jnp.arange(kk)

    def ritz(v):
        Q, T, _, _ = alg(matvec, v / jnp.linalg.norm(v))  # Q: (m, P)
        theta, S = jnp.linalg.eigh(T)                    # ascending
        vecs = S[:, pick].T @ Q                          # (kk, P) Ritz vectors, one pass over Q
        vecs = vecs / jnp.linalg.norm(vecs, axis=1, keepdims=True)
        Hx = jax.vmap(matvec)(vecs)
        vals = jnp.sum(vecs * Hx, axis=1)                # Rayleigh quotients
        res = jnp.linalg.norm(Hx - vals[:, None] * vecs, axis=1)  # true residuals (kk HVPs)
        return vecs, Hx, res, jnp.max(jnp.abs(theta))

    def cond(state):
        i, _, _, res, scale = state
        return (i < 0) | ((i < max_restarts) & (jnp.max(res[:k]) > tol * scale))

    def body(state):
        i, vecs, *_ = state
        # cycle 0 starts from v0, restarts from the sum of the wanted Ritz vectors (one traced
        # copy of the Lanczos program instead of two)
        return (i + 1, *ritz(jnp.where(i < 0, v0, jnp.sum(vecs[:k], axis=0))))

    P = v0.shape[0]
    init = (-1, jnp.zeros((kk, P), wdt), jnp.zeros((kk, P), wdt), jnp.zeros(kk, wdt),
            jnp.zeros((), wdt))
    i, vecs, Hx, res, scale = jax.lax.while_loop(cond, body, init)
    z = jax.random.normal(key, v0.shape, wdt)
    theta, rho, tau, delta = _certify(matvec, vecs, Hx, z / jnp.linalg.norm(z), flat.dtype)
    return theta, vecs.T, res, rho, tau, delta, scale, i


def _start_vector(flat, key, v0, dtype):
    if v0 is not None:
        v0 = jnp.asarray(v0).reshape(-1).astype(dtype)
        if v0.shape != flat.shape:
            raise ValueError(f"v0 must have P={flat.size} entries, got {v0.size}.")
        return v0
    return jax.random.normal(key, flat.shape, dtype)


def check_options(*, k: int = 1, which: str = "smallest", method: str = "lanczos", key=None,
                  v0=None, krylov: int = 40, tol: float = 1e-10, max_restarts: int = 20,
                  reortho: str = "partial", memory_budget_bytes: int | None = None,
                  num_params: int | None = None, v0_name: str = "v0") -> None:
    """Check the options of :func:`extreme_eigs` on the host, before any work; each error names
    the option. Entry points that compute something before probing (``bounds.chain``,
    ``testing.assert_weakly_convex``, ``track``) call it first with their ``**lanczos``; an
    unknown option raises ``TypeError`` naming it. With ``num_params`` the start vector's size
    is checked too."""
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
    krylov = _validate.positive_int("krylov", krylov)
    if krylov <= k:
        raise ValueError(f"krylov={krylov} must exceed k={k}.")
    _validate.positive_float("tol", tol)
    _validate.positive_int("max_restarts", max_restarts, minimum=0)
    if key is not None:
        _validate.prng_key("key", key)
    _exact.check_budget(memory_budget_bytes)
    if num_params is not None and k >= num_params:
        raise ValueError(f"k={k} must be smaller than the number of parameters P={num_params}.")
    if v0 is not None:
        if not _validate.is_concrete(v0):
            return
        arr = np.asarray(v0)
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise ValueError(f"{v0_name} must be a real vector (a warm start), got dtype "
                             f"{arr.dtype}.")
        if num_params is not None and arr.size != num_params:
            raise ValueError(f"{v0_name} must have P={num_params} entries (one per parameter), "
                             f"got {arr.size} (shape {list(arr.shape)}).")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{v0_name} contains NaN/Inf; pass a finite start vector (e.g. the "
                             "previous probe's .vector) or None for a random start.")
        if not np.any(arr):
            raise ValueError(f"{v0_name} is the zero vector, which spans no Krylov space; pass "
                             "a non-zero start vector or None for a random start.")


#: Kato–Temple's ρ²/gap replaces the Bauer–Fike ρ only when the gap lower bound exceeds this
#: many residuals: an eigenvalue hidden inside an unresolved cluster (closer than the HVP's
#: rounding can separate) makes the measured gap meaningless, and then ρ is the safe spread.
KATO_TEMPLE_RATIO = 1e3


def intervals(which: str, theta, rho, tau, converged: bool):
    """Certified intervals and gap lower bounds for the k most extreme of ``len(theta)`` Ritz
    pairs (the last one is only a neighbour): see the module docstring, "Certificate"."""
    theta, rho, tau = (np.asarray(a, float) for a in (theta, rho, tau))
    sign = 1.0 if which == "smallest" else -1.0
    out = []
    for j in range(len(theta) - 1 if len(theta) > 1 else 1):
        nbs = [i for i in (j - 1, j + 1) if 0 <= i < len(theta)]
        # the nearest other eigenvalue is at least this far away (under the Krylov assumption)
        gap = min((abs(theta[i] - theta[j]) - tau[i] - tau[j] - rho[i] for i in nbs),
                  default=0.0)
        # Kato–Temple only where the gap is resolved by a wide margin (see "Certificate")
        spread = rho[j] ** 2 / gap if gap > KATO_TEMPLE_RATIO * rho[j] else rho[j]
        inner, outer = theta[j] + sign * tau[j], theta[j] - sign * (tau[j] + spread)
        if j > 0:
            inner = theta[j] + sign * (tau[j] + spread)
        if not converged:
            outer = -sign * math.inf
            if j > 0:
                inner = sign * math.inf
        lo, hi = (outer, inner) if which == "smallest" else (inner, outer)
        out.append(((float(lo), float(hi)), max(float(gap), 0.0)))
    return out


class ConvergenceWarning(UserWarning):
    """Lanczos stopped before the residual met the tolerance: the interval is not certified on
    its outer side (``-inf`` for λmin, ``+inf`` for λmax)."""


def extreme_eigs(loss_fn, params, *args, k: int = 1, which: str = "smallest",
                 method: str = "lanczos", key=None, v0=None, krylov: int = 40,
                 tol: float = 1e-10, max_restarts: int = 20, reortho: str = "partial",
                 memory_budget_bytes: int | None = None) -> list[EigResult]:
    """The k smallest or largest eigenpairs of ∇²_θ ``loss_fn(params, *args)``.

    Args:
        loss_fn: ``loss_fn(params, *args) -> scalar``, or a curvature operator
            (:class:`~mhatheory.spectral.GaussNewton`, :class:`~mhatheory.spectral.Curvature`).
        params: any pytree of floating arrays; the Hessian is in these parameters.
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

    Before any compilation the inputs are checked (floating, finite parameters; finite data; a
    scalar loss; the loss's own ``check_args``), and a float64 loss with lower-precision
    operations inside raises a :class:`~mhatheory.precision.PrecisionWarning`. An unconverged
    run raises a :class:`ConvergenceWarning` and its interval is open on the outer side.

    Cost (lanczos): (restarts + 1)·(krylov + k + 1) + 3 HVPs (the extra pair per cycle gives the
    gap for Kato–Temple, the 3 at the end the HVP rounding estimate), O(P·krylov) memory, one
    compilation per (operator, shapes, k, krylov). Returns a list of :class:`EigResult`, most
    extreme first.
    """
    options = dict(k=k, which=which, method=method, key=key, v0=v0, krylov=krylov, tol=tol,
                   max_restarts=max_restarts, reortho=reortho,
                   memory_budget_bytes=memory_budget_bytes)
    check_options(**options)
    op = as_operator(loss_fn)
    check_probe(op, params, args)
    P, dtype = operator_size(op, params)
    check_options(**options, num_params=P)
    if method == "exact":
        _exact.check_dense_fits(P, dtype, memory_budget_bytes)
    t0 = time.perf_counter()
    if method == "exact":
        return _exact_eigs(op, params, args, k, which, memory_budget_bytes, t0)

    flat = operator_flat(op, params)
    krylov, tol, max_restarts = min(int(krylov), P), float(tol), int(max_restarts)
    wdt = work_dtype(flat.dtype)
    key = jax.random.key(0) if key is None else key
    k_start, k_defect = jax.random.split(key)
    start = _start_vector(flat, k_start, v0, wdt)
    # the true residual carries the rounding of one HVP, ~100·ε·‖H‖, on top of tol·‖H‖
    threshold = tol + 100 * float(jnp.finfo(flat.dtype).eps)
    theta, vecs, res, rho, tau, delta, scale, restarts = _restarted_lanczos(
        op, which, krylov, max_restarts, k, jnp.asarray(threshold, wdt), params, args, start,
        k_defect, reortho=reortho)
    res, scale, restarts = np.asarray(res), float(scale), int(restarts)
    seconds = time.perf_counter() - t0
    kk = min(k + 1, krylov)
    hvps = (restarts + 1) * (krylov + kk) + 1 + min(2, kk)
    converged = bool(np.max(res[:k]) <= threshold * scale)
    if not converged:
        warnings.warn(
            f"Lanczos did not converge: residual {np.max(res[:k]):.3g} > tol·‖H‖ = "
            f"{threshold * scale:.3g} after {restarts} restarts of {krylov} vectors ({hvps} "
            "HVPs); the interval is open on its outer side. Raise krylov or max_restarts.",
            ConvergenceWarning, stacklevel=3)
    iv = intervals(which, theta, rho, tau, converged)
    delta = float(delta)
    return [EigResult(float(theta[j]), vecs[:, j], float(rho[j]), iv[j][0], iv[j][1], hvps,
                      restarts, converged, seconds, "lanczos", float(tau[j]), delta)
            for j in range(k)]


def _exact_eigs(op, params, args, k, which, memory_budget_bytes, t0) -> list[EigResult]:
    H, asym = _exact.dense_with_asymmetry(op, params, *args,
                                          memory_budget_bytes=memory_budget_bytes)
    evals, evecs = _exact.eigh_extremes(H)
    evals = np.asarray(evals)
    P = evals.size
    u = float(jnp.finfo(H.dtype).eps) / 2
    # Weyl: |λ(Ĥ_sym) − λ(H)| ≤ ‖E_sym‖₂ ≤ ‖Ĥ − Ĥᵀ‖_F/√2 · 2 (columns' errors, estimated by
    # the asymmetry, ×2 margin), plus eigh's backward error ≤ P·u·‖H‖₂ (LAPACK, generous)
    tau = 2.0 * float(asym) + P * u * float(np.max(np.abs(evals)))
    idx = list(range(k + 1)) if which == "smallest" else list(range(P - 1, P - 2 - k, -1))
    idx = [i for i in idx if 0 <= i < P]
    theta = evals[idx]
    rho = np.array([_exact.residual_norm(H, float(evals[i]), evecs[:, i]) for i in idx]) + tau
    iv = intervals(which, theta, rho, np.full(len(idx), tau), True)
    seconds = time.perf_counter() - t0
    return [EigResult(float(theta[j]), evecs[:, idx[j]], float(rho[j]), iv[j][0], iv[j][1], P,
                      0, True, seconds, "exact", tau, float(asym)) for j in range(k)]


def lambda_min(loss_fn, params, *args, method: str = "lanczos", key=None, **kwargs) -> EigResult:
    """λmin(∇²_θ loss_fn(params, *args)) with ``.value``, ``.residual`` and more (see
    :class:`EigResult`; options as :func:`extreme_eigs`)."""
    return extreme_eigs(loss_fn, params, *args, which="smallest", method=method, key=key,
                        **kwargs)[0]


def lambda_max(loss_fn, params, *args, method: str = "lanczos", key=None, **kwargs) -> EigResult:
    """λmax(∇²_θ loss_fn(params, *args)); see :func:`lambda_min`."""
    return extreme_eigs(loss_fn, params, *args, which="largest", method=method, key=key,
                        **kwargs)[0]
