import jax
import jax.numpy as jnp
import numpy as np

from mhatheory import data, deora, train
from mhatheory.deora._convergence import min_norm_hull
from mhatheory.testing import tol


def _problem():
    cfg = data.MixtureConfig(d=6, T=5, n=32, num_irrelevant=2)
    batch = data.sample(cfg, jax.random.key(0))
    return batch, deora.init_params(jax.random.key(1), 6, 4)


def test_min_norm_hull_finds_the_known_nearest_point():
    """conv{(1, 0), (0, 1), (2, 2)}: the nearest point to 0 is (½, ½), weights (½, ½, 0)."""
    Z = jnp.array([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    hull = min_norm_hull(Z)
    # the stopping rule: Frank–Wolfe gap ≤ 1e-10·αᵀKα = 5e-11, and f(α) − f* ≤ gap; on a convex
    # hull ‖x − x*‖² ≤ 2(f(α) − f*) ≤ 1e-10, so the point is within 1e-5
    np.testing.assert_allclose(Z.T @ hull.alpha, [0.5, 0.5], rtol=0, atol=1e-5)  # √(2·gap)
    assert hull.gap <= 1e-10 * float(hull.alpha @ Z @ Z.T @ hull.alpha)  # the stopping rule
    assert abs(float(hull.alpha.sum()) - 1) < tol(np.float64) and float(hull.alpha.min()) >= 0


def test_min_norm_hull_stops_on_its_gap_not_an_iteration_count():
    batch, params = _problem()
    Z = batch.y[:, None] * deora.ntk_features(params, batch.X)
    early, full = min_norm_hull(Z), min_norm_hull(Z, tol=0.0)     # tol=0: all 20,000 steps
    assert int(early.iterations) < int(full.iterations) == 20_000
    K = Z @ Z.T
    f = lambda a: 0.5 * float(a @ K @ a)  # noqa: E731
    # f(α) − min f ≤ the gap, so stopping early costs at most the gap it certifies
    # + the rounding of f's difference (f ≈ 0.1 here): a few ε, below the "reordered" row
    assert f(early.alpha) - f(full.alpha) <= float(early.gap) + tol(np.float64, "reordered")


def test_max_margin_certificate_brackets_gamma():
    """margin ≤ γ ≤ upper (weak duality): every unit direction's margin stays below ``upper``,
    and the certificate's own direction attains ``margin`` within the solver's gap."""
    batch, params = _problem()
    mm = deora.max_margin(params, batch.X, batch.y)
    Z = batch.y[:, None] * deora.ntk_features(params, batch.X)
    assert abs(float(np.linalg.norm(mm.u)) - 1) < tol(np.float64)
    # 32 samples, P = 168 features in general position: linearly separable
    assert mm.separable and 0 < mm.margin <= mm.upper
    # upper − margin = (Frank–Wolfe gap)/‖z‖ ≤ 1e-10·upper, plus rounding
    assert mm.upper - mm.margin <= 1e-9 * mm.upper  # 1e-10 gap, 10× for rounding
    v = jax.random.normal(jax.random.key(7), (200, Z.shape[1]))
    v = v / jnp.linalg.norm(v, axis=1, keepdims=True)
    assert float(jnp.max(jnp.min(v @ Z.T, axis=1))) <= mm.upper


def test_ntk_features_are_gradients_of_phi():
    batch, params = _problem()
    F = deora.ntk_features(params, batch.X)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    g = jax.grad(lambda v: deora.phi(unravel(v), batch.X[3]))(flat)
    # the same gradient, vmapped or not: the same operations in another vectorisation
    np.testing.assert_allclose(F[3], g, rtol=0, atol=tol(np.float64, "reordered"))


def test_descent_lemma_and_finite_time_bound_hold_along_gd():
    batch, params = _problem()
    check = deora.descent_check(params, batch, lr=1.0)
    assert check.applicable and check.holds and check.margin >= 0
    assert check.decrease >= check.required > 0
    traj = train.gd(deora.loss_fn, params, batch, steps=60, lr=1.0, record_steps=range(61))
    cb = deora.finite_time_bound(traj.params_at, traj.loss, traj.grad_norm, 1.0, batch,
                                 params)
    assert cb.descent_ok.all()
    assert np.all(cb.loss <= cb.bound)
    assert cb.K.shape == (60,) and np.all(cb.alpha > 0)
    # the bound is the minimum over the α grid: one α alone gives a bound at least as large,
    # equal at the K where that α was the best
    a = cb.alpha[-1]
    one = deora.finite_time_bound(traj.params_at, traj.loss, traj.grad_norm, 1.0, batch, params,
                                  alphas=[a])
    assert np.all(one.bound >= cb.bound)
    np.testing.assert_array_equal(one.bound[cb.alpha == a], cb.bound[cb.alpha == a])
