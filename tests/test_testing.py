import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mhatheory import data, deora, spectral, testing
from mhatheory.verdicts import Interval, Verdict, compare


def test_assert_inequality_passes_and_reports_the_certified_margin():
    assert testing.assert_inequality(2.0, 1.0) == 1.0
    # the slack is uncertainty of lhs − rhs, so it shrinks the certified margin
    assert testing.assert_inequality(1.0, 2.0, relation="<=", slack=0.5) == 0.5
    assert testing.assert_inequality((2.0, 3.0), (0.5, 1.5)) == 0.5
    # a size-1 array of any shape counts as one number, NumPy or JAX
    assert testing.assert_inequality(0.2, jnp.array([0.25]), relation="<=") == \
        pytest.approx(0.05)
    assert testing.assert_inequality(np.array([[2.0]]), jnp.float32(1.0)) == 1.0


def test_assert_inequality_never_passes_within_its_uncertainty():
    # on main the slack was added in the lenient direction: 1.0 >= 1.2 "passed" with slack 0.5
    with pytest.raises(testing.InconclusiveError, match="INCONCLUSIVE"):
        testing.assert_inequality(1.0, 1.2, slack=0.5)
    with pytest.raises(testing.InconclusiveError) as undecided:
        testing.assert_inequality((0.0, 2.0), 1.0)
    # a test expecting a certified violation catches ViolatedError, which no undecided check is
    assert not isinstance(undecided.value, testing.ViolatedError)
    with pytest.raises(testing.ViolatedError, match="failed") as violated:
        testing.assert_inequality(1.0, 2.0, slack=0.5)
    assert isinstance(violated.value, testing.InequalityError)


def test_assert_inequality_failure_message_shows_both_sides_margin_and_theta():
    with pytest.raises(testing.InequalityError) as exc:
        testing.assert_inequality(-1.0, 0.5, name="toy",
                                  where=testing.fingerprint({"w": jnp.ones(3)}))
    msg = str(exc.value)
    assert "lhs = -1" in msg and "rhs = 0.5" in msg and "margin -1.5" in msg and "['w'][3]" in msg
    # sides that differ only past 12 digits are printed with enough digits to tell them apart
    with pytest.raises(testing.InequalityError) as exc:
        testing.assert_inequality(0.1 + 0.2, 0.3, relation="<=")
    assert "lhs = 0.30000000000000004 <= rhs = 0.29999999999999999" in str(exc.value)
    # a bound of -0.0 (κ = 0) prints as 0; an undecided margin is not called certified
    with pytest.raises(testing.InequalityError, match=r"rhs = 0 \(worst-case margin -1,"):
        testing.assert_inequality(-1.0, -0.0)
    with pytest.raises(testing.InconclusiveError, match=r"\(worst-case margin -1,"):
        testing.assert_inequality((0.0, 2.0), 1.0)
    # an array of two numbers is not read as an interval: the message says what is
    with pytest.raises(ValueError, match=r"a \(lo, hi\) interval as a tuple or list"):
        testing.assert_inequality(jnp.array([0.4, 0.5]), 1.0)


@pytest.mark.parametrize("lhs, rhs, relation, verdict", [
    ((1, 2), (0, 1), ">=", Verdict.HOLDS), ((1, 2), (0, 1.5), ">=", Verdict.INCONCLUSIVE),
    ((1, 2), (3, 4), ">=", Verdict.VIOLATED), ((1, 2), (3, 4), "<=", Verdict.HOLDS),
    ((3, 4), (1, 2), "<=", Verdict.VIOLATED), ((-np.inf, 2), (0, 1), ">=", Verdict.INCONCLUSIVE),
    ((np.nan, 2), (0, 1), ">=", Verdict.INCONCLUSIVE),
])
def test_compare_is_three_valued(lhs, rhs, relation, verdict):
    assert compare(Interval(*lhs), Interval(*rhs), relation)[0] == verdict


def test_assert_weakly_convex_on_the_deora_model():
    cfg = data.MixtureConfig(d=6, T=4, n=16, num_irrelevant=2)
    batch = data.sample(cfg, jax.random.key(0))
    params = deora.init_params(jax.random.key(1), 6, 4, init_scale=2.0)
    ch = deora.assert_chain(params, batch)
    assert testing.assert_weakly_convex(deora.loss_fn, params, batch, kappa=ch.kappa_blk,
                                        heads=4) > 0
    with pytest.raises(testing.InequalityError, match="λmin"):
        testing.assert_weakly_convex(deora.loss_fn, params, batch, kappa=0.0, heads=4)


