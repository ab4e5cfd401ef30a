"""The bootstrap over a batch's samples (``spectral._resample``)."""

import jax
import numpy as np

from mhatheory import data, spectral
from mhatheory.models import deora
from mhatheory.testing import tol


def test_bootstrap_standard_error_of_a_mean_is_the_standard_error(tiny_deora):
    """The bootstrap SE of a mean over n samples is the plug-in SE std(ℓ_i)/√n up to the Monte-
    Carlo error of 120 replicates (relative SD ≈ 1/√(2·120) ≈ 6.5 %; 30 % is > 4.5 SD)."""
    dtype, params, batch, _ = tiny_deora
    loss = jax.jit(deora.loss_fn)
    per_sample = np.asarray(jax.vmap(lambda x, y: deora.loss_fn(
        params, data.Batch(x[None], y[None])))(batch.X, batch.y), np.float64)
    est = spectral.resampled(loss, params, batch, key=jax.random.key(7), num=120)
    n = per_sample.size
    plug_in = per_sample.std() / np.sqrt(n)
    assert est.samples.shape == (120,)
    assert abs(est.se / plug_in - 1) <= 0.3, (est.se, plug_in)
    assert abs(est.value - per_sample.mean()) <= 4 * plug_in / np.sqrt(120) + tol(dtype)


def test_each_replicate_is_the_probe_on_its_own_resample(tiny_deora):
    """Replicate i is the probe on the batch drawn with key split(key, num)[i]'s indices; the
    replicates differ from the full batch's value (a resample that changed nothing would give
    se = 0 and a meaningless error bar)."""
    _, params, batch, _ = tiny_deora

    def probe(p, b):
        return float(deora.loss_fn(p, b))

    key = jax.random.key(0)
    est = spectral.resampled(probe, params, batch, key=key, num=5)
    n = batch.X.shape[0]
    idx = jax.random.randint(jax.random.split(key, 5)[2], (n,), 0, n)
    assert est.samples[2] == probe(params, jax.tree.map(lambda a: a[idx], batch))
    assert est.se > 0 and np.all(est.samples != probe(params, batch))
