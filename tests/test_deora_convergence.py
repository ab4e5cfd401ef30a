import jax
import numpy as np

from mhatheory import data, deora, train


def _problem():
    cfg = data.MixtureConfig(d=6, T=5, n=32, num_irrelevant=2)
    batch = data.sample(cfg, jax.random.key(0))
    return batch, deora.init_params(jax.random.key(1), 6, 4)


def test_max_margin_certificate_brackets_gamma():
    batch, params = _problem()
    mm = deora.max_margin(params, batch.X, batch.y)
    F = deora.ntk_features(params, batch.X)
    assert abs(float(np.linalg.norm(mm.u)) - 1) < 1e-12
    assert mm.margin == float(np.min(batch.y * (F @ mm.u)))
    assert mm.margin <= mm.upper + 1e-12
    if mm.separable:  # primal and dual agree when the solver converged
        assert mm.upper - mm.margin <= 1e-6 * mm.upper


def test_ntk_features_are_gradients_of_phi():
    batch, params = _problem()
    F = deora.ntk_features(params, batch.X)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    g = jax.grad(lambda v: deora.phi(unravel(v), batch.X[3]))(flat)
    np.testing.assert_allclose(F[3], g, rtol=0, atol=1e-14)


def test_descent_lemma_and_finite_time_bound_hold_along_gd():
    batch, params = _problem()
    check = deora.descent_check(params, batch, lr=1.0)
    assert check["applicable"] and check["holds"]
    traj = train.gd(deora.loss_fn, params, batch, steps=60, lr=1.0, record_steps=range(61))
    cb = deora.finite_time_bound(traj.params_at, traj.loss, traj.grad_norm, 1.0, batch,
                                       params)
    assert cb.descent_ok.all()
    assert np.all(cb.loss <= cb.bound)
    assert cb.K.shape == (60,) and np.all(cb.alpha > 0)
