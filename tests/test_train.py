import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mhatheory import data, train
from mhatheory.models import deora
from mhatheory.testing import tol


@pytest.fixture(scope="module")
def problem():
    cfg = data.MixtureConfig(d=8, T=5, n=64, num_irrelevant=3)
    return data.sample(cfg, jax.random.key(0)), deora.init_params(jax.random.key(1), 8, 4)


def test_gd_decreases_the_loss_monotonically_for_a_small_step(problem):
    batch, params = problem
    traj = train.gd(deora.loss_fn, params, batch, steps=300, lr=0.2)
    assert traj.loss.shape == (301,)
    assert np.all(np.diff(traj.loss) < 0)
    assert traj.loss[-1] < 0.5 * traj.loss[0]


def test_same_seed_gives_bit_identical_trajectories(problem):
    batch, params = problem
    a = train.gd(deora.loss_fn, params, batch, steps=50, lr=0.5, record_steps=[0, 10, 50])
    b = train.gd(deora.loss_fn, params, batch, steps=50, lr=0.5, record_steps=[0, 10, 50])
    np.testing.assert_array_equal(a.loss, b.loss)
    np.testing.assert_array_equal(a.params_at["W"], b.params_at["W"])


def test_recorded_params_match_shorter_runs_and_chunks_agree(problem):
    batch, params = problem
    full = train.gd(deora.loss_fn, params, batch, steps=40, lr=0.5, record_steps=[0, 7, 40],
                    num_chunks=3)
    short = train.gd(deora.loss_fn, params, batch, steps=7, lr=0.5)
    np.testing.assert_array_equal(full.params(0)["W"], params["W"])
    # chunked scans: the same float64 steps, compiled in other programs
    np.testing.assert_allclose(full.params(1)["W"], short.final_params["W"], rtol=0,
                               atol=tol(np.float64, "reordered"))
    np.testing.assert_array_equal(full.params(2)["U"], full.final_params["U"])
    one = train.gd(deora.loss_fn, params, batch, steps=40, lr=0.5)
    np.testing.assert_allclose(one.loss, full.loss, rtol=0, atol=tol(np.float64, "reordered"))


def test_a_progress_bar_runs_the_same_steps_in_timed_chunks(problem, monkeypatch):
    """With ``progress`` the run goes in chunks sized by time, the last padded past K with masked
    steps: the same losses, recorded θ (θ_K among them) and final θ as one scan, bit for bit."""
    batch, params = problem
    monkeypatch.setattr(train, "FIRST_CHUNK", 16)
    monkeypatch.setattr(train, "_timed_size", lambda steps, seconds: 32)  # 16, 16, 32 × 4
    kw = dict(steps=150, lr=0.5, record_steps=[0, 16, 149, 150])
    one = train.gd(deora.loss_fn, params, batch, **kw)
    timed = train.gd(deora.loss_fn, params, batch, progress=True, **kw)
    np.testing.assert_array_equal(one.loss, timed.loss)
    np.testing.assert_array_equal(one.params_at["W"], timed.params_at["W"])
    np.testing.assert_array_equal(one.final_params["U"], timed.final_params["U"])


def _quadratic(p, batch):
    return jnp.sum(batch * p["x"] ** 2)


def test_divergence_stops_with_the_step_named():
    # GD on c·x² with η·2c > 2 grows geometrically by |1 − 2cη| = 1e6 per step: overflows.
    with pytest.raises(FloatingPointError, match=r"NaN/Inf at step \d+.*smaller step size"):
        train.gd(_quadratic, {"x": jnp.ones(3)}, jnp.ones(3), steps=200, lr=5e5)


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": 0, "lr": 0.1}, "steps must be"),
    ({"steps": 5, "lr": 0.0}, "lr must be"),
    ({"steps": 5, "lr": -1.0}, "lr must be"),
    ({"steps": 5, "lr": 0.1, "record_steps": [6]}, "record_steps"),
    ({"steps": 5, "lr": 0.1, "record_steps": [0.5, 2.7]}, "record_steps must be integer"),
])
def test_bad_arguments_raise(problem, kwargs, match):
    batch, params = problem
    with pytest.raises(ValueError, match=match):
        train.gd(deora.loss_fn, params, batch, **kwargs)


def test_nan_in_data_raises_before_training(problem):
    batch, params = problem
    with pytest.raises(ValueError, match="NaN"):
        train.gd(deora.loss_fn, params, batch._replace(X=batch.X.at[0, 0, 0].set(np.nan)),
                 steps=5, lr=0.1)


def test_log_schedule():
    s = train.log_schedule(1000, 8)
    assert s[0] == 0 and s[-1] == 1000 and np.all(np.diff(s) > 0)


def test_labels_outside_pm1_raise_before_training(problem):
    batch, params = problem
    with pytest.raises(ValueError, match=r"\{-1, \+1\}"):
        train.gd(deora.loss_fn, params, batch._replace(y=(batch.y + 1) / 2), steps=5, lr=0.1)


def test_the_adamw_step_compiles_once_for_models_of_one_shape():
    """Every cell of a sweep builds a fresh model and optimiser; with equal settings the jitted
    step must reuse its program, though each optimiser holds a fresh optax transform."""
    from flax import nnx

    step = train.nnx_step(lambda model, x: jnp.mean(model(x) ** 2))
    x = jnp.ones((4, 3))
    compiles = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration" and \
                kwargs.get("fun_name") == "jit(step)":
            compiles.append(kwargs["fun_name"])

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        losses = []
        for seed in range(3):
            model = nnx.Linear(3, 2, rngs=nnx.Rngs(seed))
            opt = train.warmup_cosine_adamw(model, lr=1e-2, warmup=2, steps=10, weight_decay=0.1)
            losses.append(float(step(model, opt, x)))
        assert len(compiles) == 1, compiles
        other = nnx.Linear(3, 2, rngs=nnx.Rngs(0))     # another setting is another schedule
        step(other, train.warmup_cosine_adamw(other, lr=2e-2, warmup=2, steps=10,
                                              weight_decay=0.1), x)
        assert len(compiles) == 2, compiles
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert len(set(losses)) == 3                        # three different models were stepped


def test_a_loss_that_is_not_finite_at_the_start_is_not_blamed_on_the_step_size():
    """log(x − 1) at x = 0.3 is NaN before any step; 'try lr=…' would send the user astray."""
    def loss(p, c):
        return jnp.sum(jnp.log(p["x"] - c))

    with pytest.raises(train.DivergenceError, match="initial parameters") as err:
        train.gd(loss, {"x": jnp.full(3, 0.3)}, jnp.asarray(1.0), steps=5, lr=0.1)
    assert "lr" not in str(err.value)
