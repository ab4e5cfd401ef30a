"""Array operations of the Lanczos step, written once for both engines
(:mod:`._recurrence`): on the host a Python branch and NumPy updating the step's own vectors in
place, in a compiled step ``lax`` control flow and functional updates.

In place on the host because a fresh P-vector can cost more than the arithmetic on it: where the
allocator maps fresh memory for it, its page faults are paid at every step (NumPy's
``y - a * x`` makes two). The host step copies its product into a buffer of its own once, and
every update after that writes into it or into one scratch vector per thread."""

from __future__ import annotations

import threading

import jax
import numpy as np


def set_row(xp, Q, i, row):
    """Q with row ``i`` replaced: in place on the host (the run owns its basis), and in place
    for XLA too (a scatter with mode="drop" makes XLA copy Q at every step)."""
    if xp is np:
        Q[i] = row
        return Q
    return jax.lax.dynamic_update_slice_in_dim(Q, row[None], i, axis=0)


def cond(xp, pred, true_fn, false_fn, *operands):
    """``lax.cond`` in a compiled step; a Python ``if`` on the host."""
    if xp is np:
        return true_fn(*operands) if pred else false_fn(*operands)
    return jax.lax.cond(pred, true_fn, false_fn, *operands)


def select(xp, pred, a, b):
    """``where(pred, a, b)`` of scalars: a Python choice on the host."""
    if xp is np:
        return a if pred else b
    return xp.where(pred, a, b)


def set_entry(xp, a, i, value):
    """``a`` with entry ``i`` set (a copy: earlier states keep their values)."""
    if xp is np:
        a = a.copy()
        a[i] = value
        return a
    return a.at[i].set(value)


def norm(v):
    """‖v‖₂ of a real NumPy vector: √(v·v), what ``numpy.linalg.norm`` computes for it, without
    its dispatch."""
    return np.sqrt(v @ v)


def minus_scaled(xp, y, a, x):
    """y − a·x; on the host in place on y, a buffer the step owns, through this thread's
    :func:`scratch` vector (the module docstring; at P = 133,120 both updates of a step take
    0.17 ms so, 1.1 ms as ``y - a * x``)."""
    if xp is np:
        t = scratch(y.shape, y.dtype)
        np.multiply(x, a, out=t)
        np.subtract(y, t, out=y)
        return y
    return y - a * x


_SCRATCH = threading.local()


def scratch(shape, dtype):
    """A work vector of this thread, reused by every host step of its shape and dtype."""
    key = (shape, np.dtype(dtype))
    buf = getattr(_SCRATCH, "buf", None)
    if buf is None or (buf.shape, buf.dtype) != key:
        buf = _SCRATCH.buf = np.empty(shape, dtype)
    return buf


def minus_projection(xp, y, rows):
    """y − rowsᵀ(rows·y); on the host in place on y (as :func:`minus_scaled`)."""
    if xp is np:
        t = scratch(y.shape, y.dtype)
        np.dot(rows.T, rows @ y, out=t)
        np.subtract(y, t, out=y)
        return y
    return y - rows.T @ (rows @ y)


def divided(xp, y, s):
    """y / s; on the host in place on y (as :func:`minus_scaled`)."""
    if xp is np:
        y /= s
        return y
    return y / s


__all__ = ["cond", "divided", "minus_projection", "minus_scaled", "norm", "scratch", "select",
           "set_entry", "set_row"]
