"""The symmetric Lanczos recurrence: Krylov basis, tridiagonal T, four ways to keep the basis
orthogonal, an adaptive stop, and a basis-free second pass.

m steps from a unit q_0 give orthonormal(-ish) q_0 … q_{m−1} and T = tridiag(β, α, β) with

    H q_j = β_j q_{j−1} + α_j q_j + β_{j+1} q_{j+1},      H Qᵀ = Qᵀ T + β_m q_m e_mᵀ

(Q's rows are the q_j; exact in exact arithmetic, up to O(ε‖H‖) rounding otherwise). An
eigenpair (θ, s) of T gives the Ritz pair (θ, x = Qᵀ s) whose residual is
‖Hx − θx‖ = β_m |s_{m−1}| (the Ritz estimate: no HVP needed), which is what the adaptive stop
watches. Nothing in this module is certified: :mod:`._certificate` certifies the final vectors
from their own HVPs, whatever happened here.

**Adaptive stop.** Every ``every`` steps the recurrence computes the eigenpairs of T_j, and
stops once the Ritz estimates of the k wanted pairs are ≤ ``tol``·max|θ| (and at least k + 1
steps were taken, so the neighbour pair that bounds the gap exists). A check costs the
eigenpairs of the m × m (padded) tridiagonal T (:func:`eigh_tridiagonal`, about 1 ms at
m = 150) and no HVP; stopping late wastes at most ``every − 1`` HVPs.

**Orthogonality** (:class:`Reortho`). In floating point the q_j lose orthogonality as soon as a
Ritz pair converges (Paige 1971: y_iᵀ q_{j+1} = γ_i/(β_{j+1}|s_{j,i}|) with |γ_i| = O(ε‖H‖), so
the loss grows in the direction of each converged Ritz vector y_i and in no other). Without a
remedy, ghost copies of converged Ritz values appear in T.

**Basis-free pass** (:func:`replay`). The three-term recurrence needs only q_{j−1}, q_j, so a
first pass may keep α, β alone (O(P) memory); a second pass replays q_0, q_1, … from the same
start with the stored α, β (the same floating-point operations in the same order, so the same
vectors) and accumulates the Ritz vectors x = Σ_j s_j q_j: twice the HVPs, memory independent
of m.
"""

from __future__ import annotations

import enum
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from mhatheory.spectral._probabilistic import posterior_gap


class Reortho(str, enum.Enum):
    """How a Lanczos run keeps its basis orthogonal. Values compare equal to their strings
    (``Reortho.SELECTIVE == "selective"``), so ``reortho="partial"`` keeps working.

    * ``SELECTIVE`` (the default): Parlett–Scott selective orthogonalisation. At each adaptive
      check, the Ritz pairs whose Ritz estimate β_{j+1}|s_{j,i}| is ≤ 1e4·√ε·‖T‖ (converged, or
      about to: the 1e4 margin covers the convergence between two checks) have their Ritz
      vectors formed from the basis (up to ``k + 3`` of them, one pass over Q, redone only when
      the set grows or converges a further 100×), and every new Lanczos vector is projected
      against them: O(P·(k+3)) per step. By Paige's theorem that is the only direction in
      which orthogonality is lost, so the basis stays semi-orthogonal, |q_iᵀq_k| ≤ √ε, at a
      fraction of the cost of Gram–Schmidt against the whole basis. Use it for any k when the
      basis is stored.
    * ``PARTIAL``: Simon's partial reorthogonalisation (an O(m) recurrence estimates
      |q_{j+1}ᵀq_k| and a two-pass Gram–Schmidt against the whole basis runs where it exceeds
      √ε). Semi-orthogonal by construction, but each pass costs O(P·j) and, once a pair has
      converged, passes come every few steps: 6–15× the HVPs when an HVP is cheap against P.
      Use it to cross-check the selective scheme.
    * ``FULL``: two-pass Gram–Schmidt against the whole basis at every step, O(P·m²) work.
      Orthonormal to rounding; a reference, rarely worth its cost.
    * ``NONE``: the three-term recurrence alone, O(P) per step and no basis needed. Ghost
      copies of converged Ritz values appear once orthogonality is lost, so only the single
      most extreme pair (k = 1) is trustworthy; with the adaptive stop the run usually ends
      before a ghost forms. The only scheme for ``store_basis=False`` (the others need the
      basis), and the cheapest for k = 1.
    """

    SELECTIVE = "selective"
    PARTIAL = "partial"
    FULL = "full"
    NONE = "none"


