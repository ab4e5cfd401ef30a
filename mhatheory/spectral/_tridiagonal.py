"""The tridiagonal matrix T of a Lanczos run and its eigenproblems: Ritz values, their
estimates and the eigenvector columns a run asks for, decomposed by LAPACK on the host
(``scipy.linalg.eigh_tridiagonal``, O(m²): about 1 ms at m = 150, where XLA's dense ``eigh`` of
the same matrix took 126 ms on a CPU core), through a callback inside a compiled step."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from mhatheory.spectral._options import Which


def tridiagonal(alpha, beta, steps, size: int, fill):
    """The leading ``size × size`` block of T with rows ≥ ``steps`` replaced by ``fill`` on the
    diagonal (decoupled, so its eigenvalues are those of T_steps plus copies of ``fill``)."""
    i = jnp.arange(size)
    d = jnp.where(i < steps, alpha[:size], fill)
    e = jnp.where(i[1:] < steps, beta[1:size], 0.0)
    return jnp.diag(d) + jnp.diag(e, 1) + jnp.diag(e, -1)


def _eigh_tridiagonal_host(d, e):
    d, e = np.asarray(d), np.asarray(e)
    if not (np.all(np.isfinite(d)) and np.all(np.isfinite(e))):
        n = d.shape[0]
        return np.full(n, np.nan, d.dtype), np.full((n, n), np.nan, d.dtype)
    w, v = scipy.linalg.eigh_tridiagonal(d, e, check_finite=False)
    return w.astype(d.dtype), v.astype(d.dtype)


def _ritz_host(alpha, beta, steps, fill, cols, which):
    """Ritz values, the last row of T's eigenvectors and the eigenvector columns ``cols``, in a
    ``size``-row layout whose rows ≥ ``steps`` are decoupled copies of ``fill`` (see
    :func:`ritz`); only the leading ``steps × steps`` block is decomposed, and only the requested
    columns travel back."""
    # the callback's arguments as NumPy arrays: slicing a device array by a Python int
    # compiles one program per length
    alpha, beta, cols = np.asarray(alpha), np.asarray(beta), np.asarray(cols)
    size = alpha.shape[0]
    k = int(steps)
    dtype = alpha.dtype
    theta = np.full(size, fill, dtype)
    last = np.zeros(size, dtype)
    S = np.zeros((size, len(cols)), dtype)
    if k == 0:
        return theta, last, S
    w, v = _eigh_tridiagonal_host(alpha[:k], beta[1:k])
    off = 0 if which == Which.SMALLEST else size - k     # where the k real pairs sit
    theta[off:off + k], last[off:off + k] = w, v[k - 1]
    for c, j in enumerate(cols):
        if off <= j < off + k:
            S[:k, c] = v[:, j - off]
    return theta, last, S


def ritz(alpha, beta, steps, size: int, which: Which, anorm, cols=None, xp=jnp):
    """Ritz values (ascending), Ritz estimates and the mask of real (non-padding) pairs of a
    ``size``-row block (``size ≥ steps``), and T's eigenvectors at positions ``cols`` (``[size,
    len(cols)]``, rows ≥ steps zero; None: none). The padding value ±(2‖T‖ + 1) lies beyond the
    spectrum of T_steps (‖T‖ ≤ ``anorm`` by Gershgorin) on the side away from the wanted end, so
    the wanted pairs keep their sorted positions. The leading ``steps × steps`` block is
    decomposed on the host (through a callback when ``xp`` is ``jax.numpy``), and only the
    asked-for columns come back (a check of a long run moves O(size), not O(size²), numbers)."""
    fill = (1.0 if which == Which.SMALLEST else -1.0) * (2 * anorm + 1)
    i = xp.arange(size)
    dtype = alpha.dtype
    cols = xp.zeros(0, xp.int32) if cols is None else xp.asarray(cols, xp.int32)
    args = (alpha[:size], beta[:size + 1], steps, xp.asarray(fill, dtype), cols)
    host = functools.partial(_ritz_host, which=Which(which))
    if xp is np:
        theta, last, S = host(*args)
    else:
        out = (jax.ShapeDtypeStruct((size,), dtype), jax.ShapeDtypeStruct((size,), dtype),
               jax.ShapeDtypeStruct((size, cols.shape[0]), dtype))
        theta, last, S = jax.pure_callback(host, out, *args, vmap_method="sequential")
    est = beta[steps] * xp.abs(last)
    real = i < steps if which == Which.SMALLEST else i >= size - steps
    return theta, est, real, S


def wanted(size: int, count: int, which: Which, xp=jnp):
    """Sorted positions of the ``count`` most extreme Ritz pairs in a ``size``-row block."""
    return xp.arange(count) if which == Which.SMALLEST else size - 1 - xp.arange(count)


__all__ = ["ritz", "tridiagonal", "wanted"]
