"""Restarts of a Lanczos run (:mod:`._recurrence`), its basis-free second pass, and the Ritz
vectors a cycle ends with (:func:`ritz_vectors`: from the stored basis or by that pass).

**Thick restart** (Wu & Simon, SIAM J. Matrix Anal. Appl. 2000; :func:`thick_restart`). When a
cycle of m steps ends without convergence, the ``keep`` Ritz pairs nearest the wanted end are
kept: with Y their Ritz vectors, θ their values and b_i = β_m s_{m,i},

    H Y = Y diag(θ) + q_m bᵀ,   H q_m = Y b + α q_m + r,   (one HVP for α and r),

so the restarted basis [Y, q_m] carries the arrowhead matrix A = [[diag θ, b], [bᵀ, α]]. An
orthogonal W with W e_last = e_last (Householder, :func:`scipy.linalg.hessenberg` of A read
backwards) makes WᵀAW tridiagonal, so the new basis (rows of Wᵀ[Y; q_m]) and r/‖r‖ continue the
three-term recurrence (:func:`._recurrence.step`) unchanged; the kept Ritz vectors, converged or
nearly, go into the selective set, against which every later vector is projected (``FULL``
projects against the whole basis, which spans them). A cycle that restarts keeps what it learned
(ARPACK's implicit restart keeps the same subspace); without a stored basis the restart is
explicit, from the sum of the wanted Ritz vectors.

**Basis-free pass** (:func:`replay`). The three-term recurrence needs only q_{j−1}, q_j, so a
first pass may keep α, β alone (O(P) memory); a second pass replays q_0, q_1, … from the same
start with the stored α, β (the same floating-point operations in the same order, so the same
vectors) and accumulates the Ritz vectors x = Σ_j s_j q_j: twice the HVPs, memory independent
of m.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
import scipy.linalg

from mhatheory.spectral import _compile
from mhatheory.spectral._options import Which
from mhatheory.spectral._probabilistic import breakdown_floor
from mhatheory.spectral._recurrence import Recurrence, State, fresh_direction, refill


def thick_restart(cfg: Recurrence, state: State, keep: int, apply: Callable) -> State:
    """Restart a finished cycle keeping the ``keep`` Ritz pairs nearest the wanted end (module
    docstring, "Thick restart"); one HVP. Needs the stored basis (and, selective, ``keep`` ≤
    slots)."""
    xp = cfg.xp
    j = int(state.j)
    alpha, beta = np.asarray(state.alpha, float), np.asarray(state.beta, float)
    theta, S = scipy.linalg.eigh_tridiagonal(alpha[:j], beta[1:j])
    keep = min(keep, j - 1)
    pick = np.arange(keep) if cfg.which == Which.SMALLEST else np.arange(j - keep, j)[::-1]
    coef = np.zeros((cfg.m + 1, keep))
    coef[:j] = S[:, pick]
    Y = combine(state.Q, xp.asarray(coef, state.Q.dtype))              # [keep, P] Ritz vectors
    b = beta[j] * S[j - 1, pick]                                         # couplings to q_j
    qj = state.q
    Hq = apply(qj)
    a, r = _arrow(Y, qj, Hq, xp.asarray(b, Hq.dtype))
    A = np.zeros((keep + 1, keep + 1))
    A[:keep, :keep] = np.diag(theta[pick])
    A[:keep, keep] = A[keep, :keep] = b
    A[keep, keep] = float(a)
    # W with W e_last = e_last and WᵀAW tridiagonal: reverse, Householder-reduce, reverse back
    rev = A[::-1, ::-1]
    Tt, Wt = scipy.linalg.hessenberg(rev, calc_q=True)
    W = Wt[::-1, ::-1]
    T = Tt[::-1, ::-1]
    rows = xp.concatenate([Y, qj[None]])                                 # [keep + 1, P]
    # r is orthogonal to [Y, q_m] in exact arithmetic only: once a pair has converged, ‖r‖ is
    # small and the rounding of Hq − Yᵀb − αq is not, so orthogonalise it (two passes)
    r = _orthogonalise(rows, r)
    rnorm = float(xp.linalg.norm(r))
    B = xp.asarray(W.T, rows.dtype) @ rows
    P = rows.shape[1]
    spent, scale = False, rnorm
    if rnorm <= float(breakdown_floor(P, rows.dtype, float(state.hvp_eps))) * float(state.anorm):
        # the kept pairs and q_m span an invariant subspace (a breakdown): go on along a random
        # direction orthogonal to them, uncoupled (β = 0), as a step does
        r, nz, spent = fresh_direction(cfg, state.key, cfg.m + 1, state.support, P, rows.dtype,
                                        lambda z: _orthogonalise(rows, z))
        spent = bool(spent)
        rnorm, scale = 0.0, 1.0 if spent else float(nz)
    return _restarted(cfg, state, B, r / scale, np.diag(T), np.diag(T, 1), rnorm,
                      Y[:cfg.slots], spent)


@_compile.probe_program
def combine(xp, Q, coef):
    """``coef.T @ Q``: Ritz vectors from the stored basis."""
    return coef.T @ Q


@_compile.probe_program
def _orthogonalise(xp, rows, r):
    r = r - rows.T @ (rows @ r)
    return r - rows.T @ (rows @ r)


@_compile.probe_program
def _arrow(xp, Y, q, Hq, b):
    """α = qᵀHq and the residual r = Hq − Yᵀb − αq of the restarted basis (Y ⟂ q)."""
    a = q @ Hq
    return a, Hq - Y.T @ b - a * q


def _restarted(cfg, state, B, q_next, diag, off, rnorm, Y, done: bool) -> State:
    """The state of a thick-restarted run: basis rows ``B`` (the last is the old q_m), their
    tridiagonal (``diag``, ``off``), the next vector and its coupling ``rnorm``; the kept Ritz
    vectors ``Y`` form the selective set; ``done``: no direction is left to explore."""
    xp, m, dtype = cfg.xp, cfg.m, state.Q.dtype
    n = B.shape[0]
    idx = np.arange(m + 1)
    if cfg.host:
        Q, slots = np.zeros(state.Q.shape, dtype), np.zeros(state.Y.shape, dtype)
        Q[:n], Q[n], slots[:Y.shape[0]] = B, q_next, Y
    else:
        Q = refill(state.Q, jnp.asarray(int(state.j) + 1, jnp.int32),
                   jnp.concatenate([B, q_next[None]]))
        slots = jnp.zeros_like(state.Y).at[:Y.shape[0]].set(Y)
    alpha, beta = np.zeros(state.alpha.shape, dtype), np.zeros(state.beta.shape, dtype)
    alpha[:n] = diag
    beta[1:n], beta[n] = off, rnorm
    eps = float(np.finfo(dtype).eps * np.sqrt(q_next.shape[0]))
    om = np.where(idx <= n, eps, 0.0)
    om[n] = 1.0
    om_prev = np.where(idx < n, eps, 0.0)
    om_prev[n - 1] = 1.0
    scalar = functools.partial(xp.asarray, dtype=dtype)
    return state._replace(
        j=xp.asarray(n, xp.int32), Q=Q, q=q_next, q_prev=B[-1],
        alpha=xp.asarray(alpha), beta=xp.asarray(beta), om=xp.asarray(om, dtype),
        om_prev=xp.asarray(om_prev, dtype), force=xp.asarray(True), Y=slots,
        y_count=xp.asarray(Y.shape[0], xp.int32), y_est=scalar(0.0), done=xp.asarray(done),
        next_check=xp.asarray(n + cfg.every, xp.int32))


def replay(cfg: Recurrence, apply: Callable, v, alpha, beta, steps: int, coef):
    """The second pass of a basis-free run: ``coef.T @ Q`` (``coef`` ``[m, c]``, rows ≥ steps
    zero) without Q, by regenerating q_0 … q_{steps−1} from v with the first pass's α, β:
    q_{j+1} = (H q_j − α_j q_j − β_j q_{j−1})/β_{j+1}, the same floating-point operations as
    :func:`step` with ``Reortho.NONE``. ``steps − 1`` HVPs (driven from Python), O(P·c)
    memory."""
    xp = cfg.xp
    q = (v / xp.linalg.norm(v)).astype(np.dtype(cfg.dtype))
    q_prev = xp.zeros_like(q)
    # host copies: indexing a device array by a Python int compiles one program per index
    alpha, beta, coef = np.asarray(alpha), np.asarray(beta), np.asarray(coef)
    x = xp.asarray(coef[0])[:, None] * q[None]
    for j in range(steps - 1):
        q, q_prev, x = _replay_step(apply(q), q, q_prev, x, alpha[j], beta[j], beta[j + 1],
                                    coef[j + 1])
    return x


@functools.partial(_compile.probe_program, donate_argnums=(3,))
def _replay_step(xp, w, q, q_prev, x, a, b_prev, b_next, c):
    w = w - b_prev * q_prev
    w = w - a * q
    q_next = w / b_next
    return q_next, q, x + c[:, None] * q_next[None]


def ritz_vectors(cfg, state, start, which, kk: int, apply, xp):
    """The ``kk`` wanted Ritz vectors (the k wanted pairs and a neighbour), normalised, as
    arrays of ``xp`` (NumPy or jax.numpy), and the products spent on them (a basis-free run
    replays the recurrence from ``start``)."""
    j = int(state.j)
    alpha, beta = np.asarray(state.alpha)[:j], np.asarray(state.beta)[1:j]
    _, S = scipy.linalg.eigh_tridiagonal(alpha, beta) if j > 1 else (alpha, np.ones((1, 1)))
    S = S[:, :kk] if which == Which.SMALLEST else S[:, ::-1][:, :kk]
    coef = np.zeros((cfg.m + 1, kk), np.dtype(state.q.dtype))
    coef[:j, :S.shape[1]] = S
    if cfg.store_basis and xp is np:
        # the j filled rows only, read where they lie (a CPU device array is viewed, not copied)
        vecs, extra = coef[:j].T @ np.asarray(state.Q)[:j], 0
    elif cfg.store_basis:
        vecs, extra = combine(state.Q, cfg.xp.asarray(coef)), 0
    else:
        coef = cfg.xp.asarray(coef)
        vecs = replay(cfg, apply, start, state.alpha, state.beta, j, coef)
        extra = max(j - 1, 0)
    return _unit_rows(xp.asarray(vecs)), extra


@_compile.probe_program
def _unit_rows(xp, vecs):
    """Rows normalised; a pair beyond a tiny invariant subspace (steps < k + 1) has no vector
    and reuses the first, whose zero gap then keeps Kato–Temple off."""
    nrm = xp.linalg.norm(vecs, axis=1, keepdims=True)
    if xp is np and np.all(nrm > 0):
        return vecs / nrm                   # the same numbers, without the fallback's passes
    return xp.where(nrm > 0, vecs / xp.where(nrm > 0, nrm, 1.0), vecs[:1] / nrm[:1])


__all__ = ["combine", "replay", "ritz_vectors", "thick_restart"]
