r"""Algorithmic stability of GD on any ``loss_fn(params, data)``, and the generalisation bounds
it implies. Model-free: the Deora constants (G, β) live in :mod:`mhatheory.deora`.

**Retraining as one program.** Retraining r uses the samples ``idx[r]`` of an extended pool
(the training set followed by fresh draws): leave-one-out (sample i removed, the mean over the
n − 1 others) is ``idx[r] = [0..n) \ {i}``; replace-one (sample i swapped for a fresh draw) is
``[0..n)`` with i pointing into the fresh part. Every retraining runs the same scanned GD from the
same θ_0, vmapped over r, in chunks to a memory budget, with the retraining axis sharded over the
devices (``jax.sharding``) when there are several. Each retraining records
‖θ_t − θ_t^{(r)}‖ along t against the full-data trajectory.

**Bounds (Lei & Ying, ICML 2020, Thm 2).** With ε₁ = E‖θ_K − θ_K^{(i)}‖ and
ε₂² = E‖θ_K − θ_K^{(i)}‖² (replace-one, averaged over i and training sets):

* if ℓ(·; z) is G-Lipschitz:  E[gen] ≤ G·ε₁;
* if ℓ(·; z) ≥ 0 is β-smooth: E[gen] ≤ (β/γ) E[L̂] + ((β + γ)/2) ε₂² for every γ > 0; the best
  γ* = √(2βE[L̂]/ε₂²) gives √(2β E[L̂] ε₂²) + β ε₂²/2.

G and β are properties of the model and the loss; for the Deora model they come from
:func:`mhatheory.deora.per_sample_constants`.

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

from mhatheory import _validate, spectral, train
from mhatheory._numerics import ravel_stacked


def loo_indices(n: int, which) -> np.ndarray:
    """``[R, n−1]``: for each i in ``which`` (samples in [0, n), n ≥ 2), the indices of the
    other samples."""
    n = _validate.positive_int("n", n, minimum=2)
    return np.stack([np.delete(np.arange(n), i) for i in _sample_indices(which, n)])


def replace_indices(n: int, which) -> np.ndarray:
    """``[R, n]``: sample i replaced by the fresh sample n + r (r = position of i in which;
    samples in [0, n))."""
    n = _validate.positive_int("n", n)
    which = _sample_indices(which, n)
    idx = np.tile(np.arange(n), (len(which), 1))
    idx[np.arange(len(which)), which] = n + np.arange(len(which))
    return idx


def gather(pool, idx):
    """The samples ``idx`` of a data pytree whose leaves share a leading sample axis (a
    :class:`~mhatheory.data.Batch`, a tuple ``(x, y)``, a dict …)."""
    return jax.tree.map(lambda a: a[idx], pool)


def _sample_indices(which, n: int) -> np.ndarray:
    """``which`` as a flat integer array of sample indices in [0, n), checked: a gather inside
    a compiled program would clamp an index ≥ n to the last sample, an int cast would truncate
    2.7 to 2, and a repeated sample would count twice, all silently."""
    arr = _validate.int_array("which", which)
    if arr.size == 0:
        raise ValueError("which must name one or more samples, got none.")
    bad = arr[(arr < 0) | (arr >= n)]
    if bad.size:
        raise ValueError(f"which names samples {bad.tolist()} outside the data's {n} samples "
                         f"(indices 0..{n - 1}).")
    values, counts = np.unique(arr, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(f"which names samples {values[counts > 1].tolist()} more than once: "
                         "each sample is left out or replaced once (a repeat would count twice "
                         "in ε₁).")
    return arr


def _sample_count(pool) -> int:
    leaves = jax.tree.leaves(pool)
    if not leaves:
        raise ValueError("pool has no array leaves; pass the training data (followed by any "
                         "fresh draws) with a leading sample axis.")
    if any(np.ndim(a) == 0 for a in leaves):
        raise ValueError("every leaf of pool must have a leading sample axis; a scalar leaf has "
                         "none (pass a per-sample array, or close over the constant in loss_fn).")
    sizes = {int(np.shape(a)[0]) for a in leaves}
    if len(sizes) != 1:
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


class ModelStability(NamedTuple):
    """On-average model stability over R retrainings."""

    eps1: float  #: ε₁ = mean_r ‖θ_K − θ_K^{(r)}‖
    eps2: float  #: ε₂² = mean_r ‖θ_K − θ_K^{(r)}‖² (the square, as in the bound)


class SmoothBound(NamedTuple):
    """The smooth-loss bound at its best γ (:func:`smooth_bound`)."""

    bound: float  #: min_γ (β/γ)L + ((β+γ)/2)ε₂²
    gamma: float  #: the minimising γ* = √(2βL/ε₂²) (inf when ε₂² = 0)


class Influence(NamedTuple):
    """Influence-function estimates (:func:`influence`)."""

    delta: np.ndarray  #: ``[R, P]`` estimates of θ^{(−i)} − θ, flat in ``ravel_pytree`` order
    damping: float     #: λ = max(0, −λmin) + δ, the damping used


class Retrained(NamedTuple):
    """θ_K^{(r)} stacked over r, and the parameter distances ``[R, K]`` (‖θ_t − θ_t^{(r)}‖ along
    GD)."""

    params: dict
    distance: np.ndarray


def retrain(loss_fn, params0, pool, idx, *, steps: int, lr: float, base_traj,
            chunk: int = 64, devices=None, progress: bool = False) -> Retrained:
    """Run one GD per row of ``idx`` (see module docstring), vmapped in chunks of ``chunk``
    and sharded over ``devices`` (default ``jax.local_devices()``: this process's devices; in
    a multi-process run the processes share out whole sweep cells instead) when there are
    several.

    ``loss_fn(params, data)`` is any loss and ``pool`` any data pytree whose leaves share a
    leading sample axis (a :class:`~mhatheory.data.Batch`, ``(x, y)``, a dict): retraining r
    trains on ``gather(pool, idx[r])``. ``base_traj`` is the full-data trajectory θ_1..θ_K
    flattened, ``[K, P]``, from :func:`base_trajectory` with the same loss, θ_0, training
    samples, steps and lr: only its shape and finiteness are checked, and one from another lr
    or data gives wrong ``distance`` rows (ε₁ from :func:`model_stability` compares final
    parameters and does not use it)."""
    from tqdm.auto import tqdm

    steps = _validate.positive_int("steps", steps)
    lr = _validate.positive_float("lr", lr)
    idx = np.asarray(idx)
    n = _sample_count(pool)
    if idx.ndim == 2 and idx.shape[0] > 0 and idx.shape[1] == 0:
        raise ValueError(f"idx {list(idx.shape)} gives each retraining no samples to train on "
                         "(leave-one-out of a single sample); retraining needs n >= 2 samples "
                         "for leave-one-out, n >= 1 for replace-one.")
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
    try:
        _validate.loss_inputs(loss_fn, params0, (pool,))
    except ValueError as err:
        if "could not be evaluated" not in str(err):
            raise
        raise ValueError(f"{str(err).rstrip('.')}. retrain calls loss_fn(params, data) with "
                         "data one pytree of samples (the pool's rows it trains on): a loss "
                         "of (params, x, y) is passed as lambda params, data: "
                         "loss(params, *data) with pool=(x, y).") from err
    # and traced on one retraining's data, whose sample count is not the pool's (a loss that
    # fixes its batch size fails here, before any work)
    rows = jax.tree.map(lambda a: jax.ShapeDtypeStruct((idx.shape[1],) + np.shape(a)[1:],
                                                       jnp.result_type(a)), pool)
    try:
        _validate.scalar_loss(loss_fn, params0, (rows,))
    except ValueError as err:
        raise ValueError(f"on one retraining's data ({idx.shape[1]} of the pool's {n} samples): "
                         f"{str(err).rstrip('.')}. A loss must take any number of samples (no "
                         "fixed batch size inside it).") from err
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
    dist = np.concatenate(dists)
    _check_retrainings(params, dist, idx, lr)
    return Retrained(params, dist)


def _check_retrainings(params, dist, idx, lr: float) -> None:
    """Raise :class:`~mhatheory.train.DivergenceError` naming the retrainings (rows of ``idx``)
    whose final parameters or distances to the full-data trajectory are NaN/Inf, as
    :func:`mhatheory.train.gd` does for one run."""
    rows = _validate.nonfinite_rows((params, dist), len(idx))
    if not rows.size:
        return
    named = "; ".join(f"row {r} of idx (trains on pool samples [{_validate.listed(idx[r])}])"
                      for r in rows[:3])
    raise train.DivergenceError(
        f"{len(rows)} of {len(idx)} retrainings diverged (NaN/Inf parameters or distance to the "
        f"full-data trajectory at lr={lr:g}): {named}{'; …' if len(rows) > 3 else ''}. Check "
        "the samples they train on (a sample that makes the loss NaN), or try a smaller step "
        f"size, e.g. lr={lr / 10:g}.")


def base_trajectory(loss_fn, params0, batch, steps, lr):
    """Full-data GD: (trajectory over all steps, θ_1..θ_K flattened ``[K, P]``)."""
    traj = train.gd(loss_fn, params0, batch, steps=steps, lr=lr, record_steps=range(steps + 1))
    flat = ravel_stacked(traj.params_at)
    return traj, flat[1:]


def model_stability(theta_K, retrained_params) -> ModelStability:
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
    others = ravel_stacked(retrained_params)
    d = np.linalg.norm(np.asarray(others - flat[None]), axis=1)
    return ModelStability(float(d.mean()), float((d**2).mean()))


def smooth_bound(beta: float, train_loss: float, eps2: float) -> SmoothBound:
    """min_γ (β/γ)L + ((β+γ)/2)ε₂² = √(2βLε₂²) + βε₂²/2, and the best γ.

    The objective is convex in γ > 0; its derivative −βL/γ² + ε₂²/2 vanishes at
    γ* = √(2βL/ε₂²), where the two terms βL/γ* and γ*ε₂²/2 are equal.

    Example:
        >>> b = smooth_bound(beta=2.0, train_loss=0.5, eps2=0.01)   # γ* = √200, √0.02 + 0.01
        >>> round(b.gamma, 6), round(b.bound, 6)
        (14.142136, 0.151421)
    """
    beta = _validate.non_negative_float("beta", beta)
    train_loss = _validate.non_negative_float("train_loss", train_loss)
    eps2 = _validate.non_negative_float("eps2", eps2)
    if eps2 == 0:
        return SmoothBound(0.0, math.inf)
    gamma = math.sqrt(2 * beta * train_loss / eps2) if train_loss > 0 else 0.0
    return SmoothBound(math.sqrt(2 * beta * train_loss * eps2) + beta * eps2 / 2, gamma)


def influence(loss_fn, params, data, which, *, damping: float = 1e-6, key=None,
              maxiter: int = 200) -> Influence:
    """Influence estimates of θ^{(−i)} − θ for i in ``which`` and the damping λ used (module
    docstring), as an :class:`Influence`.

    ``loss_fn(params, data)`` is a mean over the samples of ``data`` (any pytree whose leaves
    share a leading sample axis); ∇ℓ_i is the gradient of ``loss_fn`` on sample i alone. Cost:
    one λmin probe and, per i, a conjugate-gradient solve of at most ``maxiter`` HVPs.
    """
    n = _sample_count(data)
    which = jnp.asarray(_sample_indices(which, n))
    damping = _validate.non_negative_float("damping", damping)
    maxiter = _validate.positive_int("maxiter", maxiter)
    H = spectral.linearise(loss_fn, params, data)           # one linearisation: λmin and the solves
    lo = spectral.Lanczos()(H, key=spectral.resolve_key(key, allow_none=True))[0]
    lam = max(0.0, -lo.value) + damping
    delta = _damped_newton_steps(loss_fn, maxiter, H.lin, params, data, which,
                                 jnp.asarray(lam, H.work_dtype))
    return Influence(np.asarray(delta) / (n - 1), lam)


@functools.partial(jax.jit, static_argnames=("loss_fn", "maxiter"))
def _damped_newton_steps(loss_fn, maxiter, lin, params, data, which, lam):
    """``[R, P]``: (∇²L̂ + λI)⁻¹ ∇ℓ_i for i in ``which``, by CG on the products of the Hessian's
    linearisation ``lin`` (its :class:`~mhatheory.spectral.LinearOperator`), vmapped over i (one
    compiled program per shape, whatever the samples and λ)."""

    def one(i):
        g = ravel_pytree(jax.grad(loss_fn)(params, gather(data, i[None])))[0]
        x, _ = jax.scipy.sparse.linalg.cg(lambda v: lin(v) + lam * v, g, tol=1e-10,
                                          maxiter=maxiter)
        return x

    return jax.vmap(one)(which)
