"""What a finished Lanczos run (:mod:`._cycles`) claims besides its certified intervals
(:mod:`._certificate`): whether its wanted pairs are resolved, the warning of a run that did not
converge, and its probabilistic ends (:mod:`._probabilistic`) from the first cycle."""

from __future__ import annotations

import math
import warnings

import jax.numpy as jnp
import numpy as np

from mhatheory import _validate, precision
from mhatheory.spectral._options import Which
from mhatheory.spectral._probabilistic import breakdown_floor, margin, margin_factor, outer_ends
from mhatheory.spectral._result import ConvergenceWarning


def warn_unconverged(res, k, threshold, hvp_error, restarts, krylov, hvps, hvp_dtype):
    """The :class:`ConvergenceWarning` of a run whose wanted residuals ``res[:k]`` exceed the
    acceptance ``threshold`` ((tol + 100ε)·‖H‖, ε of the products the run ended on), or met
    it without resolving their pair (:func:`resolved`)."""
    small = bool(np.max(res[:k]) <= threshold)
    accept = f"(tol + 100ε)·‖H‖ = {threshold:.3g}"
    if small:
        dtype = np.dtype(hvp_dtype)
        fix = (f"the products run in {dtype.name}: compute the loss in a wider dtype to resolve "
               "it" if jnp.finfo(dtype).bits < 64 else
               "the products are float64 already, so no probe resolves it")
        why = (f"the HVP's rounding floor ({accept}) exceeds the distance from the Ritz value "
               f"to its neighbour or to 0, so the pair is not resolved; {fix}")
    elif hvp_error > threshold:
        why = (f"residual {np.max(res[:k]):.3g} > {accept}, but the HVP's own rounding is "
               f"{hvp_error:.3g}, so no restart can reach it: raise tol above that rounding "
               "(relative to ‖H‖), or compute the loss in higher precision")
    else:
        why = (f"residual {np.max(res[:k]):.3g} > {accept} after {restarts} restarts of up to "
               f"{krylov} vectors ({hvps} HVPs); raise krylov, max_restarts or max_hvps")
    warnings.warn(f"Lanczos did not converge: {why}. The interval is open on its outer side; "
                  "prob_interval still holds with its stated probability.", ConvergenceWarning,
                  stacklevel=_validate.user_stacklevel())


def warn_asymmetric(asym, allowed, hvp_error, scale, hvp_dtype):
    """The :class:`~mhatheory.precision.PrecisionWarning` of a run whose products fail the
    symmetry test (:func:`._certificate.asymmetry`)."""
    warnings.warn(
        f"the operator's products are not symmetric to within their measured rounding: "
        f"|aᵀĤb − bᵀĤa| = {asym:.3g} ({asym / scale if scale > 0 else math.inf:.1g} of the "
        f"products' own scale) where a symmetric operator whose products err by at most the "
        f"estimated δ = {hvp_error:.3g} allows {allowed:.3g}. Either the operator is not "
        f"symmetric, or its products carry a fixed error that the rounding estimate cannot see, "
        f"as a softmax saturated beyond {np.dtype(hvp_dtype).name}'s resolution makes (1 − p "
        "rounds to 0 for the top class: large logit margins, or the weights of a training run "
        "that diverged). Nothing about this spectrum is certified: interval "
        "and prob_interval are (-inf, inf), hvp_error at least half the asymmetry; the value "
        "is the Rayleigh quotient of the products as computed. Fix: probe a point whose "
        f"curvature the loss's computation resolves (smaller logit margins: a "
        f"{np.dtype(hvp_dtype).name} softmax keeps 1 − p up to margins of about "
        f"{-math.log(float(jnp.finfo(hvp_dtype).eps) / 2):.0f}).",
        precision.PrecisionWarning, stacklevel=_validate.user_stacklevel())


