"""Extreme eigenvalues with certified intervals: restarted, adaptive Lanczos, or dense eigh.

A probe is configured first and applied later (:class:`Lanczos`)::

    probe = spectral.Lanczos(which="smallest", tol=1e-10)      # options: a frozen dataclass
    lo = probe(loss_fn, params, batch, key=jax.random.key(0))[0]

and :func:`extreme_eigs`, :func:`lambda_min`, :func:`lambda_max` are thin conveniences on top.

**Cycle.** Up to ``krylov`` Lanczos steps (:mod:`._recurrence`) build T; every ``check_every``
steps the Ritz estimates of the k wanted pairs are compared with tol·‖T‖ and the recurrence
stops as soon as they meet it (the adaptive stop: a well-separated extreme eigenvalue costs
the steps it needs, not ``krylov``). The wanted Ritz vectors (and one neighbour, for the gap)
are formed from the stored basis, or, with ``store_basis=False``, by replaying the recurrence
(:func:`._recurrence.replay`, the same HVPs again, O(P) memory). Their true residuals
ρ = ‖Hx − θx‖ are recomputed with k + 1 HVPs; while one exceeds tol·‖H‖ (‖H‖ estimated by the
largest |Ritz value|) Lanczos restarts from the sum of the wanted Ritz vectors (explicit
restart), up to ``max_restarts`` times. The adaptive stop only decides when to form Ritz
vectors: whether the run converged, and so what it certifies, is decided by the recomputed
residual alone, exactly as with a fixed Krylov size.

**Certificate** (:mod:`._certificate`): from the final unit vectors and their own HVPs, with
the HVP's rounding estimated from its linearity defect: λmin ∈ [θ̂ − τ − s, θ̂ + τ] with s the
Bauer–Fike ρ or the Kato–Temple ρ²/g (mirrored for λmax); an unconverged run claims only the
Rayleigh side (−∞, θ̂ + τ] and warns with a :class:`ConvergenceWarning`. The exact route's
interval is ±(2‖Ĥ − Ĥᵀ‖_F + P·u·‖H‖): the asymmetry of the materialised columns estimates
their rounding, and P·u·‖H‖ covers ``eigh``'s backward error.

**Memory.** The stored basis costs ``krylov``·P numbers; ``store_basis=None`` (the default)
keeps it when it fits ``memory_budget_bytes`` (default 2 GiB) and otherwise runs basis-free,
O(P) memory whatever ``krylov`` is (:func:`lanczos_bytes`), and says so in
:attr:`EigResult.store_basis`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mhatheory.spectral import _exact
from mhatheory.spectral._certificate import (  # noqa: F401  (re-exported for callers)
    KATO_TEMPLE_RATIO,
    certify,
    intervals,
    pairwise_sum,
)
from mhatheory.spectral._operators import (
    as_operator,
    check_probe,
    operator_flat,
    operator_size,
)
from mhatheory.spectral._options import (  # noqa: F401  (re-exported for callers)
    DEFAULT_BASIS_BUDGET,
    DEFAULT_MAX_HVPS,
    WARM_START_MIX,
    check_options,
    in_work_dtype,
    lanczos_bytes,
    min_hvps,
    plan_memory,
    start_vector,
    work_dtype,
)
from mhatheory.spectral._probabilistic import (
    DEFAULT_FAILURE_PROB,
    margin,
    outer_ends,
    start_threshold,
)
from mhatheory.spectral._recurrence import (  # noqa: F401  (tridiag re-exported)
    Reortho,
    as_reortho,
    lanczos,
    replay,
    ritz,
    tridiag,
    wanted,
)


class EigResult(NamedTuple):
    """An extreme eigenpair estimate.

    Attributes:
        value: the eigenvalue estimate (float).
        vector: the unit eigenvector estimate, flat ``[P]`` (θ order of ``ravel_pytree``).
        residual: ‖H v − λ v‖₂, recomputed with a final HVP (or densely for ``exact``).
        interval: (lo, hi) enclosing the eigenvalue (see module docstring).
        gap: estimated distance to the next eigenvalue.
        num_hvps: Hessian–vector products used, all of them (P for ``exact``).
        restarts: Lanczos restarts used.
        converged: residual ≤ tol·‖H‖ within the restart budget.
        seconds: wall time (compilation included on a first call).
        method: "lanczos" or "exact".
        rounding: τ, the bound on |value − xᵀHx| from rounding (module docstring).
        hvp_error: δ, the estimated rounding error ‖Ĥx − Hx‖ of one HVP (for ``exact``: the
            asymmetry ‖Ĥ − Ĥᵀ‖_F of the dense matrix).
        store_basis: whether the Krylov basis was kept (False: basis-free, O(P) memory, chosen
            or forced by the memory budget).
        reortho: the reorthogonalisation scheme used ("" for ``exact``).
        lanczos_steps: Lanczos steps over all cycles (HVPs in the recurrence; the rest of
            ``num_hvps`` forms residuals, replays and the rounding estimate).
        prob_interval: (lo, hi) containing the eigenvalue with probability ≥ 1 − failure_prob
            over the random start, whatever the spectrum (:mod:`._probabilistic`): the outer
            end from the first cycle's Krylov space, moved out by the finite-precision margin,
            and the Rayleigh end of ``interval`` (for ``exact``: ``interval`` itself).
        failure_prob: δ of ``prob_interval`` (0 for ``exact``; 1 when the start was a warm
            start with no random part, whose outer end is then infinite).
        prob_bound: which bound gave the outer end: "a-posteriori", "a-priori", "exact", or
            "none" (no statement).
        prob_stop: why the first cycle stopped, as far as the probabilistic end is concerned:
            "tol" (its width met tol·‖H‖), "decided" (it lay wholly on one side of the value it
            was asked to decide), "budget" (``max_hvps``), "dimension" (P steps: the Krylov
            space cannot grow), "residual" (the run was sized by its residual alone, without
            ``failure_prob``), "refuted" (a later cycle found a Ritz value below the end: the
            event of probability δ happened, and the end is dropped), or "exact".
        ritz_spread: θ_max − θ_min of the first cycle's tridiagonal T, a lower bound on the
            spectral spread λmax − λmin (0 for a one-step run; for ``exact``: the full spread).
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
    store_basis: bool = True
    reortho: str = ""
    lanczos_steps: int = 0
    prob_interval: tuple = (-math.inf, math.inf)
    failure_prob: float = 1.0
    prob_bound: str = "none"
    prob_stop: str = ""
    ritz_spread: float = 0.0


