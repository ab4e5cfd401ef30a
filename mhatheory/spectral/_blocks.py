"""Blocks: any curvature operator restricted to a part of the parameters.

For a selection S of parameter coordinates (a sub-tree such as one layer, or one index along an
axis of some leaves such as one head), the block is the principal sub-matrix A_SS = Sᵀ A S of
the operator A (∇²L̂, G or N): :meth:`~mhatheory.spectral.LinearOperator.restrict`, or the
operator :class:`~mhatheory.spectral.Block`. A block is a 0/1 mask on the coordinates, which the
operator's one compiled HVP takes as data, so every block of a model shares that program and the
recurrence's: :func:`per_block` over any number of blocks compiles nothing a single probe does
not.

**What blocks bound.** Cauchy interlacing gives λmin(A) ≤ λmin(A_SS) ≤ λmax(A_SS) ≤ λmax(A) for
every block. Where A is block-diagonal over a partition S_1 … S_m (the Deora curvature term N is,
over heads: ∇²Φ = (1/√H) blockdiag_h ∇²φ_h), λmin(A) = min_b λmin(A_{S_b S_b}) exactly; in
general the blocks only bound λmin(A) from above.
"""

from __future__ import annotations

import re
import warnings
from typing import NamedTuple

import jax
import numpy as np

from mhatheory import _validate
from mhatheory.spectral._lanczos import Exact, eig_probe
from mhatheory.spectral._mask import block_mask, leaf_path
from mhatheory.spectral._operators import one_shot
from mhatheory.spectral._options import Method, Which, derive_key, resolve_key


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
    the heads (e.g. Deora's ``W [H, d, d]`` and ``U [H, d]``: ``head_blocks("", 0, H)``).

    Example:
        >>> head_blocks("W|U", axis=0, num_heads=2)
        {'head 0': ('W|U', 0, 0), 'head 1': ('W|U', 0, 1)}
    """
    num_heads = _validate.positive_int("num_heads", num_heads)
    return {f"head {h}": (select, axis, h) for h in range(num_heads)}


def subtree_blocks(params, depth: int = 1) -> dict:
    """One block per sub-tree at ``depth`` (1: the top-level keys, e.g. one per layer).

    Example:
        >>> import jax.numpy as jnp
        >>> sorted(subtree_blocks({"encoder": {"w": jnp.ones(2)}, "head": jnp.ones(3)}))
        ["['encoder']", "['head']"]
    """
    names = []
    for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
        prefix = leaf_path(path[:depth])
        if prefix not in names:
            names.append(prefix)
    # the name, then the end of the path or the next key: ".w" must not select ".w2"
    return {name: ("^" + re.escape(name) + r"(?=$|[\[.])", None, None) for name in names}


def block_masks(params, blocks) -> dict:
    """``{name: boolean [P] mask}`` for ``blocks`` (name → ``(select, axis, index)``), every one
    resolved before any work: a malformed entry, a selection that matches nothing or an index
    out of range is an error naming the block."""
    if not isinstance(blocks, dict) or not blocks:
        raise ValueError("blocks must be a non-empty dict of name → (select, axis, index), e.g. "
                         "head_blocks(...) or subtree_blocks(params).")
    masks = {}
    for name, spec in blocks.items():
        if not isinstance(spec, (tuple, list)) or len(spec) != 3:
            raise ValueError(f"block {name!r} must be (select, axis, index) (axis and index "
                             f"None for a whole sub-tree), got {spec!r}.")
        try:
            masks[name] = block_mask(params, *spec)
        except ValueError as err:
            raise ValueError(f"block {name!r}: {err}") from None
    return masks


def per_block(loss_fn, params, *args, blocks: dict, key=None, method: Method | str = "lanczos",
              **options) -> list[BlockSpectrum]:
    """λmin and λmax (certified) of every block: ``blocks`` maps a name to ``(select, axis,
    index)`` (see :func:`head_blocks`, :func:`subtree_blocks`). Every block and option is checked
    first; then two runs per block (``method`` and ``options`` as
    :func:`~mhatheory.spectral.eig_probe`, without ``k`` and ``which``), all on the one
    compiled product of the operator at ``params`` (one program up to
    ``ONE_PROGRAM_MAX_PARAMS`` parameters, linearised above). A block of one coordinate (a
    scalar parameter) is read exactly: its one
    eigenvalue is its diagonal entry. ``key=None`` is a fresh random draw.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> p = {"a": jnp.ones(2), "b": jnp.ones(2)}
        >>> loss = lambda p: jnp.sum(p["a"] ** 2) + 3 * jnp.sum(p["b"] ** 2)
        >>> blocks = {"a": ("a", None, None), "b": ("b", None, None)}
        >>> rows = per_block(loss, p, blocks=blocks, key=jax.random.key(0))
        >>> [(r.name, round(r.lambda_min, 9)) for r in rows]
        [('a', 2.0), ('b', 6.0)]
    """
    fixed = sorted({"k", "which"} & set(options))
    if fixed:
        raise TypeError(f"per_block computes λmin and λmax of each block (one pair each): "
                         f"{fixed} is not an option here; use spectral.Lanczos(k=…, "
                         "which=…) on op.restrict(select) for more pairs of one block.")
    low = eig_probe(method, which=Which.SMALLEST, **options)
    high = eig_probe(method, which=Which.LARGEST, **options)
    one = (Exact(which=Which.SMALLEST), Exact(which=Which.LARGEST))
    masks = block_masks(params, blocks)
    sizes = {name: int(np.count_nonzero(m)) for name, m in masks.items()}
    dtype = _validate.num_params(params)[1]
    for name, size in sizes.items():
        if size > 1:
            try:
                low.check_fits(size, dtype)
            except ValueError as err:
                raise ValueError(f"block {name!r} ({size} coordinates): {err}") from None
    key = resolve_key(key, allow_none=True)
    op = one_shot(loss_fn, params, *args)
    rows = []
    for i, (name, spec) in enumerate(blocks.items()):
        blk = op.restrict(*spec)
        k1, k2 = derive_key(key, i, 0), derive_key(key, i, 1)
        lo_probe, hi_probe = (low, high) if sizes[name] > 1 else one
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            lo, hi = lo_probe(blk, key=k1)[0], hi_probe(blk, key=k2)[0]
        for w in said:                        # each warning names the block it is about
            warnings.warn(f"block {name!r} ({sizes[name]} coordinates): {w.message}",
                          w.category, stacklevel=_validate.user_stacklevel())
        rows.append(BlockSpectrum(name, sizes[name], lo.value, lo.interval, hi.value,
                                  hi.interval, lo.converged and hi.converged, lo.prob_interval,
                                  hi.prob_interval))
    return rows


__all__ = ["BlockSpectrum", "block_masks", "head_blocks", "per_block", "subtree_blocks"]
