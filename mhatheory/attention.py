"""Scaled dot-product attention and multi-head attention (Vaswani et al., 2017).

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k + B) V

Axis legend for the einsums: ``q`` query position, ``k`` key/memory position, ``h`` head,
``d`` model feature, ``e`` per-head feature (d_k or d_v).

Masks are boolean, True = may attend, and broadcast to ``[..., Tq, Tk]``. Masked scores are set
to the dtype's most negative finite value before a max-subtracted softmax, and the weights are
multiplied by the mask afterwards, so masked weights are exactly 0 and a fully masked row gives
all-zero weights (and a zero output) instead of NaN.

**Transformer-XL relative attention** (Dai et al., 2019; :class:`RelativeMultiHeadAttention`).
For query position i and key position j the score is

    (q_i + u)ᵀ k_j  +  (q_i + v)ᵀ W_R r_{i−j}

with r_δ the sinusoidal embedding (:func:`mhatheory.positional.sinusoidal`) of the distance
δ = i − j (no absolute positions anywhere), u, v learned per-head biases, and W_R a per-head
projection. With a segment memory of M cached hidden states the keys are [memory; current
segment], query i sits at absolute position M + i, and the memory carries no gradient
(``stop_gradient``), as in the paper; ``r`` indexes relative distances in the einsums.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mhatheory import _validate
from mhatheory._numerics import lead
from mhatheory.positional import sinusoidal


def causal_mask(num_queries: int, num_keys: int | None = None, offset: int | None = None):
    """``[Tq, Tk]`` boolean: query i may attend key j iff j ≤ i + offset (offset defaults to
    Tk − Tq, so the queries are the last Tq positions, as with a Transformer-XL memory)."""
    num_keys = num_queries if num_keys is None else num_keys
    offset = num_keys - num_queries if offset is None else offset
    return jnp.arange(num_keys)[None, :] <= jnp.arange(num_queries)[:, None] + offset


def padding_mask(valid):
    """Key-padding mask ``[..., 1, Tk]`` from ``valid [..., Tk]`` (True = a real token)."""
    return jnp.asarray(valid, bool)[..., None, :]


def _check_mask(mask, tq: int, tk: int):
    shape = tuple(np.shape(mask))
    target = (tq, tk)
    tail = shape[-2:] if len(shape) >= 2 else ((1,) * (2 - len(shape)) + shape)
    if any(s not in (1, t) for s, t in zip(tail, target, strict=True)):
        raise ValueError(f"mask of shape {list(shape)} does not broadcast to [..., Tq={tq}, "
                         f"Tk={tk}] (True = may attend).")


def _check_array(name: str, x, what: str) -> None:
    """``x`` is a numeric array of rank ≥ 2 (``what`` names its axes); finite when concrete."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{name} must be an array {what}, got {type(x).__name__}.")
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape {what}, got {list(x.shape)}.")
    if not jnp.issubdtype(x.dtype, jnp.number):
        raise ValueError(f"{name} must be numeric, got dtype {x.dtype}.")
    if not isinstance(x, jax.core.Tracer) and not bool(np.all(np.isfinite(np.asarray(x)))):
        raise ValueError(f"{name} contains {int(np.size(x) - np.isfinite(np.asarray(x)).sum())} "
                         "NaN/Inf value(s); attention needs finite inputs.")


def _check_mask_dtype(mask) -> None:
    dt = np.dtype(mask.dtype) if hasattr(mask, "dtype") else np.asarray(mask).dtype
    if not (dt == np.bool_ or np.issubdtype(dt, np.integer)):
        raise ValueError(f"mask must be boolean (True = may attend), got dtype {dt}; an additive "
                         "float mask (0 / -inf) belongs in bias=, not mask=.")


def _check_bias(bias) -> None:
    """An additive bias: −inf allowed (a key that may not be attended), NaN and +inf not (when
    concrete)."""
    if isinstance(bias, jax.core.Tracer):
        return
    b = np.asarray(bias)
    bad = np.isnan(b) | (b == np.inf)
    if bad.any():
        raise ValueError(f"bias contains {int(bad.sum())} NaN/+inf value(s); an additive bias "
                         "takes finite values, and -inf for a key that may not be attended.")


