"""``verify`` group ``attention``: C1–C5 of notes/symmetry.md and equality with
``flax.nnx.MultiHeadAttention``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mhatheory import attention as A
from mhatheory.checks import Check, upper


def rows(full: bool, out, progress: bool = False) -> list[Check]:
    """C1–C5 of notes/symmetry.md and equality with flax.nnx.MultiHeadAttention."""
    Q = jnp.array([[1.0, 2], [3, 4]], jnp.float32)
    K = jnp.array([[4.0, 5], [6, 7], [8, 9]], jnp.float32)
    V = jnp.array([[10.0, 11, 12], [13, 14, 15], [16, 17, 18]], jnp.float32)
    s = np.asarray(Q, np.float64) @ np.asarray(K, np.float64).T / np.sqrt(2)
    w = np.exp(s - s.max(1, keepdims=True))
    ref = (w / w.sum(1, keepdims=True)) @ np.asarray(V, np.float64)
    c1 = float(np.max(np.abs(np.asarray(A.scaled_dot_product_attention(Q, K, V)) - ref)))
    mha = A.MultiHeadAttention(16, 4, rngs=nnx.Rngs(0), param_dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(1), (7, 16))
    perm = np.asarray(jax.random.permutation(jax.random.key(2), 7))
    c3 = float(jnp.max(jnp.abs(mha(x[perm]) - mha(x)[perm])))
    mem = jax.random.normal(jax.random.key(3), (9, 16))
    pm = np.asarray(jax.random.permutation(jax.random.key(4), 9))
    c4 = float(jnp.max(jnp.abs(mha(x, mem[pm]) - mha(x, mem))))
    base = mha(x, mask=A.causal_mask(7))
    c5 = max(float(jnp.max(jnp.abs(mha(x.at[k + 1:].add(1.0), mask=A.causal_mask(7))[: k + 1]
                                   - base[: k + 1]))) for k in range(6))
    mask = jax.random.bernoulli(jax.random.key(5), 0.5, (7, 9))
    wts = np.asarray(A.attention_weights(x, mem, mask))
    c2 = float(max(np.max(np.abs(wts.sum(1)[np.asarray(mask).any(1)] - 1)),
                   np.max(np.abs(wts[~np.asarray(mask)]))))
    with jax.default_matmul_precision("highest"):
        ours = A.MultiHeadAttention(32, 4, rngs=nnx.Rngs(0))
        flax_mha = nnx.MultiHeadAttention(4, 32, rngs=nnx.Rngs(1), decode=False)
        for name in ("query", "key", "value", "out"):
            getattr(flax_mha, name).kernel[...] = getattr(ours, f"{name}_kernel")[...]
        x32 = jax.random.normal(jax.random.key(6), (2, 6, 32), jnp.float32)
        eq = float(jnp.max(jnp.abs(ours(x32) - flax_mha(x32))))
    return [
        upper("attention C1: tutorial worked example (float32)", "identity", c1, 1e-5,
              "vs float64 NumPy; QKᵀ row 2 is [32, 46, 60] (the tutorial prints 38, 56, 74)"),
        upper("attention C2: rows sum to 1, masked weights 0", "identity", c2, 1e-12, "float64"),
        upper("attention C3: self-attention equivariant", "identity", c3, 1e-12, "float64"),
        upper("attention C4: cross-attention invariant to memory order", "identity", c4, 1e-12,
              "float64"),
        upper("attention C5: causal outputs ignore later tokens", "identity", c5, 0.0, "exact"),
        upper("attention: equals flax.nnx.MultiHeadAttention", "identity", eq, 1e-6,
              "float32, highest matmul precision"),
    ]
