import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mhatheory import data
from mhatheory.testing import tol


def test_cluster_frequencies_within_monte_carlo_error():
    cfg = data.MixtureConfig(d=8, T=6, n=20_000, zeta=0.3, num_irrelevant=3)
    y, clusters = data.sample_latents(cfg, jax.random.key(0))
    y, clusters = np.asarray(y), np.asarray(clusters)
    m = clusters.size

    def within(count, total, p):  # binomial count within 4 standard errors
        return abs(count / total - p) <= 4 * math.sqrt(p * (1 - p) / total)

    relevant = clusters < 2
    assert within(relevant.sum(), m, cfg.zeta)
    for k in range(cfg.num_irrelevant):
        assert within((clusters == 2 + k).sum(), m, (1 - cfg.zeta) / cfg.num_irrelevant)
    assert within((y == 1).sum(), y.size, 0.5)
    # a relevant token always carries its own label's mean
    own = np.where(y > 0, 0, 1)[:, None]
    assert np.all(clusters[relevant] == np.broadcast_to(own, clusters.shape)[relevant])


def test_tokens_are_means_plus_noise():
    cfg = data.MixtureConfig(d=8, T=4, n=5000, sigma=0.2, scale=2.0)
    key = jax.random.key(1)
    batch = data.sample(cfg, key)
    _, clusters = data.sample_latents(cfg, jax.random.split(key)[0])
    resid = np.asarray(batch.X - data.cluster_means(cfg)[clusters])
    assert abs(resid.std() - cfg.sigma) < 4 * cfg.sigma / math.sqrt(2 * resid.size)
    assert abs(resid.mean()) < 4 * cfg.sigma / math.sqrt(resid.size)


def test_sampler_is_jittable_and_keyed():
    cfg = data.MixtureConfig()
    f = jax.jit(data.sample, static_argnums=(0, 2))
    a, b = f(cfg, jax.random.key(3), 64), data.sample(cfg, jax.random.key(3), 64)
    # jit may fuse into an FMA: one rounding of O(1) tokens, below the "reordered" row
    np.testing.assert_allclose(a.X, b.X, rtol=0, atol=tol(np.float64, "reordered"))
    assert not np.array_equal(a.X, data.sample(cfg, jax.random.key(4), 64).X)


@pytest.mark.parametrize("impl", ["threefry2x32", "rbg"])
def test_a_draw_of_n_samples_is_the_same_whatever_size_the_program_draws(impl):
    """Under partitionable threefry (JAX's default) ``sample`` draws a power of two and keeps
    the first n: the numbers of a program drawing exactly n, one program for n = 17, 20, 31.
    Another key implementation, whose draws need not be prefixes, draws exactly n."""
    cfg = data.MixtureConfig(d=6, T=3, n=8, num_irrelevant=2)
    key = jax.random.key(5, impl=impl)
    before = data._sample._cache_size()
    drawn = {n: data.sample(cfg, key, n) for n in (17, 20, 31)}
    programs = data._sample._cache_size() - before
    assert programs == (1 if impl == "threefry2x32" else 3)
    for n, got in drawn.items():
        exact = data._sample(cfg, key, n)
        assert got.X.shape == (n, cfg.T, cfg.d)
        np.testing.assert_array_equal(got.X, exact.X)
        np.testing.assert_array_equal(got.y, exact.y)


def test_bayes_error_floor_when_noise_is_small():
    # With σ → 0 the only ambiguity is a sample with no relevant token: a coin flip. So the
    # Bayes error is (1 − ζ)^T / 2, which the Monte-Carlo estimate must match within 4 SE.
    cfg = data.MixtureConfig(d=6, T=3, zeta=0.4, sigma=0.02, num_irrelevant=2)
    err, se = data.bayes_error(cfg, jax.random.key(0), num=200_000)
    expected = 0.5 * (1 - cfg.zeta) ** cfg.T
    assert abs(err - expected) < 4 * se


def test_bayes_rule_beats_a_simple_rule():
    cfg = data.MixtureConfig(d=6, T=4, zeta=0.3, sigma=0.6, num_irrelevant=2)
    b = data.sample(cfg, jax.random.key(2), 50_000)
    bayes = float(jnp.mean(data.bayes_predict(cfg, b.X) != b.y))
    vote = jnp.sign(jnp.sum(b.X[..., 0] - b.X[..., 1], axis=-1))
    simple = float(jnp.mean(vote != b.y))
    assert bayes <= simple


@pytest.mark.parametrize("kwargs, match", [
    ({"d": 3, "num_irrelevant": 4}, "too small"),
    ({"T": 1}, "T must be"),
    ({"zeta": 1.5}, "zeta"),
    ({"sigma": 0.0}, "sigma"),
    ({"n": 0}, "n must be"),
])
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.MixtureConfig(**kwargs)


def test_check_batch_rejects_bad_labels_nan_and_shapes():
    b = data.sample(data.MixtureConfig(d=6, num_irrelevant=2, n=8), jax.random.key(0))
    with pytest.raises(ValueError, match=r"\{-1, \+1\}"):
        data.check_batch(b._replace(y=(b.y + 1) / 2))
    with pytest.raises(ValueError, match="NaN"):
        data.check_batch(b._replace(X=b.X.at[0, 0, 0].set(jnp.nan)))
    with pytest.raises(ValueError, match="batch.y must have shape"):
        data.check_batch(b._replace(y=b.y[:3]))
    with pytest.raises(ValueError, match="d=7"):
        data.check_batch(b, d=7)
