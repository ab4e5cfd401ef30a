"""Per-layer and per-head blocks: the principal sub-matrix, against the dense reference."""

import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import compilations
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


@pytest.mark.parametrize("engine", ["host", "compiled"])
@pytest.mark.parametrize("reortho", ["full", "partial", "selective"])
def test_a_run_that_spans_its_block_stays_inside_it(reortho, engine):
    """A block of 3 coordinates among 8 whose eigenvalue 1 is repeated: the Krylov space of any
    start has 2 dimensions, so the run breaks down at step 2 of its 3. The direction that
    continues it is drawn on the block's coordinates (outside it the masked operator is 0, an
    eigenvalue the block does not have), and with none left the run ends: λmin and λmax are the
    block's own, 1 and 3."""
    p = {"a": jnp.ones(3), "b": jnp.ones(5)}

    def loss(p):
        return 0.5 * jnp.sum(jnp.array([1.0, 1.0, 3.0]) * p["a"] ** 2) + jnp.sum(p["b"] ** 2)

    block = spectral.linearise(loss, p).restrict("a")
    k = 2 if reortho == "selective" else 1
    for which, true in (("smallest", 1.0), ("largest", 3.0)):
        r = spectral.Lanczos(k=k, which=which, reortho=reortho, engine=engine)(
            block, key=jax.random.key(0))[0]
        assert abs(r.value - true) <= tol(np.float64, "eig"), (which, r.value)


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


def test_a_selection_reads_an_nnx_path_without_value_and_warns_when_it_takes_everything():
    """flax.nnx puts ``.value`` at the end of every parameter's path: a selection searches the
    path without it ("val" matches nothing). An unanchored expression that selects every
    parameter whole ("e", found in every path here) warns; one anchored, or restricted to an
    index along an axis, does not."""
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.enc = nnx.Linear(2, 3, rngs=rngs, param_dtype=jnp.float64)
            self.head = nnx.Linear(3, 1, rngs=rngs, param_dtype=jnp.float64)

    _, params = nnx.split(Net(nnx.Rngs(0)), nnx.Param)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [int(spectral.block_mask(params, s).sum()) for s in ("enc", "head")] == [9, 4]
        assert spectral.block_mask(params, r"^\['").all()
        assert spectral.block_mask(params, "e", axis=0, index=0).sum() == 1 + 3 + 1 + 1
    assert list(spectral.subtree_blocks(params)) == ["['enc']", "['head']"]
    with pytest.raises(ValueError, match=r"the leaf paths are \[\"\['enc'\]\['bias'\]\""):
        spectral.block_mask(params, "val")
    with pytest.warns(UserWarning, match=r"'e' matches every parameter .* whole operator.*"
                                         r"anchor it to a key, e\.g\. \"\^\\\\\['e'\\\\\]\""):
        spectral.block_mask(params, "e")


def test_a_selection_that_matches_nothing_is_named(deora_problem):
    params, batch = deora_problem
    with pytest.raises(ValueError, match=r"matches no parameter; the leaf paths are \[\"\['U'\]\""):
        spectral.lambda_min(spectral.Block(deora.loss_fn, "attn"), params, batch)
    with pytest.raises(ValueError, match=r"has no index 7 along axis 0 \(its length there is"):
        spectral.lambda_min(spectral.Block(deora.loss_fn, "W", 0, 7), params, batch)
    with pytest.raises(ValueError, match=r"of shape \[\d+, \d+, \d+\] has no axis 5 \(it has 3\)"):
        spectral.lambda_min(spectral.Block(deora.loss_fn, "W", 5, 0), params, batch)
    with pytest.raises(ValueError, match="non-empty dict"):
        spectral.per_block(deora.loss_fn, params, batch, blocks={})
    for heads in (0, -2, 2.0):                   # refused where it is given, by name
        with pytest.raises(ValueError, match=r"num_heads must be an integer >= 1"):
            spectral.head_blocks("W", 0, heads)


def test_per_block_compiles_the_hvp_once_and_checks_every_block_first(deora_problem):
    """Blocks are masks on one linearised operator: per_block over every head compiles no more
    than a probe of one block, its values equal one Block probe's, and a bad block anywhere
    in the dict is refused before any probe runs."""
    params, batch = deora_problem
    key = jax.random.key(0)
    one = spectral.lambda_min(spectral.Block(deora.loss_fn, "", 0, 0), params, batch, key=key)
    blocks = spectral.head_blocks("", 0, 3)
    rows = spectral.per_block(deora.loss_fn, params, batch, blocks=blocks, key=key)
    moved, other = jax.tree.map(lambda a: 1.01 * a, params), jax.random.key(1)
    with compilations() as seen:
        again = spectral.per_block(deora.loss_fn, moved, batch, blocks=blocks, key=other)
    assert not seen, seen
    assert all(r.converged for r in rows + again)
    assert abs(rows[0].lambda_min - one.value) <= tol(np.float64, "eig") * abs(one.value)
    ran = []
    real = spectral.Lanczos.__call__
    try:
        spectral.Lanczos.__call__ = lambda *a, **k: ran.append(1) or real(*a, **k)
        for bad, match in (({"ok": ("", 0, 0), "bad": ("", 0, 7)}, "block 'bad'.*no index 7"),
                           ({"ok": ("", 0, 0), "bad": ("W", 0)}, "block 'bad' must be")):
            with pytest.raises(ValueError, match=match):
                spectral.per_block(deora.loss_fn, params, batch, blocks=bad, key=key)
    finally:
        spectral.Lanczos.__call__ = real
    assert not ran


