"""Transformer stacks built from :mod:`mhatheory.attention`: encoder/decoder blocks (post-LN
as in Vaswani et al., pre-LN as an option), a decoder-only :class:`DecoderTransformer` whose
causal mask, positional encoding and residual connections are switches (for the symmetry
study), an encoder–decoder :class:`Seq2SeqTransformer`, and an :class:`EncoderClassifier` of
real-valued token sequences.

With sinusoidal encodings the token embeddings are multiplied by √d_model before the encoding
is added (Vaswani et al. §3.4): an embedding row has norm ≈ 1 while a sinusoidal vector has norm
√(d_model/2), so without the factor the position swamps the token (observed: causal 3-digit
addition with sinusoidal encodings collapsed to the digit marginals in 3/3 seeds).

Residual plans: ``True``/"all", ``False``/"none", "attention-only", "mlp-only", "off:K" (all on
except layer K), or one entry per layer, each a bool or an ``(attention, mlp)`` pair.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mhatheory import _validate
from mhatheory.attention import (
    MultiHeadAttention,
    RelativeMultiHeadAttention,
    causal_mask,
    lead,
    padding_mask,
)
from mhatheory.positional import LearnedPositions, sinusoidal


class Positional(str, enum.Enum):
    """Where a decoder's tokens get their positions.

    * ``NONE``: no positional information (the stack is permutation-equivariant without a
      causal mask).
    * ``SINUSOIDAL``: fixed sine/cosine encodings added to √d_model-scaled embeddings.
    * ``LEARNED``: a learned table of ``max_len`` absolute positions.
    * ``RELATIVE``: Transformer-XL relative attention (no absolute positions; accepts a
      segment memory).
    """

    NONE = "none"
    SINUSOIDAL = "sinusoidal"
    LEARNED = "learned"
    RELATIVE = "relative"


#: The values :class:`Positional` accepts as strings.
POSITIONAL = tuple(m.value for m in Positional)


def residual_plan(spec, num_layers: int) -> tuple[tuple[bool, bool], ...]:
    """Normalise a residual spec to one ``(attention, mlp)`` pair per layer."""
    named = {"all": (True, True), "none": (False, False), "attention-only": (True, False),
             "mlp-only": (False, True)}
    if isinstance(spec, bool):
        return ((spec, spec),) * num_layers
    if isinstance(spec, str):
        if spec in named:
            return (named[spec],) * num_layers
        if spec.startswith("off:") and spec[4:].isdigit() and int(spec[4:]) < num_layers:
            k = int(spec[4:])
            return tuple((i != k, i != k) for i in range(num_layers))
        raise ValueError(f"residual={spec!r} is not one of {sorted(named)} or 'off:K' with "
                         f"K < num_layers={num_layers}.")
    if not isinstance(spec, (list, tuple, np.ndarray)):
        raise ValueError(f"residual={spec!r} must be a bool, one of {sorted(named)}, 'off:K' or "
                         "one entry per layer.")
    spec = list(spec)
    if len(spec) != num_layers:
        raise ValueError(f"a per-layer residual spec needs {num_layers} entries, got {len(spec)}.")
    return tuple((s, s) if isinstance(s, bool) else (bool(s[0]), bool(s[1])) for s in spec)


class FeedForward(nnx.Module):
    """Position-wise MLP: W_2 act(W_1 x + b_1) + b_2 (ReLU as in the paper, GELU optional)."""

    def __init__(self, d_model: int, d_ff: int, *, activation: str = "relu", rngs: nnx.Rngs,
                 param_dtype=jnp.float32):
        if activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {activation!r}.")
        self.act = jax.nn.relu if activation == "relu" else jax.nn.gelu
        self.up = nnx.Linear(d_model, d_ff, rngs=rngs, param_dtype=param_dtype)
        self.down = nnx.Linear(d_ff, d_model, rngs=rngs, param_dtype=param_dtype)

    def __call__(self, x):
        """The position-wise feed-forward map of ``x [..., T, d]``."""
        return self.down(self.act(self.up(x)))


class TransformerLayer(nnx.Module):
    """Self-attention (+ optional cross-attention) + MLP, each sub-layer wrapped as
    pre-LN ``x + f(LN(x))`` or post-LN ``LN(x + f(x))`` (without the ``x +`` when its residual
    is switched off)."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int, *, cross: bool = False,
                 relative: bool = False, pre_ln: bool = True, residual=(True, True),
                 activation: str = "relu", rngs: nnx.Rngs, param_dtype=jnp.float32):
        attn_cls = RelativeMultiHeadAttention if relative else MultiHeadAttention
        self.self_attn = attn_cls(d_model, num_heads, rngs=rngs, param_dtype=param_dtype)
        self.cross_attn = (MultiHeadAttention(d_model, num_heads, rngs=rngs,
                                              param_dtype=param_dtype) if cross else None)
        self.ff = FeedForward(d_model, d_ff, activation=activation, rngs=rngs,
                              param_dtype=param_dtype)
        n_ln = 3 if cross else 2
        self.norms = nnx.List([nnx.LayerNorm(d_model, rngs=rngs, param_dtype=param_dtype)
                               for _ in range(n_ln)])
        self.pre_ln = pre_ln
        self.residual = tuple(residual)

    def _sublayer(self, x, f, norm, residual: bool):
        if self.pre_ln:
            y = f(norm(x))
            return x + y if residual else y
        y = f(x)
        return norm(x + y if residual else y)

    def __call__(self, x, *, mask=None, memory=None, memory_mask=None, segment=None):
        """One layer on ``x [..., T, d]`` (self-attention, optional cross-attention, MLP)."""
        attn_res, mlp_res = self.residual
        x = self._sublayer(x, lambda h: self.self_attn(h, segment, mask=mask)
                           if segment is not None else self.self_attn(h, mask=mask),
                           self.norms[0], attn_res)
        if self.cross_attn is not None:
            x = self._sublayer(x, lambda h: self.cross_attn(h, memory, mask=memory_mask),
                               self.norms[1], attn_res)
        return self._sublayer(x, self.ff, self.norms[-1], mlp_res)