@functools.partial(jax.jit, static_argnames=("op", "which", "krylov", "max_restarts", "k",
                                             "reortho", "store_basis", "every", "extend"))
def _restarted_lanczos(op, which, krylov, max_restarts, k, tol, params, args, v0, key, prob,
                       max_hvps, reortho=Reortho.SELECTIVE, store_basis=True, every=5,
                       extend=False):
    """Restarted adaptive Lanczos and the certificate's device part: returns
    ``(θ, vectors [P, k+1], residuals, ρ*, τ, δ, ‖H‖ estimate, restarts, HVPs, steps,
    (α, β, steps) of the first cycle)``. ``tol`` stops the recurrence (Ritz estimates) and ends
    the restarts (true residuals); with ``extend`` the first cycle also waits for its
    probabilistic end (``prob`` = (log c, lo, hi), see :func:`~._recurrence.lanczos`). Restarts
    stop once ``max_hvps`` HVPs are spent."""
    matvec_h, flat = op.build(params, args)
    wdt = v0.dtype
    matvec = in_work_dtype(matvec_h, flat.dtype, wdt)
    kk = min(k + 1, krylov)                     # the k wanted pairs and one neighbour (the gap)
    pick = wanted(krylov, kk, which)
    k_defect, k_break = jax.random.split(key)
    # the adaptive stop looks at Ritz estimates, the restart test at true residuals, which
    # carry the rounding of the HVP and of forming x on top: stop the recurrence at half the
    # acceptance threshold, so that a stop is rarely followed by a restart
    stop_tol = 0.5 * tol
    nan = jnp.asarray(jnp.nan, wdt)

    def cycle(i, v):
        # only the first cycle, from the random start, waits for the probabilistic end
        first = i == 0
        cprob = (jnp.where(first, prob[0], jnp.inf), jnp.where(first, prob[1], nan),
                 jnp.where(first, prob[2], nan)) if extend else None
        kr = lanczos(matvec, v, krylov, key=jax.random.fold_in(k_break, i), reortho=reortho,
                     store_basis=store_basis, which=which, k=k, tol=stop_tol, every=every,
                     prob=cprob, hvp_dtype=flat.dtype)
        real_rows = jnp.arange(krylov) < kr.steps
        anorm = jnp.max(jnp.where(real_rows, jnp.abs(kr.alpha) + kr.beta[:-1] + kr.beta[1:],
                                  0.0))
        theta, _, real, coef = ritz(kr.alpha, kr.beta, kr.steps, krylov, which, anorm, pick)
        if store_basis:
            coef = jnp.concatenate([coef, jnp.zeros((1, kk), coef.dtype)])  # row q_m: 0
            vecs = coef.T @ kr.basis                       # (kk, P), one pass over Q
            hvps = kr.steps + kk
        else:
            vecs = replay(matvec, v, kr.alpha, kr.beta, kr.steps, coef)
            hvps = kr.steps + jnp.maximum(kr.steps - 1, 0) + kk
        nrm = jnp.linalg.norm(vecs, axis=1, keepdims=True)
        # a pair beyond a tiny invariant subspace (steps < k + 1) has no vector: reuse the
        # first, whose zero gap then keeps Kato–Temple off
        vecs = jnp.where(nrm > 0, vecs / jnp.where(nrm > 0, nrm, 1.0), vecs[:1] / nrm[:1])
        Hx = jax.vmap(matvec)(vecs)
        vals = jnp.sum(vecs * Hx, axis=1)                  # Rayleigh quotients
        res = jnp.linalg.norm(Hx - vals[:, None] * vecs, axis=1)  # true residuals (kk HVPs)
        scale = jnp.max(jnp.where(real, jnp.abs(theta), 0.0))
        return vecs, Hx, res, scale, hvps, kr.steps, (kr.alpha, kr.beta, kr.steps)

    def cond(state):
        i, _, _, res, scale, hvps, *_ = state
        return (i < 0) | ((i < max_restarts) & (jnp.max(res[:k]) > tol * scale)
                          & (hvps < max_hvps))

    def body(state):
        i, vecs, _, _, _, hvps, steps, first = state
        # cycle 0 starts from v0, restarts from the sum of the wanted Ritz vectors (one traced
        # copy of the Lanczos program instead of two)
        out = cycle(i + 1, jnp.where(i < 0, v0, jnp.sum(vecs[:k], axis=0)))
        first = jax.tree.map(lambda a, b: jnp.where(i < 0, b, a), first, out[6])
        return (i + 1, *out[:4], hvps + out[4], steps + out[5], first)

    P = v0.shape[0]
    zero = jnp.zeros((), jnp.int32)
    first = (jnp.zeros(krylov, wdt), jnp.zeros(krylov + 1, wdt), zero)
    init = (-1, jnp.zeros((kk, P), wdt), jnp.zeros((kk, P), wdt), jnp.zeros(kk, wdt),
            jnp.zeros((), wdt), zero, zero, first)
    i, vecs, Hx, res, scale, hvps, steps, first = jax.lax.while_loop(cond, body, init)
    z = jax.random.normal(k_defect, v0.shape, wdt)
    theta, rho, tau, delta = certify(matvec, vecs, Hx, z / jnp.linalg.norm(z), flat.dtype)
    return (theta, vecs.T, res, rho, tau, delta, scale, i, hvps + 1 + min(2, kk), steps,
            first)