def as_reortho(value, name: str = "reortho") -> Reortho:
    """A :class:`Reortho` from itself or its string value; a clear error otherwise."""
    try:
        return Reortho(value)
    except ValueError:
        raise ValueError(f"{name} must be one of {[r.value for r in Reortho]} (or a "
                         f"spectral.Reortho), got {value!r}.") from None


#: Ritz pairs with Ritz estimate ≤ this × √ε·‖T‖ join the selective set (see :class:`Reortho`).
SELECTIVE_MARGIN = 1e4
#: Steps after which the adaptive checks thin out geometrically (:func:`lanczos`'s ``every``): a
#: check decomposes T on the host, about 1 ms at 200 steps and 15 ms at 1,000.
LONG_RUN = 256
#: Rows of the Krylov basis handled per block by Gram–Schmidt: only rows 0…j are filled, so
#: the work is on the smallest multiple of this that holds them.
BLOCK = 16


class Krylov(NamedTuple):
    """The outcome of :func:`lanczos`.

    Attributes:
        basis: ``[m + 1, P]`` rows q_0 … q_m (rows > ``steps`` are zero; row ``steps`` is
            ``last``), or None when the basis was not stored.
        alpha: ``[m]`` diagonal of T (entries ≥ ``steps`` are zero).
        beta: ``[m + 1]``, β_0 = 0, β_j couples q_{j−1} and q_j; the residual of the recurrence
            is β_steps q_steps.
        last: q_steps, the next Lanczos vector.
        steps: steps (HVPs) taken, ≤ m: fewer when the adaptive stop or a breakdown ended it.
        reorthogonalisations: Gram–Schmidt passes against the whole basis.
    """

    basis: jax.Array | None
    alpha: jax.Array
    beta: jax.Array
    last: jax.Array
    steps: jax.Array
    reorthogonalisations: jax.Array


def tridiagonal(alpha, beta, steps, size: int, fill):
    """The leading ``size × size`` block of T with rows ≥ ``steps`` replaced by ``fill`` on the
    diagonal (decoupled, so its eigenvalues are those of T_steps plus copies of ``fill``)."""
    i = jnp.arange(size)
    d = jnp.where(i < steps, alpha[:size], fill)
    e = jnp.where(i[1:] < steps, beta[1:size], 0.0)
    return jnp.diag(d) + jnp.diag(e, 1) + jnp.diag(e, -1)


def _eigh_tridiagonal_host(d, e):
    d, e = np.asarray(d), np.asarray(e)
    if not (np.all(np.isfinite(d)) and np.all(np.isfinite(e))):
        n = d.shape[0]
        return np.full(n, np.nan, d.dtype), np.full((n, n), np.nan, d.dtype)
    w, v = scipy.linalg.eigh_tridiagonal(d, e, check_finite=False)
    return w.astype(d.dtype), v.astype(d.dtype)


def eigh_tridiagonal(d, e):
    """Eigenvalues (ascending) and eigenvectors of the symmetric tridiagonal matrix with
    diagonal ``d`` and off-diagonal ``e``, by LAPACK's tridiagonal solver on the host
    (``scipy.linalg.eigh_tridiagonal``, O(m²)): about 1 ms at m = 150, where XLA's dense
    ``eigh`` of the same matrix took 126 ms on a CPU core. Non-finite input gives NaN."""
    n = d.shape[0]
    out = (jax.ShapeDtypeStruct((n,), d.dtype), jax.ShapeDtypeStruct((n, n), d.dtype))
    return jax.pure_callback(_eigh_tridiagonal_host, out, d, e, vmap_method="sequential")