def _check_sizes(d_model: int, num_heads: int, d_ff: int | None, **sizes) -> None:
    """Every size a positive integer and d_model a multiple of num_heads."""
    for name, v in (*sizes.items(), ("d_model", d_model), ("num_heads", num_heads),
                    *((("d_ff", d_ff),) if d_ff is not None else ())):
        _validate.positive_int(name, v)
    if d_model % num_heads:
        raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}; "
                         "choose d_model as a multiple of num_heads (d_k = d_model/h).")


class EncoderClassifier(nnx.Module):
    """Real-valued tokens ``x [..., T, d_in]`` → logits: a linear embedding to d_model plus
    learned positions, ``num_layers`` non-causal pre-LN :class:`TransformerLayer` s, a final
    LayerNorm, the mean over tokens and a linear head to ``num_classes`` logits (``[...]`` for
    ``num_classes=1``, one logit for ±1 labels; ``[..., C]`` otherwise).

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> m = EncoderClassifier(8, 10, d_model=16, num_heads=4, rngs=nnx.Rngs(0))
        >>> m(jnp.ones((3, 8, 8))).shape
        (3, 10)
    """

    def __init__(self, d_in: int, num_classes: int, *, d_model: int, num_heads: int,
                 num_layers: int = 1, d_ff: int | None = None, max_len: int = 64,
                 rngs: nnx.Rngs, param_dtype=jnp.float32):
        _check_sizes(d_model, num_heads, d_ff, d_in=d_in, num_classes=num_classes,
                     num_layers=num_layers, max_len=max_len)
        _validate.floating_dtype("param_dtype", param_dtype)
        _validate.rngs("rngs", rngs)
        self.num_classes, self.max_len = num_classes, max_len
        self.embed = nnx.Linear(d_in, d_model, rngs=rngs, param_dtype=param_dtype)
        self.positions = LearnedPositions(max_len, d_model, rngs=rngs, param_dtype=param_dtype)
        self.layers = nnx.List([
            TransformerLayer(d_model, num_heads, d_ff or 2 * d_model, rngs=rngs,
                             param_dtype=param_dtype) for _ in range(num_layers)])
        self.final_norm = nnx.LayerNorm(d_model, rngs=rngs, param_dtype=param_dtype)
        self.head = nnx.Linear(d_model, num_classes, rngs=rngs, param_dtype=param_dtype)

    def __call__(self, x):
        """Logits of ``x [..., T, d_in]`` (T ≤ max_len)."""
        if x.shape[-2] > self.max_len:
            raise ValueError(f"x has T={x.shape[-2]} tokens, more than max_len={self.max_len}.")
        pos = self.positions(x.shape[-2])
        h = self.embed(x) + pos.reshape((1,) * (x.ndim - 2) + pos.shape)
        for layer in self.layers:
            h = layer(h)
        out = self.head(jnp.mean(self.final_norm(h), axis=-2))
        return out[..., 0] if self.num_classes == 1 else out


