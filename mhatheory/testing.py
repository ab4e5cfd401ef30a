"""Assertions for your own pytest suite: theory inequalities that fail with both sides, the
margin and the θ where they failed.

    from mhatheory.testing import assert_weakly_convex

    def test_my_model_is_weakly_convex():
        assert_weakly_convex(my_loss, params, batch, kappa=2.0, heads=8)

Each helper raises :class:`InequalityError` (an ``AssertionError``) on failure.
"""

from __future__ import annotations

import math

import jax
import numpy as np

from mhatheory import bounds, spectral


class InequalityError(AssertionError):
    """A checked inequality failed; the message holds both sides, the margin and θ."""


def describe(params) -> str:
    """A short fingerprint of a parameter pytree: each leaf's path, shape and 2-norm."""
    parts = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        arr = np.asarray(leaf)
        parts.append(f"{jax.tree_util.keystr(path)}{list(arr.shape)} ‖·‖={np.linalg.norm(arr):.6g}")
    return "; ".join(parts)


def assert_inequality(lhs, rhs, *, relation: str = ">=", name: str = "inequality",
                      slack: float = 0.0, where: str | None = None) -> float:
    """Assert ``lhs >= rhs`` (or ``<=``) up to a non-negative, stated ``slack``.

    Returns the margin (lhs − rhs + slack for ``>=``; rhs − lhs + slack for ``<=``), ≥ 0 on
    success.
    """
    if relation not in (">=", "<="):
        raise ValueError(f"relation must be '>=' or '<=', got {relation!r}.")
    if slack < 0:
        raise ValueError(f"slack must be >= 0, got {slack}.")
    lhs, rhs = float(lhs), float(rhs)
    margin = (lhs - rhs if relation == ">=" else rhs - lhs) + slack
    if not margin >= 0:  # also catches NaN
        msg = (f"{name} failed: lhs = {lhs:.12g} {relation} rhs = {rhs:.12g} does not hold "
               f"(margin {margin:.3g} with slack {slack:.3g})")
        if where:
            msg += f"\n  at θ: {where}"
        raise InequalityError(msg)
    return margin


def assert_weakly_convex(loss_fn, params, *args, kappa: float, heads: int,
                         method: str = "lanczos", key=None, **lanczos) -> float:
    """Assert λmin(∇²L̂(θ)) ≥ −κ/√H · L̂(θ) for ``L̂ = loss_fn(params, *args)``.

    λmin is computed by Lanczos (or densely); the slack is the width of its certified interval
    plus float64 rounding (``bounds.ROUNDING`` × |λmin|). Returns the margin.
    """
    loss = float(loss_fn(params, *args))
    lo = spectral.lambda_min(loss_fn, params, *args, method=method, key=key, **lanczos)
    rhs = -kappa / math.sqrt(heads) * loss
    slack = (lo.interval[1] - lo.interval[0]) + bounds.ROUNDING * max(abs(lo.value), abs(rhs))
    return assert_inequality(lo.value, rhs, name=f"λmin(∇²L̂) ≥ −κ/√H·L̂ (κ={kappa}, H={heads}, "
                             f"L̂={loss:.6g})", slack=slack, where=describe(params))


def assert_chain(params, batch, **kwargs):
    """Assert every link of the Deora weak-convexity chain at θ (see :mod:`mhatheory.bounds`);
    returns the :class:`~mhatheory.bounds.Chain`."""
    ch, _, _ = bounds.chain(params, batch, **kwargs)
    for link in ch.links:
        assert_inequality(link.lhs, link.rhs, name=link.name, slack=link.slack,
                          where=describe(params))
    return ch
