"""Checks C1–C5 of notes/symmetry.md, flax equality, masks and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import compiled
from flax import nnx
from hypothesis import given
from hypothesis import strategies as st

from mhatheory import attention as A
from mhatheory.testing import tol

F32, F64 = tol(np.float32), tol(np.float64)  # the "identity" row of the tolerance table


def test_c1_tutorial_worked_example_float32():
    Q = np.array([[1, 2], [3, 4]], np.float32)
    K = np.array([[4, 5], [6, 7], [8, 9]], np.float32)
    V = np.array([[10, 11, 12], [13, 14, 15], [16, 17, 18]], np.float32)
    # the tutorial prints QKᵀ row 2 as [38, 56, 74]; the product is [32, 46, 60]
    np.testing.assert_array_equal(Q @ K.T, [[14, 20, 26], [32, 46, 60]])
    s = (Q.astype(np.float64) @ K.T.astype(np.float64)) / np.sqrt(2)
    w = np.exp(s - s.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    out, weights = A.scaled_dot_product_attention(jnp.asarray(Q), jnp.asarray(K), jnp.asarray(V),
                                                  return_weights=True)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(weights, w, rtol=F32, atol=F32)
    np.testing.assert_allclose(out, w @ V, rtol=F32, atol=F32)
    np.testing.assert_allclose(out[0], [15.95628943, 16.95628943, 17.95628943], rtol=F32)


# the corner shapes and one full shape: every draw reuses one of four compiled shapes (a shape
# per draw compiled the weights afresh 25 times); data, mask density and seed vary per draw
SHAPES = [(1, 1), (1, 7), (6, 1), (6, 7)]


@given(st.sampled_from(SHAPES), st.integers(0, 1000))
def test_c2_weights_are_distributions_and_masked_entries_are_zero(shape, seed):
    tq, tk = shape
    kq, kk, km = jax.random.split(jax.random.key(seed), 3)
    q, k = jax.random.normal(kq, (tq, 4)), jax.random.normal(kk, (tk, 4))
    mask = jax.random.bernoulli(km, 0.6, (tq, tk))
    w = np.asarray(A.attention_weights(q, k, mask))
    assert np.all(w >= 0)
    assert np.all(w[~np.asarray(mask)] == 0.0)
    rows = np.asarray(mask).any(1)
    np.testing.assert_allclose(w.sum(1)[rows], 1.0, atol=F64)
    assert np.all(w.sum(1)[~rows] == 0.0)  # fully masked rows: zeros, not NaN
    # the same mask as an additive bias (0 / −inf) gives the same weights, bit for bit
    bias = jnp.where(mask, 0.0, -jnp.inf)
    np.testing.assert_array_equal(np.asarray(A.attention_weights(q, k, bias=bias)), w)


def test_a_bias_of_nan_or_plus_inf_is_refused():
    q = k = jnp.ones((2, 4))
    for bad in (jnp.nan, jnp.inf):
        with pytest.raises(ValueError, match=r"bias contains 1 NaN/\+inf value"):
            A.attention_weights(q, k, bias=jnp.zeros((2, 2)).at[0, 1].set(bad))


def _mha(d=16, h=4, seed=0, **kw):
    return A.MultiHeadAttention(d, h, rngs=nnx.Rngs(seed), param_dtype=jnp.float64, **kw)


@pytest.mark.parametrize("h", [1, 2, 4, 8])
def test_c3_self_attention_is_permutation_equivariant(h):
    mha = compiled(_mha(16, h))
    x = jax.random.normal(jax.random.key(1), (2, 7, 16))
    perm = jax.random.permutation(jax.random.key(2), 7)
    np.testing.assert_allclose(mha(x[:, perm]), mha(x)[:, perm], atol=F64)


def test_c4_cross_attention_symmetries_and_padding_that_moves():
    mha = compiled(_mha(16, 4, d_memory=12))
    x = jax.random.normal(jax.random.key(1), (3, 5, 16))
    mem = jax.random.normal(jax.random.key(2), (3, 9, 12))
    valid = jnp.arange(9)[None, :] < jnp.array([[9], [6], [3]])
    pm = jax.random.permutation(jax.random.key(3), 9)
    pq = jax.random.permutation(jax.random.key(4), 5)
    base = mha(x, mem, mask=A.padding_mask(valid))
    np.testing.assert_allclose(mha(x, mem[:, pm], mask=A.padding_mask(valid[:, pm])), base,
                               atol=F64)
    np.testing.assert_allclose(mha(x[:, pq], mem, mask=A.padding_mask(valid)), base[:, pq],
                               atol=F64)
    # padded memory rows have no effect at all
    junk = mem.at[1, 6:].set(100.0)
    np.testing.assert_allclose(mha(x, junk, mask=A.padding_mask(valid)), base, atol=F64)


def test_c5_causal_outputs_ignore_later_tokens():
    mha = compiled(_mha(16, 4))
    x = jax.random.normal(jax.random.key(1), (8, 16))
    base = mha(x, mask=A.causal_mask(8))
    later = jnp.arange(8)[:, None]
    for k in range(8):
        # tokens k + 1 … 7 changed (arrays of one shape for every k: no program per k)
        noise = jax.random.normal(jax.random.key(k), (8, 16))
        changed = jnp.where(later > k, x + noise, x)
        out = mha(changed, mask=A.causal_mask(8))
        np.testing.assert_array_equal(out[: k + 1], base[: k + 1])


def test_equals_flax_multi_head_attention_with_the_same_weights():
    with jax.default_matmul_precision("highest"):
        ours = A.MultiHeadAttention(32, 4, rngs=nnx.Rngs(0))
        ref = nnx.MultiHeadAttention(4, 32, rngs=nnx.Rngs(1), decode=False)
        for name in ("query", "key", "value", "out"):
            getattr(ref, name).kernel[...] = getattr(ours, f"{name}_kernel")[...]
            getattr(ref, name).bias[...] = getattr(ours, f"{name}_bias")[...] + 0.1
            getattr(ours, f"{name}_bias")[...] = getattr(ref, name).bias[...]
        x = jax.random.normal(jax.random.key(2), (2, 6, 32), jnp.float32)
        mem = jax.random.normal(jax.random.key(3), (2, 9, 32), jnp.float32)
        mask = A.causal_mask(6)
        ours, ref = compiled(ours), compiled(ref)
        assert ours(x).dtype == jnp.float32
        np.testing.assert_allclose(ours(x, mask=mask), ref(x, mask=mask[None, None]), atol=F32)
        np.testing.assert_allclose(ours(x, mem), ref(x, mem, mem), atol=F32)


@pytest.mark.parametrize("bad, match", [
    (lambda: A.MultiHeadAttention(10, 4, rngs=nnx.Rngs(0)), "not divisible"),
    (lambda: _mha()(jnp.ones((3, 12))), "feature size 12"),
    (lambda: _mha(d_memory=8)(jnp.ones((3, 16)), jnp.ones((4, 6))), "memory has feature size"),
    (lambda: _mha()(jnp.ones((3, 16)), mask=jnp.ones((4, 3), bool)), "does not broadcast"),
    (lambda: A.attention_weights(jnp.ones((2, 3)), jnp.ones((2, 4))), "feature size"),
    (lambda: A.scaled_dot_product_attention(jnp.ones((2, 3)), jnp.ones((4, 3)),
                                            jnp.ones((5, 3))), "same length"),
])
def test_bad_input_names_the_shapes(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()
