"""Margin losses and their self-bounding constants.

The Deora et al. analysis uses the logistic loss ℓ(t) = log(1 + e^{−t}) of the margin t = yΦ.
It is *self-bounded*:

    ℓ'(t)  = −σ(−t),        |ℓ'(t)| = σ(−t) = 1 − e^{−ℓ(t)} ≤ ℓ(t)        (since 1 − e^{−u} ≤ u)
    ℓ''(t) = σ(t)σ(−t) = |ℓ'(t)|(1 − |ℓ'(t)|) ∈ [0, |ℓ'(t)|]  and  ℓ'' ≤ 1/4.

So ℓ is 1-Lipschitz and 1/4-smooth in t. ``softplus(−t)`` is evaluated with ``logaddexp`` so large
margins of either sign neither overflow nor lose the tail (ℓ(t) ≈ e^{−t} for t ≫ 1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def logistic(t):
    """ℓ(t) = log(1 + e^{−t}), stable for all t."""
    return jnp.logaddexp(0.0, -t)


def logistic_d1(t):
    """ℓ'(t) = −σ(−t)."""
    return -jax.nn.sigmoid(-t)


def logistic_d2(t):
    """ℓ''(t) = σ(t)σ(−t)."""
    return jax.nn.sigmoid(t) * jax.nn.sigmoid(-t)


def weighted_mean(values, weights=None):
    """Σ_i w_i v_i / Σ_i w_i (the plain mean when ``weights`` is None)."""
    if weights is None:
        return jnp.mean(values)
    return jnp.sum(weights * values) / jnp.sum(weights)


def margin_loss(outputs, labels, weights=None):
    """L̂ = Σ_i w_i ℓ(y_i f_i) / Σ_i w_i for outputs f and labels y ∈ {±1} (w_i = 1 by default).

    Weight 0 removes a sample exactly (leave-one-out retraining uses this).
    """
    return weighted_mean(logistic(labels * outputs), weights)


def mistakes(outputs, labels):
    """Per-sample 0/1 mistakes of outputs f against labels y ∈ {±1}: sign(f_i) ≠ y_i, a zero
    output included, and any f_i that is not finite (a diverged model predicts nothing, while
    y·f ≤ 0 is False for NaN and would count it right)."""
    return ~(labels * outputs > 0) | ~jnp.isfinite(outputs)


def class_mistakes(logits, labels):
    """Per-sample 0/1 mistakes of logits ``[..., C]`` against integer labels: argmax ≠ label,
    and any row with a non-finite logit (``argmax`` would pick a NaN as the class)."""
    return (jnp.argmax(logits, axis=-1) != labels) | ~jnp.all(jnp.isfinite(logits), axis=-1)


def zero_one_error(outputs, labels):
    """Fraction of :func:`mistakes`: sign(f_i) ≠ y_i or f_i not finite."""
    return jnp.mean(mistakes(outputs, labels))