class ConvergenceWarning(UserWarning):
    """Lanczos stopped before the residual met the tolerance: the interval is not certified on
    its outer side (``-inf`` for λmin, ``+inf`` for λmax)."""


@dataclasses.dataclass(frozen=True)
class Lanczos:
    """A Lanczos probe of the k most extreme eigenpairs, configured first and applied later to
    ``(loss_fn or operator, params, *args, key=)``; the result is a list of :class:`EigResult`,
    most extreme first.

    Attributes:
        k: how many eigenpairs; which: "smallest" or "largest".
        krylov: the most Lanczos vectors per cycle (the adaptive stop usually takes fewer). With
            ``failure_prob`` the first cycle may grow to the HVP budget (at most P vectors).
        tol: the residual tolerance: a pair is converged, and its interval closed on both
            sides, once its true residual ρ ≤ (tol + 100ε)·‖H‖ (the 100ε covers the rounding
            of one HVP) and, where that rounding floor exceeds tol (a float32 model), the
            threshold is below the distance the pair must resolve: the gap to its neighbouring
            Ritz value, and |θ| (a Ritz value within the rounding floor of 0 is not told apart
            from it). Its
            certified interval is then at most 2τ + min(ρ, ρ²/g) wide. The default 1e-10
            resolves λ to ~1e-10‖H‖ with Bauer–Fike and to ~1e-20‖H‖²/g with Kato–Temple. The
            recurrence stops as soon as the Ritz estimates meet it.
        max_restarts: how many times a cycle may restart from its Ritz vectors.
        reortho: a :class:`Reortho` (or its string); None (the default): ``NONE`` for k = 1
            (the certificate never relies on orthogonality, and the single most extreme pair
            is not affected by ghosts), ``SELECTIVE`` for k > 1 (which needs the basis).
        check_every: steps between two adaptive checks (an eigh of a ≤ krylov-sized T each).
        store_basis: keep the Krylov basis (True), run basis-free (False: O(P) memory, the Ritz
            vectors recomputed by a second pass of the recurrence, twice the HVPs, k = 1), or
            decide by ``memory_budget_bytes`` (None, the default).
        memory_budget_bytes: bytes the Lanczos vectors may take (default 2 GiB); a budget
            below the O(P) vectors themselves is an error.
        failure_prob: δ in (0, 1), or None. Every result carries ``prob_interval``, which holds
            the eigenvalue with probability ≥ 1 − δ over the random start for any spectrum
            (:mod:`._probabilistic`). With None it is stated at δ = 1e-6 for whatever the run
            saw; with δ given the first cycle runs on until that interval's outer end lies
            within tol·‖H‖ of the Ritz value, or the budget is spent (``EigResult.prob_stop``
            says which).
        max_hvps: the HVP budget of the whole probe (None: unlimited without ``failure_prob``,
            where ``max_restarts`` bounds the work, and 2,000 with it).
        warm_start_mix: the weight of the uniform random part added to a warm start ``v0``
            (default 1e-2); it enters the probabilistic end. 0 leaves a pure warm start, which
            carries no probabilistic statement (and cannot be combined with ``failure_prob``).

    Cost: per cycle, the steps taken (≤ krylov) + k + 1 HVPs (the Ritz pairs' true residuals;
    the neighbour bounds the gap for Kato–Temple), twice the steps basis-free, plus 3 HVPs at
    the end (the HVP rounding estimate). One compilation per (operator, shapes, options).
    """

    k: int = 1
    which: str = "smallest"
    krylov: int = 40
    tol: float = 1e-10
    max_restarts: int = 20
    reortho: Reortho | str | None = None
    check_every: int = 5
    store_basis: bool | None = None
    memory_budget_bytes: int | None = None
    failure_prob: float | None = None
    max_hvps: int | None = None
    warm_start_mix: float = WARM_START_MIX

    def __post_init__(self):
        check_options(**self.options())

    def options(self) -> dict:
        """The options as keyword arguments of :func:`extreme_eigs`."""
        return dataclasses.asdict(self)

    def __call__(self, loss_fn, params, *args, key, v0=None) -> list[EigResult]:
        """The probe at ``params``: ``key`` draws the start vector (with ``v0``, a warm start,
        its random part) and the rounding probe. Inputs are checked before any compilation."""
        if key is None:
            raise ValueError("key must be a JAX random key (jax.random.key(seed)); it draws the "
                             "start vector and the HVP rounding probe.")
        return self._probe(loss_fn, params, args, key, v0)

    def _size(self, P: int, wdt):
        """``(krylov, store_basis, reortho, max_hvps)`` of a run on P parameters: with
        ``failure_prob`` the Krylov size grows to what the HVP budget allows (halved basis-free,
        where the Ritz vector costs a second pass)."""
        extend = self.failure_prob is not None
        budget = self.max_hvps if self.max_hvps is not None else (
            DEFAULT_MAX_HVPS if extend else np.iinfo(np.int32).max)
        krylov = min(int(self.krylov), P)
        if extend:
            spare = budget - min_hvps(self.k) + (self.k + 1)   # the steps the budget leaves
            krylov = min(P, max(krylov, spare))
        store_basis, reortho = plan_memory(P, krylov, self.k, wdt, self.store_basis,
                                           self.reortho, self.memory_budget_bytes)
        if extend and not store_basis:
            krylov = min(P, max(min(int(self.krylov), P), (spare + 1) // 2))
        return krylov, store_basis, reortho, budget

    def _probe(self, loss_fn, params, args, key, v0, target=None) -> list[EigResult]:
        """:meth:`__call__`, where ``key=None`` (the conveniences' default) becomes
        ``jax.random.key(0)`` only after every input check (making a key compiles). ``target``
        (an interval) lets the first cycle stop as soon as the probabilistic interval lies
        wholly on one side of it."""
        check_options(key=key, v0=v0, **self.options())
        op = as_operator(loss_fn)
        check_probe(op, params, args)
        P, dtype = operator_size(op, params)
        check_options(v0=v0, num_params=P, **self.options())
        wdt = work_dtype(dtype)
        krylov, store_basis, reortho, budget = self._size(P, wdt)
        extend = self.failure_prob is not None
        delta_prob = DEFAULT_FAILURE_PROB if self.failure_prob is None else self.failure_prob
        mix = None if v0 is None else float(self.warm_start_mix)
        c = start_threshold(P, delta_prob, mix) if mix != 0 else 0.0
        log_c = math.log(c) if c > 0 else -math.inf
        lo_t, hi_t = (math.nan, math.nan) if target is None else (float(target[0]),
                                                                  float(target[1]))
        t0 = time.perf_counter()
        flat = operator_flat(op, params)
        k_start, k_run = jax.random.split(jax.random.key(0) if key is None else key)
        start = start_vector(flat, k_start, v0, wdt, float(self.warm_start_mix))
        threshold = float(self.tol) + 100 * float(jnp.finfo(dtype).eps)
        out = _restarted_lanczos(
            op, self.which, krylov, int(self.max_restarts), self.k,
            jnp.asarray(threshold, wdt), params, args, start, k_run,
            jnp.asarray([log_c, lo_t, hi_t], wdt), jnp.asarray(budget, jnp.int32),
            reortho=reortho, store_basis=store_basis, every=int(self.check_every),
            extend=extend)
        theta, vecs, res, rho, tau, delta, scale, restarts, hvps, steps, first = out
        res, scale, restarts = np.asarray(res), float(scale), int(restarts)
        theta, rho, tau = np.asarray(theta), np.asarray(rho), np.asarray(tau)
        seconds = time.perf_counter() - t0
        hvps, steps, k = int(hvps), int(steps), self.k
        converged = bool(np.max(res[:k]) <= threshold * scale) \
            and _resolved(theta, np.asarray(vecs), k, threshold * scale,
                          float(self.tol) < 100 * float(jnp.finfo(dtype).eps))
        if not converged:
            small = bool(np.max(res[:k]) <= threshold * scale)
            why = (f"the HVP's rounding floor (tol·‖H‖ = {threshold * scale:.3g}) exceeds the "
                   "distance from the Ritz value to its neighbour or to 0, so the pair is not "
                   "resolved; compute in float64 to resolve it" if small else
                   f"residual {np.max(res[:k]):.3g} > tol·‖H‖ = {threshold * scale:.3g} after "
                   f"{restarts} restarts of up to {krylov} vectors ({hvps} HVPs); raise krylov "
                   "or max_restarts")
            warnings.warn(f"Lanczos did not converge: {why}. The interval is open on its outer "
                          "side; prob_interval still holds with its stated probability.",
                          ConvergenceWarning, stacklevel=4)
        iv = intervals(self.which, theta, rho, tau, converged)
        ends = _prob_ends(self.which, first, c, float(delta), P, wdt, iv, theta,
                          threshold * scale, extend, target, budget, hvps, krylov)
        return [EigResult(float(theta[j]), vecs[:, j], float(rho[j]), iv[j][0], iv[j][1], hvps,
                          restarts, converged, seconds, "lanczos", float(tau[j]), float(delta),
                          store_basis, reortho.value, steps, ends[j][0],
                          delta_prob if c > 0 else 1.0, ends[j][1], ends[j][2], ends[j][3])
                for j in range(k)]


def _resolved(theta, vecs, k: int, threshold: float, low_precision: bool) -> bool:
    """In low precision (the HVP's rounding floor 100ε, not ``tol``, sets the acceptance
    threshold), whether that threshold is below the distance each wanted pair must resolve: the
    gap to its neighbouring Ritz value, and |θ|. A pair inside a cluster narrower than the
    threshold (a dense bulk near 0 in float32) satisfies Bauer–Fike for *some* eigenvalue of the
    cluster, not for the extreme one, so its outer end must stay open; the user cannot ask for a
    tighter threshold there. (In float64 the threshold is ``tol``, which the user chooses; an
    unresolved cluster narrower than it is the stated assumption of ``interval``, and
    ``prob_interval`` covers it.) A neighbour whose vector is nearly parallel (|x_jᵀx_i| > ½) is
    a ghost copy of the same pair (lost orthogonality, no reorthogonalisation), not a second
    eigenvalue, and does not count."""
    if not low_precision:
        return True
    for j in range(k):
        nbs = [i for i in (j - 1, j + 1) if 0 <= i < len(theta)
               and abs(float(vecs[:, i] @ vecs[:, j])) <= 0.5]
        if nbs and min(abs(theta[i] - theta[j]) for i in nbs) <= threshold:
            return False
        if abs(theta[j]) <= threshold:
            return False
    return True


def _prob_ends(which, first, c, hvp_error, P, wdt, iv, theta, width_tol, extend, target,
               budget, hvps, krylov):
    """Per wanted pair: ``(prob_interval, prob_bound, prob_stop, ritz_spread)`` from the first
    cycle's (α, β, steps) (:func:`._probabilistic.outer_ends`), moved out by the margin η."""
    alpha, beta, steps = (np.asarray(a) for a in first)
    steps = int(steps)
    inner = [(lo if which == "largest" else hi) for (lo, hi), _ in iv]
    if c <= 0 or steps == 0:
        return [((-math.inf, h) if which == "smallest" else (h, math.inf), "none", "residual",
                 0.0) for h in inner]
    tnorm = float(np.max(np.abs(alpha[:steps]) + beta[:steps] + beta[1:steps + 1]))
    psi = float(np.finfo(wdt).eps) * math.sqrt(P)
    ends = outer_ends(alpha, beta, steps, c, psi * tnorm)
    eta = float(margin(hvp_error, P, ends.steps, tnorm, wdt))
    if which == "smallest":
        outer, bound, end = ends.lo - eta, ends.lo_bound, ends.theta_min
    else:
        outer, bound, end = ends.hi + eta, ends.hi_bound, ends.theta_max
    sign = 1.0 if which == "smallest" else -1.0
    if not extend:
        stop = "residual"
    elif target is not None and (min(outer, inner[0]) > target[1]
                                 or max(outer, inner[0]) < target[0]):
        stop = "decided"
    elif sign * (end - outer) <= width_tol:
        stop = "tol"
    elif steps >= P or beta[steps] <= psi * tnorm:
        stop = "dimension"
    elif hvps >= budget or steps >= krylov:
        stop = "budget"
    else:
        # the run stopped on its in-run width, which cannot know the HVP's measured rounding
        stop = "rounding"
    # a Rayleigh end beyond the outer end refutes the statement (its δ-event happened)
    refuted = sign * (inner[0] - outer) < 0
    if refuted:
        outer, stop = -sign * math.inf, "refuted"
    spread = ends.theta_max - ends.theta_min
    return [((outer, h) if which == "smallest" else (h, outer), bound, stop, spread)
            for h in inner]


def extreme_eigs(loss_fn, params, *args, k: int = 1, which: str = "smallest",
                 method: str = "lanczos", key=None, v0=None, krylov: int = 40,
                 tol: float = 1e-10, max_restarts: int = 20, reortho=None,
                 memory_budget_bytes: int | None = None, store_basis: bool | None = None,
                 check_every: int = 5, failure_prob: float | None = None,
                 max_hvps: int | None = None,
                 warm_start_mix: float = WARM_START_MIX) -> list[EigResult]:
    """The k smallest or largest eigenpairs of ∇²_θ ``loss_fn(params, *args)``.

    Args:
        loss_fn: ``loss_fn(params, *args) -> scalar``, or a curvature operator
            (:class:`~mhatheory.spectral.GaussNewton`, :class:`~mhatheory.spectral.Curvature`).
        params: any pytree of floating arrays; the Hessian is in these parameters.
        *args: data, passed as traced arguments (not constants).
        k: how many eigenpairs.
        which: "smallest" or "largest".
        method: "lanczos" (matrix-free, :class:`Lanczos`) or "exact" (dense ``eigh``; memory
            guarded by ``memory_budget_bytes``).
        key: PRNG key for the start vector and the HVP rounding probe. ``None`` means
            ``jax.random.key(0)``: a fixed, reproducible start (pass your own key to vary it;
            :class:`Lanczos` requires one).
        v0: an explicit start vector (warm start), e.g. a previous probe's ``.vector``; a
            random unit vector of weight :data:`WARM_START_MIX` (drawn from ``key``) is
            added to its direction, so a v0 with no component along the wanted eigenvector
            cannot make Lanczos certify another eigenvalue.
        krylov: the most Lanczos vectors per cycle (as :class:`Lanczos`).
        tol: the residual tolerance relative to ‖H‖ (as :class:`Lanczos`).
        max_restarts: how many times a cycle may restart (as :class:`Lanczos`).
        reortho: a :class:`Reortho` or its string; None picks by k (as :class:`Lanczos`).
        check_every: steps between two adaptive checks (as :class:`Lanczos`).
        store_basis: keep the Krylov basis, run basis-free, or decide by the budget (None;
            as :class:`Lanczos`).
        memory_budget_bytes: the budget of the dense route (``exact``) or of the Lanczos
            vectors (``lanczos``); default 2 GiB.
        failure_prob: δ of ``EigResult.prob_interval``, the interval that holds the eigenvalue
            with probability ≥ 1 − δ over the random start whatever the spectrum; given, the
            first cycle runs until its width meets ``tol`` or ``max_hvps`` (as
            :class:`Lanczos`). ``exact`` results are deterministic (δ = 0).
        max_hvps: the HVP budget (as :class:`Lanczos`).
        warm_start_mix: the weight of the random part of a warm start (as :class:`Lanczos`).

    Before any compilation the inputs are checked (floating, finite parameters; finite data; a
    scalar loss; the loss's own ``check_args``), and a float64 loss with lower-precision
    operations inside raises a :class:`~mhatheory.precision.PrecisionWarning`. An unconverged
    run raises a :class:`ConvergenceWarning` and its interval is open on the outer side.
    """
    options = dict(k=k, which=which, krylov=krylov, tol=tol, max_restarts=max_restarts,
                   reortho=reortho, check_every=check_every, store_basis=store_basis,
                   memory_budget_bytes=memory_budget_bytes, failure_prob=failure_prob,
                   max_hvps=max_hvps, warm_start_mix=warm_start_mix)
    check_options(method=method, key=key, v0=v0, **options)
    if method == "exact":
        op = as_operator(loss_fn)
        check_probe(op, params, args)
        P, dtype = operator_size(op, params)
        check_options(method=method, num_params=P, **options)
        _exact.check_dense_fits(P, dtype, memory_budget_bytes)
        return _exact_eigs(op, params, args, k, which, memory_budget_bytes, time.perf_counter())
    return Lanczos(**options)._probe(loss_fn, params, args, key, v0)


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
    taus = np.full(len(idx), tau)
    if len(idx) == k:   # k = P: no neighbour pair; the next eigenvalue is infinitely far away
        theta = np.append(theta, np.inf if which == "smallest" else -np.inf)
        rho, taus = np.append(rho, 0.0), np.append(taus, tau)
    iv = intervals(which, theta, rho, taus, True)
    seconds = time.perf_counter() - t0
    return [EigResult(float(theta[j]), evecs[:, idx[j]], float(rho[j]), iv[j][0], iv[j][1], P,
                      0, True, seconds, "exact", tau, float(asym), False, "", 0, iv[j][0], 0.0,
                      "exact", "exact", float(evals[-1] - evals[0]))
            for j in range(k)]


def lambda_min(loss_fn, params, *args, method: str = "lanczos", key=None, **kwargs) -> EigResult:
    """λmin(∇²_θ loss_fn(params, *args)) with ``.value``, ``.residual`` and more (see
    :class:`EigResult`; options as :func:`extreme_eigs`)."""
    return extreme_eigs(loss_fn, params, *args, which="smallest", method=method, key=key,
                        **kwargs)[0]


def lambda_max(loss_fn, params, *args, method: str = "lanczos", key=None, **kwargs) -> EigResult:
    """λmax(∇²_θ loss_fn(params, *args)); see :func:`lambda_min`."""
    return extreme_eigs(loss_fn, params, *args, which="largest", method=method, key=key,
                        **kwargs)[0]


__all__ = ["ConvergenceWarning", "EigResult", "Lanczos", "Reortho", "extreme_eigs",
           "lambda_max", "lambda_min", "lanczos_bytes"]