def _ritz_host(alpha, beta, steps, fill, cols, which):
    """Ritz values, the last row of T's eigenvectors and the eigenvector columns ``cols``, in a
    ``size``-row layout whose rows ≥ ``steps`` are decoupled copies of ``fill`` (see
    :func:`ritz`); only the leading ``steps × steps`` block is decomposed, and only the requested
    columns travel back."""
    size = alpha.shape[0]
    k = int(steps)
    dtype = alpha.dtype
    theta = np.full(size, fill, dtype)
    last = np.zeros(size, dtype)
    S = np.zeros((size, len(cols)), dtype)
    if k == 0:
        return theta, last, S
    w, v = _eigh_tridiagonal_host(alpha[:k], beta[1:k])
    off = 0 if which == "smallest" else size - k     # where the k real pairs sit
    theta[off:off + k], last[off:off + k] = w, v[k - 1]
    for c, j in enumerate(np.asarray(cols)):
        if off <= j < off + k:
            S[:k, c] = v[:, j - off]
    return theta, last, S


def ritz(alpha, beta, steps, size: int, which: str, anorm, cols=None):
    """Ritz values (ascending), Ritz estimates and the mask of real (non-padding) pairs of a
    ``size``-row block (``size ≥ steps``), and T's eigenvectors at positions ``cols`` (``[size,
    len(cols)]``, rows ≥ steps zero; None: none). The padding value ±(2‖T‖ + 1) lies beyond the
    spectrum of T_steps (‖T‖ ≤ ``anorm`` by Gershgorin) on the side away from the wanted end, so
    the wanted pairs keep their sorted positions. The leading ``steps × steps`` block is
    decomposed on the host, and only the asked-for columns come back (a check of a long run
    moves O(size), not O(size²), numbers)."""
    fill = (1.0 if which == "smallest" else -1.0) * (2 * anorm + 1)
    i = jnp.arange(size)
    dtype = alpha.dtype
    cols = jnp.zeros(0, jnp.int32) if cols is None else jnp.asarray(cols, jnp.int32)
    out = (jax.ShapeDtypeStruct((size,), dtype), jax.ShapeDtypeStruct((size,), dtype),
           jax.ShapeDtypeStruct((size, cols.shape[0]), dtype))
    theta, last, S = jax.pure_callback(functools.partial(_ritz_host, which=which), out,
                                       alpha[:size], beta[:size + 1], steps,
                                       fill.astype(dtype), cols, vmap_method="sequential")
    est = beta[steps] * jnp.abs(last)
    real = i < steps if which == "smallest" else i >= size - steps
    return theta, est, real, S


def wanted(size: int, count: int, which: str):
    """Sorted positions of the ``count`` most extreme Ritz pairs in a ``size``-row block."""
    return jnp.arange(count) if which == "smallest" else size - 1 - jnp.arange(count)


