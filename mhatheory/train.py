"""Full-batch gradient descent on any ``loss_fn(params, *args)``, as scanned XLA programs.

θ_{k+1} = θ_k − η ∇L̂(θ_k), through ``optax.sgd(η)``. The whole run is ``lax.scan`` over steps,
split into chunks of one length only so that a progress bar can advance and Ctrl-C can stop
the run between them (a compiled scan cannot be interrupted): with ``progress``, chunks of
about :data:`CHUNK_SECONDS`, sized from the time of a short one (a chunk's padding past the
last step is masked, so every chunk is one compiled program); each step records
L̂(θ_k), ‖∇L̂(θ_k)‖ and optional metrics, and the parameters θ_k are stored at a schedule of steps
(``record_steps``) for later probes. This module never imports a model: it sees a loss function.

A non-finite loss or gradient freezes the parameters inside the program (so no further work is
wasted on NaNs) and raises :class:`DivergenceError` naming the first bad step.

For the stochastic training of ``flax.nnx`` models (the transformer experiments),
:func:`warmup_cosine_adamw` builds the optimiser and :func:`nnx_step` the jitted step of a loss
``loss(model, *batch)``.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from mhatheory import _validate


class DivergenceError(FloatingPointError):
    """GD produced NaN/Inf; the message names the step."""


class Trajectory(NamedTuple):
    """A GD run. Arrays indexed by step k = 0..K are over θ_k (so length K + 1).

    Attributes:
        loss: L̂(θ_k), ``[K+1]``.
        grad_norm: ‖∇L̂(θ_k)‖₂, ``[K+1]``.
        metrics: dict of ``[K+1]`` arrays from ``metrics_fn``.
        record_steps: the steps k whose θ_k are in ``params_at`` (``[S]``, ints).
        params_at: the parameter pytree stacked over ``record_steps`` (leading axis S).
        final_params: θ_K.
        lr: η.
    """

    loss: np.ndarray
    grad_norm: np.ndarray
    metrics: dict
    record_steps: np.ndarray
    params_at: Any
    final_params: Any
    lr: float

    def params(self, i: int):
        """θ at ``record_steps[i]``."""
        return jax.tree.map(lambda a: a[i], self.params_at)


def log_schedule(steps: int, num: int, include_zero: bool = True) -> np.ndarray:
    """About ``num`` log-spaced distinct integer steps in [1, steps] (plus 0), sorted."""
    steps = _validate.positive_int("steps", steps)
    grid = np.unique(np.round(np.logspace(0, math.log10(steps), num)).astype(int))
    return np.unique(np.concatenate([[0] if include_zero else [], grid])).astype(int)


#: the optimisers a step can take: full-batch GD (the one the theory speaks of) and Adam
OPTIMIZERS = {"gd": optax.sgd, "adam": optax.adam}


def make_step(loss_fn: Callable, lr, optimizer: str = "gd"):
    """One optimiser step ``(params, opt_state, *args) -> (params, opt_state, loss, grad_norm)``
    for ``loss_fn(params, *args)``: GD θ ← θ − η∇L̂ (``"gd"``) or Adam (``"adam"``), step size
    ``lr``."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got "
                         f"{optimizer!r}.")
    opt = OPTIMIZERS[optimizer](lr)

    def step(params, opt_state, *args):
        loss, grads = jax.value_and_grad(loss_fn)(params, *args)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, optax.tree.norm(grads)

    return opt, step


#: With ``progress``, GD runs in chunks of about this many seconds (module docstring).
CHUNK_SECONDS = 1.0
#: The steps of the first two chunks, whose second (compiled by then) sizes the rest.
FIRST_CHUNK = 64


def _timed_size(steps: int, seconds_per_step: float) -> int:
    """The steps of a chunk of about :data:`CHUNK_SECONDS`: a power of 2, at most ``steps``."""
    return min(steps, 2 ** max(0, round(math.log2(CHUNK_SECONDS / seconds_per_step))))


