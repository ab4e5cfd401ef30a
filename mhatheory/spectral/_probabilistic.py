"""Probabilistic outer ends: where the extreme eigenvalue lies with probability ≥ 1 − δ over the
random start vector, for every spectrum.

A Lanczos run's certified interval (:mod:`._certificate`) is rigorous on its Rayleigh side only:
its outer side assumes that the Krylov space resolved every eigenvalue near the Ritz value, which
an eigenvalue pair closer than the tolerance, a dense cluster, or an eigenvector the start barely
touches can break. What the start vector v₀ does touch is random, and that randomness is what
this module turns into a statement that holds whatever the spectrum.

**Setting.** H symmetric P × P with eigenpairs (λ_i, x_i); v₀ a unit start vector,
γ_i = x_iᵀv₀. k Lanczos steps from v₀ give the tridiagonal T_k (diagonal α, off-diagonal β) and
the next vector q_k with

    p_k(H) v₀ = β_1 β_2 ⋯ β_k · q_k,        p_k(x) = det(x I − T_k) = Π_j (x − θ_j),

where θ_1 ≤ … ≤ θ_k are the Ritz values and β_k the last residual norm (the three-term recurrence
by induction: β_1 q_1 = (H − α_1) v₀, and so on). Taking norms in the eigenbasis,

    Σ_i γ_i² p_k(λ_i)² = (β_1 ⋯ β_k)².                                               (1)

**A-posteriori bound** (after van Dorsselaer, Hochstenbach & van der Vorst, SIAM J. Matrix Anal.
Appl. 2000). Let c > 0 and t < θ_1. If λmin < t, every root of p_k lies above t > λmin, so
|p_k(λmin)| > |p_k(t)| (each factor |λmin − θ_j| > |t − θ_j|), and (1) gives

    |γ_min| ≤ β_1⋯β_k / |p_k(λmin)| < β_1⋯β_k / |p_k(t)|.

Choose t = t_lo with |p_k(t_lo)| = β_1⋯β_k / c (it exists and is unique: |p_k(θ_1 − s)| grows
from 0 to ∞ as s goes from 0 to ∞). Then λmin < t_lo implies |γ_min| < c: the miss event is
contained in {|γ_min| < c}, *for every k at once*, so the bound may be read after every step and
the run stopped whenever it is narrow enough, at no extra cost in probability. If λmin is
repeated, γ_min is the norm of v₀'s projection on its eigenspace, which is only less likely to be
small. The mirror image bounds λmax ≤ t_hi with p_k(t_hi) = β_1⋯β_k / c, t_hi > θ_k. The
computation needs T_k only: t_lo = θ_1 − s with Σ_j log(θ_j − θ_1 + s) = Σ_j log β_j − log c,
solved by Newton steps on log s from above, so at or beyond the root (:func:`posterior_gap`).

**A-priori bound** (the Kaniel–Paige–Saad argument with a random start, as in Kuczyński &
Woźniakowski, SIAM J. Matrix Anal. Appl. 1992). Put A = λmax I − H ⪰ 0 with spread
S = λmax − λmin = ‖A‖; the Krylov space of A from v₀ is H's (shift invariance), and its largest
Ritz value is λmax − θ_1. For 0 < ε < 1 let q(x) = T_{k−1}(2x/((1 − ε)S) − 1) (Chebyshev), so
|q| ≤ 1 on [0, (1 − ε)S] and q(S) = C_ε = T_{k−1}((1 + ε)/(1 − ε)). The Ritz value is at least
the Rayleigh quotient of q(A)v₀; splitting the eigenvalues of A into those above (1 − ε)S (each
at most εS below S) and the others (each |q| ≤ 1, at most S below S),

    θ_1 − λmin ≤ S·(ε + (1 − γ_min²)/(C_ε² γ_min²)) ≤ S·(ε + 1/(C_ε² c²))   when |γ_min| ≥ c,

so θ_1 − λmin ≤ ε*(k, c)·S with ε*(k, c) = min_ε (ε + 1/(C_ε c)²) (:func:`prior_error`,
minimised on a grid; T_{k−1}(y) = cosh((k − 1) arccosh y)). The same holds for λmax on
{|γ_max| ≥ c}. On both events, S ≤ θ_k − θ_1 + 2ε*S, so S ≤ (θ_k − θ_1)/(1 − 2ε*) for ε* < ½, and
also S ≤ t_hi − t_lo from the a-posteriori ends. This is the a-priori statement (it depends on
k, c and the measured spread only, not on the polynomial), and it sizes a run:
:func:`steps_needed` is the least k with ε*(k, c) ≤ the relative margin a decision needs, the
analogue of Kuczyński–Woźniakowski's 1.648·√P·e^(−(2k−1)√ε) ≤ δ.

**The probability.** For v₀ uniform on the unit sphere (a normalised Gaussian vector), γ² of a
fixed unit x has the Beta(½, (P − 1)/2) law, so P(|γ| < c) = I_{c²}(½, (P − 1)/2) (the
regularised incomplete beta function). Every statement above is made on the one event
E = {|γ_min| ≥ c and |γ_max| ≥ c}, whose complement has probability ≤ 2·P(|γ| < c) = δ with c
from :func:`start_threshold`: both ends, both bounds, every k and every wanted pair at once (the
j-th smallest eigenvalue is ≥ λmin ≥ t_lo). Taking the tighter of the two bounds costs nothing.

*Warm starts.* A start v = u + w·r/‖r‖ (u a unit warm direction, r Gaussian, weight w > 0, as
:func:`~mhatheory.spectral._options.start_vector` builds it) still carries the statement: with
g = xᵀr/‖r‖, whose density is at most f = Γ(P/2)/(√π Γ((P − 1)/2)), and ‖v‖ ≤ 1 + w,
P(|xᵀv|/‖v‖ < c) ≤ P(|xᵀu + w g| < c(1 + w)) ≤ 2c(1 + w)f/w; so c is taken w/(1 + w) times
smaller (about 4.6 in log for w = 10⁻²). A warm start with w = 0 carries none.

*Which run.* Both bounds speak of the Krylov space K_k(H, v₀) of the random start. A run that
restarts from a Ritz vector sees a subspace of a larger Krylov space of v₀ through a polynomial
the bounds do not track, so the statement is about the first cycle, from v₀; later cycles only
sharpen the Rayleigh (inner) end.

**Finite precision.** The computed T_k is not the exact Lanczos matrix of H. Paige (1976, 1980)
showed that the computed recurrence satisfies H Q_k = Q_k T_k + β_k q_k e_kᵀ + F_k with
‖F_k‖ = O(ε‖H‖) while orthogonality is lost exactly along converged Ritz vectors; Greenbaum
(Linear Algebra Appl. 1989) showed that such a T_k is the *exact* Lanczos matrix of a larger
matrix H̃ whose eigenvalues lie in small intervals around those of H, from a start whose squared
components over the interval around λ_i add up to about γ_i². (Her proved interval width is
pessimistic; Greenbaum & Strakoš 1992 observe widths of a few ε‖H‖.) Applying (1) to H̃: if
λmin < t − η with η the interval half-width, every eigenvalue of H̃ near λmin is below t and the
same argument bounds their joint weight, about γ_min², by c. So the statement survives with the
end moved outward by η.

An inexact HVP (Ĥv = Hv + e(v), e.g. a float32 model) makes the run exact Lanczos for a
perturbation M = H + Δ: with Q the first cycle's orthonormal vectors and F = [e(q_j)]_j, the
symmetric Δ = FQᵀ + QFᵀ − Q(QᵀF)Qᵀ maps each q_j to its product's error, and
‖Δ‖ ≤ 2‖F‖₂ ≤ 2‖F‖_F; M's eigenvalues lie within ‖Δ‖ of H's (Weyl). But M depends on v₀, so the
random-start event does not carry over to it: a Δ as small as ‖Hv₀‖ can make v₀ an eigenvector
of M and hide every other eigenvalue of H, and no margin makes that a proof. The toolkit takes
η = K·δ + 2(√P + k)·u·‖T‖, u the unit roundoff of the recurrence (twice the rounding of one
step and of the tridiagonal eigenvalues), δ ≥ ‖Δ‖ as measured, and solves the ends at
(1 − 1/K)·c (K of :data:`MARGIN_FACTOR`: 2 for float32 products, 20 for float64 ones). δ is
the linearity-defect estimate of the products at the final vectors. A float32 model's ends
come from no float32 product: its first cycle runs on the operator widened to float64
(:mod:`._cycles`, "Lower precision"), so Δ is the widened operator's own rounding, δ its
linearity-defect estimate (at the first cycle's Ritz vectors where the run goes on with float32
products) and K = 20. A cycle on the float32 products would need δ ≥ ‖Δ‖ = ‖M − H‖ for their
own perturbation, and measuring that is what fails: a product's error depends on the vector
(on an MLP trained to float32 convergence, 0.07–1.3e-6 over a cycle's vectors against 1.2e-7
at λmin's eigenvector), and a fixed perturbation E can be small at every vector but large on
the span of the cycle, or invisible to every linearity defect (a float32 loss that is exactly
0 hides a float64 curvature of 5.2e-4: an end moved out by 2δ at the final vectors misses
λmin for every key; so does λmax of a classifier whose float32 rounding exceeds its
‖H‖ ≈ 1e-8). The coverage experiment's float32 rows measure the margin on float32 products
all the same, as a bound on what such a cycle would claim.

A residual β_j at the rounding level (:func:`breakdown_floor`: ε√P‖T‖ of the recurrence, or
ε_h‖T‖ of a lower-precision HVP) is a breakdown, after which the recurrence goes on from a
fresh direction outside K(H, v₀); the ends then stop at step j with β_j at that threshold, so
the product β_1⋯β_k is never smaller than the residuals it stands for (entered at float64's
ε√P‖T‖, a float32 run's β at ε₃₂-level rounding makes the product 1e8 times too small, and
its end misses λmin for every key).
``tests/test_spectral_probabilistic.py`` measures the miss frequency over thousands of random
starts, float32 HVPs included, against δ.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from scipy import special

#: The failure probability of a probabilistic end when none is asked for.
DEFAULT_FAILURE_PROB = 1e-6

#: A run's ends move out by K·δ (δ ≥ ‖Δ‖, the products' perturbation) and are solved at
#: (1 − 1/K)·c (module docstring, "Finite precision"): K = 2 for products in float32 or lower,
#: whose δ is large (c halves instead); K = 20 for float64 products, whose 20δ is negligible
#: beside any width while c loses only 5 % (c/2 costs a float64 λmin up to 59 % more products).
MARGIN_FACTOR_LOW, MARGIN_FACTOR = 2.0, 20.0


def margin_factor(hvp_dtype) -> float:
    """K of :data:`MARGIN_FACTOR` for products computed in ``hvp_dtype``."""
    return MARGIN_FACTOR if jnp.finfo(hvp_dtype).bits >= 64 else MARGIN_FACTOR_LOW

#: At most this many Newton steps on log s (:func:`posterior_gap`); from its start above the
#: root Newton crosses each scale θ_j − θ_1 of the sum in a step or two and then converges
#: quadratically, so runs stop after 4–20 steps (tests/test_spectral_probabilistic.py).
_NEWTON_STEPS = 200

#: log s is kept above this: s = e^−745 is below the smallest positive double.
_LOWEST = -745.0


def check_failure_prob(failure_prob, name: str = "failure_prob") -> float:
    """``failure_prob`` as a float in (0, 1); a clear error naming it otherwise."""
    try:
        d = float(failure_prob)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a probability in (0, 1), got {failure_prob!r}.") \
            from None
    if isinstance(failure_prob, bool) or not 0.0 < d < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1 (the chance that the "
                         f"probabilistic interval misses), got {failure_prob!r}; e.g. 1e-6.")
    return d


def _density_max(num_params: int) -> float:
    """The largest density of xᵀr/‖r‖ for r Gaussian in ℝ^P: Γ(P/2)/(√π Γ((P − 1)/2))."""
    return math.exp(special.gammaln(num_params / 2) - special.gammaln((num_params - 1) / 2)) \
        / math.sqrt(math.pi)


def start_threshold(num_params: int, failure_prob: float, mix: float | None = None) -> float:
    """The c of the module docstring: P(|γ_min| < c or |γ_max| < c) ≤ ``failure_prob`` for a
    uniform start (``mix=None``), or for a warm start mixed with a uniform part of weight ``mix``.

    Example:
        >>> round(start_threshold(10_000, 1e-6) * 1e9, 3)    # ≈ (δ/2)·√(π/(2P))
        6.267
    """
    if num_params <= 1:
        return 1.0                                  # P = 1: every unit vector is ±x₁
    half = failure_prob / 2
    linear = half / (2 * _density_max(num_params))  # from the density bound, always valid
    if mix is not None:
        return linear * mix / (1 + mix)
    c = math.sqrt(special.betaincinv(0.5, (num_params - 1) / 2, half)) * (1 - 1e-9)
    # guard the special functions' own rounding: keep c only if it verifies
    return c if special.betainc(0.5, (num_params - 1) / 2, c * c) <= half else linear


def posterior_gap(theta, real, log_beta, log_c, which: str, xp=jnp):
    """s ≥ 0 with Σ_real log|θ_j − t| = log_beta − log_c at t = θ_1 − s ("smallest") or
    t = θ_max + s ("largest"), at or beyond the exact root (so that the end t is too), by Newton
    steps on u = log s from above. ``theta``: Ritz values along the last axis (any order,
    padding allowed), ``real``: their mask, ``log_beta`` = Σ_{j ≤ k} log β_j; leading axes are
    independent runs. ``xp`` is ``jax.numpy`` (under jit and vmap, inside a run's stop rule) or
    ``numpy`` (on the host, for thousands of runs at once). ``log_beta = -inf`` (an invariant
    subspace) gives s = 0.

    g(u) = Σ_j log(r_j + e^u), r_j = θ_j − θ_1 ≥ 0 (mirrored for "largest"), is increasing and
    convex in u (g' = Σ_j e^u/(r_j + e^u) ∈ (0, k] grows with u), so a Newton step from a
    point above the root lands at or above it: the tangent lies below a convex g. Each step is
    kept only where the *computed* g still meets the target, so the returned u satisfies
    g(u) ≥ target as evaluated, whatever the rounding of the step; the run ends when a step no
    longer moves u (or leaves the target unmet)."""
    sign = 1.0 if which == "smallest" else -1.0
    u = xp.where(real, sign * theta, xp.inf)
    base = xp.min(u, axis=-1, keepdims=True)
    rel = xp.where(real, u - base, 0.0)                      # θ_j − θ_1 ≥ 0 (mirrored)
    target_in = xp.asarray(log_beta) - log_c
    # an invariant subspace (log β = −∞) has s = 0: iterate on a finite stand-in meanwhile
    target = xp.where(xp.isneginf(target_in), 0.0, target_in)
    count = xp.maximum(xp.sum(real, axis=-1), 1)
    eps = float(np.finfo(theta.dtype).eps)

    def g_and_slope(v):
        e = xp.exp(v)[..., None]
        logs = xp.where(real, xp.log(rel + e), 0.0)
        return (xp.sum(logs, axis=-1), xp.sum(xp.where(real, e / (rel + e), 0.0), axis=-1),
                xp.sum(xp.abs(logs), axis=-1))

    # a start above the root: the root of the lower bound (:func:`_start_above`) where g, as
    # computed, meets the target there, else (target)₊/k + 1, since g(u) ≥ k·u
    near = _start_above(rel, real, target, count, eps, xp).astype(theta.dtype)
    far = (xp.maximum(target, 0.0) / count + 1.0).astype(theta.dtype)
    hi = xp.where(g_and_slope(near)[0] >= target, near, far)

    def newton(hi, g, slope, mag, hold):
        # the step is held back by ``hold`` times the rounding of g at the candidate in u
        # (each |log(r_j + e^u)| moves by at most |step|), so that it lands above the root as
        # computed; a candidate that does not is retried with 16× the hold
        safe = xp.where(slope > 0, slope, 1.0)
        step = xp.where(slope > 0, (g - target) / safe, xp.inf)
        # capped at a finite value of the arrays' dtype, with room for the sums below (1e300
        # in float64; 1e300 itself would overflow a float32)
        size = xp.minimum(xp.abs(step), min(1e300, 1e-8 * float(np.finfo(step.dtype).max)))
        noise = 4 * eps * ((mag + count * size + xp.abs(target)) / safe + xp.abs(hi) + size)
        cand = xp.maximum(hi - step + hold * noise, _LOWEST)
        g_c, slope_c, mag_c = g_and_slope(cand)
        below = cand < hi
        moved, missed = below & (g_c >= target), below & (g_c < target)
        # a move no larger than what was held back is the last: the steps after it would only
        # creep by roundings of g
        return (xp.where(moved, cand, hi), xp.where(moved, g_c, g),
                xp.where(moved, slope_c, slope), xp.where(moved, mag_c, mag),
                xp.where(missed, 16 * hold, hold), (moved & (hi - cand > hold * noise)) | missed)

    state = (*g_and_slope(hi), xp.ones_like(hi))
    if xp is jnp:
        def cond(carry):
            i, *_, active = carry
            return (i < _NEWTON_STEPS) & jnp.any(active)

        def body(carry):
            i, hi, g, slope, mag, hold, _ = carry
            return (i + 1, *newton(hi, g, slope, mag, hold))

        hi = jax.lax.while_loop(cond, body, (0, hi, *state, jnp.asarray(True)))[1]
    else:
        for _ in range(_NEWTON_STEPS):
            hi, *state, active = newton(hi, *state)
            if not np.any(active):
                break
    return xp.where(xp.isneginf(target_in), 0.0, xp.exp(hi))


def _start_above(rel, real, target, count, eps: float, xp):
    """u₀ ≥ the root of g(u) = Σ_j log(r_j + e^u) = target (:func:`posterior_gap`), close to it.

    g(u) ≥ L(u) = Σ_j max(log r_j, u), and L(u) = max_t (t-largest sum of log r_j + (k − t)·u)
    over t = 0 … (the number of r_j > 0): the terms above u keep their log, the others count u.
    So L(u) ≥ target once u ≥ u* = min_t (target − S_t)/(k − t), S_t the sum of the t largest
    log r_j, and g(u*) ≥ target: u* lies at or above g's root. g − L = Σ_j log(1 + min/max)
    ≤ k·log 2, and g' ≥ 1 (the r_1 = 0 term), so u* is at most k·log 2 above the root, and
    within rounding of it where one term dominates. u* is moved up by a bound on the rounding
    of the sums (each |term| ≤ max(|log r_j|, |u|)); the caller checks g there as computed."""
    pos = real & (rel > 0)
    logs = xp.where(pos, xp.log(xp.where(pos, rel, 1.0)), -xp.inf)
    desc = -xp.sort(-logs, axis=-1)                        # the largest first, −inf last
    top = xp.cumsum(xp.where(xp.isfinite(desc), desc, 0.0), axis=-1)
    top = xp.concatenate([xp.zeros_like(top[..., :1]), top], axis=-1)            # S_t
    t = xp.arange(top.shape[-1])
    free = count[..., None] - t
    ok = (t <= xp.sum(pos, axis=-1, keepdims=True)) & (free >= 1)
    u = xp.min(xp.where(ok, (target[..., None] - top) / xp.where(ok, free, 1), xp.inf), axis=-1)
    u = xp.maximum(u, _LOWEST)
    mag = xp.sum(xp.where(pos, xp.maximum(xp.abs(logs), xp.abs(u)[..., None]), 0.0), axis=-1)
    return u + 4 * eps * (count + 1) * (mag + count * xp.abs(u) + xp.abs(target) + 1)


@functools.lru_cache(maxsize=4096)
def prior_error(steps: int, c: float) -> float:
    """ε*(k, c) = min_ε (ε + 1/(c·T_{k−1}((1 + ε)/(1 − ε)))²) of the module docstring: on the
    event |γ| ≥ c, k Lanczos steps put the extreme Ritz value within ε*·S of the eigenvalue."""
    if steps <= 1:
        return 1.0
    eps = np.logspace(-32, -1e-9, 4000)
    y = (1 + eps) / (1 - eps)
    # log T_{k−1}(y) = a + log((1 + e^{−2a})/2), a = (k − 1)·arccosh(y)
    a = (steps - 1) * np.arccosh(y)
    log_t = a + np.log1p(np.exp(-2 * a)) - math.log(2)
    # a tiny c (failure_prob = 1e-300) makes the second term overflow to +inf where the steps
    # bound nothing: min(1, ·) reads that as no bound, not as an error
    with np.errstate(over="ignore"):
        return float(min(1.0, np.min(eps + np.exp(-2 * (math.log(c) + log_t)))))


def steps_needed(rel: float, c: float, cap: int) -> int:
    """The least k ≤ ``cap`` with ε*(k, c) ≤ ``rel`` (``cap + 1`` if none): the a-priori size of a
    run that puts the extreme Ritz value within ``rel``·S of the eigenvalue on the event.

    Example:
        >>> steps_needed(1e-3, start_threshold(1000, 1e-6), cap=10_000)
        381
    """
    if rel >= 1.0:
        return 1
    if rel <= 0.0 or prior_error(cap, c) > rel:
        return cap + 1
    lo, hi = 1, cap
    while lo < hi:
        mid = (lo + hi) // 2
        if prior_error(mid, c) <= rel:
            hi = mid
        else:
            lo = mid + 1
    return lo


class OuterEnds(NamedTuple):
    """The probabilistic ends of runs' first cycles (module docstring), before the margin η;
    arrays over runs from :func:`outer_ends_batch`, floats from :func:`outer_ends`.


    Attributes:
        lo: the lower end for λmin (on the event E); hi: the upper end for λmax.
        lo_bound, hi_bound: which bound gave each end, "a-posteriori" or "a-priori".
        theta_min, theta_max: the extreme Ritz values of T_k.
        steps: k, the Lanczos steps of K_k(H, v₀) the ends speak of.
    """

    lo: float
    hi: float
    lo_bound: str
    hi_bound: str
    theta_min: float
    theta_max: float
    steps: int


class RitzBatch(NamedTuple):
    """The Ritz values of N runs' first k_n steps (:func:`ritz_batch`): ``theta [N, m]``
    (ascending, padded with +inf), ``real`` its mask, ``log_beta [N]`` = Σ log β_j and ``steps``
    the k_n the ends speak of."""

    theta: np.ndarray
    real: np.ndarray
    log_beta: np.ndarray
    steps: np.ndarray


def ritz_batch(alpha, beta, steps, floor) -> RitzBatch:
    """What the ends of N runs need from their tridiagonals (host, numpy): ``alpha [N, m]``,
    ``beta [N, m + 1]``, ``steps [N]`` as :func:`~._recurrence.lanczos` returns them (β_0 = 0),
    ``floor [N]``.

    A β_j = 0 inside a run marks a breakdown after which the recurrence went on from a new
    random vector, outside K(H, v₀): its ends then use the first j steps, with β_j taken as
    ``floor`` (the breakdown threshold ψ‖T‖ of :func:`breakdown_floor`, an upper bound on the
    computed residual). A final β below
    ``floor`` is raised to it, so rounding never makes the product look smaller than it is."""
    alpha, beta = np.asarray(alpha, float), np.asarray(beta, float)
    N, m = alpha.shape
    floor = np.broadcast_to(np.asarray(floor, float), (N,))
    theta = np.full((N, m), np.inf)
    log_beta = np.zeros(N)
    ks = np.zeros(N, int)
    for n in range(N):
        k = int(steps[n])
        inner = np.flatnonzero(beta[n, 1:k] == 0.0)
        k = int(inner[0]) + 1 if inner.size else k
        b = np.maximum(beta[n, 1:k + 1], floor[n])
        theta[n, :k] = scipy.linalg.eigvalsh_tridiagonal(alpha[n, :k], beta[n, 1:k]) \
            if k > 1 else alpha[n, :1]
        log_beta[n] = np.sum(np.log(b)) if np.all(b > 0) else -math.inf
        ks[n] = k
    return RitzBatch(theta, np.arange(m)[None, :] < ks[:, None], log_beta, ks)


def outer_ends_batch(ritz: RitzBatch, c: float) -> OuterEnds:
    """The a-posteriori and a-priori ends (module docstring) of N runs at once, at threshold
    ``c`` (:func:`start_threshold`), from their :func:`ritz_batch`."""
    theta, real, log_beta, ks = ritz
    N = theta.shape[0]
    t_min = theta[:, 0]
    t_max = np.max(np.where(real, theta, -np.inf), axis=1)
    # both ends in one call: the largest end of θ is the smallest end of −θ
    gaps = posterior_gap(np.concatenate([theta, -theta]), np.concatenate([real, real]),
                         np.concatenate([log_beta, log_beta]), math.log(c), "smallest", np)
    t_lo, t_hi = t_min - gaps[:N], t_max + gaps[N:]
    lo_bound = np.full(N, "a-posteriori", object)
    hi_bound = lo_bound.copy()
    eps = np.array([prior_error(int(k), c) for k in ks])
    ok = eps < 0.5
    spread = np.minimum(t_hi - t_lo, (t_max - t_min) / np.where(ok, 1 - 2 * eps, 1.0))
    prior_lo, prior_hi = t_min - eps * spread, t_max + eps * spread
    use_lo, use_hi = ok & (prior_lo > t_lo), ok & (prior_hi < t_hi)
    t_lo, t_hi = np.where(use_lo, prior_lo, t_lo), np.where(use_hi, prior_hi, t_hi)
    lo_bound[use_lo], hi_bound[use_hi] = "a-priori", "a-priori"
    return OuterEnds(t_lo, t_hi, lo_bound, hi_bound, t_min, t_max, ks)


def outer_ends(alpha, beta, steps: int, c: float, floor: float) -> OuterEnds:
    """:func:`outer_ends_batch` of one run, as floats."""
    e = outer_ends_batch(ritz_batch(np.asarray(alpha)[None], np.asarray(beta)[None], [steps],
                                    [floor]), c)
    return OuterEnds(float(e.lo[0]), float(e.hi[0]), str(e.lo_bound[0]), str(e.hi_bound[0]),
                     float(e.theta_min[0]), float(e.theta_max[0]), int(e.steps[0]))


def breakdown_floor(num_params, work_dtype, hvp_unit, xp=np):
    """ψ with a Lanczos residual β ≤ ψ·‖T‖ taken for rounding (a breakdown): the larger of the
    recurrence's own rounding, ε√P in the work dtype (Paige), and one product's, 2·``hvp_unit``
    (the HVP's unit roundoff doubled: a float32 HVP perturbs each step by ~ε₃₂‖H‖ however
    precise the recurrence). The recurrence stops or restarts there
    (:func:`~._recurrence.step`), and the ends take every β as at least ψ‖T‖
    (:func:`ritz_batch`): one threshold on both sides, so that a breakdown never enters the
    product β_1⋯β_k below the residual it stood for."""
    eps = xp.finfo(work_dtype).eps
    return xp.maximum(eps * xp.sqrt(xp.asarray(num_params, work_dtype)), 2 * hvp_unit)


def margin(hvp_error, num_params: int, steps, tnorm, dtype, factor: float):
    """η of the module docstring: K·δ + 2(√P + k)·u·‖T‖ (elementwise over runs), K =
    ``factor`` (:func:`margin_factor`)."""
    u = float(np.finfo(np.dtype(dtype)).eps) / 2
    return factor * np.asarray(hvp_error, float) \
        + 2 * (math.sqrt(num_params) + np.asarray(steps, float)) * u * np.asarray(tnorm, float)


__all__ = ["DEFAULT_FAILURE_PROB", "MARGIN_FACTOR", "MARGIN_FACTOR_LOW", "OuterEnds",
           "RitzBatch", "breakdown_floor", "check_failure_prob", "margin", "margin_factor",
           "outer_ends", "outer_ends_batch", "posterior_gap", "prior_error", "ritz_batch",
           "start_threshold", "steps_needed"]
