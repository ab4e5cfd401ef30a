"""Many full-batch GD runs of the Deora model as one vmapped, scanned XLA program.

Run r trains θ^{(r)} from ``params0[r]`` on its own data ``(X[r], y[r])`` with its own step size
η_r for K steps, θ_{k+1} = θ_k − η_r ∇L̂_r(θ_k) (the step of :func:`mhatheory.train.make_step`).
Seeds, step sizes and replace-one retrainings are just rows of the run axis, so a whole sweep cell
is one compiled program instead of a Python loop.

**Divergence is data, not an exception.** A step k whose loss, gradient or update θ_{k+1} is
non-finite is not taken: that run's parameters freeze at θ_k (the last finite iterate) and k is
recorded in ``nonfinite_step`` (−1 if none); the other runs continue. The caller classifies
runs from their loss curves (:func:`classify`): the logistic loss of this model stays finite
even when GD has failed.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from mhatheory import losses, train
from mhatheory.data import Batch
from mhatheory.models import deora


@functools.partial(jax.jit, static_argnames=("steps", "probe_steps"))
def gd_runs(params0, X, y, lrs, *, steps: int, probe_steps: tuple):
    """GD for every run (leading axis of all arguments).

    Returns a dict of arrays with a leading run axis: ``loss [K+1]`` (L̂(θ_k), k = 0..K),
    ``grad_norm [K]``, ``snapshots`` (θ at the sorted ``probe_steps`` in [0, K], stacked on
    axis 1), ``final`` (θ_K), ``nonfinite_step`` (int). One scan (one compiled step body); the
    snapshots are kept by a select at the probe steps.
    """
    probe = jnp.asarray(sorted(set(int(k) for k in probe_steps)), dtype=jnp.int32)

    def one(p0, Xr, yr, lr):
        batch = Batch(Xr, yr)
        opt, step = train.make_step(deora.loss_fn, lr)

        def keep(buf, p, k):
            hit = probe == k                                              # [num_probes]
            return jax.tree.map(
                lambda B, a: jnp.where(hit.reshape((-1,) + (1,) * a.ndim), a[None], B), buf, p)

        def body(c, k):
            p, s, bad, buf = c
            buf = keep(buf, p, k)
            new_p, new_s, loss, gnorm = step(p, s, batch)
            finite = jnp.isfinite(loss) & jnp.isfinite(gnorm)
            for leaf in jax.tree.leaves(new_p):
                finite &= jnp.all(jnp.isfinite(leaf))
            bad = jnp.where((bad < 0) & ~finite, k, bad)
            frozen = bad >= 0
            p = jax.tree.map(lambda a, b: jnp.where(frozen, a, b), p, new_p)
            s = jax.tree.map(lambda a, b: jnp.where(frozen, a, b), s, new_s)
            return (p, s, bad, buf), (loss, gnorm)

        buf = jax.tree.map(lambda a: jnp.zeros((probe.shape[0],) + a.shape, a.dtype), p0)
        carry = (p0, opt.init(p0), jnp.int32(-1), buf)
        (final, _, bad, buf), (curve, gnorms) = jax.lax.scan(
            body, carry, jnp.arange(steps, dtype=jnp.int32))
        buf = keep(buf, final, steps)
        last = deora.loss_fn(final, batch)[None]
        return {"loss": jnp.concatenate([curve, last]), "grad_norm": gnorms,
                "snapshots": buf, "final": final, "nonfinite_step": bad}

    return jax.vmap(one)(params0, X, y, lrs)


@jax.jit
def evaluate(params, which, X, y):
    """Per run r (``params`` stacked over runs; ``which[r]`` picks its data set from
    ``X [S, N, T, d]``, ``y [S, N]``): mean logistic loss, its standard error over the N samples,
    and the 0-1 error. Runs are mapped sequentially (memory: one run's N×H×T scores at a time)."""

    def one(args):
        p, s = args
        f = deora.phi(p, X[s])
        per = losses.logistic(y[s] * f)
        N = per.shape[0]
        return (jnp.mean(per), jnp.std(per, ddof=1) / math.sqrt(N),
                losses.zero_one_error(f, y[s]))

    return jax.lax.map(one, (params, which))


def flat_distance(a, b):
    """‖a − b‖₂ over all leaves, for pytrees stacked on a leading run axis: ``[R]``."""
    sq = sum(jnp.sum((x - z).reshape(x.shape[0], -1) ** 2, axis=1)
             for x, z in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
    return jnp.sqrt(sq)


def classify(loss_curve, nonfinite_step: int) -> dict:
    """Per-run optimisation outcome from its loss curve L̂(θ_0..θ_K) (definitions used in the
    heads sweep).

    * ``diverged``: GD failed: a non-finite loss/gradient, or L̂(θ_K) ≥ L̂(θ_0) (no net progress
      after K steps). ``diverged_step``: the first non-finite step, else the first k ≥ 1 with
      L̂(θ_k) ≥ L̂(θ_0) (where the run first climbed back above its start).
    * ``spiked``: max_k L̂(θ_k) > L̂(θ_0) (the loss rose above its start at some step: GD left
      the monotone regime, the edge-of-stability "catapult"), whether or not it recovered;
      ``max_loss_ratio`` = max_k L̂(θ_k) / L̂(θ_0).
    """
    c = np.asarray(loss_curve, dtype=float)
    finite = np.isfinite(c)
    if nonfinite_step >= 0 or not finite.all():
        step = int(nonfinite_step) if nonfinite_step >= 0 else int(np.argmin(finite))
        return {"diverged": True, "diverged_step": step, "spiked": True,
                "max_loss_ratio": math.inf}
    above = np.nonzero(c[1:] >= c[0])[0]
    diverged = bool(c[-1] >= c[0])
    return {"diverged": diverged, "diverged_step": int(above[0] + 1) if diverged else None,
            "spiked": bool(c.max() > c[0]), "max_loss_ratio": float(c.max() / c[0])}


def steps_to(loss_curve, threshold: float):
    """The first k with L̂(θ_k) ≤ threshold, or None if GD never got there in K steps."""
    hit = np.nonzero(np.asarray(loss_curve) <= threshold)[0]
    return int(hit[0]) if hit.size else None
