"""Blocks: any curvature operator restricted to a part of the parameters.

For a selection S of parameter coordinates (a sub-tree such as one layer, or one index along an
axis of some leaves such as one head), the block is the principal sub-matrix A_SS = Sᵀ A S of
the operator A (∇²L̂, G or N). Its matvec embeds v ∈ ℝ^{|S|} into θ-space with zeros, applies A
and reads the S coordinates back: one matvec of A per block matvec. Every probe takes a block as
it takes any operator (``lambda_min(Block(...), params, *args)``, ``trace``,
``spectral_density``, ``dense``).

**What blocks bound.** Cauchy interlacing gives λmin(A) ≤ λmin(A_SS) ≤ λmax(A_SS) ≤ λmax(A) for
every block. Where A is block-diagonal over a partition S_1 … S_m (the Deora curvature term N is,
over heads: ∇²Φ = (1/√H) blockdiag_h ∇²φ_h), λmin(A) = min_b λmin(A_{S_b S_b}) exactly; in
general the blocks only bound λmin(A) from above, and ``per_block``'s table says which holds by
reporting ``min_b λmin(block)`` beside the full λmin when asked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from mhatheory.spectral._lanczos import extreme_eigs
from mhatheory.spectral._operators import Hessian, as_operator


def _matches(select, path: str, leaf) -> bool:
    if callable(select):
        return bool(select(path, leaf))
    return re.search(select, path) is not None


def block_mask(params, select, axis: int | None = None, index: int | None = None) -> np.ndarray:
    """Boolean ``[P]`` mask (``ravel_pytree`` order) of the coordinates a block selects: the
    leaves whose path (``jax.tree_util.keystr``, e.g. ``['layers'][0]['attn']['query_kernel']``)
    matches ``select`` (a regular expression, searched, or ``select(path, leaf) -> bool``), and
    of those only ``index`` along ``axis`` when given. Works on shapes only (also under jit)."""
    parts, any_leaf = [], False
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        shape = np.shape(leaf)
        m = np.zeros(shape, bool)
        if _matches(select, jax.tree_util.keystr(path), leaf):
            any_leaf = True
            if axis is None:
                m[...] = True
            else:
                if not -len(shape) <= axis < len(shape) or not 0 <= index < shape[axis]:
                    raise ValueError(f"block: leaf {jax.tree_util.keystr(path)} of shape "
                                     f"{list(shape)} has no index {index} along axis {axis}.")
                sl = [slice(None)] * len(shape)
                sl[axis] = index
                m[tuple(sl)] = True
        parts.append(m.ravel())
    if not any_leaf:
        paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(
            params)[0]]
        raise ValueError(f"block selection {select!r} matches no parameter; the leaf paths are "
                         f"{paths[:8]}{' …' if len(paths) > 8 else ''}.")
    return np.concatenate(parts) if parts else np.zeros(0, bool)


@dataclass(frozen=True)
class Block:
    """``op`` (a loss function or operator) restricted to the coordinates selected by
    ``select`` / ``axis`` / ``index`` (:func:`block_mask`): the principal sub-matrix."""

    op: Any
    select: str | Callable
    axis: int | None = None
    index: int | None = None

    def _idx(self, params):
        return np.flatnonzero(block_mask(params, self.select, self.axis, self.index))

    def flat(self, params):
        return ravel_pytree(params)[0][jnp.asarray(self._idx(params))]

    def validate(self, params, args) -> None:
        self._idx(params)                                  # raises when nothing matches
        check = getattr(as_operator(self.op), "validate", None)
        if check is not None:
            check(params, args)

    def precision_fn(self, params, *args):
        inner = as_operator(self.op)
        if isinstance(inner, Hessian):
            return inner.loss_fn(params, *args)
        return inner.precision_fn(params, *args)

    def build(self, params, args):
        matvec, flat = as_operator(self.op).build(params, args)
        idx = jnp.asarray(self._idx(params))

        def block_matvec(v):
            return matvec(jnp.zeros_like(flat).at[idx].set(v))[idx]

        return block_matvec, flat[idx]


@dataclass(frozen=True)
class IndexedBlock:
    """``Block(op, select, axis, index)`` for every ``index`` at once: the index is the first
    argument of the operator, traced (``lambda_min(IndexedBlock(op, sel, axis), params, h,
    *args)``), so all heads share one compiled program where a ``Block`` per head compiles once
    per head. Along ``axis`` coordinate h of a leaf sits ``h·stride`` after coordinate 0
    (row-major; ``stride`` = the product of the sizes after ``axis``), so the selected indices
    are ``base + h·stride`` with ``base``, ``stride`` fixed by the shapes."""

    op: Any
    select: str | Callable
    axis: int

    def _base_stride(self, params):
        leaves = jax.tree_util.tree_flatten_with_path(params)[0]
        strides = []
        for path, leaf in leaves:
            shape = np.shape(leaf)
            if _matches(self.select, jax.tree_util.keystr(path), leaf) and shape:
                ax = self.axis % len(shape) if -len(shape) <= self.axis < len(shape) else None
                stride = int(np.prod(shape[ax + 1:])) if ax is not None else 0
            else:
                stride = 0
            strides.append(np.full(int(np.prod(shape)), stride))
        base = np.flatnonzero(block_mask(params, self.select, self.axis, 0))
        return base, np.concatenate(strides)[base]

    def _size(self, params) -> int:
        """How many indices the block has: the smallest length along ``axis`` of the selected
        leaves (every index below it exists in all of them)."""
        return min(np.shape(leaf)[self.axis]
                   for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
                   if _matches(self.select, jax.tree_util.keystr(path), leaf))

    def flat(self, params):
        return ravel_pytree(params)[0][jnp.asarray(self._base_stride(params)[0])]

    def validate(self, params, args) -> None:
        self._base_stride(params)                          # raises when nothing matches
        if not args:
            raise ValueError("IndexedBlock: pass the block index as the first argument, e.g. "
                             "lambda_min(IndexedBlock(op, select, axis), params, h, *args).")
        h, num = args[0], self._size(params)
        if np.ndim(h) or not np.issubdtype(np.asarray(h).dtype, np.integer) \
                or not 0 <= int(h) < num:
            raise ValueError(f"IndexedBlock: the first argument is the block index, an integer "
                             f"in [0, {num}) along axis {self.axis}; got {h}.")
        check = getattr(as_operator(self.op), "validate", None)
        if check is not None:
            check(params, tuple(args[1:]))

    def precision_fn(self, params, index, *args):
        return Block(self.op, self.select).precision_fn(params, *args)

    def build(self, params, args):
        matvec, flat = as_operator(self.op).build(params, tuple(args[1:]))
        base, stride = self._base_stride(params)
        idx = jnp.asarray(base) + jnp.asarray(args[0]) * jnp.asarray(stride)

        def block_matvec(v):
            return matvec(jnp.zeros_like(flat).at[idx].set(v))[idx]

        return block_matvec, flat[idx]


class BlockSpectrum(NamedTuple):
    """One row of :func:`per_block`: a block's size and certified extreme eigenvalues (each with
    its deterministic ``interval`` and its probabilistic one, see
    :class:`~mhatheory.spectral.EigResult`)."""

    name: str
    size: int
    lambda_min: float
    lambda_min_interval: tuple
    lambda_max: float
    lambda_max_interval: tuple
    converged: bool
    lambda_min_prob_interval: tuple = (-np.inf, np.inf)
    lambda_max_prob_interval: tuple = (-np.inf, np.inf)


def head_blocks(select, axis: int, num_heads: int) -> dict:
    """``{"head h": (select, axis, h)}``: one block per head, for leaves whose ``axis`` indexes
    the heads (e.g. Deora's ``W [H, d, d]`` and ``U [H, d]``: ``head_blocks("", 0, H)``)."""
    return {f"head {h}": (select, axis, h) for h in range(num_heads)}


def subtree_blocks(params, depth: int = 1) -> dict:
    """One block per sub-tree at ``depth`` (1: the top-level keys, e.g. one per layer)."""
    names = []
    for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
        prefix = jax.tree_util.keystr(path[:depth])
        if prefix not in names:
            names.append(prefix)
    return {name: ("^" + re.escape(name), None, None) for name in names}


def per_block(loss_fn, params, *args, blocks: dict, key=None, **lanczos) -> list[BlockSpectrum]:
    """λmin and λmax (certified) of every block: ``blocks`` maps a name to ``(select, axis,
    index)`` (see :func:`head_blocks`, :func:`subtree_blocks`). Cost: two Lanczos runs per
    block (one compilation per block shape; the blocks of one (select, axis) share it)."""
    if not blocks:
        raise ValueError("per_block needs at least one block, e.g. head_blocks(...) or "
                         "subtree_blocks(params).")
    rows, shared = [], {}
    for name, (select, axis, index) in blocks.items():
        if index is None:
            blk, bargs = Block(loss_fn, select, axis, index), args
        else:                                   # one compiled program per (select, axis)
            blk = shared.setdefault((select, axis), IndexedBlock(loss_fn, select, axis))
            bargs = (np.int32(index), *args)
        lo = extreme_eigs(blk, params, *bargs, which="smallest", key=key, **lanczos)[0]
        hi = extreme_eigs(blk, params, *bargs, which="largest", key=key, **lanczos)[0]
        rows.append(BlockSpectrum(name, int(lo.vector.shape[0]), lo.value, lo.interval,
                                  hi.value, hi.interval, lo.converged and hi.converged,
                                  lo.prob_interval, hi.prob_interval))
    return rows
