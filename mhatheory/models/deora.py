"""The single-layer multi-head attention classifier of Deora et al. (arXiv 2310.12680).

Tokens X ∈ ℝ^{T×d} (rows x_1..x_T), parameters θ = (W_h ∈ ℝ^{d×d}, U_h ∈ ℝ^d)_{h=1..H}:

    s_h = X W_h x_1 ∈ ℝ^T          (s_{h,t} = x_tᵀ W_h x_1; the first token is the query)
    a_h = softmax(s_h)
    φ_h = U_hᵀ Xᵀ a_h              (one head's output)
    Φ(X; θ) = (1/√H) Σ_h φ_h

P = H(d² + d) parameters. The 1/√H scaling is what the weak-convexity bound's 1/√H comes from
(see :mod:`mhatheory.deora`, the model's theory). Axis legend in the einsums: h head, t token,
d/e feature.

The pure functions :func:`head_outputs`, :func:`phi` and :func:`loss_fn` take
``params = {"W": [H, d, d], "U": [H, d]}``; :class:`DeoraMHA` is the ``flax.nnx`` face over them
(``model.params()`` gives that dict, ``DeoraMHA.from_arrays`` builds a model from it).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mhatheory import _validate
from mhatheory.data import Batch, check_batch
from mhatheory.losses import margin_loss


def parameter_count(d: int, num_heads: int) -> int:
    """P = H (d² + d)."""
    return num_heads * (d * d + d)


def head_outputs(params, X):
    """φ_h(X) = U_hᵀ Xᵀ softmax(X W_h x_1) for every head: ``X [..., T, d]`` → ``[..., H]``."""
    W, U = params["W"], params["U"]
    query = X[..., 0, :]                                          # (..., d)
    scores = jnp.einsum("...td,hde,...e->...ht", X, W, query)     # (..., H, T)
    attn = jax.nn.softmax(scores, axis=-1)                        # (..., H, T)
    return jnp.einsum("hd,...td,...ht->...h", U, X, attn)         # (..., H)


def phi(params, X):
    """Φ(X; θ) = (1/√H) Σ_h φ_h(X): ``X [..., T, d]`` → ``[...]``. On concrete (not traced)
    inputs the parameters and tokens are checked first (:func:`check_params`,
    :func:`check_tokens`)."""
    if _validate.is_concrete(X) and not any(isinstance(a, jax.core.Tracer)
                                            for a in jax.tree.leaves(params)):
        _, d = check_params(params)
        check_tokens(X, d)
    num_heads = params["U"].shape[0]
    return jnp.sum(head_outputs(params, X), axis=-1) / math.sqrt(num_heads)


def _check_loss_args(params, batch=None, *rest) -> None:
    if rest or not isinstance(batch, Batch):
        raise ValueError("deora.loss_fn takes (params, batch) with batch a mhatheory.data.Batch"
                         f"(X, y); got {1 + len(rest)} data argument(s) of type "
                         f"{type(batch).__name__}.")
    H, d = check_params(params)
    check_batch(batch, d)


@_validate.checks_args(_check_loss_args)
def loss_fn(params, batch: Batch):
    """L̂(θ) = Σ_i w_i ℓ(y_i Φ(X_i; θ)) / Σ_i w_i with ℓ the logistic loss (w_i = 1 by default).

    This is the loss-function contract between models and probes: a pure function of
    ``(params, batch)`` whose data travels as an argument. Called on concrete arrays it checks
    its inputs first (labels in {−1, +1}, shapes, finiteness); probes run the same check
    (``loss_fn.check_args``) before compiling.
    """
    if not isinstance(batch, Batch) or not isinstance(batch.y, jax.core.Tracer):
        _check_loss_args(params, batch)
    return margin_loss(phi(params, batch.X), batch.y, batch.w)


def check_params(params) -> tuple[int, int]:
    """Validate a Deora parameter dict; returns ``(H, d)``."""
    if not isinstance(params, dict) or set(params) != {"W", "U"}:
        raise ValueError("params must be a dict with exactly the keys 'W' and 'U', got "
                         + (f"keys {sorted(map(str, params))}" if isinstance(params, dict)
                            else type(params).__name__) + ".")
    W, U = params["W"], params["U"]
    for name, a in (("W", W), ("U", U)):
        dt = np.dtype(a.dtype) if hasattr(a, "dtype") else np.result_type(a)
        if not np.issubdtype(dt, np.floating):
            raise ValueError(f"{name} has dtype {dt}, but the parameters must be floating point; "
                             "cast with .astype(float).")
    if jnp.ndim(W) != 3 or W.shape[1] != W.shape[2]:
        raise ValueError(f"W must have shape [H, d, d], got {list(jnp.shape(W))}.")
    H, d = W.shape[0], W.shape[1]
    _validate.shape("U", U, (H, d))
    _validate.positive_int("num_heads (W.shape[0])", H)
    _validate.positive_int("d (W.shape[1])", d)
    _validate.finite("W", W)
    _validate.finite("U", U)
    return H, d


def check_tokens(X, d: int) -> None:
    """X must be ``[..., T, d]`` with T ≥ 2 and finite."""
    if jnp.ndim(X) < 2:
        raise ValueError(f"X must have shape [..., T, d] with d={d}, got {list(jnp.shape(X))}.")
    _validate.shape("X", X, (None, d), leading=True)
    if X.shape[-2] < 2:
        raise ValueError(f"X must hold T >= 2 tokens (the first is the query), "
                         f"got T={X.shape[-2]}.")
    _validate.finite("X", X)


def init_params(key, d: int, num_heads: int, init_scale: float = 1.0, dtype=None):
    """Per-head i.i.d. Gaussian init: W_h, U_h entries ~ N(0, init_scale²/d).

    The distribution of each head does not depend on H, so a model with more heads extends one
    with fewer (the H-experiment relies on this: heads 1..H of a seed are the same arrays).
    """
    d = _validate.positive_int("d", d)
    num_heads = _validate.positive_int("num_heads", num_heads)
    init_scale = _validate.positive_float("init_scale", init_scale)
    _validate.floating_dtype("dtype", dtype)
    _validate.prng_key("key", key)
    dtype = dtype or jnp.zeros(()).dtype
    std = init_scale / math.sqrt(d)
    keys = jax.random.split(key, num_heads)

    def one_head(k):
        kw, ku = jax.random.split(k)
        return (std * jax.random.normal(kw, (d, d), dtype),
                std * jax.random.normal(ku, (d,), dtype))

    W, U = jax.vmap(one_head)(keys)
    return {"W": W, "U": U}


class DeoraMHA(nnx.Module):
    """Single-layer MHA classifier Φ(X; θ) of Deora et al. (see module docstring).

    Args:
        d: token dimension (≥ 1).
        num_heads: H (≥ 1).
        init_scale: standard deviation multiplier; entries of W and U are N(0, init_scale²/d).
        rngs: ``nnx.Rngs`` supplying the ``params`` stream.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> model = DeoraMHA(4, 2, rngs=nnx.Rngs(0))
        >>> model(jnp.ones((3, 5, 4))).shape
        (3,)
    """

    def __init__(self, d: int, num_heads: int, *, init_scale: float = 1.0, rngs: nnx.Rngs,
                 dtype=None):
        _validate.positive_int("d", d)
        _validate.positive_int("num_heads", num_heads)
        _validate.positive_float("init_scale", init_scale)
        _validate.floating_dtype("dtype", dtype)
        _validate.rngs("rngs", rngs)
        p = init_params(rngs.params(), d, num_heads, init_scale, dtype)
        self.W = nnx.Param(p["W"])
        self.U = nnx.Param(p["U"])

    @classmethod
    def from_arrays(cls, W, U) -> DeoraMHA:
        """Build a model holding the given ``W [H, d, d]`` and ``U [H, d]``."""
        params = {"W": jnp.asarray(W), "U": jnp.asarray(U)}
        check_params(params)
        model = nnx.eval_shape(lambda: cls(params["W"].shape[1], params["W"].shape[0],
                                           rngs=nnx.Rngs(0), dtype=params["W"].dtype))
        model.W = nnx.Param(params["W"])
        model.U = nnx.Param(params["U"])
        return model

    @property
    def num_heads(self) -> int:
        """H."""
        return self.W.shape[0]

    @property
    def d(self) -> int:
        """The token dimension d."""
        return self.W.shape[1]

    def params(self) -> dict:
        """The parameters as the plain dict the pure functions and probes take."""
        return {"W": self.W[...], "U": self.U[...]}

    def __call__(self, X):
        """Φ(X; θ) for ``X [..., T, d]`` → ``[...]``."""
        check_tokens(X, self.d)
        return phi(self.params(), X)
