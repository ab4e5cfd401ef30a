"""Positional encodings: sinusoidal and learned absolute positions.

**Sinusoidal** (Vaswani et al.): PE[p, 2i] = sin(p / 10000^{2i/d}), PE[p, 2i+1] = cos(·). The
same embedding of relative distances drives Transformer-XL attention
(:class:`mhatheory.attention.RelativeMultiHeadAttention`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mhatheory._numerics import lead


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
        """The first ``length`` rows of the table, ``[length, d_model]``."""
        if length > self.table.shape[0]:
            raise ValueError(f"sequence length {length} exceeds max_len={self.table.shape[0]} "
                             "of the learned positional table; raise max_len.")
        return self.table[...][:length]
