"""The probes (HVP, λmin/λmax, Hutchinson trace, bootstrap) on one tiny Deora problem (P = 24),
in float32 and float64, for two seeds, against dense float64 references of the same rounded
weights and data. Tolerances come from :data:`mhatheory.testing.TOLERANCES` by dtype and kind;
the Monte-Carlo checks state their standard errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mhatheory import data, spectral
from mhatheory.models import deora
from mhatheory.testing import tol

D, T, H, N = 3, 3, 2, 8           # P = H·(d² + d) = 24: every probe compiles in well under 1 s
DTYPES = [jnp.float64, jnp.float32]
SEEDS = [0, 1]


def _cast(tree, dtype):
    return jax.tree.map(lambda a: a.astype(dtype), tree)


@pytest.fixture(scope="module", params=[(dt, s) for dt in DTYPES for s in SEEDS],
                ids=lambda p: f"{np.dtype(p[0]).name}-seed{p[1]}")
def problem(request):
    """``(dtype, params, batch, H64)``: params and batch rounded to ``dtype``, and the dense
    float64 Hessian of exactly those rounded values (so the reference has no float32 error)."""
    dtype, seed = request.param
    cfg = data.MixtureConfig(d=D, T=T, n=N, num_irrelevant=1)
    batch = data.sample(cfg, jax.random.key(seed))
    params = deora.init_params(jax.random.key(seed + 10), D, H, init_scale=2.0)
    params, batch = _cast(params, dtype), data.Batch(*_cast(tuple(batch), dtype))
    H64 = np.asarray(spectral.dense_hessian(deora.loss_fn, _cast(params, jnp.float64),
                                      data.Batch(*_cast(tuple(batch), jnp.float64))))
    return dtype, params, batch, H64


def test_hvp_equals_the_dense_hessian(problem):
    dtype, params, batch, H64 = problem
    matvec, flat = spectral.hvp(deora.loss_fn, params, batch)
    assert flat.dtype == dtype and flat.shape == (H64.shape[0],)
    norm = np.abs(np.linalg.eigvalsh(H64)).max()
    for v in jax.random.normal(jax.random.key(2), (3, flat.size), dtype):
        hv = np.asarray(matvec(v))
        assert hv.dtype == np.dtype(dtype)
        ref = H64 @ np.asarray(v, np.float64)
        assert np.abs(hv - ref).max() <= tol(dtype, "dense") * norm * np.abs(v).max()


@pytest.mark.parametrize("which", ["smallest", "largest"])
def test_lanczos_extremes_match_the_dense_eigenvalues(problem, which):
    dtype, params, batch, H64 = problem
    ev = np.linalg.eigvalsh(H64)
    norm = np.abs(ev).max()
    truth = ev[0] if which == "smallest" else ev[-1]
    probe = spectral.lambda_min if which == "smallest" else spectral.lambda_max
    r = probe(deora.loss_fn, params, batch, key=jax.random.key(3))
    assert r.converged
    assert abs(r.value - truth) <= tol(dtype, "eig") * norm, (r.value, truth)
    # the certified interval holds the reference, up to the reference's own rounding
    slack = tol(jnp.float64, "dense") * norm
    assert r.interval[0] - slack <= truth <= r.interval[1] + slack, (r.interval, truth)


def test_hutchinson_trace_and_its_standard_error(problem):
    """With Rademacher probes zᵀHz has mean tr H and variance 2·Σ_{i≠j} H_ij²: the estimate lies
    within 4 SE of tr H (a 4σ bound) and the reported SE within 40 % of the exact
    √(variance/num_samples) (the sample standard deviation of 400 draws is within ±10 % at
    1σ for these near-Gaussian sums)."""
    dtype, params, batch, H64 = problem
    num = 400
    est = spectral.trace(deora.loss_fn, params, batch, key=jax.random.key(5), num_samples=num)
    exact_se = np.sqrt(2 * (np.sum(H64**2) - np.sum(np.diag(H64) ** 2)) / num)
    assert abs(est.value - np.trace(H64)) <= 4 * exact_se
    assert abs(est.se / exact_se - 1) <= 0.4, (est.se, exact_se)
    assert est.num_hvps >= num


def test_bootstrap_standard_error_of_a_mean_is_the_standard_error(problem):
    """The bootstrap SE of a mean over n samples is the plug-in SE std(ℓ_i)/√n up to the Monte-
    Carlo error of 120 replicates (relative SD ≈ 1/√(2·120) ≈ 6.5 %; 30 % is > 4.5 SD)."""
    dtype, params, batch, _ = problem
    loss = jax.jit(deora.loss_fn)
    per_sample = np.asarray(jax.vmap(lambda x, y: deora.loss_fn(
        params, data.Batch(x[None], y[None])))(batch.X, batch.y), np.float64)
    mean, se, values = spectral.resampled(loss, params, batch, key=jax.random.key(7), num=120)
    plug_in = per_sample.std() / np.sqrt(N)
    assert values.shape == (120,) and mean == pytest.approx(values.mean())
    assert abs(se / plug_in - 1) <= 0.3, (se, plug_in)
    assert abs(mean - per_sample.mean()) <= 4 * plug_in / np.sqrt(120) + tol(dtype)