class DecoderTransformer(nnx.Module):
    """Decoder-only transformer: int tokens ``[..., T]`` → logits ``[..., T, vocab_size]``.

    Switches: ``causal`` mask, ``positional`` (a :class:`Positional` or its string: "none",
    "sinusoidal", "learned", "relative")
    (relative = Transformer-XL attention, which also accepts a segment memory ``mems``),
    ``residual`` plan (module docstring), ``pre_ln`` (default) or post-LN. Eval mode only
    (no dropout), so outputs are deterministic.
    """

    def __init__(self, vocab_size: int, d_model: int, num_heads: int, num_layers: int, *,
                 positional: Positional | str = "learned", causal: bool = True, residual=True,
                 pre_ln: bool = True, d_ff: int | None = None, max_len: int = 64,
                 activation: str = "gelu", rngs: nnx.Rngs, param_dtype=jnp.float32):
        if positional not in POSITIONAL:
            raise ValueError(f"positional must be one of {POSITIONAL} (or a "
                             f"models.Positional), got {positional!r}.")
        positional = Positional(positional)
        _check_sizes(d_model, num_heads, d_ff, vocab_size=vocab_size, num_layers=num_layers,
                     max_len=max_len)
        if activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {activation!r}.")
        _validate.floating_dtype("param_dtype", param_dtype)
        _validate.rngs("rngs", rngs)
        residual_plan(residual, num_layers)  # raises on a bad plan, before any parameter
        self.vocab_size, self.max_len = vocab_size, max_len
        self.positional, self.causal, self.pre_ln = positional, causal, pre_ln
        self.plan = residual_plan(residual, num_layers)
        self.d_model = d_model
        self.embed = nnx.Embed(vocab_size, d_model, rngs=rngs, param_dtype=param_dtype)
        self.positions = (LearnedPositions(max_len, d_model, rngs=rngs, param_dtype=param_dtype)
                          if positional == "learned" else None)
        self.layers = nnx.List([
            TransformerLayer(d_model, num_heads, d_ff or 4 * d_model,
                             relative=positional == "relative", pre_ln=pre_ln,
                             residual=self.plan[i], activation=activation, rngs=rngs,
                             param_dtype=param_dtype) for i in range(num_layers)])
        self.final_norm = nnx.LayerNorm(d_model, rngs=rngs, param_dtype=param_dtype)
        self.head = nnx.Linear(d_model, vocab_size, rngs=rngs, param_dtype=param_dtype)

    def _check_tokens(self, tokens, valid) -> None:
        """Token ids in [0, vocab_size) (an embedding lookup would silently clamp them), at most
        ``max_len`` positions for learned encodings, and a ``valid`` mask of the tokens' shape."""
        T = tokens.shape[-1]
        if self.positional == "learned" and T > self.max_len:
            raise ValueError(f"tokens hold T={T} positions but the learned position table has "
                             f"max_len={self.max_len}; build the model with a larger max_len.")
        if valid is not None and tuple(jnp.shape(valid)) != tuple(tokens.shape):
            raise ValueError(f"valid must have shape {list(tokens.shape)} (one flag per token), "
                             f"got {list(jnp.shape(valid))}.")
        if _validate.is_concrete(tokens) and tokens.size:
            t = np.asarray(tokens)
            if t.min() < 0 or t.max() >= self.vocab_size:
                raise ValueError(f"tokens must lie in [0, vocab_size={self.vocab_size}), found "
                                 f"{int(t.min())}..{int(t.max())}.")

    def embed_tokens(self, tokens):
        """Embeddings ``[..., T, d]`` of ``tokens [..., T]`` plus absolute positions (sinusoidal:
        embeddings scaled by √d_model first, as in Vaswani et al.; learned: a table; none and
        relative: no absolute positions)."""
        x = self.embed(tokens)                                          # (..., T, d)
        T = tokens.shape[-1]
        if self.positional == "sinusoidal":
            pe = sinusoidal(jnp.arange(T), self.d_model, x.dtype)
            x = math.sqrt(self.d_model) * x + lead(pe, x.ndim)
        elif self.positional == "learned":
            x = x + lead(self.positions(T), x.ndim)
        return x

    def __call__(self, tokens, *, valid=None, mems: Sequence | None = None,
                 return_hidden: bool = False, return_mems: bool = False):
        """``valid [..., T]`` marks real tokens (a key-padding mask that moves with the tokens);
        ``mems`` one ``[..., M, d]`` array per layer (relative positions only)."""
        if not hasattr(tokens, "dtype"):
            tokens = np.asarray(tokens)
        if not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(f"tokens must be integers, got dtype {tokens.dtype}.")
        if tokens.ndim < 1:
            raise ValueError(f"tokens must have shape [..., T], got a scalar {tokens!r}.")
        if mems is not None and self.positional != "relative":
            raise ValueError("segment memory (mems) needs positional='relative'.")
        self._check_tokens(tokens, valid)
        tokens = jnp.asarray(tokens)
        x = self.embed_tokens(tokens)
        T = tokens.shape[-1]
        M = 0 if mems is None else mems[0].shape[-2]
        mask = causal_mask(T, M + T) if self.causal else None
        if valid is not None:
            keys_valid = jnp.asarray(valid, bool)
            if M:
                keys_valid = jnp.concatenate(
                    [jnp.ones(keys_valid.shape[:-1] + (M,), bool), keys_valid], axis=-1)
            pad = padding_mask(keys_valid)
            mask = pad if mask is None else lead(mask, pad.ndim) & pad
        hidden = [x]
        for i, layer in enumerate(self.layers):
            x = layer(x, mask=mask, segment=None if mems is None else mems[i])
            hidden.append(x)
        logits = self.head(self.final_norm(x) if self.pre_ln else x)
        out = (logits,)
        if return_hidden:
            out += (hidden,)
        if return_mems:
            out += ([jax.lax.stop_gradient(h) for h in hidden[:-1]],)
        return out[0] if len(out) == 1 else out


