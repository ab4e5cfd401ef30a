"""A block of parameters as a mask on θ's coordinates: the leaves a selection names and, of
those, one index along an axis (a head, a layer), in the order of ``ravel_pytree``."""

from __future__ import annotations

import re

import jax
import numpy as np

from mhatheory import _validate


def _matches(select, path: str, leaf) -> bool:
    if callable(select):
        return bool(select(path, leaf))
    return re.search(select, path) is not None


def block_mask(params, select, axis: int | None = None, index: int | None = None) -> np.ndarray:
    """Boolean ``[P]`` mask (``ravel_pytree`` order) of the coordinates a block selects: the
    leaves whose path (``jax.tree_util.keystr``, e.g. ``['layers'][0]['attn']['query_kernel']``)
    matches ``select`` (a regular expression, searched, or ``select(path, leaf) -> bool``), and
    of those only ``index`` along ``axis`` when given. Works on shapes only (also under jit).
    An unknown selection, an axis a selected leaf lacks or an index past its length is an error
    naming the leaf.

    Example:
        >>> import jax.numpy as jnp
        >>> p = {"W": jnp.zeros((2, 3)), "b": jnp.zeros(2)}
        >>> block_mask(p, "W", axis=0, index=1).astype(int).tolist()
        [0, 0, 0, 1, 1, 1, 0, 0]
    """
    if not (isinstance(select, str) or callable(select)):
        raise ValueError(f"a block's select must be a regular expression or a function "
                         f"select(path, leaf) -> bool, got {select!r}.")
    if (axis is None) != (index is None):
        raise ValueError(f"a block takes axis and index together (index {index} along axis "
                         f"{axis}), or neither.")
    if axis is not None:
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"a block's axis must be an integer, got {axis!r}.")
        index = _validate.positive_int("a block's index", index, minimum=0)
    if isinstance(select, str):
        try:
            re.compile(select)
        except re.error as err:
            raise ValueError(f"a block's select {select!r} is not a regular expression: {err} "
                             "(escape literal brackets and dots, e.g. re.escape(name)).") from None
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


__all__ = ["block_mask"]
