import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree

from mhatheory import data, deora, spectral, stability, train
from mhatheory.testing import tol

ONE = [jax.devices()[0]]
REORDERED = tol(np.float64, "reordered")  # the same float64 arithmetic in another order


@pytest.fixture(scope="module")
def problem():
    cfg = data.MixtureConfig(d=6, T=5, n=24, num_irrelevant=2)
    batch = data.sample(cfg, jax.random.key(0))
    params0 = deora.init_params(jax.random.key(1), 6, 3)
    traj, base = stability.base_trajectory(deora.loss_fn, params0, batch, 40, 1.0)
    return batch, params0, traj, base


def test_leave_one_out_equals_training_on_the_reduced_set_bit_for_bit(problem):
    batch, params0, _, base = problem
    idx = stability.loo_indices(24, [5])
    r = stability.retrain(deora.loss_fn, params0, batch, idx, steps=40, lr=1.0, base_traj=base,
                          chunk=1, devices=ONE)
    reduced = data.Batch(batch.X[idx[0]], batch.y[idx[0]])
    X = np.asarray(reduced.X)
    assert reduced.y.shape == (23,) and not np.any(np.all(X == np.asarray(batch.X[5]), axis=(1, 2)))
    direct = train.gd(deora.loss_fn, params0, reduced, steps=40, lr=1.0).final_params
    for k in ("W", "U"):
        np.testing.assert_array_equal(r.params[k][0], direct[k])


def test_vmapped_and_sequential_retraining_agree(problem):
    batch, params0, _, base = problem
    idx = stability.loo_indices(24, range(8))
    kw = dict(steps=40, lr=1.0, base_traj=base, devices=ONE)
    vm = stability.retrain(deora.loss_fn, params0, batch, idx, chunk=8, **kw)
    for r in range(8):
        seq = stability.retrain(deora.loss_fn, params0, batch, idx[r:r + 1], chunk=1, **kw)
        # vmapping changes XLA's vectorisation of the matmuls: rounding-level differences
        np.testing.assert_allclose(vm.params["W"][r], seq.params["W"][0], rtol=0, atol=REORDERED)
        np.testing.assert_allclose(vm.distance[r], seq.distance[0], rtol=0, atol=REORDERED)


def test_sharded_run_on_four_devices_equals_the_single_device_run(problem):
    assert len(jax.devices()) == 4, "conftest sets --xla_force_host_platform_device_count=4"
    batch, params0, _, base = problem
    idx = stability.replace_indices(24, range(6))  # 6 rows: padded to 8 for 4 devices
    fresh = data.sample(data.MixtureConfig(d=6, T=5, n=6, num_irrelevant=2), jax.random.key(7))
    pool = data.Batch(jnp.concatenate([batch.X, fresh.X]), jnp.concatenate([batch.y, fresh.y]))
    kw = dict(steps=40, lr=1.0, base_traj=base, chunk=8)
    single = stability.retrain(deora.loss_fn, params0, pool, idx, devices=ONE, **kw)
    sharded = stability.retrain(deora.loss_fn, params0, pool, idx, **kw)
    assert sharded.params["W"].shape[0] == 6
    np.testing.assert_allclose(sharded.params["W"], single.params["W"], rtol=0, atol=REORDERED)
    np.testing.assert_allclose(sharded.distance, single.distance, rtol=0, atol=REORDERED)


def test_distance_starts_at_the_first_step_and_stability_is_positive(problem):
    batch, params0, traj, base = problem
    r = stability.retrain(deora.loss_fn, params0, batch, stability.loo_indices(24, range(4)),
                          steps=40, lr=1.0, base_traj=base, devices=ONE)
    assert r.distance.shape == (4, 40) and np.all(r.distance > 0)
    eps1, eps2 = stability.model_stability(traj.final_params, r.params)
    np.testing.assert_allclose(eps1, r.distance[:, -1].mean(), rtol=tol(np.float64))
    assert eps2 >= eps1**2 > 0  # Jensen


def test_per_sample_constants_bound_the_true_per_sample_quantities(problem):
    batch, _, traj, _ = problem
    params = traj.final_params
    g, beta = deora.per_sample_constants(params, batch.X, batch.y)
    for i in (0, 7, 23):
        one = data.Batch(batch.X[i:i + 1], batch.y[i:i + 1])
        grad = ravel_pytree(jax.grad(deora.loss_fn)(params, one))[0]
        assert abs(float(jnp.linalg.norm(grad)) - float(g[i])) < tol(np.float64)
        H = np.asarray(spectral.dense_hessian(deora.loss_fn, params, one))
        assert np.max(np.abs(np.linalg.eigvalsh(H))) <= float(beta[i]) * (1 + tol(np.float64))


@given(beta=st.floats(1e-3, 10), loss=st.floats(1e-4, 1), eps2=st.floats(1e-6, 1),
       gamma=st.floats(1e-3, 1e3))
def test_smooth_bound_is_minimised_at_the_reported_gamma(beta, loss, eps2, gamma):
    best, g = stability.smooth_bound(beta, loss, eps2)
    at = (beta / g) * loss + (beta + g) / 2 * eps2
    assert best == pytest.approx(at, rel=tol(np.float64))
    assert best <= (beta / gamma) * loss + (beta + gamma) / 2 * eps2 + tol(np.float64) * best