class Seq2SeqTransformer(nnx.Module):
    """Encoder–decoder transformer (Vaswani et al.): post-LN by default, sinusoidal positions,
    encoder self-attention, decoder masked self-attention + cross-attention."""

    def __init__(self, src_vocab: int, tgt_vocab: int, d_model: int, num_heads: int,
                 num_layers: int, *, d_ff: int | None = None, pre_ln: bool = False,
                 positional: str = "sinusoidal", max_len: int = 64, rngs: nnx.Rngs,
                 param_dtype=jnp.float32):
        if positional not in ("sinusoidal", "learned"):
            raise ValueError(f"positional must be 'sinusoidal' or 'learned', got {positional!r}.")
        d_ff = d_ff or 4 * d_model
        self.d_model, self.pre_ln, self.positional = d_model, pre_ln, positional
        self.src_embed = nnx.Embed(src_vocab, d_model, rngs=rngs, param_dtype=param_dtype)
        self.tgt_embed = nnx.Embed(tgt_vocab, d_model, rngs=rngs, param_dtype=param_dtype)
        self.positions = (LearnedPositions(max_len, d_model, rngs=rngs, param_dtype=param_dtype)
                          if positional == "learned" else None)
        kw = dict(pre_ln=pre_ln, rngs=rngs, param_dtype=param_dtype)
        self.encoder = nnx.List([TransformerLayer(d_model, num_heads, d_ff, **kw)
                                 for _ in range(num_layers)])
        self.decoder = nnx.List([TransformerLayer(d_model, num_heads, d_ff, cross=True, **kw)
                                 for _ in range(num_layers)])
        self.enc_norm = nnx.LayerNorm(d_model, rngs=rngs, param_dtype=param_dtype)
        self.dec_norm = nnx.LayerNorm(d_model, rngs=rngs, param_dtype=param_dtype)
        self.head = nnx.Linear(d_model, tgt_vocab, rngs=rngs, param_dtype=param_dtype)

    def _positions(self, x):
        T = x.shape[-2]
        if self.positional == "learned":
            return x + lead(self.positions(T), x.ndim)
        pe = sinusoidal(jnp.arange(T), self.d_model, x.dtype)
        return math.sqrt(self.d_model) * x + lead(pe, x.ndim)

    def encode(self, src, src_valid=None):
        """The encoder's memory ``[..., S, d]`` for source tokens ``src [..., S]``."""
        x = self._positions(self.src_embed(src))
        mask = None if src_valid is None else padding_mask(src_valid)
        for layer in self.encoder:
            x = layer(x, mask=mask)
        return self.enc_norm(x) if self.pre_ln else x

    def decode(self, tgt_in, memory, src_valid=None):
        """Logits ``[..., T, vocab]`` for decoder inputs ``tgt_in`` attending to ``memory``."""
        y = self._positions(self.tgt_embed(tgt_in))
        mem_mask = None if src_valid is None else padding_mask(src_valid)
        for layer in self.decoder:
            y = layer(y, mask=causal_mask(tgt_in.shape[-1]), memory=memory,
                      memory_mask=mem_mask)
        return self.head(self.dec_norm(y) if self.pre_ln else y)

    def __call__(self, src, tgt_in, src_valid=None):
        """Teacher-forced logits ``[..., T_tgt, tgt_vocab]``."""
        return self.decode(tgt_in, self.encode(src, src_valid), src_valid)
