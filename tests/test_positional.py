import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import compiled
from flax import nnx

from mhatheory import positional
from mhatheory.models import DecoderTransformer, Seq2SeqTransformer, residual_plan
from mhatheory.testing import assert_allclose, tol


def test_sinusoidal_formula():
    pe = positional.sinusoidal(jnp.arange(5), 6, jnp.float64)
    p, i = 3, 2
    assert_allclose(pe[p, 2 * i], np.sin(p / 10000 ** (2 * i / 6)))
    assert_allclose(pe[p, 2 * i + 1], np.cos(p / 10000 ** (2 * i / 6)))


def _txl(seed=0):
    """A two-layer Transformer-XL decoder, compiled."""
    return compiled(DecoderTransformer(11, 16, 2, 2, positional="relative", rngs=nnx.Rngs(seed),
                                       param_dtype=jnp.float64), ("return_mems",))


def test_transformer_xl_memory_changes_outputs_and_carries_no_gradient():
    model = _txl()
    seg1, seg2 = jnp.array([[1, 2, 3, 4]]), jnp.array([[5, 6, 7]])
    _, mems = model(seg1, return_mems=True)
    with_mem = model(seg2, mems=mems)
    without = model(seg2)
    assert float(jnp.max(jnp.abs(with_mem - without))) > 1e-3  # clearly ≠: ≫ float64 rounding
    # a different previous segment gives a different continuation
    _, other = model(jnp.array([[9, 9, 9, 9]]), return_mems=True)
    assert float(jnp.max(jnp.abs(model(seg2, mems=other) - with_mem))) > 1e-3  # ditto
    # no gradient flows into the cached states
    g = jax.grad(lambda ms: jnp.sum(model(seg2, mems=ms)))(mems)
    assert all(float(jnp.max(jnp.abs(x))) == 0.0 for x in g)


def test_relative_attention_is_translation_invariant_in_position():
    """Only distances enter: a segment gives the same output wherever it is placed, so the
    relative model with a memory of zeros differs from none only through the memory keys."""
    model = _txl(1)
    x = jnp.array([[3, 1, 4, 1, 5]])
    a = model(x)
    b = model(jnp.concatenate([x, x], axis=1))[:, :5]  # causal: the first 5 outputs agree
    assert_allclose(a, b)


def test_residual_plans():
    assert residual_plan(True, 2) == ((True, True), (True, True))
    assert residual_plan("off:1", 3) == ((True, True), (False, False), (True, True))
    assert residual_plan("attention-only", 1) == ((True, False),)
    assert residual_plan([True, (False, True)], 2) == ((True, True), (False, True))
    with pytest.raises(ValueError, match="off:K"):
        residual_plan("off:5", 2)
    with pytest.raises(ValueError, match="needs 3 entries"):
        residual_plan([True], 3)


def test_decoder_transformer_bad_input():
    with pytest.raises(ValueError, match="positional must be"):
        DecoderTransformer(5, 8, 2, 1, positional="rotary", rngs=nnx.Rngs(0))
    m = DecoderTransformer(5, 8, 2, 1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="integers"):
        m(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="relative"):
        m(jnp.ones((1, 3), int), mems=[jnp.ones((1, 2, 8))])
    with pytest.raises(ValueError, match="max_len"):
        DecoderTransformer(5, 8, 2, 1, max_len=4, rngs=nnx.Rngs(0))(jnp.ones((1, 6), int))


def test_seq2seq_decoder_is_causal_and_encoder_padding_is_ignored():
    m = compiled(Seq2SeqTransformer(7, 7, 16, 2, 2, rngs=nnx.Rngs(0), param_dtype=jnp.float64))
    src = jnp.array([[1, 2, 3, 0, 0]])
    valid = src > 0
    tgt = jnp.array([[1, 4, 5, 6]])
    base = m(src, tgt, valid)
    assert_allclose(m(src, tgt.at[0, 3].set(2), valid)[:, :3], base[:, :3])
    assert_allclose(m(src.at[0, 4].set(5), tgt, valid), base)


def test_sinusoidal_inputs_scale_token_embeddings_by_sqrt_d_model():
    m = DecoderTransformer(11, 16, 2, 1, positional="sinusoidal", rngs=nnx.Rngs(0),
                           param_dtype=jnp.float64)
    t = jnp.array([[3, 1, 4]])
    expected = 4.0 * m.embed(t) + positional.sinusoidal(jnp.arange(3), 16, jnp.float64)[None]
    # the same two operations in the same order: agreement to a few ε ("reordered" row)
    np.testing.assert_allclose(m.embed_tokens(t), expected, rtol=0,
                               atol=tol(np.float64, "reordered"))
    learned = DecoderTransformer(11, 16, 2, 1, positional="learned", rngs=nnx.Rngs(0),
                                 param_dtype=jnp.float64)
    np.testing.assert_allclose(learned.embed_tokens(t),
                               learned.embed(t) + learned.positions(3)[None],
                               atol=tol(np.float64, "reordered"))  # ditto
