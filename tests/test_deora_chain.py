import math

import jax
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from mhatheory import data, deora, spectral
from mhatheory.testing import assert_allclose, tol
from mhatheory.verdicts import Verdict

TOL64 = tol(np.float64)  # the "identity" row: these tests are float64


@jax.jit
def _head_hessian(theta, X):
    """The full (d² + d)-dimensional Hessian of one head's output φ_h at θ_h = (W_h, U_h)."""
    d = X.shape[-1]

    def phi_h(theta):
        W, U = theta[: d * d].reshape(d, d), theta[d * d:]
        return U @ (X.T @ jax.nn.softmax(X @ W @ X[0]))

    return jax.hessian(phi_h)(theta)


def _full_block_norm(params, X, h):
    """‖∇²φ_h‖₂ from the full Hessian of one head (the reference)."""
    theta = np.concatenate([np.asarray(params["W"])[h].ravel(), np.asarray(params["U"])[h]])
    return float(np.max(np.abs(np.linalg.eigvalsh(np.asarray(_head_hessian(theta, X))))))


#: the unit-scale mixture: one compiled sampler serves every draw of every test below
UNIT = data.MixtureConfig(d=5, T=4, n=12, num_irrelevant=2, scale=1.0, sigma=0.3)


def _problem(H=3, seed=0, init_scale=2.0, token_scale=1.0):
    """The mixture with cluster-mean norm s and noise 0.3·s is s × the unit mixture, so the
    tokens are drawn at unit scale and multiplied by ``token_scale`` (a config per Hypothesis
    draw would compile a sampler per draw)."""
    batch = data.sample(UNIT, jax.random.key(seed))
    batch = batch._replace(X=token_scale * batch.X)
    params = deora.init_params(jax.random.key(seed + 1), UNIT.d, H, init_scale=init_scale)
    return params, batch


def test_reduced_block_norms_equal_the_full_block_hessians():
    params, batch = _problem()
    norms = np.asarray(deora.block_norms(params, batch.X))
    for i, h in [(0, 0), (3, 1), (11, 2)]:
        assert abs(norms[i, h] - _full_block_norm(params, batch.X[i], h)) <= TOL64 * norms[i, h]


def test_hessian_of_phi_is_block_diagonal_with_1_over_sqrt_H():
    params, batch = _problem(H=2)
    X = batch.X[0]
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    Hphi = np.asarray(jax.jit(jax.hessian(lambda v, X: deora.phi(unravel(v), X)))(flat, X))
    # ravel order: U [H, d] then W [H, d, d] (dict keys sorted); cross-head entries vanish
    d = X.shape[-1]
    idx_U = np.arange(2 * d).reshape(2, d)
    idx_W = 2 * d + np.arange(2 * d * d).reshape(2, d * d)
    head0 = np.concatenate([idx_U[0], idx_W[0]])
    head1 = np.concatenate([idx_U[1], idx_W[1]])
    assert np.max(np.abs(Hphi[np.ix_(head0, head1)])) == 0.0
    block0 = Hphi[np.ix_(head0, head0)]
    ref = _full_block_norm(params, X, 0) / math.sqrt(2)
    assert abs(np.max(np.abs(np.linalg.eigvalsh(block0))) - ref) <= TOL64 * ref


@given(init_scale=st.floats(0.05, 30.0), token_scale=st.floats(1e-2, 30.0),
       seed=st.integers(0, 10_000))
def test_kappa_analytic_bounds_every_block(init_scale, token_scale, seed):
    params, batch = _problem(init_scale=init_scale, token_scale=token_scale, seed=seed)
    norms = np.asarray(deora.block_norms(params, batch.X))
    kana = np.asarray(deora.kappa_analytic_blocks(params, batch.X))
    assert np.all(kana >= norms * (1 - TOL64))


@given(init_scale=st.floats(0.05, 30.0), token_scale=st.floats(1e-2, 10.0),
       label_flip=st.booleans(), seed=st.integers(0, 10_000))
def test_chain_has_no_counterexample(init_scale, token_scale, label_flip, seed):
    """Random θ far from initialisation, extreme token norms, and (by flipping labels) huge
    negative or positive margins: every link is a theorem and must hold."""
    params, batch = _problem(init_scale=init_scale, token_scale=token_scale, seed=seed)
    if label_flip:
        batch = batch._replace(y=-batch.y)
    ch, _, _ = deora.chain(params, batch, method="exact")
    # a theorem is never certified violated; a link may be INCONCLUSIVE only where it is tight
    # to within its two sides' certified widths (e.g. L2 when one sample and head dominate)
    for link in ch.links:
        assert link.verdict != Verdict.VIOLATED, link
        if link.verdict == Verdict.INCONCLUSIVE:
            assert abs(link.lhs - link.rhs) <= link.lhs_interval.width + link.rhs_interval.width
    assert ch.kappa_ana >= ch.kappa_blk
    assert ch.lambda_min_interval[1] >= ch.bound - (ch.links[1].rhs_interval.width
                                                    + ch.links[2].rhs_interval.width)


def test_chain_values_match_dense_computations():
    params, batch = _problem(H=4, init_scale=3.0)
    ch, _, _ = deora.chain(params, batch, method="exact")
    H = np.asarray(spectral.dense_hessian(deora.loss_fn, params, batch))
    N = np.asarray(spectral.dense(spectral.Curvature(deora.phi), params, batch.X, batch.y))
    assert_allclose(ch.lambda_min, np.linalg.eigvalsh(H)[0])
    assert_allclose(ch.lambda_min_N, np.linalg.eigvalsh(N)[0])
    assert ch.lambda_min < 0  # negative curvature is present: the check is not vacuous
    assert_allclose(ch.kappa_hat, -ch.lambda_min * 2 / ch.loss, atol=0, rtol=TOL64)
    lan, _, _ = deora.chain(params, batch, method="lanczos")
    assert abs(lan.lambda_min - ch.lambda_min) <= tol(np.float64, "eig") * abs(ch.lambda_min)


def test_a_missed_eigenvalue_is_caught_by_L1_and_reprobed(monkeypatch):
    """Simulate Lanczos converging to the *second* eigenvalue of N (a genuine eigenpair with a
    tiny residual, so no residual can reveal it): L1 is then certifiably violated, which can
    only mean a missed eigenvalue, and the chain must re-probe and recover the true λmin(N)."""
    params, batch = _problem(H=4, init_scale=3.0)
    N = np.asarray(spectral.dense(spectral.Curvature(deora.phi), params, batch.X, batch.y))
    ev = np.linalg.eigvalsh(N)
    real = spectral.Lanczos.__call__

    def second_eigenvalue_for_N(self, op, **kw):
        out = real(self, op, **kw)
        if isinstance(op.operator, spectral.Curvature) and self.k == 1:
            e = float(ev[1])
            out[0] = out[0]._replace(value=e, interval=(e, e), prob_interval=(e, e))
        return out

    monkeypatch.setattr(spectral.Lanczos, "__call__", second_eigenvalue_for_N)
    ch, _, _ = deora.chain(params, batch)
    assert ch.reprobed == 1 and ch.holds
    assert abs(ch.lambda_min_N - ev[0]) <= tol(np.float64, "eig") * abs(ev[0])
