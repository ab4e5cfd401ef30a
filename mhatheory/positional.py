"""Positional encodings: sinusoidal and learned absolute, and Transformer-XL relative attention.

**Sinusoidal** (Vaswani et al.): PE[p, 2i] = sin(p / 10000^{2i/d}), PE[p, 2i+1] = cos(·).

**Transformer-XL relative attention** (Dai et al., 2019). For query position i and key position
j the score is

    (q_i + u)ᵀ k_j  +  (q_i + v)ᵀ W_R r_{i−j}

with r_δ the sinusoidal embedding of the distance δ = i − j (no absolute positions anywhere), u,
v learned per-head biases, and W_R a per-head projection. With a segment memory of M cached
hidden states the keys are [memory; current segment], query i sits at absolute position M + i,
and the memory carries no gradient (``stop_gradient``), as in the paper. Axis legend as in
:mod:`mhatheory.attention`; ``r`` indexes relative distances.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from mhatheory.attention import MultiHeadAttention, lead, scaled_dot_product_attention


def sinusoidal(positions, d_model: int, dtype=jnp.float32):
    """``[..., d_model]`` sinusoidal encodings of (possibly negative) positions."""
    positions = jnp.asarray(positions, dtype)
    i = jnp.arange(0, d_model, 2, dtype=dtype)
    freqs = lead(jnp.power(10_000.0, i / d_model), positions.ndim + 1)
    angles = positions[..., None] / freqs                              # (..., d/2)
    pe = jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1)
    return pe.reshape(positions.shape + (-1,))[..., :d_model]


class LearnedPositions(nnx.Module):
    """A learned table of ``max_len`` absolute position embeddings."""

    def __init__(self, max_len: int, d_model: int, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        self.table = nnx.Param(0.02 * jax.random.normal(rngs.params(), (max_len, d_model),
                                                        param_dtype))

    def __call__(self, length: int):
        if length > self.table.shape[0]:
            raise ValueError(f"sequence length {length} exceeds max_len={self.table.shape[0]} "
                             "of the learned positional table; raise max_len.")
        return self.table[...][:length]


class RelativeMultiHeadAttention(MultiHeadAttention):
    """Multi-head self-attention with Transformer-XL relative positions and segment memory."""

    def __init__(self, d_model: int, num_heads: int, *, rngs: nnx.Rngs, use_bias: bool = True,
                 param_dtype=jnp.float32):
        super().__init__(d_model, num_heads, use_bias=use_bias, rngs=rngs,
                         param_dtype=param_dtype)
        e = self.head_dim
        self.rel_kernel = nnx.Param(jax.random.normal(rngs.params(), (d_model, num_heads, e),
                                                      param_dtype) / math.sqrt(d_model))
        self.content_bias = nnx.Param(jnp.zeros((num_heads, e), param_dtype))   # u
        self.position_bias = nnx.Param(jnp.zeros((num_heads, e), param_dtype))  # v

    def __call__(self, x, memory=None, *, mask=None, return_weights: bool = False):
        """``x [..., T, d]``; ``memory [..., M, d]`` the previous segment's hidden states (no
        gradient flows into it); ``mask`` broadcastable to ``[..., T, M + T]``."""
        keys_in = x if memory is None else jnp.concatenate(
            [jax.lax.stop_gradient(memory), x], axis=-2)
        self.check_inputs(x, keys_in)
        T, Tk = x.shape[-2], keys_in.shape[-2]
        q, k, v = self.project(x, keys_in)                                   # (..., h, T/Tk, e)
        dist = jnp.arange(Tk - T, Tk)[:, None] - jnp.arange(Tk)[None, :]     # (T, Tk): i − j
        rel = jnp.arange(-(Tk - 1), Tk)                                      # all distances
        R = jnp.einsum("rd,dhe->hre", sinusoidal(rel, self.d_model, x.dtype),
                       self.rel_kernel[...])                                 # (h, r, e)
        q_v = q + lead(self.position_bias[...][:, None, :], q.ndim)
        pos = jnp.einsum("...hqe,hre->...hqr", q_v, R)
        idx = jnp.broadcast_to(lead(dist + (Tk - 1), pos.ndim), pos.shape[:-1] + (Tk,))
        pos = jnp.take_along_axis(pos, idx, axis=-1)                         # (..., h, T, Tk)
        # content term (q + u)ᵀk = qᵀk + uᵀk: add uᵀk as a bias; all scaled by 1/√e as qᵀk is
        u_k = jnp.einsum("he,...hke->...hk", self.content_bias[...], k)[..., None, :]
        bias = (pos + jnp.broadcast_to(u_k, pos.shape)) / math.sqrt(self.head_dim)
        if mask is not None:
            mask = jnp.asarray(mask, bool)
            mask = mask.reshape(mask.shape[:-2] + (1,) + mask.shape[-2:])
        heads, weights = scaled_dot_product_attention(q, k, v, mask, bias=bias,
                                                      return_weights=True)
        out = self.combine(heads)
        return (out, weights) if return_weights else out
