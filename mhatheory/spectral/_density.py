"""Stochastic estimates: the Hutchinson trace and the spectral density by stochastic Lanczos
quadrature (SLQ), both with Monte-Carlo standard errors.

**Hutchinson.** For Rademacher z, E[zᵀHz] = tr H; the mean over N probes has standard error
std/√N (``matfree.stochtrace``).

**SLQ.** For a unit start vector q, m Lanczos steps give T = S diag(θ) Sᵀ, and
qᵀ f(H) q ≈ Σ_j τ_j f(θ_j) with τ_j = (e_1ᵀ s_j)² (Gauss quadrature; exact for polynomials of
degree < 2m). With q = z/‖z‖ for Rademacher z, E[qᵀ f(H) q] = tr f(H)/P, so the spectral
measure (1/P) Σ_i δ(λ − λ_i) is estimated by the probe average of Σ_j τ_j δ(λ − θ_j). Each
probe's weights sum to 1, so the estimate is a probability measure. Derived quantities and their
standard errors over probes: the fraction (and so the number, ×P) of negative eigenvalues and
their mass Σ_{λ_i<0} |λ_i| = P·E[Σ_j τ_j |θ_j| 1{θ_j < 0}].
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from matfree import decomp, stochtrace

from mhatheory import _validate
from mhatheory.spectral._operators import as_operator, check_probe, operator_flat


class Estimate(NamedTuple):
    """A Monte-Carlo estimate with its standard error and cost."""

    value: float
    se: float
    num_hvps: int


@functools.partial(jax.jit, static_argnames=("op", "num_samples"))
def _hutchinson(op, num_samples, params, args, key):
    matvec, flat = op.build(params, args)
    sampler = stochtrace.sampler_signs(flat, num=num_samples)
    estimate = stochtrace.estimator_monte_carlo_mean_and_sem(stochtrace.monte_carlo_trace(),
                                                             sampler)
    return estimate(matvec, key)


def trace(loss_fn, params, *args, key=None, num_samples: int = 100) -> Estimate:
    """Hutchinson estimate of tr ∇²L̂ with its standard error (``num_samples`` HVPs)."""
    num_samples = _validate.positive_int("num_samples", num_samples, minimum=2)
    if key is not None:
        _validate.prng_key("key", key)
    op = as_operator(loss_fn)
    check_probe(op, params, args)
    key = jax.random.key(0) if key is None else key
    mean, sem = _hutchinson(op, num_samples, params, args, key)
    return Estimate(float(mean), float(sem), num_samples)


class Density(NamedTuple):
    """SLQ nodes and weights per probe (``[N, m]`` each) for a P-dimensional operator."""

    nodes: np.ndarray
    weights: np.ndarray
    dim: int

    def _per_probe(self, values) -> tuple[float, float]:
        per = np.sum(self.weights * values, axis=1)
        return float(per.mean()), float(per.std(ddof=1) / math.sqrt(per.size))

    def pdf(self, grid, sigma: float | None = None) -> np.ndarray:
        """Gaussian-smoothed density on ``grid`` (integrates to 1 when the grid covers the
        support). ``sigma`` defaults to 1% of the node range."""
        grid = np.asarray(grid, dtype=float)
        if sigma is None:
            sigma = 0.01 * max(float(np.ptp(self.nodes)), 1e-12)
        z = (grid[:, None, None] - self.nodes[None]) / sigma
        kern = np.exp(-0.5 * z**2) / (sigma * math.sqrt(2 * math.pi))
        return np.mean(np.sum(self.weights[None] * kern, axis=2), axis=1)

    def cdf(self, x) -> float | np.ndarray:
        """Estimated fraction of eigenvalues ≤ x: a float for a scalar ``x``, else an array of
        ``x``'s shape."""
        x = np.asarray(x, dtype=float)
        # [*x.shape, N, m] → mean over probes of the weight below each x
        below = self.nodes <= x[..., None, None]
        out = np.mean(np.sum(self.weights * below, axis=-1), axis=-1)
        return float(out) if x.ndim == 0 else out

    def negative_count(self, threshold: float = 0.0) -> tuple[float, float]:
        """Estimated number of eigenvalues < −threshold, with standard error."""
        m, s = self._per_probe(self.nodes < -threshold)
        return m * self.dim, s * self.dim

    def negative_mass(self) -> tuple[float, float]:
        """Estimated Σ_{λ<0} |λ| with standard error."""
        m, s = self._per_probe(np.abs(self.nodes) * (self.nodes < 0))
        return m * self.dim, s * self.dim

    def trace(self) -> tuple[float, float]:
        """tr H = P·E[Σ τ_j θ_j], with standard error (a second trace estimator)."""
        m, s = self._per_probe(self.nodes)
        return m * self.dim, s * self.dim


@functools.partial(jax.jit, static_argnames=("op", "num_probes", "krylov"))
def _slq(op, num_probes, krylov, params, args, key):
    matvec, flat = op.build(params, args)
    alg = decomp.tridiag_sym(krylov, reortho="full", materialize=True, custom_vjp=False)
    probes = jax.random.rademacher(key, (num_probes, flat.shape[0]), flat.dtype)

    def one(z):
        _, T, _, _ = alg(matvec, z / jnp.linalg.norm(z))
        theta, S = jnp.linalg.eigh(T)
        return theta, S[0] ** 2

    return jax.lax.map(one, probes)


def spectral_density(loss_fn, params, *args, key=None, num_probes: int = 8,
                     krylov: int = 60) -> Density:
    """SLQ estimate of the Hessian's spectral density (num_probes·krylov HVPs)."""
    num_probes = _validate.positive_int("num_probes", num_probes, minimum=2)
    krylov = _validate.positive_int("krylov", krylov)
    if key is not None:
        _validate.prng_key("key", key)
    op = as_operator(loss_fn)
    check_probe(op, params, args)
    flat = operator_flat(op, params)
    krylov = min(krylov, flat.size)
    key = jax.random.key(0) if key is None else key
    nodes, weights = _slq(op, num_probes, krylov, params, args, key)
    return Density(np.asarray(nodes), np.asarray(weights), int(flat.size))
