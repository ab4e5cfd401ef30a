"""The dense reference route: ``jax.hessian`` + ``eigh``, guarded by a memory budget."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mhatheory._numerics import map_chunks
from mhatheory.spectral._operators import Hessian, as_operator, check_probe, operator_size

#: Default budget for dense routes (bytes). The dense route holds about four P×P arrays
#: (the columns, their symmetrisation and asymmetry, eigh's eigenvectors and workspace).
DEFAULT_DENSE_BUDGET = 2 * 2**30
_DENSE_COPIES = 4


class DenseTooLargeError(MemoryError, ValueError):
    """The dense Hessian would not fit in the memory budget."""


def dense_bytes(num_params: int, dtype) -> int:
    """Bytes the dense route needs for P parameters: 3 P² entries."""
    return _DENSE_COPIES * num_params * num_params * np.dtype(dtype).itemsize


def check_budget(memory_budget_bytes) -> None:
    """``memory_budget_bytes`` is None (the default budget) or a number of bytes ≥ 0."""
    if memory_budget_bytes is None:
        return
    if (isinstance(memory_budget_bytes, bool)
            or not isinstance(memory_budget_bytes, (int, float, np.integer, np.floating))
            or not memory_budget_bytes >= 0 or memory_budget_bytes == float("inf")):
        raise ValueError(f"memory_budget_bytes must be a finite number of bytes >= 0 (or None "
                         f"for the default {DEFAULT_DENSE_BUDGET / 2**30:.0f} GiB), got "
                         f"{memory_budget_bytes!r}.")


def check_dense_fits(num_params: int, dtype, memory_budget_bytes: int | None = None) -> None:
    """Raise :class:`DenseTooLargeError` (before allocating) if P² does not fit."""
    check_budget(memory_budget_bytes)
    budget = DEFAULT_DENSE_BUDGET if memory_budget_bytes is None else memory_budget_bytes
    need = dense_bytes(num_params, dtype)
    if need > budget:
        raise DenseTooLargeError(
            f"the dense Hessian for P={num_params:,} parameters needs about "
            f"{need / 2**30:.2f} GiB ({_DENSE_COPIES}·P² {np.dtype(dtype).name}), over the "
            f"budget of {budget / 2**30:.2f} GiB. Use method='lanczos' (matrix-free, "
            f"O(P·krylov) memory), or raise memory_budget_bytes if the machine has the memory."
        )


def _checked(operator, params, args, memory_budget_bytes):
    check_budget(memory_budget_bytes)
    op = as_operator(operator)
    check_probe(op, params, args)
    check_dense_fits(*operator_size(op, params), memory_budget_bytes)
    return op


def dense(operator, params, *args, memory_budget_bytes: int | None = None):
    """Materialise an operator as a ``[P, P]`` matrix (P matvecs, vmapped); guarded like
    :func:`mhatheory.spectral.dense_hessian`."""
    op = _checked(operator, params, args, memory_budget_bytes)
    return _dense(op, params, args)[0]


def dense_with_asymmetry(operator, params, *args, memory_budget_bytes: int | None = None):
    """``(symmetrised matrix, ‖Ĥ − Ĥᵀ‖_F)``: the asymmetry of the materialised columns is pure
    rounding (H is symmetric), an estimate of the columns' error used by the exact route's
    certified interval."""
    op = _checked(operator, params, args, memory_budget_bytes)
    H, asym = _dense(op, params, args)
    return H, float(asym)


#: Basis vectors per vmapped chunk when materialising (bounds the tangent memory to 64 copies).
DENSE_CHUNK = 64


def _dense_impl(operator, params, args):
    matvec, flat = operator.build(params, args)
    eye = jnp.eye(flat.shape[0], dtype=flat.dtype)
    cols = map_chunks(matvec, eye, DENSE_CHUNK)
    return 0.5 * (cols + cols.T), jnp.linalg.norm(cols - cols.T)


_dense = jax.jit(_dense_impl, static_argnums=0)


def dense_hessian(loss_fn, params, *args, memory_budget_bytes: int | None = None):
    """Dense ∇²_θ ``loss_fn(params, *args)`` as ``[P, P]`` over θ flattened by
    ``ravel_pytree`` (symmetrised). Refuses, before allocating, when it would not fit.

    Cost: P forward-over-reverse Hessian–vector products (as ``jax.hessian``, but applied to the
    basis in chunks of 64 so the tangent memory stays bounded), P² memory.
    """
    return dense(Hessian(loss_fn), params, *args, memory_budget_bytes=memory_budget_bytes)


@jax.jit
def eigh_extremes(H):
    """``eigh`` of a dense symmetric matrix: (values ascending, vectors as columns)."""
    return jnp.linalg.eigh(H)


def residual_norm(H, value, vector) -> float:
    """‖H v − λ v‖₂ for a unit vector v."""
    return float(jnp.linalg.norm(H @ vector - value * vector))
