"""Curvature operators: Hessian, Gauss–Newton G and the curvature term N, as matvecs.

Each operator is a frozen (hashable) dataclass with ``build(params, args) -> (matvec, flat)``:
``flat`` is θ flattened with ``jax.flatten_util.ravel_pytree`` and ``matvec`` is linear on
vectors of that size. Being hashable, an operator is a static argument of the jitted probes, so
repeated probes with the same operator and shapes reuse one compiled program, and the data
(``args``) is a traced argument, never a folded constant.

**Hessian–vector products** are forward-over-reverse: ``jax.linearize`` of θ ↦ ∇L̂(θ) once per
probe, after which each product Hv runs only the tangent program (about the cost of one
gradient, instead of the primal + tangent of a fresh ``jvp``).

**Data-parallel.** ``build`` uses ``args`` exactly as given and nothing here moves them to a
device, so a batch whose sample axis is split over devices
(:func:`mhatheory.distributed.shard_samples`, or any ``NamedSharding``) keeps that split inside
the jitted probes: each device evaluates the loss on its samples and an all-reduce sums the
partial gradients of every HVP. Results equal one device's up to the order of that sum
(``tests/test_distributed.py`` checks the partitioned program and λmin, trace, density).

The Gauss–Newton / curvature split for any model and loss is in :mod:`._split`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from mhatheory import _validate, precision


def flat_fn(fn, params):
    """``(x_flat -> fn(unravel(x_flat)), flat)``."""
    flat, unravel = ravel_pytree(params)
    return (lambda x: fn(unravel(x))), flat


@dataclass(frozen=True)
class Hessian:
    """∇²_θ ``loss_fn(params, *args)`` as a matvec (forward-over-reverse)."""

    loss_fn: Callable

    def validate(self, params, args) -> None:
        """A scalar loss, and the loss's own ``check_args`` when it declares one."""
        _validate.loss_inputs(self.loss_fn, params, args)

    def build(self, params, args):
        flat, unravel = ravel_pytree(params)

        def grad_flat(x):
            return ravel_pytree(jax.grad(self.loss_fn)(unravel(x), *args))[0]

        _, matvec = jax.linearize(grad_flat, flat)
        return matvec, flat


def as_operator(loss_fn_or_operator):
    """An operator as is; a plain loss function becomes its :class:`Hessian`."""
    if hasattr(loss_fn_or_operator, "build"):
        return loss_fn_or_operator
    if not callable(loss_fn_or_operator):
        raise ValueError("expected a loss_fn(params, *args) -> scalar or a curvature operator, "
                         f"got {type(loss_fn_or_operator).__name__}.")
    return Hessian(loss_fn_or_operator)


def check_probe(op, params, args) -> None:
    """Every probe's checks before compiling: :func:`mhatheory._validate.probe_inputs`, then the
    precision guard (:mod:`mhatheory.precision`) on the loss behind the operator."""
    _validate.probe_inputs(op, params, args)
    fn = op.loss_fn if isinstance(op, Hessian) else getattr(op, "precision_fn", None)
    if fn is not None:
        precision.warn_lower_precision(fn, params, *args, stacklevel=5)


def operator_size(op, params) -> tuple[int, np.dtype]:
    """``(P, dtype)`` of the vector an operator acts on, by abstract evaluation of
    :func:`operator_flat` (no device work): what the checks before a probe need."""
    out = jax.eval_shape(lambda p: operator_flat(op, p), params)
    return int(out.size), np.dtype(out.dtype)


def operator_flat(op, params):
    """The vector an operator acts on: θ flattened (``ravel_pytree``), or an operator's own
    (e.g. a :class:`~mhatheory.spectral.Block`'s sub-vector)."""
    own = getattr(op, "flat", None)
    return own(params) if own is not None else ravel_pytree(params)[0]
