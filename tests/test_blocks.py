"""Per-layer and per-head blocks: the principal sub-matrix, against the dense reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mhatheory import data, spectral
from mhatheory.models import deora
from mhatheory.testing import tol


@pytest.fixture(scope="module")
def deora_problem():
    batch = data.sample(data.MixtureConfig(d=5, T=4, n=16, num_irrelevant=2), jax.random.key(0))
    params = deora.init_params(jax.random.key(1), 5, 3, init_scale=2.0)
    return params, batch


def test_per_head_blocks_equal_the_dense_principal_submatrix(deora_problem):
    params, batch = deora_problem
    N_op = spectral.Curvature(deora.phi)
    N = np.asarray(spectral.dense(N_op, params, batch.X, batch.y))
    rows = spectral.per_block(N_op, params, batch.X, batch.y,
                              blocks=spectral.head_blocks("", 0, 3))
    for h, row in enumerate(rows):
        idx = np.flatnonzero(spectral.block_mask(params, "", 0, h))
        ev = np.linalg.eigvalsh(N[np.ix_(idx, idx)])
        assert row.size == idx.size == 5 * 5 + 5
        # a 30-parameter block converges to the rounding of the dense route ("dense" row,
        # tighter than "eig"); the interval is compared up to the dense eigh's own rounding
        assert abs(row.lambda_min - ev[0]) <= tol(np.float64, "dense") * np.abs(ev).max()
        assert abs(row.lambda_max - ev[-1]) <= tol(np.float64, "dense") * np.abs(ev).max()
        slack = tol(np.float64, "reordered") * np.abs(ev).max()
        assert row.lambda_min_interval[0] - slack <= ev[0] <= row.lambda_min_interval[1] + slack
    # N is block-diagonal over heads (∇²Φ = blockdiag_h ∇²φ_h / √H): the blocks give λmin(N)
    assert abs(min(r.lambda_min for r in rows) - np.linalg.eigvalsh(N)[0]) <= tol(
        np.float64, "dense") * np.abs(N).max()


def test_subtree_blocks_of_a_users_mlp():
    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(3, 5, rngs=rngs, param_dtype=jnp.float64)
            self.l2 = nnx.Linear(5, 1, rngs=rngs, param_dtype=jnp.float64)

        def __call__(self, x):
            return self.l2(jnp.tanh(self.l1(x)))[..., 0]

    graphdef, params = nnx.split(MLP(nnx.Rngs(0)), nnx.Param)
    x = jax.random.normal(jax.random.key(1), (20, 3))
    y = jnp.sin(x[:, 0])

    def loss(p, x, y):
        return jnp.mean((nnx.merge(graphdef, p)(x) - y) ** 2)

    H = np.asarray(spectral.dense_hessian(loss, params, x, y))
    blocks = spectral.subtree_blocks(params)
    assert list(blocks) == ["['l1']", "['l2']"]
    for row, (name, (select, _, _)) in zip(spectral.per_block(loss, params, x, y, blocks=blocks),
                                           blocks.items(), strict=True):
        idx = np.flatnonzero(spectral.block_mask(params, select))
        ev = np.linalg.eigvalsh(H[np.ix_(idx, idx)])
        assert row.name == name and abs(row.lambda_min - ev[0]) <= tol(
            np.float64, "dense") * np.abs(ev).max()
        # interlacing: a block's extremes lie inside the full spectrum
        full = np.linalg.eigvalsh(H)
        slack = tol(np.float64, "dense") * np.abs(full).max()
        assert full[0] - slack <= row.lambda_min and row.lambda_max <= full[-1] + slack
    tr = spectral.trace(spectral.Block(loss, "l2"), params, x, y, num_samples=400)
    idx = np.flatnonzero(spectral.block_mask(params, "l2"))
    assert abs(tr.value - np.trace(H[np.ix_(idx, idx)])) <= 5 * tr.se  # Monte-Carlo: 5 SE


def test_a_selection_that_matches_nothing_is_named(deora_problem):
    params, batch = deora_problem
    with pytest.raises(ValueError, match=r"matches no parameter; the leaf paths are \[\"\['U'\]\""):
        spectral.lambda_min(spectral.Block(deora.loss_fn, "attn"), params, batch)
    with pytest.raises(ValueError, match="has no index 7 along axis 0"):
        spectral.lambda_min(spectral.Block(deora.loss_fn, "W", 0, 7), params, batch)
    with pytest.raises(ValueError, match="at least one block"):
        spectral.per_block(deora.loss_fn, params, batch, blocks={})


def test_indexed_block_equals_block_and_compiles_once(deora_problem):
    params, batch = deora_problem
    traces = []

    def loss(p, X, y):                      # counts how often the probe traces the loss
        traces.append(1)
        return deora.loss_fn(p, data.Batch(X, y))

    shared = spectral.IndexedBlock(loss, "", 0)
    values = []
    for h in range(3):
        ref = spectral.lambda_min(spectral.Block(loss, "", 0, h), params, batch.X, batch.y)
        before = len(traces)
        got = spectral.lambda_min(shared, params, np.int32(h), batch.X, batch.y)
        values.append(len(traces) - before)
        assert abs(got.value - ref.value) <= tol(np.float64) * abs(ref.value)
        assert got.vector.shape == ref.vector.shape
    # the first index traces the loss; the others reuse the compiled program
    assert values[0] > 0 and values[1:] == [0, 0]
    with pytest.raises(ValueError, match=r"integer in \[0, 3\) along axis 0; got 3"):
        spectral.lambda_min(shared, params, np.int32(3), batch.X, batch.y)
    with pytest.raises(ValueError, match="pass the block index as the first argument"):
        spectral.lambda_min(spectral.IndexedBlock(loss, "", 0), params)
