"""Permutation symmetries of attention stacks (Zuo & Guerzhoy, arXiv 2402.05969).

**Theorem.** For a transformer with neither a causal mask nor positional encodings, every layer
is permutation-equivariant (row-wise maps commute with a permutation P; unmasked attention maps
PH to P·Attn(H) because softmax(P S Pᵀ) = P softmax(S) Pᵀ; residuals add equivariant terms), so
F(PH⁰) = P F(H⁰). Reading out row n with σ(n) = n gives ℓ(x_σ) = F(H⁰)_{σ(n)} = ℓ(x): the
prediction at the last position is invariant to permutations of positions 1..n−1.

Either mechanism breaks it: positional encodings are not permuted with the tokens, and
P M Pᵀ ≠ M for a causal mask M, except in one layer, where the last query still sees every key
and the keys/values are plain embeddings, so a one-layer causal model is invariant at the last
position (not at earlier ones).

The checks below take any ``fn(tokens [T]) -> outputs [T, ...]`` and report the worst deviation
and the permutation that produced it.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mhatheory import _validate, precision


class SymmetryResult(NamedTuple):
    """Worst ``max |Δ|`` over the permutations tried, the permutation that gave it."""

    max_deviation: float
    worst_permutation: tuple
    num_permutations: int
    exhaustive: bool


def _check(fn, tokens, min_len: int, key=None, num_random: int = 1,
           max_exhaustive: int = 0):
    """The symmetry checks' shared input check (before any work); returns the tokens."""
    _validate.callable_arg("fn", fn, "fn(tokens [T]) -> outputs [T, ...]")
    if np.ndim(tokens) != 1:
        raise ValueError(f"tokens must be one sequence [T] (fn is vmapped over permutations of "
                         f"it), got shape {list(np.shape(tokens))}.")
    if np.shape(tokens)[0] < min_len:
        raise ValueError(f"tokens must hold at least {min_len} positions for this check to have a "
                         f"permutation to try, got {np.shape(tokens)[0]}.")
    _validate.positive_int("num_random", num_random)
    _validate.positive_int("max_exhaustive", max_exhaustive, minimum=0)
    if key is not None:
        _validate.prng_key("key", key)
    tokens = jnp.asarray(tokens)
    closed, out = jax.make_jaxpr(fn, return_shape=True)(tokens)    # traced only: nothing runs
    if not hasattr(out, "shape") or len(out.shape) == 0 or out.shape[0] != tokens.shape[0]:
        got = list(out.shape) if hasattr(out, "shape") else type(out).__name__
        raise ValueError(f"fn must map tokens [T] to outputs [T, ...] (a row per position), got "
                         f"{got} for T = {tokens.shape[0]}.")
    precision.warn_below_outputs(closed, "fn")
    return tokens


def permutations(n_free: int, *, key=None, max_exhaustive: int = 6, num_random: int = 50):
    """``(perms, exhaustive)``: every permutation of ``n_free`` items but the identity when
    n_free ≤ max_exhaustive or when there are at most ``num_random`` of them (so n! − 1), else
    ``num_random`` distinct random ones, the identity excluded (the draws of
    ``jax.random.split(key, num_random)``, any identity or repeat replaced by further draws)."""
    _validate.positive_int("n_free", n_free, minimum=0)
    _validate.positive_int("max_exhaustive", max_exhaustive, minimum=0)
    _validate.positive_int("num_random", num_random)
    if key is not None:
        _validate.prng_key("key", key)
    identity = tuple(range(n_free))
    if n_free <= max_exhaustive or math.factorial(n_free) - 1 <= num_random:
        return [p for p in itertools.permutations(range(n_free)) if p != identity], True
    key = jax.random.key(0) if key is None else key
    keys = list(jax.random.split(key, num_random))
    perms, seen = [], {identity}
    while len(perms) < num_random:
        if not keys:                            # a repeat or the identity: draw again
            key = jax.random.fold_in(key, len(seen))
            keys = list(jax.random.split(key, num_random - len(perms)))
        p = tuple(int(x) for x in np.asarray(jax.random.permutation(keys.pop(0), n_free)))
        if p not in seen:
            seen.add(p)
            perms.append(p)
    return perms, False


