"""G + N = ∇²L̂ for any model and loss, against dense references (jax.jacrev + jax.hessian)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

from mhatheory import spectral
from mhatheory.models import DecoderTransformer
from mhatheory.spectral._split import LOSSES
from mhatheory.testing import tol

C = 3
EPS = np.finfo(np.float64).eps


def _mlp():
    """A user's flax.nnx MLP: inputs [n, 4] → logits [n, C] (or one output for mse)."""
    class MLP(nnx.Module):
        def __init__(self, out, rngs):
            self.l1 = nnx.Linear(4, 8, rngs=rngs, param_dtype=jnp.float64)
            self.l2 = nnx.Linear(8, out, rngs=rngs, param_dtype=jnp.float64)

        def __call__(self, x):
            return self.l2(jnp.tanh(self.l1(x)))

    return MLP


def _nnx_f(module):
    graphdef, params = nnx.split(module, nnx.Param)
    return (lambda p, x: nnx.merge(graphdef, p)(x)), params


def _transformer():
    model = DecoderTransformer(5, 4, 2, 1, positional="learned", rngs=nnx.Rngs(0),
                               param_dtype=jnp.float64)
    return _nnx_f(model)


def _reference(f, ell, params, x, t, w, event):
    """G, N and ∇²L̂ densely: J by jacrev, ∇²_z ℓ and ∇²f by jax.hessian (jitted)."""
    flat, unravel = ravel_pytree(params)

    @jax.jit
    def ref(flat, x, t, w):
        out = f(unravel(flat), x)
        lead = out.shape[:out.ndim - event] if event else out.shape
        m = int(np.prod(lead))
        zs = out.reshape((m,) + out.shape[out.ndim - event:])
        ts = jnp.reshape(t, (m,) + jnp.shape(t)[len(lead):])
        wn = jnp.reshape(w, (-1,)) / jnp.sum(w)
        J = jax.jacrev(lambda v: f(unravel(v), x).reshape(m, -1))(flat)         # [m, c, P]
        Hz = jax.vmap(jax.hessian(ell))(zs, ts).reshape(m, J.shape[1], -1)
        G = jnp.einsum("i,icp,icd,idq->pq", wn, J, Hz, J)
        dz = jax.vmap(jax.grad(ell))(zs, ts).reshape(m, -1)
        N = jax.hessian(lambda v: jnp.sum(wn[:, None] * dz * f(unravel(v), x).reshape(m, -1)))(
            flat)
        H = jax.hessian(lambda v: jnp.sum(wn * jax.vmap(ell)(
            f(unravel(v), x).reshape(zs.shape), ts)))(flat)
        return G, N, H

    lead = jax.eval_shape(f, params, x).shape
    lead = lead[:len(lead) - event] if event else lead
    w = jnp.ones(lead) if w is None else w
    return tuple(np.asarray(a) for a in ref(flat, x, t, w))


CASES = {
    "mlp-cross_entropy": lambda: (*_nnx_f(_mlp()(C, nnx.Rngs(0))),
                                  jax.random.normal(jax.random.key(1), (10, 4)),
                                  jax.random.randint(jax.random.key(2), (10,), 0, C),
                                  "cross_entropy", 1),
    "mlp-mse": lambda: (*_nnx_f(_mlp()(2, nnx.Rngs(0))),
                        jax.random.normal(jax.random.key(1), (10, 4)),
                        jax.random.normal(jax.random.key(2), (10, 2)), "mse", 0),
    "transformer-cross_entropy": lambda: (*_transformer(),
                                          jax.random.randint(jax.random.key(1), (2, 3), 0, 5),
                                          jax.random.randint(jax.random.key(2), (2, 3), 0, 5),
                                          "cross_entropy", 1),
}


@pytest.mark.parametrize("case, weighted", [
    ("mlp-cross_entropy", False), ("mlp-cross_entropy", True), ("mlp-mse", True),
    ("transformer-cross_entropy", True)])
