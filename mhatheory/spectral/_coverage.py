"""Measured coverage of the probabilistic ends: over many random starts, how often the outer end
of ``prob_interval`` misses the eigenvalue, against the stated failure probability δ.

The ends of :mod:`._probabilistic` are theorems about a start drawn uniformly on the sphere; this
module checks them the way a sceptical user would, on matrices whose spectrum is known: N
independent starts run the toolkit's own recurrence (:func:`~._recurrence.lanczos`, no
reorthogonalisation, as a first cycle of k = 1 runs), vmapped, and the ends and the margin η are
computed by the same functions the probes use, after every ``every`` steps. A run *misses* when
its end excludes the eigenvalue at any of those steps (the statement holds for all steps at
once, so this is the event whose probability is bounded by δ). The observed frequency comes with
its Clopper–Pearson 95% interval; the statement is consistent with the data when that interval
reaches down to δ (:attr:`Coverage.within`).

:func:`named_spectra` are the hard cases: an eigenvalue pair closer than Lanczos resolves, a dense
cluster at λmin, λmin inside a dense bulk near 0 (a trained network), and an isolated λmin under a
tiny gap; :func:`rotated` turns a spectrum into a dense matrix with random eigenvectors.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from mhatheory import _validate
from mhatheory.spectral._certificate import defect_vectors, hvp_error
from mhatheory.spectral._options import Reortho, work_dtype
from mhatheory.spectral._probabilistic import (
    check_failure_prob,
    margin,
    margin_factor,
    outer_ends_batch,
    ritz_batch,
    start_threshold,
)
from mhatheory.spectral._recurrence import lanczos


class Coverage(NamedTuple):
    """The miss frequency of probabilistic ends over random starts.

    Attributes:
        failure_prob: δ, the stated failure probability.
        num_starts: N, the random starts.
        misses: runs whose end excluded the eigenvalue after some checked step.
        frequency: misses / N.
        interval: the Clopper–Pearson 95% interval of the miss probability.
        within: whether ``interval`` reaches down to δ (the data do not refute the statement).
        steps: the checked step counts k.
        misses_at: misses after each checked k.
        median_width: the median over runs of (Ritz value − end)/spread after the last k.
    """

    failure_prob: float
    num_starts: int
    misses: int
    frequency: float
    interval: tuple
    within: bool
    steps: tuple
    misses_at: tuple
    median_width: float


def rotated(eigenvalues, key, dtype=jnp.float64):
    """``Q diag(λ) Qᵀ`` with Q a random orthogonal matrix (QR of a Gaussian one), in ``dtype``.

    Example:
        >>> import jax, numpy as np
        >>> A = rotated(np.array([-1.0, 2.0, 3.0]), jax.random.key(0))
        >>> np.round(np.linalg.eigvalsh(np.asarray(A)), 12).tolist()
        [-1.0, 2.0, 3.0]
    """
    lam = np.asarray(eigenvalues, float)
    Q, _ = np.linalg.qr(np.asarray(jax.random.normal(key, (lam.size, lam.size), jnp.float64)))
    return jnp.asarray((Q * lam) @ Q.T, dtype)


def named_spectra(num_params: int = 300) -> dict:
    """Four spectra of size P with λmin = −1 (or inside a bulk), each hard for the deterministic
    outer end: ``"pair"`` (λ₂ − λ₁ = 1e-11), ``"cluster"`` (50 eigenvalues within 1e-9 of λmin),
    ``"bulk"`` (λmin = −4e-5 inside P − 20 eigenvalues spread over [−4e-5, 1e-4], the rest up to
    10, as after training), ``"isolated"`` (λmin = −1, the rest from −1 + 1e-4 to 1).

    Example:
        >>> sorted(named_spectra(300))
        ['bulk', 'cluster', 'isolated', 'pair']
    """
    P = num_params
    rest = np.linspace(-0.5, 1.0, P)
    pair = np.concatenate([[-1.0, -1.0 + 1e-11], rest[2:]])
    cluster = np.concatenate([-1.0 + np.linspace(0.0, 1e-9, 50), rest[50:]])
    bulk = np.concatenate([np.linspace(-4e-5, 1e-4, P - 20), np.linspace(0.1, 10.0, 20)])
    isolated = np.concatenate([[-1.0], np.linspace(-1.0 + 1e-4, 1.0, P - 1)])
    return {"pair": pair, "cluster": cluster, "bulk": bulk, "isolated": isolated}


def coverage(H, *, failure_probs, key, num_starts: int = 10_000, steps: int = 100,
             every: int = 5, which: str = "smallest", exact: float | None = None
             ) -> list[Coverage]:
    """The miss frequency of the probabilistic outer end on the dense symmetric matrix ``H``, one
    :class:`Coverage` per failure probability δ in ``failure_probs``.

    ``num_starts`` uniform starts (from ``key``) each run ``steps`` Lanczos steps of the HVP
    v ↦ Hv in H's dtype (a float32 ``H`` gives float32 products under a float64 recurrence, as
    for a float32 model); after every ``every`` steps the end at each δ is formed from that
    run's T_k and margin η. ``exact`` is the eigenvalue (default: ``eigvalsh`` of H in float64).
    Memory: a few P-vectors per start; one vmapped program, shared by every δ.

    Example:
        >>> import jax, numpy as np
        >>> H = rotated(np.linspace(-1.0, 1.0, 50), jax.random.key(0))
        >>> c = coverage(H, failure_probs=(0.1,), key=jax.random.key(1), num_starts=100,
        ...              steps=20)[0]
        >>> c.num_starts, c.within            # misses no more often than δ allows
        (100, True)
    """
    deltas = [check_failure_prob(d, "failure_probs") for d in np.atleast_1d(failure_probs)]
    if not deltas:
        raise ValueError("failure_probs must hold at least one probability in (0, 1).")
    num_starts = _validate.positive_int("num_starts", num_starts)
    steps = _validate.positive_int("steps", steps)
    every = _validate.positive_int("every", every)
    _validate.prng_key("key", key)
    if which not in ("smallest", "largest"):
        raise ValueError(f"which must be 'smallest' or 'largest', got {which!r}.")
    H = jnp.asarray(H)
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"H must be a square matrix, got shape {list(H.shape)}.")
    P = H.shape[0]
    A = np.asarray(H, np.float64)
    if not np.all(np.isfinite(A)):
        raise ValueError("H contains NaN/Inf; pass a finite symmetric matrix.")
    if np.max(np.abs(A - A.T)) > 1e-6 * max(np.max(np.abs(A)), np.finfo(float).tiny):
        raise ValueError("H must be symmetric (its eigenvalues are what Lanczos estimates); "
                         "symmetrise it, e.g. 0.5 * (H + H.T).")
    if exact is not None and not math.isfinite(float(exact)):
        raise ValueError(f"exact must be a finite eigenvalue, got {exact!r}.")
    steps = min(steps, P)
    if exact is None:
        ev = np.linalg.eigvalsh(np.asarray(H, np.float64))
        exact = float(ev[0] if which == "smallest" else ev[-1])
    wdt = work_dtype(H.dtype)

    def matvec(v):
        return (H @ v.astype(H.dtype)).astype(wdt)

    k_starts, k_runs, k_x, k_z = jax.random.split(key, 4)
    starts = jax.random.normal(k_starts, (num_starts, P), wdt)
    kr = jax.jit(jax.vmap(lambda v, k: lanczos(matvec, v, steps, key=k, reortho=Reortho.NONE,
                                               store_basis=False)))(
        starts, jax.random.split(k_runs, num_starts))
    alpha, beta, done = np.asarray(kr.alpha), np.asarray(kr.beta), np.asarray(kr.steps)
    x = jax.random.normal(k_x, (1, P), wdt)
    x = x / jnp.linalg.norm(x)
    z = jax.random.normal(k_z, (P,), wdt)
    d = defect_vectors(x, z / jnp.linalg.norm(z))
    hvp_err = float(hvp_error(x, jax.vmap(matvec)(x), jax.vmap(matvec)(d), H.dtype))
    sign = 1.0 if which == "smallest" else -1.0
    checked = tuple(range(every, steps + 1, every)) or (steps,)
    factor = margin_factor(H.dtype)           # the ends' K, as a probe of H's products takes
    thresholds = [(1 - 1 / factor) * start_threshold(P, delta) for delta in deltas]
    missed = np.zeros((len(deltas), num_starts), bool)
    misses_at = np.zeros((len(deltas), len(checked)), int)
    width = np.full(len(deltas), math.nan)
    for i, k in enumerate(checked):
        ks = np.minimum(done, k)
        rows = np.arange(steps)[None, :] < ks[:, None]
        tnorm = np.max(np.where(rows, np.abs(alpha) + beta[:, :-1] + beta[:, 1:], 0.0), axis=1)
        ritz = ritz_batch(alpha[:, :k], beta[:, :k + 1], ks, np.finfo(wdt).eps * math.sqrt(P)
                          * tnorm)
        for d, c in enumerate(thresholds):
            ends = outer_ends_batch(ritz, c)
            eta = margin(hvp_err, P, ends.steps, tnorm, wdt, factor)
            if which == "smallest":
                end, value = ends.lo - eta, ends.theta_min
            else:
                end, value = ends.hi + eta, ends.theta_max
            miss = sign * (end - exact) > 0
            missed[d] |= miss
            misses_at[d, i] = int(miss.sum())
            spread = ends.theta_max - ends.theta_min
            rel = np.where(spread > 0, sign * (value - end) / np.where(spread > 0, spread, 1.0),
                           0.0)
            width[d] = float(np.median(rel))
    out = []
    for d, delta in enumerate(deltas):
        m = int(missed[d].sum())
        lo = 0.0 if m == 0 else float(special.betaincinv(m, num_starts - m + 1, 0.025))
        hi = 1.0 if m == num_starts else float(special.betaincinv(m + 1, num_starts - m, 0.975))
        out.append(Coverage(delta, num_starts, m, m / num_starts, (lo, hi), lo <= delta,
                            checked, tuple(int(v) for v in misses_at[d]), float(width[d])))
    return out


__all__ = ["Coverage", "coverage", "named_spectra", "rotated"]