def lanczos(matvec, v, m: int, *, key, reortho=Reortho.PARTIAL, store_basis: bool = True,
            which: str = "smallest", k: int = 1, tol=None, every: int = 5,
            prob=None, hvp_dtype=None) -> Krylov:
    """Up to m Lanczos steps from v, one HVP each (see the module docstring).

    Args:
        matvec: the symmetric operator on ``[P]`` vectors of v's dtype.
        v: start vector (normalised here).
        m: the most steps (the Krylov size).
        key: PRNG key for the random directions that continue a run after a breakdown
            (β ≤ ψ‖T‖, an invariant subspace found) when the basis is stored; a run without a
            stored basis stops at a breakdown instead (T then holds exact eigenvalues).
        reortho: a :class:`Reortho`.
        store_basis: keep Q (``[m + 1, P]``); False needs ``Reortho.NONE``.
        which: the end of the spectrum the adaptive stop watches ("smallest" or "largest").
        k: how many of the most extreme pairs at the ``which`` end must meet ``tol``.
        tol: the adaptive stop: after every ``every`` steps, stop once the Ritz estimates of
            the k most extreme pairs at the ``which`` end are ≤ tol·max|θ| (None: run all m
            steps).
        every: steps between two adaptive checks (each an eigh of the tridiagonal T) up to
            :data:`LONG_RUN` steps; past it a check comes every ``steps // 16`` steps (rounded
            to ``every``), so that a long run spends O(log m) checks of O(steps²) each and stops
            at most 1/16 late.
        prob: ``None``, or ``(log c, lo, hi)`` (traced scalars) for a run whose probabilistic
            outer end matters (:mod:`._probabilistic`): besides the Ritz estimates, the stop
            then needs that end within ``tol``·max|θ| of the extreme Ritz value (``log c = +inf``
            switches this off), or the probabilistic interval wholly above ``hi`` or below
            ``lo`` (a decision; NaN never decides).
        hvp_dtype: the dtype the HVP computes in (default v's), for the stop rule's margin.

    ``PARTIAL``: Simon's recurrence for ω_{j+1,k} = q_{j+1}ᵀ q_k, from the Lanczos relation and
    the symmetry of H,

        β_{j+1} ω_{j+1,k} = β_{k+1} ω_{j,k+1} + (α_k − α_j) ω_{j,k} + β_k ω_{j,k−1} − β_j ω_{j−1,k}

    plus a rounding term ±ψ‖T‖, ψ = ε√P (added in the direction that increases |ω|, so the
    estimate is pessimistic), and ω_{j+1,j} = ψ‖T‖/β_{j+1} for the rounding left by the local
    step (large when β_{j+1} is small, e.g. when restarting from a nearly converged Ritz
    vector). ψ‖T‖ bounds the rounding error of one step, e = fl(Hq_j − …) − (Hq_j − …), whose
    norm is ~ε√P‖H‖, and so |q_kᵀe| for every k; the former 2ε‖T‖ (the projection of a
    random e) underestimated it: after β₇ ≈ 1.7e-3 one basis reached |q₂ᵀq₈| = 1.6e-8 > √ε
    (test_spectral's Hypothesis example). The larger term costs ≤ 2 extra Gram–Schmidt steps
    in 120 on the test spectra. When some
    |ω_{j+1,k}| exceeds √ε, q_{j+1} and then q_{j+2} are orthogonalised against all earlier
    vectors (two passes of classical Gram–Schmidt, since the earlier vectors are themselves only
    semi-orthogonal) and their ω reset to ψ = ε√P. Semi-orthogonality is enough for T to be the
    projection of H onto span(Q) up to O(ε‖H‖) (Simon 1984).

    ``SELECTIVE``: at each check the Ritz vectors y_i = Qᵀ s_i of the pairs with
    β_{j+1}|s_{j,i}| ≤ 1e4·√ε‖T‖ are formed (Paige: q_{j+1}'s overlap with y_i is
    ≈ ε‖H‖/(β_{j+1}|s_{j,i}|), so these are the only directions where it can approach √ε before
    the next check), and each new w is projected against them, w ← w − Yᵀ(Y w).
    """
    reortho = Reortho(reortho)
    hvp_eps = jnp.finfo(v.dtype if hvp_dtype is None else hvp_dtype).eps / 2
    if not store_basis and reortho is not Reortho.NONE:
        raise ValueError(f"reortho={reortho.value!r} needs the Krylov basis; without it "
                         "(store_basis=False) only reortho='none' is possible.")
    P, dtype = v.shape[0], v.dtype
    eps = jnp.finfo(dtype).eps
    eta = jnp.sqrt(eps)
    psi = eps * jnp.sqrt(jnp.asarray(P, dtype))
    idx = jnp.arange(m + 1)
    sizes = [min(b + BLOCK, m) for b in range(0, m, BLOCK)]
    slots = min(k + 3, m) if reortho is Reortho.SELECTIVE else 0
    kk = min(k + 1, m)

    def passes(rows, Q, w):             # two passes: Q is itself only semi-orthogonal
        Qf = jax.lax.slice_in_dim(Q, 0, rows)
        w = w - Qf.T @ (Qf @ w)
        return w - Qf.T @ (Qf @ w)

    gs_branches = [functools.partial(passes, s) for s in sizes]

    def dots(rows, Q, V):               # [m + 1, c]: q_iᵀ v for the filled rows, zero past them
        D = jax.lax.slice_in_dim(Q, 0, rows) @ V.T
        return jnp.zeros((m + 1, V.shape[0]), dtype).at[:rows].set(D)

    dot_branches = [functools.partial(dots, s) for s in sizes]

    def overlaps(Q, V, j):              # one pass over rows 0…j of Q
        return jax.lax.switch(j // BLOCK, dot_branches, Q, V)

    def gram_schmidt(Q, w, j):          # rows 0…j hold q_0…q_j
        return jax.lax.switch(j // BLOCK, gs_branches, Q, w)

    def restart(Q, j):
        z = jax.random.normal(jax.random.fold_in(key, j), (P,), dtype)
        z = gram_schmidt(Q, z, j)
        return z, jnp.zeros((), dtype), jnp.linalg.norm(z)

    def omega(om, om_prev, alpha, beta, a, b, j, anorm):
        up = jnp.roll(om, -1) * jnp.roll(beta, -1)                 # β_{k+1} ω_{j,k+1}
        down = jnp.where(idx > 0, jnp.roll(om, 1) * beta, 0.0)     # β_k ω_{j,k−1}
        alpha_k = jnp.concatenate([alpha, jnp.zeros(1, dtype)])
        new = up + (alpha_k - a) * om + down - beta[j] * om_prev
        b_safe = jnp.maximum(b, psi * anorm)
        new = (new + jnp.where(new < 0, -1.0, 1.0) * psi * anorm) / b_safe
        local = psi * anorm / b_safe                               # ω_{j+1,j}: rounding of α_j
        return jnp.where(idx < j, new, jnp.where(idx == j, local, (idx == j + 1).astype(dtype)))

    def check_block(size, alpha, beta, steps, anorm, Q, Y, y_count, y_est):
        """The adaptive check (and, for SELECTIVE, the set of converged Ritz vectors)."""
        theta, est, real, _ = ritz(alpha, beta, steps, size, which, anorm)
        scale = jnp.max(jnp.where(real, jnp.abs(theta), 0.0))
        if tol is None:
            stop = jnp.asarray(False)
        else:
            stop = (jnp.max(est[wanted(size, min(k, size), which)]) <= tol * scale) \
                & (steps >= kk)
        if prob is not None:
            stop = prob_stop(stop, theta, real, beta, steps, anorm, scale)
        if slots:
            good = real & (est <= SELECTIVE_MARGIN * eta * anorm)
            count = jnp.minimum(jnp.sum(good), slots).astype(jnp.int32)
            best = jnp.min(jnp.where(good, est, jnp.inf)).astype(est.dtype)
            rebuild = (count > y_count) | (best < 1e-2 * y_est)

            def build():
                # the `slots` best-converged good pairs; empty slots get zero coefficients
                order = jnp.argsort(jnp.where(good, est, jnp.inf))[:slots]
                S = ritz(alpha, beta, steps, size, which, anorm, order)[3]
                coef = jnp.where(good[order][None, :], S, 0.0)               # (size, slots)
                Yn = coef.T @ jax.lax.slice_in_dim(Q, 0, size)               # one pass over Q
                nrm = jnp.linalg.norm(Yn, axis=1, keepdims=True)
                return jnp.where(nrm > 0, Yn / jnp.where(nrm > 0, nrm, 1.0), 0.0), count, best

            Y, y_count, y_est = jax.lax.cond(rebuild, build, lambda: (Y, y_count, y_est))
        return stop, Y, y_count, y_est


    def prob_stop(stop, theta, real, beta, steps, anorm, scale):
        """The stop rule of a run whose probabilistic end matters (``prob``, see above)."""
        log_c, lo, hi = prob
        b = jnp.maximum(beta, psi * anorm)
        log_beta = jnp.sum(jnp.where((idx >= 1) & (idx <= steps), jnp.log(b), 0.0))
        s = posterior_gap(theta, real, log_beta, log_c, which)
        # the margin η without the HVP's measured rounding (not known yet): ~8 u_h‖T‖ for it
        eta = 2 * (jnp.sqrt(jnp.asarray(P, dtype)) + steps) * eps / 2 * anorm + 8 * hvp_eps * anorm
        end = jnp.min(jnp.where(real, theta, jnp.inf)) if which == "smallest" else \
            jnp.max(jnp.where(real, theta, -jnp.inf))
        sign = 1.0 if which == "smallest" else -1.0
        outer, inner = end - sign * (s + eta), end + sign * eta
        decided = (jnp.minimum(outer, inner) > hi) | (jnp.maximum(outer, inner) < lo)
        return stop & ((s + eta <= tol * scale) | decided)

    def step(state):
        (j, Q, q, q_prev, alpha, beta, om, om_prev, force, anorm, count, Y, y_count, y_est,
         done, next_check) = state
        w = matvec(q) - beta[j] * q_prev
        a = q @ w
        w = w - a * q
        if slots:
            w = jax.lax.cond(y_count > 0, lambda w: w - Y.T @ (Y @ w), lambda w: w, w)
        b = jnp.linalg.norm(w)
        anorm = jnp.maximum(anorm, jnp.abs(a) + b + beta[j])
        breakdown = b <= psi * anorm
        done = jnp.asarray(False)
        if reortho is Reortho.NONE:
            done = breakdown                 # an invariant subspace: T's values are exact
            nw = jnp.where(breakdown, 1.0, b)
        else:
            if reortho in (Reortho.PARTIAL, Reortho.SELECTIVE):
                new = omega(om, om_prev, alpha, beta, a, b, j, anorm)
                need = force | (jnp.max(jnp.where(idx <= j, jnp.abs(new), 0.0)) > eta)
                need = need | breakdown
                seed_prev = om
                if reortho is Reortho.SELECTIVE:
                    # the estimate says "maybe lost": measure before paying for Gram–Schmidt
                    def measure(_):
                        D = overlaps(Q, jnp.stack([q, w / jnp.maximum(b, psi * anorm)]), j)
                        push = jnp.where(D < 0, -psi, psi)     # keep the estimate pessimistic
                        prev = jnp.where(idx < j, D[:, 0] + push[:, 0],
                                         (idx == j).astype(dtype))
                        nxt = jnp.where(idx <= j, D[:, 1] + push[:, 1],
                                        (idx == j + 1).astype(dtype))
                        lost = jnp.max(jnp.where(idx <= j, jnp.abs(D[:, 1]), 0.0)) > eta
                        return force | breakdown | lost, nxt, prev

                    need, new, seed_prev = jax.lax.cond(
                        need, measure, lambda _: (need, new, om), None)
            elif reortho is Reortho.FULL:
                need = jnp.asarray(True)

            def reorthogonalise(w):
                w = gram_schmidt(Q, w, j)
                nw = jnp.linalg.norm(w)
                return jax.lax.cond(nw <= psi * anorm, lambda: restart(Q, j),
                                    lambda: (w, nw, nw))

            w, b, nw = jax.lax.cond(need, reorthogonalise, lambda w: (w, b, b), w)
            if reortho in (Reortho.PARTIAL, Reortho.SELECTIVE):
                om, om_prev = jnp.where(need & (idx <= j), psi, new), \
                    jnp.where(need, om, seed_prev)
                force = need & ~force
            count = count + need
        q_next = w / nw
        if store_basis:
            # in place (a scatter with mode="drop" here made XLA copy Q at every step)
            Q = jax.lax.dynamic_update_slice_in_dim(Q, q_next[None], j + 1, axis=0)
        alpha, beta = alpha.at[j].set(a), beta.at[j + 1].set(b)
        j = j + 1
        if tol is not None or slots:
            at_check = (j >= next_check) | (j == m) | done
            spacing = jnp.where(j < LONG_RUN, every,
                                jnp.maximum(every, (j // 16) // every * every))
            next_check = jnp.where(at_check, j + spacing, next_check)
            stop, Y, y_count, y_est = jax.lax.cond(
                at_check,
                lambda: check_block(m, alpha, beta, j, anorm, Q, Y, y_count, y_est),
                lambda: (jnp.asarray(False), Y, y_count, y_est))
            done = done | stop
        return (j, Q, q_next, q, alpha, beta, om, om_prev, force, anorm, count, Y, y_count,
                y_est, done, next_check)

    q0 = v / jnp.linalg.norm(v)
    Q = jnp.zeros((m + 1, P), dtype).at[0].set(q0) if store_basis else jnp.zeros((0, P), dtype)
    om = (idx == 0).astype(dtype)
    state = (jnp.zeros((), jnp.int32), Q, q0, jnp.zeros_like(q0), jnp.zeros(m, dtype),
             jnp.zeros(m + 1, dtype), om, jnp.zeros(m + 1, dtype), jnp.asarray(False),
             jnp.zeros((), dtype), jnp.zeros((), jnp.int32), jnp.zeros((slots, P), dtype),
             jnp.zeros((), jnp.int32), jnp.asarray(jnp.inf, dtype), jnp.asarray(False),
             jnp.asarray(every, jnp.int32))
    state = jax.lax.while_loop(lambda s: (s[0] < m) & ~s[-2], step, state)
    j, Q, q_last, _, alpha, beta, *_ = state
    return Krylov(Q if store_basis else None, alpha, beta, q_last, j, state[10])


def replay(matvec, v, alpha, beta, steps, coef):
    """The second pass of a basis-free run: ``coef.T @ Q`` (``coef`` ``[m, c]``, rows ≥ steps
    zero) without Q, by regenerating q_0 … q_{steps−1} from v with the first pass's α, β:
    q_{j+1} = (H q_j − α_j q_j − β_j q_{j−1})/β_{j+1}, the same floating-point operations as
    :func:`lanczos` with ``Reortho.NONE``. ``steps − 1`` HVPs, O(P·c) memory."""
    q0 = v / jnp.linalg.norm(v)

    def body(state):
        j, q, q_prev, x = state
        w = matvec(q) - beta[j] * q_prev
        w = w - alpha[j] * q
        q_next = w / beta[j + 1]
        return j + 1, q_next, q, x + coef[j + 1][:, None] * q_next[None]

    x0 = coef[0][:, None] * q0[None]
    state = (jnp.zeros((), jnp.int32), q0, jnp.zeros_like(q0), x0)
    return jax.lax.while_loop(lambda s: s[0] < steps - 1, body, state)[3]


def tridiag(matvec, v, m: int, reortho="partial", *, key):
    """m Lanczos steps from v, one HVP each: ``(Q [m, P], T [m, m], r [P], reorthogonalisations)``
    with H Qᵀ = Qᵀ T + r e_mᵀ up to rounding (the contract of matfree's ``tridiag_sym``); no
    adaptive stop. ``key`` draws the directions that continue after a breakdown."""
    reortho = as_reortho(reortho)
    kr = lanczos(matvec, v, m, key=key, reortho=reortho, store_basis=True)
    T = tridiagonal(kr.alpha, kr.beta, kr.steps, m, 0.0)
    return kr.basis[:m], T, kr.beta[kr.steps] * kr.last, kr.reorthogonalisations
