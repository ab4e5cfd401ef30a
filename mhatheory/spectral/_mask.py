"""A block of parameters as a mask on θ's coordinates: the leaves a selection names and, of
those, one index along an axis (a head, a layer), in the order of ``ravel_pytree``."""

from __future__ import annotations

import re
import warnings

import jax
import numpy as np

from mhatheory import _validate


def leaf_path(path) -> str:
    """A leaf's path as a block's selection reads it: ``jax.tree_util.keystr`` of its keys, less
    a last ``.value`` attribute, which flax.nnx's ``Variable`` adds to every parameter's path
    (``['l1']['bias']``, not ``['l1']['bias'].value``): searched, any expression with a letter
    of "value" in it would otherwise match every parameter."""
    last = path[-1] if path else None
    if isinstance(last, jax.tree_util.GetAttrKey) and last.name == "value":
        path = path[:-1]
    return jax.tree_util.keystr(tuple(path))


def _matches(select, path: str, leaf) -> bool:
    if callable(select):
        return bool(select(path, leaf))
    return re.search(select, path) is not None


def block_mask(params, select, axis: int | None = None, index: int | None = None) -> np.ndarray:
    """Boolean ``[P]`` mask (``ravel_pytree`` order) of the coordinates a block selects: the
    leaves whose path (:func:`leaf_path`, e.g. ``['layers'][0]['attn']['query_kernel']``)
    matches ``select`` (a regular expression, searched, or ``select(path, leaf) -> bool``), and
    of those only ``index`` along ``axis`` when given. Works on shapes only (also under jit).
    An unknown selection, an axis a selected leaf lacks or an index past its length is an error
    naming the leaf; an unanchored expression that selects every parameter whole (a short name
    found inside other keys) warns.

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
    parts, paths, any_leaf = [], [], False
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        shape = np.shape(leaf)
        m = np.zeros(shape, bool)
        name = leaf_path(path)
        paths.append(name)
        if _matches(select, name, leaf):
            any_leaf = True
            if axis is None:
                m[...] = True
            else:
                if not -len(shape) <= axis < len(shape):
                    raise ValueError(f"block: leaf {name} of shape {list(shape)} has no axis "
                                     f"{axis} (it has {len(shape)}); pass an axis of every "
                                     "selected leaf, or select fewer leaves.")
                if not 0 <= index < shape[axis]:
                    raise ValueError(f"block: leaf {name} of shape {list(shape)} has no index "
                                     f"{index} along axis {axis} (its length there is "
                                     f"{shape[axis]}).")
                sl = [slice(None)] * len(shape)
                sl[axis] = index
                m[tuple(sl)] = True
        parts.append(m.ravel())
    if not any_leaf:
        raise ValueError(f"block selection {select!r} matches no parameter; the leaf paths are "
                         f"{paths[:8]}{' …' if len(paths) > 8 else ''}.")
    if (isinstance(select, str) and not select.startswith("^") and axis is None
            and len(parts) > 1 and all(p.all() for p in parts)):
        key = "^" + re.escape(f"['{select}']")
        warnings.warn(f"block selection {select!r} matches every parameter (the leaf paths are "
                      f"{paths[:4]}{' …' if len(paths) > 4 else ''}), so the block is the whole "
                      "operator. A selection is a regular expression searched in each path, so "
                      "a short name also matches inside others (\"l\" in \"['kernel']\"); "
                      f"anchor it to a key, e.g. {key!r}.", UserWarning,
                      stacklevel=_validate.user_stacklevel())
    return np.concatenate(parts) if parts else np.zeros(0, bool)


__all__ = ["block_mask", "leaf_path"]
