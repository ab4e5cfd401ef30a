"""Stochastic estimates: the Hutchinson trace and the spectral density by stochastic Lanczos
quadrature (SLQ), both with Monte-Carlo standard errors.

**Hutchinson.** For Rademacher z, E[zᵀHz] = tr H. The mean of N probes has the unbiased
standard error s/√N with s² = Σ(v_i − v̄)²/(N − 1) (ddof = 1; ddof = 0 underestimates it by the
factor √((N − 1)/N), 29% at N = 2). Probes are evaluated ``chunk`` at a time (a ``vmap`` inside
a sequential ``lax.map``), so memory is about 2·chunk·P numbers plus the HVP's workspace
whatever N is. The default chunk is 1: a batched HVP is bound by memory traffic, and on the
Deora loss (n = 64, 2 CPU cores) 100 probes one at a time took 0.17 s at P = 133,120 and 1.0 s
at P = 1,056,768 against 0.36 s and 2.1 s in chunks of 100 and 50 (chunks of 2 gain a few ms
below P ≈ 10⁵; ``experiments/bench/peers.py`` measures the default).

**SLQ.** For a unit start vector q, m Lanczos steps give T = S diag(θ) Sᵀ, and
qᵀ f(H) q ≈ Σ_j τ_j f(θ_j) with τ_j = (e_1ᵀ s_j)² (Gauss quadrature; exact for polynomials of
degree < 2m). With q = z/‖z‖ for Rademacher z, E[qᵀ f(H) q] = tr f(H)/P, so the spectral
measure (1/P) Σ_i δ(λ − λ_i) is estimated by the probe average of Σ_j τ_j δ(λ − θ_j). Each
probe's weights sum to 1, so the estimate is a probability measure. Derived quantities and their
standard errors over probes: the fraction (and so the number, ×P) of negative eigenvalues and
their mass Σ_{λ_i<0} |λ_i| = P·E[Σ_j τ_j |θ_j| 1{θ_j < 0}]. The Lanczos runs are the toolkit's
own recurrence (:mod:`._recurrence`, one probe at a time), in float64 for a float32 model when
x64 is on (the HVP stays in the model's dtype, as in the λ probes).

**Why no reorthogonalisation by default.** ``reortho="none"`` (default) needs no basis (O(P)
memory, no O(P·m) work per step), and the quadrature stays accurate without it: the
finite-precision recurrence is exact Lanczos for a nearby matrix whose eigenvalues lie in tiny
intervals around H's (Greenbaum 1989), so its moments qᵀHᵖq = Σ_j τ_j θ_jᵖ hold to rounding for
p < 2m (Knizhnerman 1996; Chen, Trogdon & Ubaru 2021 carry this over to the SLQ measure). Lost
orthogonality shows only as *ghost* nodes: a converged eigenvalue reappears and its weight is
split between the copies, which leaves the measure, the CDF, the trace and the negative mass
unchanged. ``tests/test_spectral.py`` checks the moments, and the peer benchmark measured the
same Wasserstein error in 2–6× less time than ``"selective"``. ``"selective"`` (or
``"partial"``/``"full"``) stores the basis (``krylov``·P numbers) and keeps it semi-orthogonal:
use it to read individual nodes as Ritz values free of ghosts.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mhatheory import _validate
from mhatheory.spectral import _exact
from mhatheory.spectral._operators import (
    as_operator,
    check_probe,
    operator_flat,
    operator_size,
)
from mhatheory.spectral._options import in_work_dtype, work_dtype
from mhatheory.spectral._recurrence import Reortho, as_reortho, eigh_tridiagonal, lanczos


class Estimate(NamedTuple):
    """A Monte-Carlo estimate with its standard error and cost."""

    value: float
    se: float
    num_hvps: int


@functools.partial(jax.jit, static_argnames=("op", "num_samples", "chunk"))
def _hutchinson(op, num_samples, chunk, params, args, key):
    """Per-probe zᵀHz for ``num_samples`` Rademacher z, ``chunk`` HVPs at a time."""
    matvec, flat = op.build(params, args)
    num_chunks = -(-num_samples // chunk)
    keys = jax.random.split(key, num_samples)   # the same probes whatever the chunking
    keys = jnp.concatenate([keys, jnp.repeat(keys[-1:], num_chunks * chunk - num_samples, 0)])
    keys = keys.reshape(num_chunks, chunk)

    wdt = work_dtype(flat.dtype)

    def one(k):
        z = jax.random.rademacher(k, flat.shape, flat.dtype)
        return z.astype(wdt) @ matvec(z).astype(wdt)   # the P-term sum in float64 (x64 on)

    values = jax.lax.map(jax.vmap(one), keys).reshape(-1)
    return values[:num_samples]


def trace_chunk(num_params: int, dtype, memory_budget_bytes: int | None) -> int:
    """Probes per chunk of :func:`trace`: each holds its probe and its HVP (2 P-vectors)."""
    budget = DEFAULT_TRACE_BUDGET if memory_budget_bytes is None else memory_budget_bytes
    per = 2 * num_params * np.dtype(dtype).itemsize
    if per > budget:
        raise ValueError(f"memory_budget_bytes={budget:,} is too small for one trace probe "
                         f"(2 vectors of P={num_params:,}: {per:,} bytes); raise it to at "
                         f"least {per:,}.")
    return int(budget // per)


#: Default memory budget of the trace probes in flight (bytes).
DEFAULT_TRACE_BUDGET = 2**30


def trace(loss_fn, params, *args, key=None, num_samples: int = 100, chunk: int = 1,
          memory_budget_bytes: int | None = None) -> Estimate:
    """Hutchinson estimate of tr ∇²L̂ with its unbiased (ddof = 1) standard error.

    ``num_samples`` HVPs, evaluated ``chunk`` at a time (batched by ``vmap``; 1, the default,
    is the fastest measured, see the module docstring), fewer if ``chunk`` probes and their
    HVPs do not fit ``memory_budget_bytes`` (default 1 GiB); the chunks are balanced, so that
    no HVP is wasted beyond rounding up to a whole number of equal chunks. The probes are the
    same whatever the chunking. ``key=None`` means ``jax.random.key(0)``, a fixed and
    reproducible draw: pass a key to vary it.
    """
    num_samples = _validate.positive_int("num_samples", num_samples, minimum=2)
    chunk = _validate.positive_int("chunk", chunk)
    if key is not None:
        _validate.prng_key("key", key)
    _exact.check_budget(memory_budget_bytes)
    op = as_operator(loss_fn)
    check_probe(op, params, args)
    P, dtype = operator_size(op, params)
    most = min(trace_chunk(P, dtype, memory_budget_bytes), num_samples, chunk)
    num_chunks = -(-num_samples // most)
    chunk = -(-num_samples // num_chunks)        # equal chunks, < num_chunks padded probes
    key = jax.random.key(0) if key is None else key
    values = np.asarray(_hutchinson(op, num_samples, chunk, params, args, key))
    return Estimate(float(values.mean()), float(values.std(ddof=1) / math.sqrt(num_samples)),
                    num_chunks * chunk)


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


@functools.partial(jax.jit, static_argnames=("op", "num_probes", "krylov", "reortho"))
def _slq(op, num_probes, krylov, params, args, key, reortho=Reortho.NONE):
    matvec_h, flat = op.build(params, args)
    wdt = work_dtype(flat.dtype)
    matvec = in_work_dtype(matvec_h, flat.dtype, wdt)
    k_probe, k_break = jax.random.split(key)
    probes = jax.random.rademacher(k_probe, (num_probes, flat.shape[0]), wdt)
    keys = jax.random.split(k_break, num_probes)

    def one(zk):
        z, k = zk
        kr = lanczos(matvec, z, krylov, key=k, reortho=reortho,
                     store_basis=reortho is not Reortho.NONE)
        # a run without a basis stops at a breakdown; the padding (zero) rows of T decouple
        # and carry zero weight
        i = jnp.arange(krylov)
        theta, S = eigh_tridiagonal(jnp.where(i < kr.steps, kr.alpha, 0.0),
                                    jnp.where(i[1:] < kr.steps, kr.beta[1:krylov], 0.0))
        return theta, S[0] ** 2

    return jax.lax.map(one, (probes, keys))


def spectral_density(loss_fn, params, *args, key=None, num_probes: int = 8,
                     krylov: int = 60, reortho="none") -> Density:
    """SLQ estimate of the Hessian's spectral density (``num_probes``·``krylov`` HVPs, one
    probe's Lanczos run at a time; memory O(P) for ``reortho="none"``, the default (see the
    module docstring for why it is accurate), ``krylov``·P numbers for ``"selective"``,
    ``"partial"`` or ``"full"``). ``key=None`` means ``jax.random.key(0)``."""
    num_probes = _validate.positive_int("num_probes", num_probes, minimum=2)
    krylov = _validate.positive_int("krylov", krylov)
    reortho = as_reortho(reortho)
    if key is not None:
        _validate.prng_key("key", key)
    op = as_operator(loss_fn)
    check_probe(op, params, args)
    flat = operator_flat(op, params)
    krylov = min(krylov, flat.size)
    key = jax.random.key(0) if key is None else key
    nodes, weights = _slq(op, num_probes, krylov, params, args, key, reortho=reortho)
    return Density(np.asarray(nodes), np.asarray(weights), int(flat.size))