def attention_weights(q, k, mask=None, bias=None):
    """softmax(q kᵀ/√d_k + bias) over keys: ``q [..., Tq, dk]``, ``k [..., Tk, dk]`` →
    ``[..., Tq, Tk]``. Rows sum to 1 (0 for a fully masked row); masked entries are exactly 0.
    A −inf in ``bias`` masks its entry like ``mask=False``, so a row of −inf is fully masked
    (0), not 0/0."""
    _check_array("q", q, "[..., Tq, dk]")
    _check_array("k", k, "[..., Tk, dk]")
    if mask is not None:
        _check_mask_dtype(mask)
        _check_mask(mask, q.shape[-2], k.shape[-2])
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"query feature size {q.shape[-1]} != key feature size {k.shape[-1]} "
                         f"(q {list(q.shape)}, k {list(k.shape)}).")
    scores = jnp.einsum("...qe,...ke->...qk", q, k) / math.sqrt(q.shape[-1])
    if bias is not None:
        _check_bias(bias)
        bias = lead(jnp.asarray(bias), scores.ndim)
        open_ = bias > -jnp.inf
        scores = scores + jnp.where(open_, bias, 0.0)
        mask = open_ if mask is None else lead(jnp.asarray(mask, bool), scores.ndim) & open_
    if mask is None:
        return jax.nn.softmax(scores, axis=-1)
    _check_mask(mask, q.shape[-2], k.shape[-2])
    mask = lead(jnp.asarray(mask, bool), scores.ndim)
    scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
    weights = jax.nn.softmax(scores, axis=-1)
    return jnp.where(mask, weights, 0.0)


def scaled_dot_product_attention(q, k, v, mask=None, bias=None, return_weights: bool = False):
    """softmax(q kᵀ/√d_k + bias) v: ``q [..., Tq, dk]``, ``k [..., Tk, dk]``, ``v [..., Tk, dv]``
    → ``[..., Tq, dv]`` (and the weights with ``return_weights``).

    Example (a causal mask: the first query sees only the first key):
        >>> import jax.numpy as jnp
        >>> q = k = jnp.eye(2)
        >>> v = jnp.array([[1.0, 0.0], [0.0, 1.0]])
        >>> out = scaled_dot_product_attention(q, k, v, mask=causal_mask(2))
        >>> out.shape, [round(float(x), 6) for x in out[0]]
        ((2, 2), [1.0, 0.0])
    """
    _check_array("q", q, "[..., Tq, dk]")
    _check_array("k", k, "[..., Tk, dk]")
    _check_array("v", v, "[..., Tk, dv]")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"keys and values must have the same length, got k {list(k.shape)} "
                         f"and v {list(v.shape)}.")
    weights = attention_weights(q, k, mask, bias)
    out = jnp.einsum("...qk,...ke->...qe", weights, v)
    return (out, weights) if return_weights else out


def flax_attention_fn(query, key, value, bias=None, mask=None, **_):
    """A drop-in ``attention_fn`` for ``flax.nnx.MultiHeadAttention`` in the inputs' dtype.

    Flax's default routes through ``jax.nn.dot_product_attention``, whose softmax
    runs in float32 even for float64 inputs (see :mod:`mhatheory.precision`). Takes flax's
    layout ``[..., T, heads, head_dim]``; dropout and the other keyword options are not
    supported (they are ignored, as in a deterministic module). For example::

        nnx.MultiHeadAttention(..., param_dtype=jnp.float64, attention_fn=flax_attention_fn)
    """
    q, k, v = (jnp.swapaxes(x, -3, -2) for x in (query, key, value))   # [..., heads, T, e]
    if mask is not None:   # flax's masks (nnx.make_attention_mask) are 0/1 in a float dtype
        mask = jnp.asarray(mask).astype(bool)
    out = scaled_dot_product_attention(q, k, v, mask=mask, bias=bias)
    return jnp.swapaxes(out, -3, -2)


def _kernel(rngs, shape, fan_in, dtype):
    return jax.random.normal(rngs.params(), shape, dtype) / math.sqrt(fan_in)


