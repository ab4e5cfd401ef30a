"""The dense reference route: the operator's matrix and ``eigh``, guarded by a memory budget.

:class:`Dense` materialises a :class:`~mhatheory.spectral.LinearOperator` on the coordinates
it acts on (its block, or all P) by products with the unit vectors, ``DENSE_CHUNK`` at a time
(one vmapped program), symmetrises it and measures its asymmetry, which estimates the columns'
rounding. Its eigenpairs are deterministic: ``EigResult.failure_prob = 0``.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from mhatheory import _validate
from mhatheory._numerics import map_chunks
from mhatheory.spectral._certificate import intervals
from mhatheory.spectral._operators import (
    Hessian,
    LinearOperator,
    as_operator,
    check_finite,
    size_of,
)
from mhatheory.spectral._options import DEFAULT_BASIS_BUDGET, Which, check_budget
from mhatheory.spectral._result import EigResult

#: Default budget for dense routes (bytes). The dense route holds about four P×P arrays
#: (the columns, their symmetrisation and asymmetry, eigh's eigenvectors and workspace).
DEFAULT_DENSE_BUDGET = DEFAULT_BASIS_BUDGET
_DENSE_COPIES = 4

#: Basis vectors per vmapped chunk when materialising (bounds the tangent memory to 64 copies).
DENSE_CHUNK = 64


class DenseTooLargeError(MemoryError, ValueError):
    """The dense matrix would not fit in the memory budget."""


def dense_bytes(num_params: int, dtype) -> int:
    """Bytes the dense route needs for a P × P matrix: about four P² entries.

    Example:
        >>> dense_bytes(1_000, "float64") / 2**20     # MiB for P = 1,000
        30.517578125
    """
    return _DENSE_COPIES * num_params * num_params * np.dtype(dtype).itemsize


def check_dense_fits(num_params: int, dtype, memory_budget_bytes: int | None = None) -> None:
    """Raise :class:`DenseTooLargeError` (before allocating) if P² does not fit."""
    check_budget(memory_budget_bytes)
    budget = DEFAULT_DENSE_BUDGET if memory_budget_bytes is None else memory_budget_bytes
    need = dense_bytes(num_params, dtype)
    if need > budget:
        raise DenseTooLargeError(
            f"the dense matrix for P={num_params:,} parameters needs about "
            f"{_validate.size_text(need)} ({_DENSE_COPIES}·P² {np.dtype(dtype).name}), over the "
            f"budget of {_validate.size_text(budget)}. Use method='lanczos' (matrix-free, "
            f"O(P·krylov) memory), or raise memory_budget_bytes if the machine has the memory."
        )


@functools.partial(jax.jit, static_argnums=3)
def _columns(lin, mask, idx, wdt):
    """``(symmetrised matrix, ‖Ĥ − Ĥᵀ‖_F)`` on the coordinates ``idx``."""
    P = mask.shape[0]

    def column(i):
        e = jnp.zeros(P, wdt).at[i].set(1.0)
        x = (e * mask).astype(mask.dtype)
        return lin(x).astype(wdt)[idx]

    cols = map_chunks(column, idx, DENSE_CHUNK)
    return 0.5 * (cols + cols.T), jnp.linalg.norm(cols - cols.T)


@dataclasses.dataclass(frozen=True)
class Dense:
    """The dense route: a :class:`~mhatheory.spectral.LinearOperator` as a matrix, refused
    (before allocating) when four copies of it would not fit ``memory_budget_bytes`` (default
    2 GiB). Cost: one product per coordinate, P² memory."""

    memory_budget_bytes: int | None = None

    def __post_init__(self):
        check_budget(self.memory_budget_bytes)

    def check(self, operator) -> None:
        """Refuse an operator whose matrix would not fit, naming the Lanczos route."""
        check_dense_fits(operator.size, operator.work_dtype, self.memory_budget_bytes)

    def matrix(self, operator) -> tuple[jax.Array, float]:
        """``(matrix [size, size] on the operator's coordinates, asymmetry ‖Ĥ − Ĥᵀ‖_F)``; the
        asymmetry is pure rounding (the operator is symmetric)."""
        self.check(operator)
        idx = jnp.arange(operator.P) if operator.mask is None \
            else jnp.asarray(np.flatnonzero(operator.mask))
        H, asym = _columns(operator.lin, operator.vector_mask, idx, operator.work_dtype)
        check_finite(asym, "in its dense matrix", operator)
        return H, float(asym)

    def __call__(self, operator) -> jax.Array:
        """The symmetrised matrix."""
        return self.matrix(operator)[0]


def _checked_at(operator, params, args, memory_budget_bytes):
    """The operator at ``params`` once the inputs are checked and the matrix is known to fit."""
    op = as_operator(operator)
    op.check_inputs(params, args)
    check_dense_fits(size_of(op, params), _validate.num_params(params)[1], memory_budget_bytes)
    return op.at(params, *args)


def dense(operator, params, *args, memory_budget_bytes: int | None = None):
    """The operator (a loss function's Hessian, or a curvature operator) at ``params`` as a
    ``[size, size]`` matrix on its coordinates (:class:`Dense`), refused before any work when it
    would not fit ``memory_budget_bytes``.

    Example:
        >>> import jax.numpy as jnp
        >>> dense(lambda x: jnp.sum(x**3), jnp.array([1.0, 2.0])).tolist()
        [[6.0, 0.0], [0.0, 12.0]]
    """
    return Dense(memory_budget_bytes)(_checked_at(operator, params, args, memory_budget_bytes))


def dense_hessian(loss_fn, params, *args, memory_budget_bytes: int | None = None):
    """Dense ∇²_θ ``loss_fn(params, *args)`` as ``[P, P]`` over θ flattened by
    ``ravel_pytree`` (symmetrised). Refuses, before allocating, when it would not fit.

    Cost: P forward-over-reverse Hessian–vector products (as ``jax.hessian``, but applied to the
    basis in chunks of 64 so the tangent memory stays bounded), P² memory.

    Example:
        >>> import jax.numpy as jnp
        >>> dense_hessian(lambda x: jnp.sum(x**3), jnp.array([1.0, 2.0])).tolist()
        [[6.0, 0.0], [0.0, 12.0]]
    """
    return dense(Hessian(loss_fn), params, *args, memory_budget_bytes=memory_budget_bytes)


@jax.jit
def eigh_extremes(H):
    """``eigh`` of a dense symmetric matrix: (values ascending, vectors as columns)."""
    return jnp.linalg.eigh(H)


def residual_norm(H, value, vector) -> float:
    """‖H v − λ v‖₂ for a unit vector v, on the host."""
    H, vector = np.asarray(H), np.asarray(vector)
    return float(np.linalg.norm(H @ vector - value * vector))


def exact_eigs(operator: LinearOperator, k: int, which: Which, memory_budget_bytes=None
               ) -> list[EigResult]:
    """The k most extreme eigenpairs of ``operator``'s dense matrix (:class:`~._exact.Dense`),
    with the exact route's interval (:mod:`._cycles`, "Certificate"); deterministic."""
    t0 = time.perf_counter()
    H, asym = Dense(memory_budget_bytes).matrix(operator.widened())
    evals, evecs = eigh_extremes(H)
    # the residuals and the vectors are assembled on the host: done with jax.numpy outside a
    # program, each operation would compile one of its own for every size
    H, evals, evecs = np.asarray(H), np.asarray(evals), np.asarray(evecs)
    n = evals.size
    u = float(jnp.finfo(H.dtype).eps) / 2
    # Weyl: |λ(Ĥ_sym) − λ(H)| ≤ ‖E_sym‖₂ ≤ ‖Ĥ − Ĥᵀ‖_F/√2 · 2 (columns' errors, estimated by
    # the asymmetry, ×2 margin), plus eigh's backward error ≤ n·u·‖H‖₂ (LAPACK, generous)
    tau = 2.0 * float(asym) + n * u * float(np.max(np.abs(evals)))
    idx = list(range(k + 1)) if which == Which.SMALLEST else list(range(n - 1, n - 2 - k, -1))
    idx = [i for i in idx if 0 <= i < n]
    theta = evals[idx]
    rho = np.array([residual_norm(H, float(evals[i]), evecs[:, i]) for i in idx]) + tau
    taus = np.full(len(idx), tau)
    if len(idx) == k:   # k = n: no neighbour pair; the next eigenvalue is infinitely far away
        theta = np.append(theta, np.inf if which == Which.SMALLEST else -np.inf)
        rho, taus = np.append(rho, 0.0), np.append(taus, tau)
    iv = intervals(which, theta, rho, taus, True)
    seconds = time.perf_counter() - t0
    coords = np.arange(operator.P) if operator.mask is None else np.flatnonzero(operator.mask)

    def full(vec):
        out = np.zeros(operator.P, vec.dtype)
        out[coords] = vec
        return jnp.asarray(out)

    return [EigResult(float(theta[j]), full(evecs[:, idx[j]]), float(rho[j]), iv[j][0],
                      iv[j][1], n, 0, True, seconds, "exact", tau, float(asym), False, "", 0,
                      iv[j][0], 0.0, "exact", "exact", float(evals[-1] - evals[0]))
            for j in range(k)]


__all__ = ["DEFAULT_DENSE_BUDGET", "Dense", "DenseTooLargeError", "check_dense_fits", "dense",
           "dense_bytes", "dense_hessian", "eigh_extremes", "exact_eigs", "residual_norm"]
