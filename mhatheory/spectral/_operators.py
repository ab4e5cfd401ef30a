"""Curvature operators: Hessian, Gauss–Newton G and the curvature term N, as matvecs.

Each operator is a frozen (hashable) dataclass with ``build(params, args) -> (matvec, flat)``:
``flat`` is θ flattened with ``jax.flatten_util.ravel_pytree`` and ``matvec`` is linear on
vectors of that size. Being hashable, an operator is a static argument of the jitted probes, so
repeated probes with the same operator and shapes reuse one compiled program, and the data
(``args``) is a traced argument, never a folded constant.

**Hessian–vector products** are forward-over-reverse: ``jax.linearize`` of θ ↦ ∇L̂(θ) once per
probe, after which each product Hv runs only the tangent program (about the cost of one
gradient, instead of the primal + tangent of a fresh ``jvp``).

**Split for margin losses.** For L̂(θ) = (1/n) Σ_i ℓ(y_i f_i(θ)),

    ∇²L̂ = G + N,  G = (1/n) Σ_i ℓ''(y_i f_i) ∇f_i ∇f_iᵀ   (y_i² = 1; PSD since ℓ'' ≥ 0)
                   N = (1/n) Σ_i ℓ'(y_i f_i) y_i ∇²f_i.

G v = Jᵀ diag(ℓ''/n) J v (one JVP + one VJP); N v is the Hessian–vector product of
θ ↦ Σ_i c_i f_i(θ) with c_i = ℓ'(y_i f_i) y_i / n held fixed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from mhatheory import _validate, precision
from mhatheory.losses import logistic_d1, logistic_d2


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


class _MarginSplit:
    """Shared input checks of the logistic split: args ``(X, y)``, ``f(params, X)`` of the
    same shape as ``y``, labels y ∈ {−1, +1} (the split uses y² = 1)."""

    def validate(self, params, args) -> None:
        if len(args) != 2:
            raise ValueError(f"{type(self).__name__} takes the data as (inputs, labels), got "
                             f"{len(args)} argument(s).")
        X, y = args
        out = jax.eval_shape(self.f, params, X)
        if tuple(out.shape) != tuple(jnp.shape(y)):
            raise ValueError(f"{type(self).__name__}: f(params, inputs) has shape "
                             f"{list(out.shape)} but the labels have shape "
                             f"{list(jnp.shape(y))}; they must match (one output per label).")
        _validate.labels_pm1("labels", y)

    def precision_fn(self, params, X, y):
        """A scalar function of the same computation, for the precision guard."""
        return jnp.sum(self.f(params, X))


@dataclass(frozen=True)
class GaussNewton(_MarginSplit):
    """G = (1/n) Σ ℓ''(y_i f_i) ∇f_i ∇f_iᵀ for ``f(params, X) -> [n]``; args ``(X, y)``."""

    f: Callable

    def build(self, params, args):
        X, y = args[0], args[1]
        fx, flat = flat_fn(lambda p: self.f(p, X), params)
        out, jvp = jax.linearize(fx, flat)
        _, vjp = jax.vjp(fx, flat)
        c = logistic_d2(y * out) / out.shape[0]
        return (lambda v: vjp(c * jvp(v))[0]), flat


@dataclass(frozen=True)
class Curvature(_MarginSplit):
    """N = (1/n) Σ ℓ'(y_i f_i) y_i ∇²f_i for ``f(params, X) -> [n]``; args ``(X, y)``."""

    f: Callable

    def build(self, params, args):
        X, y = args[0], args[1]
        fx, flat = flat_fn(lambda p: self.f(p, X), params)
        out = fx(flat)
        c = jax.lax.stop_gradient(logistic_d1(y * out) * y / out.shape[0])
        _, matvec = jax.linearize(jax.grad(lambda x: jnp.sum(c * fx(x))), flat)
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
