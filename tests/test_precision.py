import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mhatheory import attention, precision, spectral
from mhatheory.testing import tol


def _flax_attention_loss(module):
    graphdef, params = nnx.split(module, nnx.Param)
    x = jax.random.normal(jax.random.key(1), (3, 5, 8))

    def loss(p, x):
        return jnp.mean(nnx.merge(graphdef, p)(x) ** 2)

    return loss, params, x


def test_flax_attention_with_float64_params_is_flagged_with_the_operation_named():
    """flax.nnx.MultiHeadAttention(param_dtype=float64) computes its attention weights in
    float32 (the module's default dtype): λmin came out wrong by 2.8e-9 relative on main, with
    no warning."""
    mha = nnx.MultiHeadAttention(2, 8, rngs=nnx.Rngs(0), decode=False, param_dtype=jnp.float64)
    loss, params, x = _flax_attention_loss(mha)
    ops = precision.lower_precision_ops(loss, params, x)
    assert ops and all(op.dtype == "float32" for op in ops)
    assert any("dot_product_attention" in op.where for op in ops)
    with pytest.warns(precision.PrecisionWarning, match=r"float32.*dot_product_attention"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", spectral.ConvergenceWarning)
            r = spectral.lambda_min(loss, params, x, krylov=20, max_restarts=2)
    # the float32 rounding inside shows up in the HVP error estimate and widens the interval:
    # 1e-9 relative lies between float64's rounding (~1e-16) and float32's (~1e-7)
    assert r.hvp_error > 1e-9 * abs(r.value)


@pytest.mark.parametrize("build", [
    lambda: nnx.MultiHeadAttention(2, 8, rngs=nnx.Rngs(0), decode=False,
                                   param_dtype=jnp.float64,
                                   attention_fn=attention.flax_attention_fn),
    lambda: attention.MultiHeadAttention(8, 2, rngs=nnx.Rngs(0), param_dtype=jnp.float64),
])
def test_the_documented_fixes_compute_in_float64(build):
    loss, params, x = _flax_attention_loss(build())
    assert precision.lower_precision_ops(loss, params, x) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error", precision.PrecisionWarning)
        r = spectral.lambda_min(loss, params, x)
    assert r.converged and r.hvp_error < tol(np.float64) * max(abs(r.value), 1.0)


def test_a_float32_model_is_not_flagged():
    params = {"w": jnp.ones(4, jnp.float32)}
    assert precision.warn_lower_precision(lambda p, x: jnp.sum(p["w"] * x), params,
                                          np.ones(4, np.float32)) == []


@pytest.mark.parametrize("fixed", [True, False])
def test_a_float32_model_that_stays_float32_when_widened_is_flagged(fixed):
    """A float32 probe certifies against the model widened to float64. A flax module built with
    dtype=float32 computes in float32 whatever its parameters, so the widened reference
    carries the same rounding and the certificate cannot cover it: the probe warns, naming
    the widening. With only param_dtype set, the module follows its inputs and nothing warns."""
    dtype = {"dtype": jnp.float32} if fixed else {}
    model = nnx.Linear(4, 3, param_dtype=jnp.float32, rngs=nnx.Rngs(0), **dtype)
    graphdef, params = nnx.split(model, nnx.Param)
    x = np.asarray(jax.random.normal(jax.random.key(1), (6, 4)), np.float32)

    def loss(p, x):
        return jnp.mean(jnp.tanh(nnx.merge(graphdef, p)(x)) ** 2)

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        spectral.lambda_min(loss, params, x, key=jax.random.key(0))
    widened = [w for w in seen if issubclass(w.category, precision.PrecisionWarning)
               and "widened from float32 to float64" in str(w.message)]
    assert len(widened) == (1 if fixed else 0), [str(w.message) for w in seen]


@pytest.mark.parametrize("low", [jnp.bfloat16, jnp.float16])
def test_a_float32_model_computing_in_half_precision_is_flagged(low):
    """A float32 model with a bfloat16 (or float16) matmul inside is flagged: its probes
    carry about 4e-3 relative rounding, whatever the parameters' own dtype."""
    def loss(p, x):
        h = (x.astype(low) @ p["w"].astype(low)).astype(jnp.float32)
        return jnp.sum(jnp.tanh(h) ** 2)

    params = {"w": jnp.ones((3, 2), jnp.float32)}
    x = np.ones((4, 3), np.float32)
    with pytest.warns(precision.PrecisionWarning, match=rf"float32 parameters.*{low.dtype.name}"):
        precision.warn_lower_precision(loss, params, x)
    # probed at the products' precision, whose noise floor (100 ε of the half type, most of
    # ‖H‖) resolves nothing here: an honest unconverged run, open on its outer side
    with pytest.warns(precision.PrecisionWarning), \
            pytest.warns(spectral.ConvergenceWarning,
                         match=rf"rounding floor.*products run in {low.dtype.name}: compute "
                               "the loss in a wider dtype"):
        r = spectral.lambda_max(loss, params, x, key=jax.random.key(0))
    assert not r.converged and r.interval[1] == np.inf


def test_probes_take_their_rounding_model_from_the_products_precision():
    """A float64 nnx attention classifier with flax's default attention_fn (a float32 softmax)
    trained 300 Adam steps: its products carry ~1e-7 relative rounding. Every
    reorthogonalisation scheme finds λmin to that precision, and a run that claims convergence
    holds the dense eigenvalue in its interval. With the float64 rounding model (ψ = ε₆₄√P)
    partial and selective lost orthogonality by step 9 (|q_iᵀq_k| = 0.73), and selective
    returned +0.67 against −3.7e-3, "converged" on a blown-up ‖T‖."""
    class Tiny(nnx.Module):
        def __init__(self, rngs):
            kw = dict(param_dtype=jnp.float64, rngs=rngs)
            self.embed = nnx.Linear(4, 8, **kw)
            self.attn = nnx.MultiHeadAttention(2, 8, qkv_features=8, decode=False, **kw)
            self.head = nnx.Linear(8, 3, **kw)

        def __call__(self, x):
            h = self.embed(x)
            return self.head((h + self.attn(h)).mean(axis=-2))

    graphdef, params = nnx.split(Tiny(nnx.Rngs(0)), nnx.Param)
    x = jax.random.normal(jax.random.key(42), (48, 4, 4))
    noise = 0.3 * jax.random.normal(jax.random.key(7), (48, 3))
    y = jnp.argmax(x[:, 0, :3] * x[:, 1, :3] + noise, -1)

    def loss(p, x, y):
        logits = nnx.merge(graphdef, p)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    opt = optax.adam(1e-2)

    @jax.jit
    def step(p, state):
        updates, state = opt.update(jax.grad(loss)(p, x, y), state, p)
        return optax.apply_updates(p, updates), state

    state = opt.init(params)
    for _ in range(300):
        params, state = step(params, state)
    with pytest.warns(precision.PrecisionWarning):
        H = spectral.linearise(loss, params, x, y)
    assert H.hvp_dtype == np.float32 and H.dtype == np.float64
    with pytest.warns(precision.PrecisionWarning):
        truth = np.linalg.eigvalsh(np.asarray(spectral.dense(loss, params, x, y)))[0]
    for reortho in ("none", "partial", "selective", "full"):
        r = spectral.Lanczos(which="smallest", reortho=reortho)(H, key=jax.random.key(0))[0]
        # float32 rounding of the products, relative to ‖H‖ ≈ 4.9
        assert abs(r.value - truth) <= 1e-6, (reortho, r.value, truth)
        if r.converged:
            assert r.interval[0] <= truth <= r.interval[1], (reortho, r.interval, truth)


def test_an_explicit_cast_inside_a_loss_is_found():
    def loss(p, x):
        return jnp.sum((p["w"].astype(jnp.float32) * x.astype(jnp.float32)) ** 2)

    ops = precision.lower_precision_ops(loss, {"w": jnp.ones(3)}, jnp.ones(3))
    assert [op.primitive for op in ops][:1] == ["convert_element_type"]


def test_flax_attention_fn_equals_flax_attention():
    kw = dict(decode=False, param_dtype=jnp.float64)
    ours = nnx.MultiHeadAttention(2, 8, rngs=nnx.Rngs(0), **kw,
                                  attention_fn=attention.flax_attention_fn)
    theirs = nnx.MultiHeadAttention(2, 8, rngs=nnx.Rngs(0), **kw)
    x = jax.random.normal(jax.random.key(1), (3, 5, 8))
    mask = nnx.make_causal_mask(jnp.ones((3, 5)))
    # flax's float32 softmax is the only difference: agreement to float32 rounding
    np.testing.assert_allclose(ours(x, mask=mask), theirs(x, mask=mask), atol=tol(np.float32))


def test_a_derivative_rule_in_float32_is_found():
    """A float64 loss whose activation's custom JVP rule computes in float32: the loss's jaxpr
    is float64 throughout, but every HVP carries float32 rounding."""
    @jax.custom_jvp
    def act(x):
        return jnp.tanh(x)

    @act.defjvp
    def act_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return act(x), (1 - jnp.tanh(x.astype(jnp.float32)) ** 2).astype(x.dtype) * t

    def loss(p, x):
        return jnp.mean(act(x @ p["w"]) ** 2)

    params, x = {"w": jnp.ones((3, 2))}, jnp.ones((4, 3))
    found = precision.lower_precision_ops(loss, params, x)
    assert found and all("act_jvp" in op.where for op in found)
    with pytest.warns(precision.PrecisionWarning, match="act_jvp"):
        spectral.lambda_min(loss, params, x, method="exact")


def test_the_warnings_point_at_the_users_line():
    """The precision and convergence warnings name the caller's file, however deep in the
    package they are raised (a convenience, per_block, a linearisation)."""
    def loss(p, x):
        return jnp.sum(jnp.tanh((x @ p["w"]).astype(jnp.float32)).astype(jnp.float64) ** 2)

    params, x = {"w": jnp.ones((3, 2))}, jnp.ones((4, 3))
    calls = (lambda: spectral.lambda_min(loss, params, x, key=jax.random.key(0)),
             lambda: spectral.linearise(loss, params, x),
             lambda: spectral.per_block(loss, params, x, key=jax.random.key(0),
                                        blocks=spectral.subtree_blocks(params)))
    for call in calls:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        assert caught and {w.filename for w in caught} == {__file__}, \
            [(w.category.__name__, w.filename) for w in caught]


def test_the_guard_traces_a_loss_once_per_shapes_across_calls():
    """A convenience builds its operator anew at every call; the guard finds the trace of an
    equal operator's loss at the same shapes instead of tracing the loss again, so a warm call
    traces nothing."""
    traced = []

    def loss(w, x):
        traced.append(1)                          # runs once per trace of the loss
        return jnp.sum(jnp.sin(w * x) ** 2)

    w, x = jnp.ones(12), jnp.linspace(0.1, 1.0, 12)
    spectral.lambda_min(loss, w, x, key=jax.random.key(0))
    before = len(traced)
    spectral.lambda_min(loss, w, x, key=jax.random.key(1))
    assert len(traced) == before
