"""The tokenized-mixture data model of Deora et al.

Cluster means are orthogonal: ``scale·e_0`` (μ₊), ``scale·e_1`` (μ₋) and ``scale·e_{2+k}`` for the
K label-irrelevant clusters, so ``d ≥ K + 2``. A sample draws y uniform in {±1}; each of its T
tokens is, independently, *relevant* with probability ζ (x_t = μ_y + σ g) and otherwise belongs to
a uniformly chosen irrelevant cluster k (x_t = μ_k + σ g), g ~ N(0, I_d).

**Bayes-optimal rule.** Tokens are conditionally independent given y, so the log-likelihood ratio
is Σ_t log p(x_t | +1) − log p(x_t | −1) with the per-token mixture density

    p(x | y) ∝ ζ·exp(−‖x − μ_y‖²/2σ²) + (1 − ζ)/K · Σ_k exp(−‖x − μ_k‖²/2σ²)

(the shared Gaussian normaliser cancels). Predicting sign(LLR) minimises the 0-1 risk; its error
is the floor any classifier's test error can reach. It is > 0 because with probability (1 − ζ)^T
no token is relevant and the label is a coin flip, and because clusters overlap under noise.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mhatheory import _validate


class Batch(NamedTuple):
    """Tokens ``X [n, T, d]``, labels ``y [n]`` in {±1}, optional per-sample weights ``w [n]``."""

    X: jax.Array
    y: jax.Array
    w: jax.Array | None = None


def check_batch(batch: Batch, d: int | None = None) -> Batch:
    """Validate shapes, labels and finiteness of a batch; returns it."""
    if not isinstance(batch, Batch):
        raise TypeError(f"batch must be a mhatheory.data.Batch(X, y), got "
                        f"{type(batch).__name__}; wrap arrays as Batch(X=X, y=y).")
    X, y = batch.X, batch.y
    if jnp.ndim(X) != 3:
        raise ValueError(f"batch.X must have shape [n, T, d], got {list(jnp.shape(X))}.")
    n, T, dx = X.shape
    if d is not None and dx != d:
        raise ValueError(f"batch.X has token dimension {dx} but the model expects d={d}.")
    if T < 2:
        raise ValueError(f"batch.X must hold T >= 2 tokens per sample, got T={T}.")
    _validate.shape("batch.y", y, (n,))
    _validate.labels_pm1("batch.y", y)
    _validate.finite("batch.X", X)
    if batch.w is not None:
        _validate.shape("batch.w", batch.w, (n,))
        _validate.finite("batch.w", batch.w)
    return batch


@dataclass(frozen=True)
class MixtureConfig:
    """Tokenized-mixture parameters.

    Attributes:
        d: token dimension (≥ num_irrelevant + 2).
        T: tokens per sample (≥ 2).
        n: training-set size.
        zeta: probability ζ that a token is label-relevant.
        num_irrelevant: K, the number of label-irrelevant clusters (≥ 1).
        sigma: noise standard deviation σ (> 0).
        scale: norm of every cluster mean.
    """

    d: int = 16
    T: int = 8
    n: int = 256
    zeta: float = 0.6
    num_irrelevant: int = 4
    sigma: float = 0.1
    scale: float = 1.0

    def __post_init__(self):
        _validate.positive_int("d", self.d)
        _validate.positive_int("T", self.T, minimum=2)
        _validate.positive_int("n", self.n)
        _validate.probability("zeta", self.zeta)
        _validate.positive_int("num_irrelevant", self.num_irrelevant)
        _validate.positive_float("sigma", self.sigma)
        _validate.positive_float("scale", self.scale)
        if self.d < self.num_irrelevant + 2:
            raise ValueError(
                f"d={self.d} is too small for {self.num_irrelevant} irrelevant + 2 relevant "
                f"orthogonal cluster means; use d >= {self.num_irrelevant + 2} or fewer clusters."
            )


def cluster_means(config: MixtureConfig):
    """``[K + 2, d]``: rows μ₊, μ₋, μ_1..μ_K (orthogonal, norm ``scale``)."""
    return config.scale * jnp.eye(config.num_irrelevant + 2, config.d)


def sample_latents(config: MixtureConfig, key, n: int | None = None):
    """Labels ``y [n]`` and each token's cluster index ``[n, T]`` (0 = μ₊, 1 = μ₋, 2+k)."""
    n = config.n if n is None else n
    ky, kr, kc = jax.random.split(key, 3)
    y = 2 * jax.random.bernoulli(ky, 0.5, (n,)).astype(jnp.int32) - 1
    relevant = jax.random.bernoulli(kr, config.zeta, (n, config.T))
    irrelevant = 2 + jax.random.randint(kc, (n, config.T), 0, config.num_irrelevant)
    own = jnp.where(y > 0, 0, 1)[:, None]
    return y, jnp.where(relevant, own, irrelevant)


