"""Algorithmic stability of GD on the Deora model, and the generalisation bounds it implies.

**Retraining as one program.** Retraining r uses the samples ``idx[r]`` of an extended pool
(the training set followed by fresh draws): leave-one-out (sample i removed, the mean over the
n − 1 others) is ``idx[r] = [0..n) \\ {i}``; replace-one (sample i swapped for a fresh draw) is
``[0..n)`` with i pointing into the fresh part. Every retraining runs the same scanned GD from the
same θ_0, vmapped over r, in chunks to a memory budget, with the retraining axis sharded over the
devices (``jax.sharding``) when there are several. Each retraining records
‖θ_t − θ_t^{(r)}‖ along t against the full-data trajectory.

**Bounds (Lei & Ying, ICML 2020, Thm 2).** With ε₁ = E‖θ_K − θ_K^{(i)}‖ and
ε₂² = E‖θ_K − θ_K^{(i)}‖² (replace-one, averaged over i and training sets):

* if ℓ(·; z) is G-Lipschitz:  E[gen] ≤ G·ε₁;
* if ℓ(·; z) ≥ 0 is β-smooth: E[gen] ≤ (β/γ) E[L̂] + ((β + γ)/2) ε₂² for every γ > 0; the best
  γ* = √(2βE[L̂]/ε₂²) gives √(2β E[L̂] ε₂²) + β ε₂²/2.

G is measured as the largest per-sample gradient norm along the trajectories (an empirical
constant). β is a certified per-sample bound at the probed points: for ℓ_i = ℓ(y_iΦ_i),
∇²ℓ_i = ℓ''_i ∇Φ_i∇Φ_iᵀ + ℓ'_i y_i ∇²Φ_i, so ‖∇²ℓ_i‖ ≤ ℓ''_i‖∇Φ_i‖² + |ℓ'_i|·max_h‖∇²φ_{h,i}‖/√H
(triangle inequality; the block norms are exact, :func:`mhatheory.bounds.block_norms`).

**Influence functions.** θ^{(−i)} − θ ≈ (1/(n−1)) (∇²L̂ + λI)^{-1} ∇ℓ_i(θ) (one Newton step on
the leave-one-out objective), solved by conjugate gradients on HVPs, damped by
λ = max(0, −λmin) + δ so the system is positive definite where the loss is not convex.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as Pspec

from mhatheory import _validate, bounds, spectral, train
from mhatheory.data import Batch
from mhatheory.losses import logistic, logistic_d1, logistic_d2
from mhatheory.models import deora


def loo_indices(n: int, which) -> np.ndarray:
    """``[R, n−1]``: for each i in ``which``, the indices of the other samples."""
    return np.stack([np.delete(np.arange(n), i) for i in which])


def replace_indices(n: int, which) -> np.ndarray:
    """``[R, n]``: sample i replaced by the fresh sample n + r (r = position of i in which)."""
    idx = np.tile(np.arange(n), (len(which), 1))
    idx[np.arange(len(which)), np.asarray(which)] = n + np.arange(len(which))
    return idx


def gather(pool, idx):
    """The samples ``idx`` of a data pytree whose leaves share a leading sample axis (a
    :class:`~mhatheory.data.Batch`, a tuple ``(x, y)``, a dict …)."""
    return jax.tree.map(lambda a: a[idx], pool)


def _sample_count(pool) -> int:
    leaves = jax.tree.leaves(pool)
    if not leaves:
        raise ValueError("pool has no array leaves; pass the training data (followed by any "
                         "fresh draws) with a leading sample axis.")
    sizes = {int(np.shape(a)[0]) if np.ndim(a) else -1 for a in leaves}
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(f"every leaf of pool must have the same leading sample axis, got "
                         f"leading sizes {sorted(sizes)}.")
    return sizes.pop()


@functools.partial(jax.jit, static_argnames=("loss_fn", "steps"))
def _retrain(loss_fn, steps, lr, params0, pool, idx, base_traj):
    """vmapped over the rows of ``idx``: final θ and ‖θ_t − θ_t^{(r)}‖ for t = 1..K."""
    opt, step = train.make_step(loss_fn, lr)

    def one(rows):
        data = gather(pool, rows)

        def body(c, base_next):
            p, s = c
            p, s, _, _ = step(p, s, data)
            d = ravel_pytree(p)[0] - base_next
            return (p, s), jnp.sqrt(d @ d)

        (p, _), dist = jax.lax.scan(body, (params0, opt.init(params0)), base_traj)
        return p, dist

    return jax.vmap(one)(idx)


class Retrained(NamedTuple):
    """θ_K^{(r)} stacked over r, and the divergence curves ``[R, K]``."""

    params: dict
    divergence: np.ndarray


def retrain(loss_fn, params0, pool, idx, *, steps: int, lr: float, base_traj,
            chunk: int = 64, devices=None, progress: bool = False) -> Retrained:
    """Run one GD per row of ``idx`` (see module docstring), vmapped in chunks of ``chunk``
    and sharded over ``devices`` (default ``jax.local_devices()``: this process's devices; in
    a multi-process run the processes share out whole sweep cells instead) when there are
    several.

    ``loss_fn(params, data)`` is any loss and ``pool`` any data pytree whose leaves share a
    leading sample axis (a :class:`~mhatheory.data.Batch`, ``(x, y)``, a dict): retraining r
    trains on ``gather(pool, idx[r])``. ``base_traj`` is the full-data trajectory θ_1..θ_K
    flattened, ``[K, P]``."""
    from tqdm.auto import tqdm

    steps = _validate.positive_int("steps", steps)
    lr = _validate.positive_float("lr", lr)
    idx = np.asarray(idx)
    n = _sample_count(pool)
    if idx.ndim != 2 or not np.issubdtype(idx.dtype, np.integer) or idx.size == 0:
        raise ValueError(f"idx must be a non-empty integer array [R, m] of sample indices (e.g. "
                         f"loo_indices or replace_indices), got shape {list(idx.shape)} and "
                         f"dtype {idx.dtype}.")
    if idx.min() < 0 or idx.max() >= n:
        raise ValueError(f"idx must index the pool's {n} samples, found {idx.min()}..{idx.max()}.")
    chunk = _validate.positive_int("chunk", chunk)
    # the whole pool (every retraining's data), checked on the host before any work
    _validate.float_params(params0, "params0")
    _validate.finite_tree(params0, "params0")
    _validate.finite_tree(pool, "pool")
    _validate.loss_inputs(loss_fn, params0, (pool,))
    P, _ = _validate.num_params(params0)
    _validate.shape("base_traj", base_traj, (steps, P))
    _validate.finite("base_traj", base_traj)
    devices = list(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices must name at least one device (default: "
                         "jax.local_devices()).")
    if any(getattr(d, "process_index", 0) != jax.process_index() for d in devices):
        raise ValueError("devices must belong to this process (jax.local_devices()); in a "
                         "multi-process run each process retrains on its own devices.")
    ndev = len(devices)
    chunk = max(ndev, (chunk // ndev) * ndev)
    mesh = Mesh(np.array(devices), ("r",)) if ndev > 1 else None
    finals, dists = [], []
    for start in tqdm(range(0, len(idx), chunk), desc="retraining chunks", disable=not progress,
                      leave=False):
        part = idx[start:start + chunk]
        pad = (-len(part)) % ndev
        rows = np.concatenate([part, np.repeat(part[-1:], pad, axis=0)]) if pad else part
        rows = jnp.asarray(rows)
        rows = jax.device_put(rows, NamedSharding(mesh, Pspec("r", None)) if mesh is not None
                              else devices[0])
        p, d = _retrain(loss_fn, steps, jnp.asarray(lr), params0, pool, rows, base_traj)
        keep = len(part)
        finals.append(jax.tree.map(lambda a, keep=keep: np.asarray(a)[:keep], p))
        dists.append(np.asarray(d)[:keep])
    params = jax.tree.map(lambda *a: np.concatenate(a), *finals)
    return Retrained(params, np.concatenate(dists))


def base_trajectory(loss_fn, params0, batch, steps, lr):
    """Full-data GD: (trajectory over all steps, θ_1..θ_K flattened ``[K, P]``)."""
    traj = train.gd(loss_fn, params0, batch, steps=steps, lr=lr, record_steps=range(steps + 1))
    flat = jax.vmap(lambda p: ravel_pytree(p)[0])(traj.params_at)
    return traj, flat[1:]


def model_stability(theta_K, retrained_params) -> tuple[float, float]:
    """ε₁ = mean ‖θ_K − θ_K^{(r)}‖ and ε₂² = mean ‖θ_K − θ_K^{(r)}‖²."""
    _validate.float_params(theta_K, "theta_K")
    _validate.finite_tree(theta_K, "theta_K")
    _validate.finite_tree(retrained_params, "retrained_params")
    if jax.tree.structure(retrained_params) != jax.tree.structure(theta_K):
        raise ValueError("retrained_params must have the structure of theta_K (each leaf stacked "
                         f"over the retrainings), got {jax.tree.structure(retrained_params)} "
                         f"against {jax.tree.structure(theta_K)}.")
    lead = set()
    for (path, a), b in zip(_validate.leaf_paths(retrained_params, "retrained_params"),
                            jax.tree.leaves(theta_K), strict=True):
        if np.shape(a)[1:] != np.shape(b) or np.ndim(a) != np.ndim(b) + 1:
            raise ValueError(f"{path} must have shape [R, {', '.join(map(str, np.shape(b)))}] "
                             f"(theta_K's leaf stacked over R retrainings), got "
                             f"{list(np.shape(a))}.")
        lead.add(np.shape(a)[0])
    if len(lead) != 1 or 0 in lead:
        raise ValueError(f"retrained_params must stack R >= 1 retrainings on every leaf, got "
                         f"leading sizes {sorted(lead)}.")
    flat = ravel_pytree(theta_K)[0]
    others = jax.vmap(lambda p: ravel_pytree(p)[0])(retrained_params)
    d = np.linalg.norm(np.asarray(others - flat[None]), axis=1)
    return float(d.mean()), float((d**2).mean())


@jax.jit
def per_sample_constants(params, X, y):
    """Per sample: ‖∇_θ ℓ_i‖ and the certified smoothness bound β_i (module docstring)."""
    flat, unravel = ravel_pytree(params)
    H = params["U"].shape[0]
    grads = jax.vmap(lambda x: jax.grad(lambda v: deora.phi(unravel(v), x))(flat))(X)  # (n, P)
    m = y * deora.phi(params, X)
    gnorm = jnp.abs(logistic_d1(m)) * jnp.linalg.norm(grads, axis=1)
    hess = jnp.max(bounds.block_norms(params, X), axis=1) / math.sqrt(H)
    beta = logistic_d2(m) * jnp.sum(grads**2, axis=1) + jnp.abs(logistic_d1(m)) * hess
    return gnorm, beta


def test_loss(params, test: Batch) -> tuple[float, float]:
    """Mean test loss on fresh samples and its standard error."""
    per = np.asarray(logistic(test.y * deora.phi(params, test.X)))
    return float(per.mean()), float(per.std(ddof=1) / math.sqrt(per.size))


def smooth_bound(beta: float, train_loss: float, eps2: float) -> tuple[float, float]:
    """min_γ (β/γ)L + ((β+γ)/2)ε₂² = √(2βLε₂²) + βε₂²/2, and the best γ."""
    if eps2 <= 0:
        return 0.0, math.inf
    gamma = math.sqrt(2 * beta * train_loss / eps2) if train_loss > 0 else 0.0
    return math.sqrt(2 * beta * train_loss * eps2) + beta * eps2 / 2, gamma


def influence(params, batch: Batch, which, *, damping: float = 1e-6, key=None,
              maxiter: int = 200) -> tuple[np.ndarray, float]:
    """Influence estimates of θ^{(−i)} − θ for i in ``which`` (``[R, P]``) and the damping used."""
    n = batch.y.shape[0]
    lo = spectral.lambda_min(deora.loss_fn, params, batch, key=key)
    lam = max(0.0, -lo.value) + damping
    matvec, flat = spectral.hvp(deora.loss_fn, params, batch)
    _, unravel = ravel_pytree(params)

    def g_i(i):
        return ravel_pytree(jax.grad(deora.loss_fn)(params, gather(batch, jnp.array([i]))))[0]

    out = []
    for i in which:
        x, _ = jax.scipy.sparse.linalg.cg(lambda v: matvec(v) + lam * v, g_i(int(i)),
                                          tol=1e-10, maxiter=maxiter)
        out.append(np.asarray(x) / (n - 1))
    return np.stack(out), lam