class MLP(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(4, 16, rngs=rngs, param_dtype=jnp.float64)
        self.l2 = nnx.Linear(16, 1, rngs=rngs, param_dtype=jnp.float64)

    def __call__(self, x):
        return self.l2(jnp.tanh(self.l1(x)))[..., 0]


def _mlp_problem():
    graphdef, params = nnx.split(MLP(nnx.Rngs(0)), nnx.Param)
    x = jax.random.normal(jax.random.key(1), (32, 4))
    y = jnp.sin(3 * x[:, 0]) + x[:, 1] ** 2

    def loss(p, x, y):
        return jnp.mean((nnx.merge(graphdef, p)(x) - y) ** 2)

    return loss, params, x, y


def test_an_unconverged_lanczos_never_passes_the_assertion():
    """krylov=5, max_restarts=0 on an MLP gives a Ritz value far above λmin, and a κ between
    the two must not pass: the unconverged interval is open below, the check escalates, and
    the certified answer (a violation) is raised."""
    loss, params, x, y = _mlp_problem()
    true = np.linalg.eigvalsh(np.asarray(spectral.dense_hessian(loss, params, x, y)))[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", spectral.ConvergenceWarning)
        # a fixed start: with key=None (a fresh random start) five Krylov steps land within
        # 10 % of λmin now and then, and the premise of the test would be a matter of luck
        rough = spectral.lambda_min(loss, params, x, y, krylov=5, max_restarts=0,
                                    key=jax.random.key(0))
    assert not rough.converged and rough.value > true + 0.1 * abs(true)
    assert rough.interval[0] == -np.inf          # not certified on its outer side
    L = float(loss(params, x, y))
    kappa = -0.5 * (rough.value + true) / L      # bound between truth and the rough estimate
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", spectral.ConvergenceWarning)
        with pytest.raises(testing.InequalityError, match="failed"):
            testing.assert_weakly_convex(loss, params, x, y, kappa=kappa, heads=1, krylov=5,
                                         max_restarts=0, key=jax.random.key(0))


def test_an_undecidable_check_raises_inconclusive_not_pass():
    loss, params, x, y = _mlp_problem()
    L = float(loss(params, x, y))
    true = np.linalg.eigvalsh(np.asarray(spectral.dense_hessian(loss, params, x, y)))[0]
    # the bound sits exactly on λmin: no finite amount of arithmetic certifies either side
    with pytest.raises(testing.InconclusiveError, match="INCONCLUSIVE"):
        testing.assert_weakly_convex(loss, params, x, y, kappa=-true / L, heads=1,
                                     method="exact")


@pytest.mark.parametrize("method", ["lanczos", "exact"])
def test_a_bound_whose_own_rounding_holds_lambda_min_is_not_sent_to_another_method(method):
    """L̂ = 2 in float32 carries ±4,500·ε₃₂·|bound| ≈ 5e-4 of rounding: with the bound at
    λmin = −1, the advice is the loss's precision, not another eigenvalue method."""
    diag = jnp.asarray([3.0, 2.0, 1.0, -1.0], jnp.float32)

    def loss(x):
        return 0.5 * jnp.sum(diag * x * x) + 2.0

    with pytest.raises(testing.InconclusiveError) as err:
        testing.assert_weakly_convex(loss, jnp.zeros(4, jnp.float32), kappa=0.5, heads=1,
                                     method=method, key=jax.random.key(0))
    message = str(err.value)
    assert "lies inside the bound's own rounding" in message, message
    assert ("this one included" if method == "exact" else "method='exact' included") in message
    assert "pass the params as float64" in message and "a-priori" not in message


@pytest.mark.parametrize("kwargs, match", [
    ({"kappa": 1.0, "heads": 0}, "heads must be an integer >= 1"),
    ({"kappa": -1.0, "heads": 2}, "kappa must be a finite number >= 0"),
    ({"kappa": float("nan"), "heads": 2}, "kappa must be"),
    ({"kappa": 1.0, "heads": 1, "failure_prob": None}, "failure_prob=None turns off the "
                                                       "probabilistic lower end"),
])
def test_assert_weakly_convex_rejects_bad_arguments(kwargs, match):
    loss, params, x, y = _mlp_problem()
    with pytest.raises(ValueError, match=match):
        testing.assert_weakly_convex(loss, params, x, y, **kwargs)


def test_an_unresolved_eigenvalue_cluster_never_passes():
    """λ₁ = −0.01 and λ₂ = λ₁ + 1e-11 (‖H‖ = 1): a Lanczos run mixes the pair and certifies a
    deterministic interval a few 1e-15 wide around λ₁ + w·1e-11 (w the start's weight on λ₂),
    missing λ₁; a bound −c between λ₁ and λ₂ (the inequality false by 5e-12, far above L̂'s
    1e-17 rounding) passed for 1 of these 6 keys when the assertion used that interval. On the
    probabilistic lower end each key is a failure or INCONCLUSIVE."""
    P = 40
    evals = np.concatenate([[-0.01, -0.01 + 1e-11], np.linspace(0.0, 1.0, P - 2)])
    Q = np.linalg.qr(np.random.default_rng(0).normal(size=(P, P)))[0]
    A = jnp.asarray(Q @ np.diag(evals) @ Q.T)
    A = 0.5 * (A + A.T)

    def loss(p, A, c):
        return 0.5 * p["x"] @ A @ p["x"] + c

    c = jnp.asarray(0.01 - 5e-12)                      # the bound −c = λ₁ + 5e-12
    assert np.linalg.eigvalsh(np.asarray(A))[0] < -c - testing.loss_rounding(c, np.float64)
    for seed in range(6):
        with pytest.raises(testing.InequalityError):
            testing.assert_weakly_convex(loss, {"x": jnp.zeros(P)}, A, c, kappa=1.0, heads=1,
                                         key=jax.random.key(seed))


def test_compare_refuses_intervals_that_are_not_intervals():
    """A negative radius made [1.5, 0.5] 'around' 1.0, and compare passed it against 1.2."""
    with pytest.raises(ValueError, match="radius"):
        Interval.around(1.0, -0.5)
    for lhs, rhs, side in ((Interval(3.0, 1.0), Interval(0.0, 0.0), "left"),
                           (Interval(2.0, 2.0), Interval(1.0, 0.0), "right")):
        for relation in (">=", "<="):
            with pytest.raises(ValueError, match=f"{side}-hand side"):
                compare(lhs, rhs, relation)
    assert compare(Interval(math.nan, 1.0), Interval(0.0, 0.0))[0] == Verdict.INCONCLUSIVE


def test_assert_weakly_convex_names_a_loss_that_is_not_finite():
    def loss(p, c):
        return jnp.sum(jnp.log(p["x"] - c))

    with pytest.raises(ValueError, match="the loss is nan"):
        testing.assert_weakly_convex(loss, {"x": jnp.full(3, 0.3)}, jnp.asarray(1.0), kappa=1.0,
                                     heads=1)
    # a loss shifted below 0 has the same Hessian and a bound of the other sign: refused
    with pytest.raises(ValueError, match="< 0 at these params"):
        testing.assert_weakly_convex(lambda p: jnp.sum(p["x"] ** 2) - 10.0,
                                     {"x": jnp.full(3, 0.3)}, kappa=1.0, heads=1)
    # below 0 by rounding only, it is a loss of 0 up to that rounding: decided as such
    margin = testing.assert_weakly_convex(lambda p: jnp.sum((p["x"] - 1.0) ** 2) - 1e-18,
                                          {"x": jnp.ones(3)}, kappa=1.0, heads=1, method="exact")
    assert margin == pytest.approx(2.0, rel=1e-9)             # λmin = 2 above a bound ≤ 0


def test_assert_weakly_convex_takes_a_python_float_leaf():
    def loss(p, c):
        return 0.5 * jnp.sum(p["x"] ** 2) + p["s"] ** 2 + c

    testing.assert_weakly_convex(loss, {"s": 0.5, "x": jnp.ones(4)}, jnp.asarray(1.0),
                                 kappa=0.0, heads=1, method="exact")
