import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given
from hypothesis import strategies as st

from mhatheory import data
from mhatheory.models import DeoraMHA, deora, reference
from mhatheory.testing import assert_allclose


def _setup(d=6, T=5, H=3, n=7, seed=0, scale=1.5):
    batch = data.sample(data.MixtureConfig(d=d, T=T, n=n), jax.random.key(seed))
    params = deora.init_params(jax.random.key(seed + 1), d, H, init_scale=scale)
    return params, batch


def test_phi_matches_numpy_reference_float64():
    params, batch = _setup()
    ours = np.asarray(deora.phi(params, batch.X))
    ref = reference.deora_phi_numpy(params["W"], params["U"], batch.X)
    assert ours.dtype == np.float64
    assert_allclose(ours, ref)


def test_module_equals_pure_function_and_batches_over_leading_axes():
    params, batch = _setup()
    model = DeoraMHA.from_arrays(params["W"], params["U"])
    np.testing.assert_array_equal(model(batch.X), deora.phi(params, batch.X))
    X = batch.X.reshape(7, 1, 5, 6)
    assert model(X).shape == (7, 1)
    assert model(batch.X[0]).shape == ()
    assert isinstance(model.W, nnx.Param) and model.W.shape == (3, 6, 6)
    assert model.U.shape == (3, 6)


def test_a_model_with_more_heads_extends_one_with_fewer():
    """The H-experiment compares H = 1, 2, 4, … from one seed: heads 1..H must be the same
    arrays for every H (JAX's partitionable threefry makes split(key, n)[h] independent of n)."""
    big = deora.init_params(jax.random.key(5), 4, 8)
    for H in (1, 2, 5):
        small = deora.init_params(jax.random.key(5), 4, H)
        for k in ("W", "U"):
            np.testing.assert_array_equal(small[k], big[k][:H])


def test_init_entries_have_the_stated_scale():
    """Entries ~ N(0, init_scale²/d): the sample std of N entries is within 5 SE (SE of a
    Gaussian sample std ≈ σ/√(2N)) of init_scale/√d."""
    d, H, scale = 4, 400, 1.7
    p = deora.init_params(jax.random.key(0), d, H, init_scale=scale)
    sigma = scale / np.sqrt(d)
    for k in ("W", "U"):
        x = np.asarray(p[k]).ravel()
        assert abs(x.std() - sigma) <= 5 * sigma / np.sqrt(2 * x.size), k
        assert abs(x.mean()) <= 5 * sigma / np.sqrt(x.size), k


@given(st.permutations(list(range(1, 6))))
def test_phi_invariant_to_permuting_tokens_2_to_T(perm):
    params, batch = _setup(T=6)
    order = np.array([0, *perm])
    assert_allclose(deora.phi(params, batch.X[:, order]), deora.phi(params, batch.X))


def test_phi_not_invariant_to_moving_the_query():
    params, batch = _setup(T=6)
    swapped = batch.X[:, [1, 0, 2, 3, 4, 5]]
    # clearly different: 1e-3 is ~1e10 times the float64 rounding of φ
    assert float(jnp.max(jnp.abs(deora.phi(params, swapped) - deora.phi(params, batch.X)))) > 1e-3


def test_gradient_matches_central_finite_differences():
    params, batch = _setup()
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    f = jax.jit(lambda v: deora.loss_fn(unravel(v), batch))
    g = jax.grad(f)(flat)
    h = 1e-5  # central FD: truncation ~h²·|f'''| ≈ 1e-10, rounding ~ε·|f|/h ≈ 2e-11
    for i, direction in enumerate(jax.random.normal(jax.random.key(3), (5, flat.size))):
        fd = (f(flat + h * direction) - f(flat - h * direction)) / (2 * h)
        assert abs(float(fd - g @ direction)) < 1e-8, i  # ~100× the FD error above


def test_loss_is_stable_for_huge_margins():
    params, batch = _setup()
    big = jax.tree.map(lambda a: 1e3 * a, params)
    value = deora.loss_fn(big, batch)
    assert np.isfinite(float(value))
    assert np.all(np.isfinite(np.asarray(jax.grad(deora.loss_fn)(big, batch)["U"])))


@pytest.mark.parametrize("bad, match", [
    (lambda: DeoraMHA(0, 2, rngs=nnx.Rngs(0)), "d must be"),
    (lambda: DeoraMHA(4, 0, rngs=nnx.Rngs(0)), "num_heads must be"),
    (lambda: DeoraMHA(4, 2, init_scale=-1.0, rngs=nnx.Rngs(0)), "init_scale"),
    (lambda: DeoraMHA(4, 2, rngs=nnx.Rngs(0))(jnp.ones((3, 5, 5))), r"X must have shape"),
    (lambda: DeoraMHA(4, 2, rngs=nnx.Rngs(0))(jnp.ones((3, 1, 4))), "T >= 2"),
    (lambda: DeoraMHA(4, 2, rngs=nnx.Rngs(0))(jnp.full((3, 5, 4), jnp.nan)), "NaN"),
    (lambda: DeoraMHA.from_arrays(jnp.ones((2, 3, 4)), jnp.ones((2, 3))), "W must have shape"),
    (lambda: DeoraMHA.from_arrays(jnp.ones((2, 3, 3)), jnp.ones((2, 4))), "U must have shape"),
])
def test_bad_input_raises_clear_value_error(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()