@functools.partial(jax.jit, static_argnames=("loss_fn", "metrics_fn"))
def _run_chunk(loss_fn, metrics_fn, lr, carry, ks, total, record_steps, args, metric_args):
    """Scan GD over the steps ``ks``; returns the new carry and per-step (loss, ‖g‖, metrics).
    Steps k ≥ ``total`` (a chunk's padding) change nothing."""
    _, step = make_step(loss_fn, lr)
    num_rec = record_steps.shape[0]

    def body(c, k):
        params, opt_state, buf, idx, bad = c
        real = k < total
        hit = real & (idx < num_rec) & (record_steps[jnp.minimum(idx, num_rec - 1)] == k)
        buf = jax.lax.cond(
            hit, lambda b: jax.tree.map(lambda B, p: B.at[idx].set(p), b, params), lambda b: b, buf
        )
        mets = metrics_fn(params, *metric_args) if metrics_fn is not None else {}
        new_params, new_state, loss, gnorm = step(params, opt_state, *args)
        bad = jnp.where(real & (bad < 0) & ~(jnp.isfinite(loss) & jnp.isfinite(gnorm)), k, bad)
        frozen = (bad >= 0) | ~real
        params = jax.tree.map(lambda a, b: jnp.where(frozen, a, b), params, new_params)
        opt_state = jax.tree.map(lambda a, b: jnp.where(frozen, a, b), opt_state, new_state)
        return (params, opt_state, buf, idx + hit, bad), (loss, gnorm, mets)

    return jax.lax.scan(body, carry, ks)


@functools.partial(jax.jit, static_argnames=("loss_fn", "metrics_fn"))
def _at_end(loss_fn, metrics_fn, params, args, metric_args):
    """``(L̂(θ_K), ‖∇L̂(θ_K)‖, metrics(θ_K))`` as one program, cached per ``loss_fn`` like
    :func:`_run_chunk` (evaluated op by op it compiled each operation of the loss anew for every
    new shape)."""
    loss, grads = jax.value_and_grad(loss_fn)(params, *args)
    mets = metrics_fn(params, *metric_args) if metrics_fn is not None else {}
    return loss, optax.tree.norm(grads), mets