def resolved(theta, vecs, k: int, threshold: float, low_precision: bool) -> bool:
    """In low precision (the HVP's rounding floor 100ε, not ``tol``, sets the acceptance
    threshold), whether that threshold is below the distance each wanted pair must resolve: the
    gap to its neighbouring Ritz value, and |θ|. A pair inside a cluster narrower than the
    threshold (a dense bulk near 0 in float32) satisfies Bauer–Fike for *some* eigenvalue of the
    cluster, not for the extreme one, so its outer end must stay open; the user cannot ask for a
    tighter threshold there. (In float64 the threshold is ``tol``, which the user chooses; an
    unresolved cluster narrower than it is the stated assumption of ``interval``, and
    ``prob_interval`` covers it.) A neighbour whose vector is nearly parallel (|x_jᵀx_i| > ½) is
    a ghost copy of the same pair (lost orthogonality, no reorthogonalisation), not a second
    eigenvalue, and does not count. A threshold of 0 (every Ritz value 0: the operator vanishes
    on the Krylov space, its products exact) leaves nothing to resolve."""
    if not low_precision or threshold <= 0:
        return True
    for j in range(k):
        nbs = [i for i in (j - 1, j + 1) if 0 <= i < len(theta)
               and abs(float(vecs[i] @ vecs[j])) <= 0.5]
        if nbs and min(abs(theta[i] - theta[j]) for i in nbs) <= threshold:
            return False
        if abs(theta[j]) <= threshold:
            return False
    return True


def prob_ends(which, first, c, hvp_error, size, wdt, hvp_dtype, iv, width_tol, extend, target,
               cut, krylov):
    """Per wanted pair: ``(prob_interval, prob_bound, prob_stop, ritz_spread)`` from the first
    cycle's (α, β, steps) (:func:`._probabilistic.outer_ends`), moved out by the margin η;
    ``cut``: that cycle stopped where the HVP budget left it no room for another step."""
    alpha, beta, steps = first
    inner = [(lo if which == Which.LARGEST else hi) for (lo, hi), _ in iv]
    if c <= 0 or steps == 0:
        return [((-math.inf, h) if which == Which.SMALLEST else (h, math.inf), "none",
                 "residual", 0.0) for h in inner]
    tnorm = float(np.max(np.abs(alpha[:steps]) + beta[:steps] + beta[1:steps + 1]))
    # β's floor: the recurrence's breakdown threshold, which a float32 HVP raises to ε₃₂‖T‖
    psi = float(breakdown_floor(size, wdt, float(jnp.finfo(hvp_dtype).eps) / 2))
    ends = outer_ends(alpha, beta, steps, c, psi * tnorm)
    eta = float(margin(hvp_error, size, ends.steps, tnorm, wdt, margin_factor(hvp_dtype)))
    if which == Which.SMALLEST:
        outer, bound, end = ends.lo - eta, ends.lo_bound, ends.theta_min
    else:
        outer, bound, end = ends.hi + eta, ends.hi_bound, ends.theta_max
    sign = 1.0 if which == Which.SMALLEST else -1.0
    if not extend:
        stop = "residual"
    elif target and (min(outer, inner[0]) > target[1] or max(outer, inner[0]) < target[0]):
        stop = "decided"
    elif sign * (end - outer) <= width_tol:
        stop = "tol"
    elif steps >= size or beta[steps] <= psi * tnorm:
        stop = "dimension"
    elif cut or steps >= krylov:
        stop = "budget"
    else:
        # the run stopped on its in-run width, which cannot know the HVP's measured rounding
        stop = "rounding"
    # a Rayleigh end beyond the outer end refutes the statement (its δ-event happened)
    if sign * (inner[0] - outer) < 0:
        outer, stop = -sign * math.inf, "refuted"
    spread = ends.theta_max - ends.theta_min
    return [((outer, h) if which == Which.SMALLEST else (h, outer), bound, stop, spread)
            for h in inner]


__all__ = ["prob_ends", "resolved", "warn_asymmetric", "warn_unconverged"]