def test_split_equals_dense_references(case, weighted):
    f, params, x, t, loss, event = CASES[case]()
    ell = LOSSES[loss][0]
    out = jax.eval_shape(f, params, x)
    lead = out.shape[:out.ndim - event]
    w = (jax.random.uniform(jax.random.key(3), lead) > 0.3).astype(jnp.float64) if weighted \
        else None
    args = (x, t) if w is None else (x, t, w)
    G = np.asarray(spectral.dense(spectral.GaussNewton(f, loss=loss), params, *args))
    N = np.asarray(spectral.dense(spectral.Curvature(f, loss=loss), params, *args))
    G_ref, N_ref, H_ref = _reference(f, ell, params, x, t, w, event)
    scale = np.abs(H_ref).max()
    # two AD routes to one float64 matrix ("dense" row); G ⪰ 0 up to eigh's rounding
    DENSE = tol(np.float64, "dense")
    assert np.abs(G - G_ref).max() <= DENSE * scale
    assert np.abs(N - N_ref).max() <= DENSE * scale
    assert np.abs(G + N - H_ref).max() <= DENSE * scale
    assert np.linalg.eigvalsh(G)[0] >= -tol(np.float64) * scale                # G ⪰ 0
    if case.startswith("mlp"):
        # the split's own L̂ has that Hessian; Weyl λmin(∇²L̂) ≥ λmin(N), through the probes
        value = spectral.GaussNewton(f, loss=loss).value
        assert np.abs(np.asarray(spectral.dense_hessian(value, params, *args)) - H_ref).max() <= \
            DENSE * scale
        lo = spectral.lambda_min(value, params, *args)
        loN = spectral.lambda_min(spectral.Curvature(f, loss=loss), params, *args)
        assert lo.interval[1] >= loN.interval[0]


def test_a_callable_loss_with_vector_outputs():
    f, params = _nnx_f(_mlp()(2, nnx.Rngs(0)))
    x = jax.random.normal(jax.random.key(1), (6, 4))
    t = jax.random.normal(jax.random.key(2), (6, 2))

    def huberish(z, t):
        return jnp.sum(jnp.sqrt(1.0 + (z - t) ** 2))

    G = spectral.dense(spectral.GaussNewton(f, loss=huberish, output_ndim=1), params, x, t)
    N = spectral.dense(spectral.Curvature(f, loss=huberish, output_ndim=1), params, x, t)
    _, _, H_ref = _reference(f, huberish, params, x, t, None, 1)
    assert np.abs(np.asarray(G + N) - H_ref).max() <= tol(np.float64, "dense") * np.abs(
        H_ref).max()


def test_bad_inputs_are_named_before_compilation():
    f, params = _nnx_f(_mlp()(C, nnx.Rngs(0)))
    x = jnp.ones((4, 4))
    with pytest.raises(ValueError, match="loss must be one of"):
        spectral.lambda_min(spectral.GaussNewton(f, loss="hinge"), params, x, jnp.zeros(4, int))
    with pytest.raises(ValueError, match=r"must lie in \[0, C=3\)"):
        spectral.lambda_min(spectral.GaussNewton(f, loss="cross_entropy"), params, x,
                            jnp.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="±1 labels belong to loss='logistic'"):
        spectral.lambda_min(spectral.Curvature(f, loss="cross_entropy"), params, x,
                            jnp.array([1.0, -1.0, 1.0, -1.0]))
    with pytest.raises(ValueError, match=r"need integer targets of shape \[4\]"):
        spectral.lambda_min(spectral.Curvature(f, loss="cross_entropy"), params, x,
                            jnp.zeros((4, 2), int))
    with pytest.raises(ValueError, match=r"weights must have the examples' shape \[4\]"):
        spectral.lambda_min(spectral.Curvature(f, loss="cross_entropy"), params, x,
                            jnp.zeros(4, int), jnp.ones(3))


def _stable_stats(z, t):
    """p, ∂ℓ/∂z and ∇²_z ℓ of cross-entropy at logits z (NumPy, one example), with 1 − p_k of
    the top class k formed as Σ_{c≠k} p_c: the reference the toolkit's own formulas must meet."""
    k = int(np.argmax(z))
    e = np.exp(z - z[k])
    e[k] = 0.0
    rest = e.sum()
    p = e / (1 + rest)
    p[k] = 1 / (1 + rest)
    one_minus = 1 - p
    one_minus[k] = rest / (1 + rest)
    g = p.copy()
    g[t] = -one_minus[t]
    A = -np.outer(p, p)
    A[np.diag_indices(len(z))] = p * one_minus
    return g, A