class Pair(NamedTuple):
    w: jax.Array
    w2: jax.Array


def test_subtree_blocks_of_attribute_keys_do_not_overlap():
    """A NamedTuple's fields ``.w`` and ``.w2``: the block of ``.w`` is its 3 coordinates, not
    ``.w2``'s 4 as well (the name is matched up to the end of the path or its next key)."""
    p = Pair(jnp.ones(3), jnp.ones(4))

    def loss(p):
        return jnp.sum(p.w ** 2) + 5 * jnp.sum(p.w2 ** 2)

    rows = {r.name: r for r in spectral.per_block(loss, p, blocks=spectral.subtree_blocks(p),
                                                  key=jax.random.key(0))}
    assert (rows[".w"].size, rows[".w2"].size) == (3, 4)
    assert rows[".w"].lambda_max == pytest.approx(2.0, rel=tol(np.float64, "eig"))
    assert rows[".w2"].lambda_min == pytest.approx(10.0, rel=tol(np.float64, "eig"))


def test_per_block_reads_a_scalar_block_exactly_and_refuses_what_it_does_not_take():
    """A scalar parameter is a block of one coordinate: its eigenvalue is its diagonal entry
    (∂²/∂s² of w²s² + s⁴ at w = 1, s = 1.5: 2·4 + 12·1.5² = 35), for either method. ``k`` and
    ``which`` are not options of per_block (it gives λmin and λmax); a bad one is named before
    any work."""
    p = {"w": jnp.ones((2, 2)), "s": jnp.array(1.5)}

    def loss(p):
        return jnp.sum(p["w"] ** 2) * p["s"] ** 2 + p["s"] ** 4

    for method in ("lanczos", "exact"):
        rows = {r.name: r for r in spectral.per_block(
            loss, p, blocks=spectral.subtree_blocks(p), key=jax.random.key(0), method=method)}
        assert rows["['s']"].size == 1 and rows["['s']"].converged
        assert rows["['s']"].lambda_min == pytest.approx(35.0, rel=tol(np.float64, "eig"))
        assert rows["['w']"].lambda_max == pytest.approx(4.5, rel=tol(np.float64, "eig"))
    for bad in ({"k": 2}, {"which": "largest"}):
        with pytest.raises(TypeError, match="not an option here"):
            spectral.per_block(loss, p, blocks=spectral.subtree_blocks(p), **bad)


def test_a_block_whose_operator_vanishes_raises_no_numpy_warning():
    """The curvature of a loss linear in one block is 0 there: the block's run meets an
    invariant subspace at once (log β = −∞), and its ends are 0 without a NumPy warning."""
    p = {"a": jnp.ones(3), "b": jnp.ones(4)}

    def loss(p):
        return jnp.sum(jnp.arange(1.0, 4.0) * p["a"] ** 2) + jnp.sum(p["b"])

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        rows = spectral.per_block(loss, p, blocks=spectral.subtree_blocks(p),
                                  key=jax.random.key(0), engine="host")
    assert rows[1].lambda_min == rows[1].lambda_max == 0.0 and rows[1].converged


def test_a_blocks_warning_names_the_block():
    """A probe that does not converge on one block warns with that block's name and size."""
    diag = {"a": jnp.linspace(-1.0, 1.0, 50), "b": jnp.asarray([1.0, 2.0, 3.0])}

    def loss(p):
        return sum(0.5 * jnp.sum(diag[k] * p[k] ** 2) for k in p)

    params = {"a": jnp.ones(50), "b": jnp.ones(3)}
    blocks = {"a": ("a", None, None), "b": ("b", None, None)}
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        rows = spectral.per_block(loss, params, blocks=blocks, krylov=4, max_restarts=0,
                                  key=jax.random.key(0))
    texts = [str(w.message) for w in said if issubclass(w.category, spectral.ConvergenceWarning)]
    assert texts and all(t.startswith("block 'a' (50 coordinates): Lanczos did not converge")
                         for t in texts), texts
    assert {r.name: r.converged for r in rows} == {"a": False, "b": True}
