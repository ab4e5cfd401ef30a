import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mhatheory import data, deora
from mhatheory._numerics import map_chunks


def _count(jaxpr, name):
    """Occurrences of primitive ``name`` in a closed jaxpr, sub-jaxprs included."""
    n = 0
    for eqn in jaxpr.eqns:
        n += eqn.primitive.name == name
        for sub in jax.core.jaxprs_in_params(eqn.params):
            n += _count(sub, name)
    return n


@pytest.mark.parametrize("n, chunk", [(1, 4), (7, 3), (8, 4), (5, 64)])
def test_map_chunks_equals_vmap(n, chunk):
    xs = {"a": jnp.arange(n * 2.0).reshape(n, 2), "b": jnp.arange(n * 1.0)}
    f = lambda x: jnp.sin(x["a"]).sum() * x["b"]          # noqa: E731
    np.testing.assert_array_equal(map_chunks(f, xs, chunk), jax.vmap(f)(xs))


def test_block_norms_has_one_eigh_whatever_the_sample_count():
    # lax.map(batch_size=) with a remainder puts a second, independent batched eigh beside the
    # scan; XLA CPU may run the two at once and jaxlib's ParallelBatchMap then deadlocks on a
    # 2-thread pool (the hang in the heads sweep). n = 70 is not a multiple of the chunk (64).
    cfg = data.MixtureConfig(d=4, T=3, n=70, num_irrelevant=2)
    batch = data.sample(cfg, jax.random.key(0))
    params = deora.init_params(jax.random.key(1), 4, 2)
    jaxpr = jax.make_jaxpr(deora.block_norms)(params, batch.X)
    assert _count(jaxpr.jaxpr, "eigh") == 1
