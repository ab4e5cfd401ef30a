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
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

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


# ---------------------------------------------------------------------------------------------
# Any flax.nnx model family: ``make(num_heads, *, rngs) -> nnx.Module``

#: the built-in families (``--model``); anything else is ``MODULE:FUNCTION``
BUILT_IN = ("deora", "transformer")


class NnxApply:
    """The pure output ``phi(params, X)`` of an nnx module structure: ``nnx.merge`` of its
    graph, the parameters (a pure dict) and its other state, called on X. One object per
    structure (:func:`nnx_params`), so every cell of that structure reuses its compiled
    programs."""

    def __init__(self, graphdef, rest):
        self.graphdef, self.rest = graphdef, rest

    def __call__(self, params, X):
        """The module's output on ``X`` with parameters ``params``."""
        from flax import nnx

        return nnx.merge(self.graphdef, nnx.State(params), self.rest)(X)


_PHI: dict = {}


def nnx_params(make, num_heads: int, seed: int, init_scale: float):
    """``make(num_heads, rngs=nnx.Rngs(seed))``'s parameters as a pure dict, times
    ``init_scale`` (the sweep's init scale multiplies the module's own initial parameters), and
    the :class:`NnxApply` of its structure."""
    from flax import nnx

    module = make(num_heads, rngs=nnx.Rngs(params=seed))
    if not isinstance(module, nnx.Module):
        raise ValueError(f"--model: make({num_heads}, rngs=...) must return a flax.nnx.Module, "
                         f"got {type(module).__name__}.")
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    phi = _PHI.setdefault(graphdef, NnxApply(graphdef, rest))
    return jax.tree.map(lambda a: init_scale * jnp.asarray(a), nnx.to_pure_dict(params)), phi


class Abstract(NamedTuple):
    """``make(num_heads)`` traced abstractly: its output's shape on the traced inputs and its
    parameters as a pure dict of ``jax.ShapeDtypeStruct``."""

    output: tuple
    params: dict


def abstract(make, num_heads: int, x_shape: tuple, dtype) -> Abstract:
    """``make(num_heads)``'s parameters and its output's shape on inputs of ``x_shape``, traced
    abstractly (``nnx.eval_shape`` and ``jax.eval_shape``: no parameter is drawn, nothing
    compiles)."""
    from flax import nnx

    module = nnx.eval_shape(lambda: make(num_heads, rngs=nnx.Rngs(params=0)))
    if not isinstance(module, nnx.Module):
        raise ValueError(f"--model: make({num_heads}, rngs=...) must return a flax.nnx.Module, "
                         f"got {type(module).__name__}.")
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    if not jax.tree.leaves(params):
        raise ValueError(f"--model: make({num_heads}, rngs=...) has no nnx.Param to train; "
                         "every H needs parameters (declare them as nnx.Param, e.g. through "
                         "nnx.Linear).")
    pure = nnx.to_pure_dict(params)
    out = jax.eval_shape(NnxApply(graphdef, rest), pure, jax.ShapeDtypeStruct(x_shape, dtype))
    return Abstract(tuple(out.shape), pure)


def narrower_floats(params, dtype) -> list[str]:
    """The floating dtypes among ``params``' leaves (arrays or ``ShapeDtypeStruct``) narrower
    than ``dtype``, by name."""
    bits = jnp.finfo(dtype).bits
    return sorted({str(a.dtype) for a in jax.tree.leaves(params)
                   if jnp.issubdtype(a.dtype, jnp.floating) and jnp.finfo(a.dtype).bits < bits})


def ignores_heads(make, abstracts: dict, x_shape: tuple, dtype) -> tuple[int, int] | None:
    """``(h₁, h₂)`` where ``make`` builds one module whatever ``num_heads`` (its keys of
    ``abstracts``, :class:`Abstract` by H): the same parameter shapes at every H and, from one
    seed at the smallest and the largest H, the same parameters and the same outputs on one
    random input; else None. Shapes alone do not decide it: a fused projection split into heads
    inside ``__call__`` keeps its shapes at every H and still uses H, so only such families are
    built and run (once each, on two samples)."""
    hs = sorted(abstracts)
    if len(hs) < 2:
        return None
    first = abstracts[hs[0]].params
    structure = jax.tree.structure(first)
    for h in hs[1:]:
        other = abstracts[h].params
        if jax.tree.structure(other) != structure or any(
                (a.shape, a.dtype) != (b.shape, b.dtype)
                for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(other), strict=True)):
            return None
    lo, hi = hs[0], hs[-1]
    (p_lo, phi_lo), (p_hi, phi_hi) = (nnx_params(make, h, 0, 1.0) for h in (lo, hi))
    if not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(p_lo),
                                                     jax.tree.leaves(p_hi), strict=True)):
        return None
    x = jnp.asarray(np.random.default_rng(0).standard_normal(x_shape), dtype)
    outs = [np.asarray(phi_lo(p_lo, x)), np.asarray(phi_hi(p_hi, x))]
    return (lo, hi) if np.array_equal(outs[0], outs[1]) else None


def transformer(d_in: int, classes: int, *, head_dim: int | None = None,
                d_model: int | None = None):
    """The ``transformer`` family: ``make(H)`` is an :class:`mhatheory.models.EncoderClassifier`
    (one layer) with d_model = H·``head_dim`` (fixed head size) or ``d_model`` (fixed width),
    parameters in the default float dtype."""
    from mhatheory.models import EncoderClassifier

    def make(num_heads, *, rngs):
        return EncoderClassifier(d_in, classes, d_model=d_model or num_heads * head_dim,
                                 num_heads=num_heads, rngs=rngs,
                                 param_dtype=jnp.zeros(()).dtype)

    return make