#: :func:`sample` draws at least this many samples and slices (see :func:`_bucket`).
MIN_BUCKET = 16


def sample(config: MixtureConfig, key, n: int | None = None) -> Batch:
    """Draw ``n`` (default ``config.n``) samples. Pure and jit-able with ``config`` static."""
    if not isinstance(config, MixtureConfig):
        raise TypeError(f"config must be a mhatheory.data.MixtureConfig, got "
                        f"{type(config).__name__}.")
    _validate.prng_key("key", key)
    if n is not None:
        _validate.positive_int("n", n)
    n = config.n if n is None else int(n)
    size = _bucket(key, n)
    if size == n:
        return _sample(config, key, n)
    drawn = _sample(config, key, size)
    return Batch(X=drawn.X[:n], y=drawn.y[:n])


def _bucket(key, n: int) -> int:
    """How many samples to draw for ``n``: the next power of two (at least :data:`MIN_BUCKET`)
    where n draws from ``key`` are the first n of the larger draw, else n.

    Under threefry with partitionable bits (JAX's default) the random word at flat index i of a
    draw depends on i and the key alone, so every array :func:`_sample` draws for n samples
    (shapes ``[n, …]``, row-major) is the first n rows of the same draw for more: the numbers
    are the same, and a program compiled per power of two serves every n below it (a new n
    otherwise compiled threefry again, 0.35–2 s on a CPU)."""
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    impl = str(jax.random.key_impl(key)) if typed else jax.config.jax_default_prng_impl
    if impl != "threefry2x32" or not jax.config.jax_threefry_partitionable:
        return n
    return max(MIN_BUCKET, 1 << (n - 1).bit_length())


@functools.partial(jax.jit, static_argnames=("config", "n"))
def _sample(config: MixtureConfig, key, n: int) -> Batch:
    """:func:`sample` as one compiled program per (config, n)."""
    k_lat, k_noise = jax.random.split(key)
    y, clusters = sample_latents(config, k_lat, n)
    means = cluster_means(config)
    noise = jax.random.normal(k_noise, clusters.shape + (config.d,), means.dtype)
    X = means[clusters] + config.sigma * noise                    # (n, T, d)
    return Batch(X=X, y=y.astype(means.dtype))


def bayes_llr(config: MixtureConfig, X):
    """log p(X | y=+1) − log p(X | y=−1) for ``X [..., T, d]`` (see module docstring)."""
    means = cluster_means(config)
    means = jnp.expand_dims(means, tuple(range(X.ndim - 1)))        # (1.., 1, K+2, d)
    sq = jnp.sum((X[..., None, :] - means) ** 2, axis=-1)         # (..., T, K+2)
    logk = -sq / (2 * config.sigma**2)
    K = config.num_irrelevant
    log_irr = jax.nn.logsumexp(logk[..., 2:], axis=-1) + jnp.log1p(-config.zeta) - math.log(K)
    log_pos = jnp.logaddexp(jnp.log(config.zeta) + logk[..., 0], log_irr)
    log_neg = jnp.logaddexp(jnp.log(config.zeta) + logk[..., 1], log_irr)
    return jnp.sum(log_pos - log_neg, axis=-1)


def bayes_predict(config: MixtureConfig, X):
    """The Bayes-optimal label sign(LLR) ∈ {±1} (ties, LLR = 0, go to +1)."""
    return jnp.where(bayes_llr(config, X) >= 0, 1.0, -1.0)


@functools.partial(jax.jit, static_argnames=("config", "n"))
def _bayes_mistakes(config: MixtureConfig, key, n: int):
    """How many of ``n`` fresh samples the Bayes rule gets wrong: one program per (config, n),
    shared by every :func:`bayes_error` call."""
    b = _sample(config, key, n)
    return jnp.sum(bayes_predict(config, b.X) != b.y)


def bayes_error(config: MixtureConfig, key, num: int = 100_000, chunk: int = 20_000):
    """Monte-Carlo estimate of the Bayes error with its standard error, ``(error, se)``."""
    num = _validate.positive_int("num", num)
    chunk = _validate.positive_int("chunk", chunk)
    _validate.prng_key("key", key)
    keys = jax.random.split(key, -(-num // chunk))
    wrong = sum(int(_bayes_mistakes(config, k, chunk)) for k in keys)
    total = chunk * len(keys)
    p = wrong / total
    return p, math.sqrt(max(p * (1 - p), 1.0 / total) / total)
