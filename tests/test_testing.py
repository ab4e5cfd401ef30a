import jax
import jax.numpy as jnp
import pytest

from mhatheory import data, testing
from mhatheory.models import deora


def test_assert_inequality_passes_and_reports_margin():
    assert testing.assert_inequality(2.0, 1.0) == 1.0
    assert testing.assert_inequality(1.0, 2.0, relation="<=", slack=0.5) == 1.5


def test_assert_inequality_failure_message_shows_both_sides_margin_and_theta():
    with pytest.raises(testing.InequalityError) as exc:
        testing.assert_inequality(-1.0, 0.5, name="toy", where=testing.describe({"w": jnp.ones(3)}))
    msg = str(exc.value)
    assert "lhs = -1" in msg and "rhs = 0.5" in msg and "margin -1.5" in msg and "['w'][3]" in msg


def test_assert_weakly_convex_on_the_deora_model():
    cfg = data.MixtureConfig(d=6, T=4, n=16, num_irrelevant=2)
    batch = data.sample(cfg, jax.random.key(0))
    params = deora.init_params(jax.random.key(1), 6, 4, init_scale=2.0)
    ch = testing.assert_chain(params, batch)
    assert testing.assert_weakly_convex(deora.loss_fn, params, batch, kappa=ch.kappa_blk,
                                        heads=4) > 0
    with pytest.raises(testing.InequalityError, match="λmin"):
        testing.assert_weakly_convex(deora.loss_fn, params, batch, kappa=0.0, heads=4)