def test_influence_equals_the_dense_damped_newton_step(problem):
    """δ_i = (∇²L̂ + λI)⁻¹ ∇ℓ_i / (n − 1) by CG on HVPs against a dense solve. With damping 0.05
    the system's condition number is ≤ (λmax + λ)/0.05 ~ 1e2, so CG's 1e-10 relative residual
    leaves ≤ 1e-8 relative error; 1e-7 allows the dense Hessian's own rounding."""
    batch, _, traj, _ = problem
    params = traj.final_params
    est, lam = stability.influence(deora.loss_fn, params, batch, [0, 5], damping=0.05)
    lo = spectral.lambda_min(deora.loss_fn, params, batch).value
    assert lam == pytest.approx(max(0.0, -lo) + 0.05, rel=tol(np.float64))
    H = np.asarray(spectral.dense_hessian(deora.loss_fn, params, batch))
    for row, i in zip(est, (0, 5), strict=True):
        one = data.Batch(batch.X[i:i + 1], batch.y[i:i + 1])
        g = np.asarray(ravel_pytree(jax.grad(deora.loss_fn)(params, one))[0])
        dense = np.linalg.solve(H + lam * np.eye(H.shape[0]), g) / (batch.y.shape[0] - 1)
        # the docstring's CG bound (1e-8) with room for the dense Hessian's rounding
        np.testing.assert_allclose(row, dense, rtol=1e-7, atol=1e-7 * np.abs(dense).max())


@pytest.mark.parametrize("which", [[10], [100], [-1], [2.7], [], ["0"]])
def test_influence_refuses_indices_that_name_no_sample(problem, which):
    """n = 10: a compiled gather clamps 10 and 100 to sample 9 and an int cast truncates 2.7,
    silently; each must be refused before the λmin probe."""
    batch, _, traj, _ = problem
    sub = data.Batch(batch.X[:10], batch.y[:10])
    with pytest.raises(ValueError, match="which"):
        stability.influence(deora.loss_fn, traj.final_params, sub, which)


def _regression_loss(p, data):
    return jnp.mean((jnp.tanh(data["x"] @ p["a"]) @ p["b"] - data["y"]) ** 2)


def test_retrain_takes_any_loss_and_any_data_pytree():
    """Leave-one-out on a dict of arrays with a regression loss equals GD on the reduced data."""
    x = jax.random.normal(jax.random.key(0), (12, 3))
    pool = {"x": x, "y": jnp.sin(x[:, 0])}
    params0 = {"a": 0.5 * jax.random.normal(jax.random.key(1), (3, 4)),
               "b": 0.5 * jax.random.normal(jax.random.key(2), (4,))}
    _, base = stability.base_trajectory(_regression_loss, params0, pool, 30, 0.3)
    idx = stability.loo_indices(12, [4])
    r = stability.retrain(_regression_loss, params0, pool, idx, steps=30, lr=0.3,
                          base_traj=base, chunk=1, devices=ONE)
    reduced = stability.gather(pool, idx[0])
    direct = train.gd(_regression_loss, params0, reduced, steps=30, lr=0.3).final_params
    for k in ("a", "b"):
        # the same arithmetic up to XLA's fusion of the gathered data: rounding-level agreement
        np.testing.assert_allclose(r.params[k][0], direct[k], rtol=0, atol=REORDERED)
    with pytest.raises(ValueError, match="same leading sample axis"):
        stability.retrain(_regression_loss, params0, {"x": x, "y": pool["y"][:5]}, idx,
                          steps=30, lr=0.3, base_traj=base)
    with pytest.raises(ValueError, match="must index the pool's 12 samples"):
        stability.retrain(_regression_loss, params0, pool, idx + 5, steps=30, lr=0.3,
                          base_traj=base)


def test_a_retraining_that_diverges_is_named_and_a_loss_of_x_y_is_told_how_to_take_data():
    """A fresh sample that makes the loss NaN (√ of a negative input) diverges the replace-one
    retraining that trains on it: DivergenceError names its row and samples, as train.gd names
    its step; a loss of (params, x, y) is told that retrain passes one data pytree."""
    def loss(p, data):
        x, y = data
        return jnp.mean((jnp.sqrt(x[:, 0] + 1.0) * p["w"] - y) ** 2)

    x = jnp.array([[0.5], [1.0], [2.0], [3.0], [1.5], [-5.0]])  # the second fresh one: √(−4)
    y = jnp.array([1.0, 2.0, 3.0, 4.0, 2.5, 5.0])
    p0 = {"w": jnp.array(0.1)}
    _, base = stability.base_trajectory(loss, p0, (x[:4], y[:4]), 5, 0.1)
    with pytest.raises(train.DivergenceError, match=r"1 of 2 retrainings diverged .* row 1 of "
                                                    r"idx \(trains on pool samples \[0, 5, 2, 3\]"):
        stability.retrain(loss, p0, (x, y), stability.replace_indices(4, [0, 1]), steps=5,
                          lr=0.1, base_traj=base, devices=ONE)
    with pytest.raises(ValueError, match=r"retrain calls loss_fn\(params, data\)"):
        stability.retrain(lambda p, x, y: loss(p, (x, y)), p0, (x, y),
                          stability.loo_indices(4, [0]), steps=5, lr=0.1, base_traj=base)