def _worst(fn, tokens, perms, build, compare):
    # the unpermuted sequence is row 0 of the same batch: one compiled program for every
    # output, so a deviation measures the symmetry, not a difference between code paths
    # (vmap of jit(fn): the program is cached per fn, so repeated checks do not recompile)
    batch = jnp.stack([tokens] + [tokens[np.asarray(build(p))] for p in perms])
    base, *outs = np.asarray(jax.vmap(jax.jit(fn))(batch))
    devs = np.array([compare(o, base, build(p)) for o, p in zip(outs, perms, strict=True)])
    i = int(np.argmax(devs))
    return float(devs[i]), tuple(int(x) for x in perms[i])


def last_position_invariance(fn, tokens, *, position: int = -1, key=None,
                             max_exhaustive: int = 6, num_random: int = 50) -> SymmetryResult:
    """max |fn(x_σ)[position] − fn(x)[position]| over σ permuting positions 0..position−1 (the
    readout position stays put; later positions, if any, stay put too)."""
    tokens = _check(fn, tokens, 3, key, num_random, max_exhaustive)
    n = tokens.shape[-1]
    if (isinstance(position, bool) or not isinstance(position, (int, np.integer))
            or not (2 <= position < n or -n + 2 <= position < 0)):
        raise ValueError(f"position must be an integer readout position with at least two "
                         f"positions before it: 2..{n - 1} or {-n + 2}..-1 for T={n}, got "
                         f"{position!r}.")
    pos = position % n
    perms, exhaustive = permutations(pos, key=key, max_exhaustive=max_exhaustive,
                                     num_random=num_random)

    def build(p):
        return list(p) + list(range(pos, n))

    dev, worst = _worst(fn, tokens, perms, build,
                        lambda o, b, _: np.max(np.abs(o[pos] - b[pos])))
    return SymmetryResult(dev, worst, len(perms), exhaustive)


def moving_last_deviation(fn, tokens, *, key=None, num_random: int = 50) -> SymmetryResult:
    """Negative control (a): permutations that move the last position change its output."""
    tokens = _check(fn, tokens, 2, key, num_random)
    n = tokens.shape[-1]
    key = jax.random.key(1) if key is None else key
    perms = []
    for k in jax.random.split(key, num_random):
        p = np.array(jax.random.permutation(k, n))
        if p[-1] == n - 1:
            p[[-1, 0]] = p[[0, -1]]
        perms.append(tuple(int(x) for x in p))
    dev, worst = _worst(fn, tokens, perms, list,
                        lambda o, b, _: np.max(np.abs(o[-1] - b[-1])))
    return SymmetryResult(dev, worst, len(perms), False)


def equivariance(fn, tokens, *, key=None, max_exhaustive: int = 6,
                 num_random: int = 50) -> SymmetryResult:
    """max |fn(x_σ) − σ(fn(x))| over permutations σ of the whole sequence."""
    tokens = _check(fn, tokens, 2, key, num_random, max_exhaustive)
    n = tokens.shape[-1]
    perms, exhaustive = permutations(n, key=key, max_exhaustive=max_exhaustive,
                                     num_random=num_random)
    dev, worst = _worst(fn, tokens, perms, list,
                        lambda o, b, p: np.max(np.abs(o - b[np.asarray(p)])))
    return SymmetryResult(dev, worst, len(perms), exhaustive)


def earlier_position_deviation(fn, tokens, *, key=None, max_exhaustive: int = 6,
                               num_random: int = 50) -> SymmetryResult:
    """Under the theorem's permutations (positions 1..n−1 permuted, the last fixed), the largest
    change of the outputs at the positions k < n. A one-layer causal model shows a change here
    while being invariant at the last position."""
    tokens = _check(fn, tokens, 3, key, num_random, max_exhaustive)
    n = tokens.shape[-1]
    perms, exhaustive = permutations(n - 1, key=key, max_exhaustive=max_exhaustive,
                                     num_random=num_random)
    dev, worst = _worst(fn, tokens, perms, lambda p: list(p) + [n - 1],
                        lambda o, b, _: np.max(np.abs(o[:-1] - b[:-1])))
    return SymmetryResult(dev, worst, len(perms), exhaustive)