def gd(
    loss_fn: Callable,
    params,
    *args,
    steps: int,
    lr: float,
    record_steps: Sequence[int] = (),
    metrics_fn: Callable | None = None,
    metric_args: tuple = (),
    progress: bool = False,
    num_chunks: int | None = None,
) -> Trajectory:
    """Run K = ``steps`` steps of full-batch GD with step size η = ``lr`` on
    ``loss_fn(params, *args)``: the same contract as the probes (``gd(loss_fn, params, batch)``
    with one data argument is the common case).

    Args:
        loss_fn: pure ``loss_fn(params, *args) -> scalar``. Pass a module-level function (not a
            fresh lambda) so repeated calls reuse the compiled program.
        params: initial θ_0, any pytree of float arrays.
        *args: the training data, any pytrees; passed as arguments, never closed over.
        steps: K, the number of GD steps (≥ 1).
        lr: η, the step size (> 0).
        record_steps: steps k ∈ [0, K] at which θ_k is stored.
        metrics_fn: optional pure ``metrics_fn(params, *metric_args) -> dict of scalars``,
            recorded at every step (e.g. train/test error).
        metric_args: the arguments of ``metrics_fn`` after ``params`` (e.g. the test set).
        progress: show a progress bar (rate and ETA) advancing once per chunk.
        num_chunks: scan chunks of equal length (default 1, or, with ``progress``, chunks of
            about :data:`CHUNK_SECONDS`).

    Returns:
        A :class:`Trajectory`.

    Raises:
        ValueError: ``steps < 1``, ``lr <= 0``, ``record_steps`` outside [0, K], no data
            argument, non-float or non-finite parameters (naming the leaf), non-finite data, a
            non-scalar loss, and the loss's own ``check_args`` (for the Deora loss: shapes and
            labels in {−1, +1}).
        DivergenceError: the loss or gradient became NaN/Inf (names the first such step).
    """
    steps = _validate.positive_int("steps", steps)
    lr = _validate.positive_float("lr", lr)
    if metrics_fn is not None:
        _validate.callable_arg("metrics_fn", metrics_fn, "metrics_fn(params, *metric_args) -> "
                               "dict of scalars")
    if num_chunks is not None:
        num_chunks = _validate.positive_int("num_chunks", num_chunks)
    rec = np.unique(_validate.int_array("record_steps", record_steps))
    if rec.size and (rec[0] < 0 or rec[-1] > steps):
        raise ValueError(f"record_steps must lie in [0, steps={steps}], got {rec.tolist()}.")
    if not args:
        raise ValueError("gd needs the training data: gd(loss_fn, params, *args) with "
                         "loss_fn(params, *args) -> scalar.")
    _validate.probe_inputs(params, args)
    _validate.loss_inputs(loss_fn, params, args)

    opt, _ = make_step(loss_fn, lr)
    rec_dev = jnp.asarray(rec if rec.size else np.array([-1]))
    buf = jax.tree.map(lambda p: jnp.zeros((rec_dev.shape[0],) + jnp.shape(p), jnp.result_type(p)),
                       params)
    carry = (params, opt.init(params), buf, jnp.int32(0), jnp.int32(-1))
    timed = progress and num_chunks is None
    size = min(steps, FIRST_CHUNK) if timed else -(-steps // min(num_chunks or 1, steps))
    losses, gnorms, mets = [], [], []
    bar = tqdm(total=steps, desc="GD", unit="step", disable=not progress, leave=False)
    lr_dev, total = jnp.asarray(lr), jnp.int32(steps)
    start = chunk = 0
    while start < steps:
        n = min(size, steps - start)
        t0 = time.perf_counter()
        carry, (lo, gn, me) = _run_chunk(loss_fn, metrics_fn, lr_dev, carry,
                                         jnp.arange(start, start + size, dtype=jnp.int32), total,
                                         rec_dev, args, tuple(metric_args))
        bad = int(carry[4])
        if bad >= 0:
            bar.close()
            if bad == 0:    # θ_0 itself: no step was taken, so no step size is to blame
                raise DivergenceError(
                    "the loss or its gradient is NaN/Inf at the initial parameters (step 0), "
                    "before any step: check the loss function, the data and params0.")
            raise DivergenceError(
                f"GD diverged: the loss or gradient is NaN/Inf at step {bad} (lr={lr:g}); "
                f"try a smaller step size, e.g. lr={lr / 10:g}."
            )
        # on the host: slicing the device arrays would compile a program per length
        lo, gn, me = jax.tree.map(lambda a, n=n: np.asarray(a)[:n], (lo, gn, me))
        losses.append(lo), gnorms.append(gn), mets.append(me)
        bar.update(n)
        start, chunk = start + n, chunk + 1
        if timed and chunk == 2:
            # the second chunk ran compiled: the steps of CHUNK_SECONDS, a power of 2
            size = _timed_size(steps, max(time.perf_counter() - t0, 1e-9) / n)
    bar.close()

    # Evaluate at θ_K (the scan evaluated θ_0..θ_{K-1}) and store it if scheduled.
    params, _, buf, idx, _ = carry
    final_loss, final_gnorm, final_mets = _at_end(loss_fn, metrics_fn, params, args,
                                                  tuple(metric_args))
    if not (np.isfinite(float(final_loss)) and np.isfinite(float(final_gnorm))):
        raise DivergenceError(
            f"GD diverged: the loss is NaN/Inf at step {steps} (lr={lr:g}); try a smaller step "
            f"size, e.g. lr={lr / 10:g}."
        )
    if rec.size and rec[-1] == steps:
        buf = jax.tree.map(lambda B, p: B.at[int(idx)].set(p), buf, params)

    def cat(parts, last):
        return np.concatenate([np.asarray(p) for p in parts] + [np.asarray(last)[None]])

    return Trajectory(
        loss=cat(losses, final_loss),
        grad_norm=cat(gnorms, final_gnorm),
        metrics={k: cat([m[k] for m in mets], final_mets[k]) for k in final_mets},
        record_steps=rec,
        params_at=buf if rec.size else None,
        final_params=params,
        lr=lr,
    )


def warmup_cosine_adamw(model: nnx.Module, *, lr: float, warmup: int, steps: int,
                        weight_decay: float) -> nnx.Optimizer:
    """AdamW on the ``nnx.Param`` leaves of ``model``, its step size rising linearly from 0 to
    ``lr`` over ``warmup`` steps, then decaying to 0 at ``steps`` along a cosine
    (``optax.warmup_cosine_decay_schedule``).

    Equal settings share one optax transform (:func:`_adamw`): the transform is static in the
    optimiser's graph, which ``nnx.jit`` keys its cache on, so a fresh transform per model
    would recompile :func:`nnx_step`'s program for every cell of a sweep."""
    return nnx.Optimizer(model, _adamw(float(lr), int(warmup), int(steps), float(weight_decay)),
                         wrt=nnx.Param)


@functools.lru_cache(maxsize=32)
def _adamw(lr: float, warmup: int, steps: int, weight_decay: float) -> optax.GradientTransformation:
    """:func:`warmup_cosine_adamw`'s transform, one object per setting."""
    schedule = optax.warmup_cosine_decay_schedule(0.0, lr, warmup, steps)
    return optax.adamw(schedule, weight_decay=weight_decay)


def nnx_step(loss: Callable) -> Callable:
    """The jitted training step ``step(model, optimizer, *batch) -> loss value`` of a loss
    ``loss(model, *batch) -> scalar``: one gradient, one optimiser update, both applied to
    ``model`` and ``optimizer`` in place. Build it once (at module level) so its compiled
    program is reused."""

    @nnx.jit
    def step(model, optimizer, *batch):
        value, grads = nnx.value_and_grad(loss)(model, *batch)
        optimizer.update(model, grads)
        return value

    return step
