"""The Gauss–Newton / curvature split of the Hessian, for any model and any per-example loss.

For a model ``f(params, inputs) -> outputs`` and a per-example loss ℓ(z, t) of an output z and
its target t, with example weights w_i ≥ 0 (a mask is a 0/1 weight),

    L̂(θ) = Σ_i w_i ℓ(f_i(θ), t_i) / Σ_i w_i

where i runs over every *example*: every index of the outputs' leading axes (samples, and
sequence positions for a sequence model). The chain rule gives, with J_i = ∂f_i/∂θ,

    ∇²L̂ = G + N,   G = Σ_i ŵ_i J_iᵀ ∇²_z ℓ_i J_i,   N = Σ_i ŵ_i Σ_c ∂ℓ_i/∂z_c ∇²f_{i,c},

ŵ_i = w_i/Σw. G ⪰ 0 whenever every ∇²_z ℓ_i ⪰ 0 (a loss convex in the output: all built-ins),
so λmin(∇²L̂) ≥ λmin(N) (Weyl) for every model; N is the only source of negative curvature.

**Losses** (``loss=``): ``"logistic"`` ℓ(z, y) = log(1 + e^{−yz}) with labels y ∈ {−1, +1}
(scalar output per example; the default, the Deora setting); ``"cross_entropy"``
ℓ(z, t) = logsumexp(z) − z_t with integer classes t ∈ [0, C) and logits z ∈ ℝ^C (the last
output axis); ``"mse"`` ℓ(z, t) = (z − t)², elementwise (every output entry is an example, so
L̂ = mean((f − t)²)); or a callable ``loss(z, t) -> scalar`` on one example's output, whose
trailing ``output_ndim`` axes belong to one example (0: a scalar per example).

**Cost.** G v: one JVP of f, one Hessian–vector product of ℓ in z per example (a JVP of its
gradient: O(C) for cross-entropy), one VJP of f: about 2–3 gradients. N v: an HVP of
θ ↦ Σ_i c_i·f_i(θ) with c_i = ŵ_i ∂ℓ_i/∂z held fixed (forward-over-reverse, ~1 gradient after
one linearisation). Memory: one output-shaped vector per product.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.tree_util import Partial

from mhatheory import _validate
from mhatheory.spectral._operators import Operator
from mhatheory.spectral._options import as_enum


def _logistic(z, y):
    return jnp.logaddexp(0.0, -y * z)


def _cross_entropy(z, t):
    return jax.nn.logsumexp(z) - jnp.take(z, t)


def _cross_entropy_grad(z, t):
    """∂ℓ/∂z = p − e_t, its t-th entry formed as −Σ_{c≠t} p_c. Autodiff forms p_t − 1, which
    rounds to a multiple of u when p_t ≈ 1: a fixed error of about u, against 1 − p_t ≈ e^{−m}
    at a logit margin m (relative 5e-8 at m = 20 in float64; at m ≳ 37 the entry is 0). N holds
    these weights fixed, so no linearity check sees that error: with autodiff's weights,
    Curvature's certified intervals miss N's eigenvalues of a classifier at margins 10 and 20
    (``tests/test_split.py``)."""
    p = jax.nn.softmax(z)
    is_t = jnp.arange(z.shape[-1]) == t
    return jnp.where(is_t, -jnp.sum(jnp.where(is_t, 0.0, p)), p)


def _cross_entropy_hz(z, t, u):
    """∇²_z ℓ u = (diag p − ppᵀ) u = p ⊙ (u − pᵀu), the top class k's entry formed as
    p_k Σ_{c≠k} p_c (u_k − u_c) (equal, as Σp = 1): u_k − pᵀu cancels to ≈ (1 − p_k)|u| there."""
    p = jax.nn.softmax(z)
    k = jnp.argmax(z)
    is_k = jnp.arange(z.shape[-1]) == k
    top = p[k] * jnp.sum(jnp.where(is_k, 0.0, p * (u[k] - u)))
    return jnp.where(is_k, top, p * (u - jnp.sum(p * u)))


def _mse(z, t):
    return (z - t) ** 2


class Loss(str, enum.Enum):
    """The built-in per-example losses of the split (all convex in the output, so G ⪰ 0).

    * ``LOGISTIC``: ℓ(z, y) = log(1 + e^{−yz}), a scalar output per example, labels y ∈ {−1, +1}.
    * ``CROSS_ENTROPY``: ℓ(z, t) = logsumexp(z) − z_t, logits on the last output axis, integer
      classes t ∈ [0, C).
    * ``MSE``: ℓ(z, t) = (z − t)², every output entry an example.
    """

    LOGISTIC = "logistic"
    CROSS_ENTROPY = "cross_entropy"
    MSE = "mse"


#: loss → (per-example loss, trailing output axes of one example)
LOSSES = {Loss.LOGISTIC: (_logistic, 0), Loss.CROSS_ENTROPY: (_cross_entropy, 1),
          Loss.MSE: (_mse, 0)}


#: loss → (∂ℓ/∂z, (z, t, u) ↦ ∇²_z ℓ u) formed without cancellation; the other losses use autodiff
DERIVATIVES = {Loss.CROSS_ENTROPY: (_cross_entropy_grad, _cross_entropy_hz)}


def _resolve(loss, output_ndim):
    if callable(loss) and not isinstance(loss, str):
        return loss, output_ndim
    return LOSSES[Loss(loss)]


def _autodiff(ell):
    grad_z = jax.grad(ell)

    def hz(z, t, u):                     # ∇²_z ℓ(z, t) u, one example
        return jax.jvp(lambda z: grad_z(z, t), (z,), (u,))[1]

    return grad_z, hz


@dataclass(frozen=True)
class _Split(Operator):
    """Shared by :class:`GaussNewton` and :class:`Curvature`: the model ``f``, the loss, its
    checks and L̂. The loss is checked where the operator is made."""

    f: Callable
    loss: Loss | str | Callable = Loss.LOGISTIC
    output_ndim: int = 0

    def __post_init__(self):
        _validate.callable_arg(f"{type(self).__name__}(f): f", self.f,
                               "f(params, inputs) -> outputs")
        if isinstance(self.loss, str) or not callable(self.loss):
            object.__setattr__(self, "loss", as_enum(Loss, self.loss, "loss"))
        _validate.positive_int("output_ndim", self.output_ndim, minimum=0)

    def _per_example(self):
        return _resolve(self.loss, self.output_ndim)

    def _derivatives(self):
        """(∂ℓ/∂z, ∇²_z ℓ · u) of one example: :data:`DERIVATIVES` for a built-in loss that has
        them, else autodiff of ℓ."""
        if isinstance(self.loss, Loss) and self.loss in DERIVATIVES:
            return DERIVATIVES[self.loss]
        return _autodiff(self._per_example()[0])

    def _parts(self, params, args):
        inputs, targets = args[0], args[1]
        weights = args[2] if len(args) > 2 else None
        ell, event = self._per_example()
        return inputs, targets, weights, ell, event

    def check(self, params, args) -> None:
        """Argument checks before any compilation (names the argument and the fix)."""
        if len(args) not in (2, 3):
            raise ValueError(f"{type(self).__name__} takes the data as (inputs, targets) or "
                             f"(inputs, targets, weights), got {len(args)} argument(s).")
        inputs, targets, weights, ell, event = self._parts(params, args)
        out = jax.eval_shape(self.f, params, inputs)
        lead = tuple(out.shape[:out.ndim - event]) if event else tuple(out.shape)
        tshape = tuple(np.shape(targets))
        name = self.loss.value if isinstance(self.loss, Loss) else "a callable loss"
        if self.loss == Loss.CROSS_ENTROPY:
            if not event or out.ndim < 1:
                raise ValueError("cross_entropy needs outputs with a class axis [..., C].")
            if tshape != lead:
                raise ValueError(f"cross_entropy: outputs {list(out.shape)} need integer targets "
                                 f"of shape {list(lead)} (one class index per example), got "
                                 f"{list(tshape)}.")
            dt = np.dtype(targets.dtype) if hasattr(targets, "dtype") else np.result_type(targets)
            if not np.issubdtype(dt, np.integer):
                raise ValueError(f"cross_entropy targets must be integer class indices in "
                                 f"[0, {out.shape[-1]}), got dtype {dt}; ±1 labels belong to "
                                 "loss='logistic'.")
            if _validate.is_concrete(targets):
                t = np.asarray(targets)
                if t.size and (t.min() < 0 or t.max() >= out.shape[-1]):
                    raise ValueError(f"cross_entropy targets must lie in [0, C={out.shape[-1]}), "
                                     f"found {int(t.min())}..{int(t.max())}.")
        elif isinstance(self.loss, Loss):
            if tshape != lead:
                raise ValueError(f"{name}: f(params, inputs) has shape {list(out.shape)} but "
                                 f"the targets have shape {list(tshape)}; they must match (one "
                                 "output per target).")
            if self.loss == Loss.LOGISTIC:
                _validate.labels_pm1("targets", targets)
        else:
            tlead = tshape[:len(lead)]
            if tlead != lead:
                raise ValueError(f"{name}: the outputs' example axes {list(lead)} (output_ndim="
                                 f"{event}) must lead the targets' shape {list(tshape)}.")
        if weights is not None:
            if tuple(np.shape(weights)) != lead:
                raise ValueError(f"weights must have the examples' shape {list(lead)}, got "
                                 f"{list(np.shape(weights))}.")
            if _validate.is_concrete(weights):
                w = np.asarray(weights)
                if np.any(w < 0) or not np.isfinite(w).all() or w.sum() <= 0:
                    raise ValueError("weights must be finite, ≥ 0 and not all 0.")

    def _stats(self, out, targets, weights, event):
        """Per-example loss function on flattened examples, and normalised weights ŵ."""
        ell, _ = self._per_example()
        lead = out.shape[:out.ndim - event] if event else out.shape
        zs = out.reshape((-1,) + out.shape[out.ndim - event:])
        ts = jnp.reshape(targets, (zs.shape[0],) + jnp.shape(targets)[len(lead):])
        w = jnp.ones(zs.shape[0], out.dtype) if weights is None else \
            jnp.reshape(weights, (-1,)).astype(out.dtype)
        return ell, zs, ts, w / jnp.sum(w)

    def value(self, params, inputs, targets, weights=None):
        """L̂(θ) = Σ ŵ_i ℓ(f_i, t_i): the loss whose Hessian G + N is."""
        _, event = self._per_example()
        out = self.f(params, inputs)
        ell, zs, ts, w = self._stats(out, targets, weights, event)
        return jnp.sum(w * jax.vmap(ell)(zs, ts))

    def _model(self, params, args):
        """``(x ↦ f(unravel(x), inputs), flat θ, targets, weights, example axes)``."""
        inputs, targets, weights, _, event = self._parts(params, args)
        flat, unravel = ravel_pytree(params)

        def fx(x):
            return self.f(unravel(x), inputs)

        return fx, flat, targets, weights, event

    def scalar(self, params, inputs, targets, weights=None):
        """L̂, the scalar behind the operator (for the precision guard)."""
        return self.value(params, inputs, targets, weights)


@dataclass(frozen=True)
class GaussNewton(_Split):
    """G = Σ_i ŵ_i J_iᵀ ∇²_z ℓ_i J_i for ``f(params, inputs) -> outputs`` (module docstring);
    args ``(inputs, targets[, weights])``. PSD for the built-in losses (tagged ``psd``)."""

    @property
    def psd(self) -> bool:
        return isinstance(self.loss, Loss)

    def matvec_at(self, params, args):
        fx, flat, targets, weights, event = self._model(params, args)
        out, jvp = jax.linearize(fx, flat)
        _, vjp = jax.vjp(fx, flat)
        _, zs, ts, w = self._stats(out, targets, weights, event)
        return Partial(self._product, jvp, vjp, zs, ts, w.reshape((-1,) + (1,) * event)), flat

    def _product(self, jvp, vjp, zs, ts, w, v):
        """G v = Jᵀ (ŵ ∇²_z ℓ (J v)): one JVP, per-example loss Hessians in z, one VJP."""
        _, hz = self._derivatives()
        u = jvp(v)
        wu = jax.vmap(hz)(zs, ts, u.reshape(zs.shape)) * w
        return vjp(wu.reshape(u.shape))[0]


@dataclass(frozen=True)
class Curvature(_Split):
    """N = Σ_i ŵ_i Σ_c ∂ℓ_i/∂z_c ∇²f_{i,c} for ``f(params, inputs) -> outputs`` (module
    docstring); args ``(inputs, targets[, weights])``."""

    def matvec_at(self, params, args):
        fx, flat, targets, weights, event = self._model(params, args)
        out = fx(flat)
        _, zs, ts, w = self._stats(out, targets, weights, event)
        c = jax.vmap(self._derivatives()[0])(zs, ts) * w.reshape((-1,) + (1,) * event)
        c = jax.lax.stop_gradient(c.reshape(out.shape))
        _, lin = jax.linearize(jax.grad(lambda x: jnp.sum(c * fx(x))), flat)
        return lin, flat