@pytest.mark.parametrize("margin", [0.5, 10.0, 20.0, 60.0, 300.0])
def test_cross_entropy_derivatives_keep_one_minus_p(margin):
    """Autodiff forms p_t − 1 and u_k − pᵀu, which round away 1 − p at a confident logit
    margin (a relative error of 1e-7 at margin 20; the entry is 0 past ~37). The split's
    ∂ℓ/∂z and ∇²_z ℓ·u match the stably formed reference to a few ε relative at every margin,
    for the labelled class on top and not."""
    from mhatheory.spectral._split import _cross_entropy_grad, _cross_entropy_hz
    rng = np.random.default_rng(int(margin))
    z = rng.standard_normal(5)
    z[2] = z.max() + margin
    u = rng.standard_normal(5)
    for t in (2, 0):
        g, A = _stable_stats(z, t)
        got_g = np.asarray(_cross_entropy_grad(jnp.asarray(z), t))
        got_h = np.asarray(_cross_entropy_hz(jnp.asarray(z), t, jnp.asarray(u)))
        ref_h = A @ u
        assert np.all(np.abs(got_g - g) <= 8 * EPS * np.abs(g)), (t, got_g, g)
        # A @ u is a signed sum of C terms: its rounding is ≤ C·ε·Σ|A_kc u_c|
        assert np.all(np.abs(got_h - ref_h) <= 16 * EPS * (np.abs(A) @ np.abs(u)))


@pytest.fixture(scope="module")
def confident_classifier():
    """A tanh MLP classifier ``f`` (P = 48) on 24 separable points after 200 GD steps: f, its
    weights, inputs and labels."""
    rng = np.random.default_rng(0)
    n, d, C = 24, 4, 4
    y = jnp.asarray(np.arange(n) % C)
    x = jnp.asarray(np.eye(C)[np.asarray(y)] + 0.2 * rng.standard_normal((n, d)))

    def f(p, x):
        return jnp.tanh(x @ p["W1"]) @ p["W2"]

    p = {"W1": jnp.asarray(rng.standard_normal((d, 6))),
         "W2": jnp.asarray(rng.standard_normal((6, C)))}

    def loss(p):
        return jnp.mean(jax.vmap(LOSSES["cross_entropy"][0])(f(p, x), y))

    step = lambda _, p: jax.tree.map(lambda a, b: a - 0.5 * b, p, jax.grad(loss)(p))  # noqa: E731
    return f, jax.jit(lambda p: jax.lax.fori_loop(0, 200, step, p))(p), x, y


@pytest.mark.parametrize("margin", [10.0, 20.0])
def test_the_split_of_a_confident_classifier_is_certified_against_its_stable_reference(
        confident_classifier, margin):
    """The classifier's last layer scaled so that its smallest logit margin is 10 or 20
    (resolved in float64, 1 − p ≈ 5e-5 or 2e-9): N holds the gradient weights fixed, so their
    rounding is a fixed error no linearity check sees. With autodiff's p_t − 1, Curvature's
    certified intervals miss N's eigenvalues at both margins (by 1e-15 and 1e-7 relative);
    formed stably, every interval of N and G holds the reference built from the stable NumPy
    weights."""
    f, p, x, y = confident_classifier
    Z = np.sort(np.asarray(f(p, x)), -1)
    p = {**p, "W2": p["W2"] * margin / (Z[:, -1] - Z[:, -2]).min()}
    Z = np.asarray(f(p, x))
    n = len(Z)
    gs, As = zip(*(_stable_stats(z, int(t)) for z, t in zip(Z, np.asarray(y), strict=True)),
                 strict=True)
    flat, unravel = ravel_pytree(p)
    J = np.asarray(jax.jacfwd(lambda v: f(unravel(v), x))(flat))                  # [n, C, P]
    G = np.einsum("ncp,ncd,ndq->pq", J, np.stack(As), J) / n
    weights = jnp.asarray(np.stack(gs)) / n
    N = np.asarray(jax.hessian(lambda v: jnp.sum(weights * f(unravel(v), x)))(flat))
    for op, M in ((spectral.Curvature(f, loss="cross_entropy"), N),
                  (spectral.GaussNewton(f, loss="cross_entropy"), G)):
        ev = np.linalg.eigvalsh((M + M.T) / 2)
        # the reference's rounding: its asymmetry (×2) and eigh's P·ε·‖M‖, as in
        # test_spectral_certified's dense references
        ref_err = 2 * np.linalg.norm(M - M.T) + len(ev) * EPS * np.abs(ev).max()
        for which, truth in (("smallest", ev[0]), ("largest", ev[-1])):
            for k in (0, 1):
                r = spectral.extreme_eigs(op, p, x, y, which=which, key=jax.random.key(k))[0]
                lo, hi = r.interval
                assert lo - ref_err <= truth <= hi + ref_err, (type(op).__name__, which, k)
