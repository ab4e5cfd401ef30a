"""The one input check before any work: each case below would otherwise run seconds of work
and return NaN, or raise an unrelated error."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mhatheory import data, spectral, train
from mhatheory.models import deora


@pytest.fixture(scope="module")
def problem():
    batch = data.sample(data.MixtureConfig(d=6, T=4, n=12, num_irrelevant=2), jax.random.key(0))
    return deora.init_params(jax.random.key(1), 6, 2), batch


PROBES = {
    "lambda_min": lambda f, p, *a: spectral.lambda_min(f, p, *a),
    "lambda_max": lambda f, p, *a: spectral.lambda_max(f, p, *a),
    "trace": lambda f, p, *a: spectral.trace(f, p, *a),
    "spectral_density": lambda f, p, *a: spectral.spectral_density(f, p, *a),
    "hessian": lambda f, p, *a: spectral.dense_hessian(f, p, *a),
    "gd": lambda f, p, *a: train.gd(f, p, *a, steps=3, lr=0.1),
}


@pytest.mark.parametrize("probe", PROBES)
def test_nan_in_params_is_named_before_any_work(problem, probe):
    params, batch = problem
    bad = {**params, "U": params["U"].at[1, 2].set(jnp.nan)}
    with pytest.raises(ValueError, match=r"params\['U'\] contains 1 NaN/Inf"):
        PROBES[probe](deora.loss_fn, bad, batch)


@pytest.mark.parametrize("probe", PROBES)
def test_nan_in_data_is_named_before_any_work(problem, probe):
    params, batch = problem
    with pytest.raises(ValueError, match=r"NaN"):
        PROBES[probe](deora.loss_fn, params, batch._replace(X=batch.X.at[0, 0, 0].set(jnp.inf)))


@pytest.mark.parametrize("probe", PROBES)
def test_labels_in_0_1_are_refused_by_every_entry_point(problem, probe):
    params, batch = problem
    with pytest.raises(ValueError, match=r"\{-1, \+1\}.*y = 2\*y - 1"):
        PROBES[probe](deora.loss_fn, params, batch._replace(y=(batch.y + 1) / 2))


def test_labels_in_0_1_are_refused_by_the_loss_itself_and_the_split(problem):
    params, batch = problem
    y01 = (batch.y + 1) / 2
    with pytest.raises(ValueError, match=r"\{-1, \+1\}"):
        deora.loss_fn(params, batch._replace(y=y01))
    for op in (spectral.GaussNewton(deora.phi), spectral.Curvature(deora.phi)):
        with pytest.raises(ValueError, match=r"\{-1, \+1\}"):
            spectral.lambda_min(op, params, batch.X, y01)


def test_integer_leaves_suggest_splitting_the_parameters():
    class WithCounter(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.ones(3))
            self.count = nnx.Variable(jnp.zeros((), jnp.int32))

    state = nnx.state(WithCounter())
    with pytest.raises(ValueError, match=r"count.*int32.*nnx.split\(model, nnx.Param"):
        spectral.lambda_min(lambda p: jnp.sum(jax.tree.leaves(p)[0] ** 2), state)


@pytest.mark.parametrize("probe", ["lambda_min", "trace", "hessian", "gd"])
def test_a_non_scalar_loss_is_refused_with_the_fix(probe):
    with pytest.raises(ValueError, match=r"must return a scalar, got shape \[3\].*jnp.mean"):
        PROBES[probe](lambda p, x: p["w"] * x, {"w": jnp.ones(3)}, jnp.ones(3))


@pytest.mark.parametrize("probe", ["lambda_min", "trace", "hessian", "gd"])
def test_a_loss_with_auxiliary_outputs_is_refused_with_the_fix(probe):
    with pytest.raises(ValueError, match=r"got tuple \(a loss with auxiliary outputs.*"
                                         r"loss_fn\(params, \*args\)\[0\]"):
        PROBES[probe](lambda p, x: (jnp.sum(p["w"] * x), {"aux": x}), {"w": jnp.ones(3)},
                      jnp.ones(3))


def test_gauss_newton_output_shape_must_match_the_labels(problem):
    params, batch = problem
    with pytest.raises(ValueError, match=r"f\(params, inputs\) has shape \[12\] but the targets"):
        spectral.lambda_min(spectral.GaussNewton(deora.phi), params, batch.X, batch.y[:5])


def test_gd_takes_data_as_args_like_the_probes():
    def loss(p, x, y):
        return jnp.mean((x @ p["w"] - y) ** 2)

    x = jax.random.normal(jax.random.key(0), (16, 3))
    y = x @ jnp.array([1.0, -2.0, 0.5])
    traj = train.gd(loss, {"w": jnp.zeros(3)}, x, y, steps=300, lr=0.1)
    # 300 GD steps at lr 0.1 contract the error by (1 − 0.1·λmin(2xᵀx/n))³⁰⁰ ≪ 1e-6
    np.testing.assert_allclose(traj.final_params["w"], [1.0, -2.0, 0.5], atol=1e-6)  # see above
    assert spectral.lambda_min(loss, traj.final_params, x, y).value > 0


@pytest.mark.parametrize("call", ["trace", "spectral_density", "lambda_min", "gd"])
def test_params_with_no_entries_are_refused_by_name(call):
    """Every leaf empty (P = 0): trace divided by zero and spectral_density indexed past the end."""
    def loss(p, x):
        return jnp.sum(p["a"]) + jnp.sum(x)

    params, x = {"a": jnp.zeros((0,))}, jnp.ones(2)
    fn = {"gd": lambda: train.gd(loss, params, x, steps=2, lr=0.1)}.get(
        call, lambda: getattr(spectral, call)(loss, params, x, key=jax.random.key(0)))
    with pytest.raises(ValueError, match="P = 0"):
        fn()


def test_bfloat16_is_a_floating_dtype_for_every_check():
    """bfloat16 (an ml_dtypes type, not a NumPy floating subtype) is accepted as parameters, as
    a loss's output and as a dtype, and its NaN/Inf are found. A loss of bfloat16 parameters
    and data is probed on the operator widened to float64 (its first cycle, which converges) and
    both intervals hold the float64 dense eigenvalues of the same weights."""
    from mhatheory import _validate

    w = jnp.asarray(np.random.default_rng(1).normal(size=(5, 3)) * 0.5, jnp.bfloat16)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(6, 5)), jnp.bfloat16)
    _validate.float_params({"w": w})
    _validate.floating_dtype("dtype", jnp.bfloat16)
    _validate.scalar_loss(lambda p: jnp.sum(p["w"]), {"w": w}, ())
    with pytest.raises(ValueError, match=r"x\[0\] contains 1 NaN/Inf"):
        _validate.finite_tree((x.at[0, 0].set(jnp.nan),), "x")

    def loss(p, x):
        return jnp.sum(jnp.tanh(x @ p["w"]) ** 2)

    wide = {"w": w.astype(jnp.float64)}
    ev = np.linalg.eigvalsh(np.asarray(spectral.dense_hessian(loss, wide, x.astype(jnp.float64))))
    with warnings.catch_warnings():
        warnings.simplefilter("error", spectral.ConvergenceWarning)
        lo = spectral.lambda_min(loss, {"w": w}, x, key=jax.random.key(0))
        hi = spectral.lambda_max(loss, {"w": w}, x, key=jax.random.key(0))
    for r, e in ((lo, ev[0]), (hi, ev[-1])):
        assert r.converged and r.restarts == 0
        assert r.interval[0] <= e <= r.interval[1] and r.prob_interval[0] <= e <= r.prob_interval[1]