class MultiHeadAttention(nnx.Module):
    """h heads with d_k = d_v = d_model/h, per-head projections and the output projection W^O.

    Parameters follow ``flax.nnx.MultiHeadAttention``'s layout so weights can be copied across:
    ``query/key/value_kernel [d_in, h, e]``, ``*_bias [h, e]``, ``out_kernel [h, e, d_model]``,
    ``out_bias [d_model]``. Self-attention: ``mha(x)``; cross-attention: ``mha(x, memory)`` with
    a memory of another length and (``d_memory``) feature size.
    """

    def __init__(self, d_model: int, num_heads: int, *, d_memory: int | None = None,
                 use_bias: bool = True, rngs: nnx.Rngs, param_dtype=jnp.float32):
        _validate.positive_int("d_model", d_model)
        _validate.positive_int("num_heads", num_heads)
        if d_memory is not None:
            _validate.positive_int("d_memory", d_memory)
        _validate.rngs("rngs", rngs)
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}; "
                             f"choose d_model as a multiple of num_heads (d_k = d_model/h).")
        self.d_model, self.num_heads = d_model, num_heads
        self.d_memory = d_model if d_memory is None else d_memory
        e = d_model // num_heads
        self.head_dim = e
        dt = param_dtype
        self.query_kernel = nnx.Param(_kernel(rngs, (d_model, num_heads, e), d_model, dt))
        self.key_kernel = nnx.Param(_kernel(rngs, (self.d_memory, num_heads, e), self.d_memory,
                                            dt))
        self.value_kernel = nnx.Param(_kernel(rngs, (self.d_memory, num_heads, e),
                                              self.d_memory, dt))
        self.out_kernel = nnx.Param(_kernel(rngs, (num_heads, e, d_model), d_model, dt))
        self.use_bias = use_bias
        if use_bias:
            self.query_bias = nnx.Param(jnp.zeros((num_heads, e), dt))
            self.key_bias = nnx.Param(jnp.zeros((num_heads, e), dt))
            self.value_bias = nnx.Param(jnp.zeros((num_heads, e), dt))
            self.out_bias = nnx.Param(jnp.zeros((d_model,), dt))

    def project(self, x, memory):
        """Per-head q ``[..., h, Tq, e]``, k and v ``[..., h, Tk, e]``."""
        q = jnp.einsum("...qd,dhe->...hqe", x, self.query_kernel[...])
        k = jnp.einsum("...kd,dhe->...hke", memory, self.key_kernel[...])
        v = jnp.einsum("...kd,dhe->...hke", memory, self.value_kernel[...])
        if self.use_bias:
            q = q + lead(self.query_bias[...][:, None, :], q.ndim)
            k = k + lead(self.key_bias[...][:, None, :], k.ndim)
            v = v + lead(self.value_bias[...][:, None, :], v.ndim)
        return q, k, v

    def combine(self, heads):
        """Concat_h(heads) W^O: ``[..., h, Tq, e]`` → ``[..., Tq, d_model]``."""
        out = jnp.einsum("...hqe,hed->...qd", heads, self.out_kernel[...])
        return out + lead(self.out_bias[...], out.ndim) if self.use_bias else out

    def check_inputs(self, x, memory):
        """Validate ``x [..., Tq, d]`` and ``memory [..., Tk, d]`` before any work."""
        _check_array("x", x, "[..., Tq, d_model]")
        if memory is not x:
            _check_array("memory", memory, "[..., Tk, d_memory]")
        if x.shape[-1] != self.d_model:
            raise ValueError(f"inputs have feature size {x.shape[-1]}, expected d_model="
                             f"{self.d_model} (shape {list(x.shape)}).")
        if memory.shape[-1] != self.d_memory:
            raise ValueError(f"memory has feature size {memory.shape[-1]}, expected d_memory="
                             f"{self.d_memory} (shape {list(memory.shape)}).")

    def __call__(self, x, memory=None, *, mask=None, return_weights: bool = False):
        """``x [..., Tq, d_model]``, optional ``memory [..., Tk, d_memory]``, ``mask``
        broadcastable to ``[..., Tq, Tk]`` and shared by every head. Returns ``[..., Tq,
        d_model]`` (and weights ``[..., h, Tq, Tk]`` with ``return_weights``)."""
        memory = x if memory is None else memory
        self.check_inputs(x, memory)
        if mask is not None:
            _check_mask_dtype(mask)
            _check_mask(mask, x.shape[-2], memory.shape[-2])
        q, k, v = self.project(x, memory)
        if mask is not None:
            mask = jnp.asarray(mask, bool)
            mask = mask.reshape(mask.shape[:-2] + (1,) + mask.shape[-2:])  # head axis
        heads, weights = scaled_dot_product_attention(q, k, v, mask, return_weights=True)
        out = self.combine(heads)
        return (out, weights) if return_weights else out


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
