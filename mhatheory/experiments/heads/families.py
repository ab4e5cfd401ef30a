"""The two arms of the heads sweep: the Deora model whose width grows with H, and its control at
a fixed total attention width.

**Growing width** (``"growing"``, :mod:`mhatheory.models.deora`): every head has its own d×d
attention matrix W_h and value U_h ∈ ℝ^d, so P = H(d² + d) grows as H.

**Fixed total width** (``"fixed_width"``): head h's attention matrix is factorised,
W_h = Q_h K_hᵀ with Q_h, K_h ∈ ℝ^{d×r} and head size r = width / H, as in a standard
multi-head layer whose query/key width ``width`` is split between heads. Then
P = H(2dr + d) = 2d·width + dH barely changes with H, so this arm separates *more heads* from
*more parameters*. Φ = (1/√H) Σ_h U_hᵀ Xᵀ softmax(X Q_h K_hᵀ x_1), the same output as the
Deora model at W_h = Q_h K_hᵀ.

**Init.** The entries of W_h = Q_h K_hᵀ get the Deora init's variance s²/d: with Q_ik, K_jk
i.i.d. N(0, σ²), Var(W_ij) = Σ_{k<r} E[Q_ik²]·E[K_jk²] = rσ⁴, so σ² = s/√(d r). U_h entries
~ N(0, s²/d) as in the Deora init.

In the growing arm heads 1..H of a seed are the same arrays at every H (paired across H); the
fixed-width arm's heads change shape with H, so its inits at different H are independent draws
(paired only through the seed's data).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from mhatheory.models import deora

ARMS = ("growing", "fixed_width")


def fixed_width_phi(params, X):
    """Φ(X) of the fixed-width arm: ``params = {"Q": [H, d, r], "K": [H, d, r], "U": [H, d]}``,
    ``X [..., T, d]`` → ``[...]``."""
    W = jnp.einsum("hdr,her->hde", params["Q"], params["K"])
    return deora.phi({"W": W, "U": params["U"]}, X)


def fixed_width_init(key, d: int, num_heads: int, init_scale: float, width: int):
    """Q, K entries ~ N(0, s/√(d r)) (variance), U entries ~ N(0, s²/d); r = width / H."""
    r = width // num_heads
    kq, kk, ku = jax.random.split(key, 3)
    dtype = jnp.zeros(()).dtype
    std_qk = math.sqrt(init_scale / math.sqrt(d * r))
    return {"Q": std_qk * jax.random.normal(kq, (num_heads, d, r), dtype),
            "K": std_qk * jax.random.normal(kk, (num_heads, d, r), dtype),
            "U": init_scale / math.sqrt(d) * jax.random.normal(ku, (num_heads, d), dtype)}


def phi_of(arm: str):
    """The arm's model output Φ(params, X)."""
    return deora.phi if arm == "growing" else fixed_width_phi


def init_of(arm: str, key, d: int, num_heads: int, init_scale: float, width: int):
    """θ_0 of the arm (the growing arm's is :func:`mhatheory.models.deora.init_params`)."""
    if arm == "growing":
        return deora.init_params(key, d, num_heads, init_scale)
    return fixed_width_init(key, d, num_heads, init_scale, width)


def parameter_count(arm: str, d: int, num_heads: int, width: int) -> int:
    """P = H(d² + d) (growing) or H(2d·width/H + d) = 2d·width + dH (fixed width)."""
    if arm == "growing":
        return deora.parameter_count(d, num_heads)
    return num_heads * (2 * d * (width // num_heads) + d)
