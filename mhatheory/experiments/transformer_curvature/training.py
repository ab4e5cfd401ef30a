"""Training a cell until it has learned, and the steps at which it first reaches each loss level.

:func:`trainer` compiles, once per model structure, AdamW (linear warm-up, cosine decay to 0 at
``max_steps``) over ``chunk`` steps in one ``lax.scan``; the minibatch of step k is drawn inside
the program from ``fold_in(key, k)``, so a cell is a function of its seed. Between chunks the
loop of :func:`mhatheory.experiments.transformer_curvature.experiment.run_cell` reads the loss on
the probe batch and the validation accuracy, so a level is *first reached* at the first
recorded step whose loss is at or below it (:func:`first_below`): every H is read at the same
loss up to one chunk's progress, which the records carry (their ``loss`` beside the ``level``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from mhatheory import losses


def apply(graphdef):
    """``f(params, inputs) -> logits`` of one model structure."""
    def f(params, inputs):
        return nnx.merge(graphdef, nnx.State(params))(inputs)
    return f


def weighted_ce(logits, targets, weights):
    """Σ w·ℓ_CE / Σ w over every target (the tasks' one loss)."""
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    return jnp.sum(weights * ce) / jnp.sum(weights)


def exact_match(logits, targets, weights):
    """The share of samples whose every weighted target is its logits' argmax."""
    right = ~losses.class_mistakes(logits, targets) | (weights == 0)
    return jnp.mean(jnp.all(right.reshape(right.shape[0], -1), axis=-1))


@functools.cache
def trainer(graphdef, warmup: int, max_steps: int, weight_decay: float, batch: int,
            chunk: int):
    """``(init, run, metrics)`` for one model structure and schedule.

    ``init(params)`` is the AdamW state; ``run(params, state, lr, key, step, pool)`` takes
    ``chunk`` AdamW steps from step ``step`` at peak learning rate ``lr`` on minibatches of
    ``batch`` samples of ``pool`` (a :class:`~.tasks.Split`); ``metrics(params, split)`` is
    ``(loss, exact match)`` on a split. AdamW's step −η(t)·(adam(g) + λθ) is linear in the peak
    rate, so ``lr`` scales the unit-peak schedule's update at run time and every learning rate
    shares one compiled program."""
    f = apply(graphdef)
    opt = optax.adamw(optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup, max_steps),
                      weight_decay=weight_decay)

    def loss(params, data):
        return weighted_ce(f(params, data.inputs), data.targets, data.weights)

    @jax.jit
    def run(params, state, lr, key, step, pool):
        def body(carry, k):
            p, s = carry
            idx = jax.random.randint(jax.random.fold_in(key, k), (batch,), 0,
                                     pool.inputs.shape[0])
            g = jax.grad(loss)(p, pool.take(idx))
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, jax.tree.map(lambda x: lr * x, u)), s), None
        (params, state), _ = jax.lax.scan(body, (params, state), step + jnp.arange(chunk))
        return params, state

    @jax.jit
    def metrics(params, data):
        logits = f(params, data.inputs)
        return (weighted_ce(logits, data.targets, data.weights),
                exact_match(logits, data.targets, data.weights))

    return opt.init, run, metrics


def first_below(steps, losses, levels) -> dict:
    """For each level, the first recorded step whose loss is ≤ it (``None`` if none is).

    Example:
        >>> first_below([0, 10, 20, 30], [2.0, 1.1, 0.9, 0.2], (1.0, 0.3, 0.1))
        {1.0: 20, 0.3: 30, 0.1: None}
    """
    out = {}
    for level in levels:
        hit = [s for s, v in zip(steps, losses, strict=True) if np.isfinite(v) and v <= level]
        out[level] = hit[0] if hit else None
    return out
