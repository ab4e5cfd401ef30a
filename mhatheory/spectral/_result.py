"""The result of an eigenvalue probe, and the warning of a run that did not converge."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax


class EigResult(NamedTuple):
    """An extreme eigenpair estimate.

    Attributes:
        value: the eigenvalue estimate (float).
        vector: the unit eigenvector estimate, flat ``[P]`` (θ order of ``ravel_pytree``; zero
            outside a block).
        residual: ‖H v − λ v‖₂, recomputed with a final product (or densely for ``exact``).
        interval: (lo, hi) enclosing the eigenvalue (see module docstring).
        gap: a lower bound on the distance to the next eigenvalue, from the neighbouring Ritz
            pair, under the same Krylov assumption as ``interval``'s outer side: an
            eigenvalue the Krylov space has not separated from this one is not seen.
        num_hvps: products with the operator, all of them (its size for ``exact``).
        restarts: Lanczos restarts used.
        converged: residual ≤ tol·‖H‖ within the restart budget, and, where the HVP's rounding
            sets that threshold, the pair resolved from its neighbour and from 0.
        seconds: wall time of the probe on its operator, its compilation included on a first
            call (a convenience's input checks and linearisation before it are not).
        method: "lanczos" or "exact".
        rounding: τ, the bound on |value − xᵀHx| from rounding (module docstring).
        hvp_error: δ, the estimated rounding error ‖Ĥx − Hx‖ of one HVP; for a lower-precision
            operator whose run ended on its own products, at least their distance from the
            widened operator's at the final vectors and 2‖F‖_F at the switch
            (:mod:`._cycles`, "Lower precision"); where the
            products fail the symmetry test, at least half their measured asymmetry; for ``exact``:
            the asymmetry ‖Ĥ − Ĥᵀ‖_F of the dense matrix.
        store_basis: whether the Krylov basis was kept (False: basis-free, O(P) memory, chosen
            or forced by the memory budget).
        reortho: the reorthogonalisation scheme used ("" for ``exact``).
        lanczos_steps: Lanczos steps over all cycles (products in the recurrence; the rest of
            ``num_hvps`` forms residuals, replays, restarts and the rounding estimate).
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
            was asked to decide), "budget" (``max_hvps``), "dimension" (the operator's size in
            steps, or an invariant subspace: the Krylov space cannot grow), "rounding" (the
            HVP's measured rounding alone makes the end wider than tol·‖H‖), "residual" (the run
            was sized by its residual alone, without ``failure_prob``), "refuted" (a later cycle
            found a Ritz value beyond the end: the event of probability δ happened, and the end
            is dropped), or "exact".
        ritz_spread: θ_max − θ_min of the first cycle's tridiagonal T, a lower bound on the
            spectral spread λmax − λmin (0 for a one-step run; for ``exact``: the full spread).
        key: the key the probe drew its start vector and rounding probe from (pass it back to
            reproduce the run).
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
    key: jax.Array | None = None



class ConvergenceWarning(UserWarning):
    """Lanczos stopped before the residual met the tolerance: the interval is not certified on
    its outer side (``-inf`` for λmin, ``+inf`` for λmax)."""


__all__ = ["ConvergenceWarning", "EigResult"]
