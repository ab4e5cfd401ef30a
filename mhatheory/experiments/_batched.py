"""Many full-batch GD runs of a Deora-type model as one scanned XLA program.

Run r trains θ^{(r)} from ``params0[r]`` on its own training set ``(X[r], y[r])`` with its own
step size η_r for K steps, θ_{k+1} = θ_k − η_r ∇L̂_r(θ_k) (the step of
:func:`mhatheory.train.make_step`; Adam instead when the layout says so) on the logistic loss of
the model output ``phi`` (labels ±1) or its cross-entropy (logits, integer labels). Step sizes,
seeds, ensemble members and replace-one retrainings are rows of one run axis; the scan runs over
steps and every step updates all rows at once, so at the recorded steps the program can compare
rows with each other (a retraining with its base run) and evaluate only the rows that need it.

**Layout** (:class:`Layout`). The first E·S·M rows are the *base* runs, ordered (step size e,
seed s, member m); then one row per replace-one retraining, ``pairs[j]`` naming its base row.
M > 1 only for ensembles: members m = 0..M−1 are one-head models trained independently on the
seed's data, and the recorded metrics are those of the averaged logits (1/H) Σ_{m<H} f_m for
every H in ``prefixes``.

**Recorded steps.** At each k in ``record_steps`` (θ_k, before step k is taken), for every base
(e, s) (or ensemble (e, s, H)): training, validation and test loss and 0-1 error on the seed's
sets, ‖θ_k − θ_0‖; for every retraining, ‖θ_k − θ_k^{(i)}‖ to its base run. The training loss is
also kept at every step (``loss [K+1, rows]``).

**Divergence is data, not an exception.** A step whose loss, gradient or update is non-finite is
not taken: that run's parameters freeze at θ_k (the last finite iterate) and k is recorded in
``nonfinite_step`` (−1 if none); the other runs continue.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from mhatheory import losses, train


@dataclass(frozen=True)
class Layout:
    """The run axis (module docstring): E step sizes × S seeds × M members of base runs, then
    one retraining per entry of ``pairs`` (its base row); ``prefixes``: ensemble sizes (M > 1);
    the ``loss`` ("logistic": one output per sample, labels ±1; "cross_entropy": logits
    ``[..., C]``, integer labels) and the ``optimizer`` (:data:`mhatheory.train.OPTIMIZERS`)."""

    lrs: int
    seeds: int
    members: int = 1
    pairs: tuple[int, ...] = ()
    prefixes: tuple[int, ...] = ()
    loss: str = "logistic"
    optimizer: str = "gd"

    @property
    def base(self) -> int:
        return self.lrs * self.seeds * self.members

    @property
    def rows(self) -> int:
        return self.base + len(self.pairs)


def _per_sample(loss: str, f, y):
    """Per-sample loss and 0/1 mistake: logistic for outputs ``f [..., N]`` and labels ±1,
    cross-entropy for logits ``f [..., N, C]`` and integer labels. A non-finite output is a
    mistake (:func:`mhatheory.losses.mistakes`), or a failed run would win the tuning on
    validation error."""
    if loss == "logistic":
        return losses.logistic(y * f), losses.mistakes(f, y).astype(f.dtype)
    logp = jax.nn.log_softmax(f, axis=-1)
    y = jnp.broadcast_to(y, f.shape[:-1]).astype(jnp.int32)
    picked = jnp.take_along_axis(logp, y[..., None], axis=-1)[..., 0]
    return -picked, losses.class_mistakes(f, y).astype(f.dtype)


def _loss(phi, loss, params, X, y):
    return jnp.mean(_per_sample(loss, phi(params, X), y)[0])


def _metrics(loss, f, y):
    """Mean loss and 0-1 error over the samples axis (the last axis of the per-sample values)."""
    per, wrong = _per_sample(loss, f, y)
    return jnp.mean(per, axis=-1), jnp.mean(wrong, axis=-1)


def _record(phi, layout: Layout, params, params0, sets):
    """Metrics of the base runs (or ensembles) and the retraining distances at one step."""
    E, S, M = layout.lrs, layout.seeds, layout.members
    base = jax.tree.map(lambda a: a[:layout.base].reshape((E, S, M) + a.shape[1:]), params)
    # [E, S, M, N] outputs; sequential over step sizes (memory: one η's N·H·T scores at a time)
    seeds_of = jax.vmap(jax.vmap(phi, (0, None)), (0, 0))

    def per_seed(p, X):
        return seeds_of(p, X)

    out = {}
    for name, (X, y) in sets.items():
        f = jax.lax.map(functools.partial(per_seed, X=X), base)            # [E, S, M, N]
        if M > 1:
            csum = jnp.cumsum(f, axis=2)
            f = jnp.stack([csum[:, :, h - 1] / h for h in layout.prefixes], axis=2)
        y_b = y[None, :, None] if layout.loss == "logistic" else y[None, :, None, :]
        out[f"{name}_loss"], out[f"{name}_error"] = _metrics(layout.loss, f, y_b)
    flat = jax.tree.leaves(params)
    sq = sum(jnp.sum((a - a0).reshape(a.shape[0], -1) ** 2, axis=1)
             for a, a0 in zip(flat, jax.tree.leaves(params0), strict=True))
    out["theta_dist"] = jnp.sqrt(sq[:layout.base]).reshape(E, S, M)
    if layout.pairs:
        rep = np.arange(layout.base, layout.rows)
        ref = np.asarray(layout.pairs)
        out["pair_dist"] = jnp.sqrt(sum(jnp.sum((a[rep] - a[ref]).reshape(len(rep), -1) ** 2,
                                                axis=1) for a in flat))
    return out


@functools.partial(jax.jit, static_argnames=("phi", "layout", "steps", "record_steps",
                                             "snapshot_rows", "snapshot_steps"))
def train_runs(phi, params0, X, y, lrs, sets, *, layout: Layout, steps: int,
               record_steps: tuple, snapshot_rows: tuple = (), snapshot_steps: tuple = ()):
    """GD for every row of ``layout`` (leading axis of ``params0``, ``X``, ``y``, ``lrs``).

    Args:
        phi: the model output ``phi(params, X [n, T, d]) -> [n]`` (static).
        params0: θ_0 per row.
        X: training tokens per row ``[rows, n, T, d]``.
        y: training labels per row ``[rows, n]`` in {±1}.
        lrs: step size η per row.
        sets: name → ``(X [S, N, T, d], y [S, N])``, the per-seed sets the base runs are
            evaluated on at the recorded steps (e.g. train, val, test).
        layout: the rows (:class:`Layout`).
        steps: K.
        record_steps: sorted steps in [0, K] where the metrics are recorded.
        snapshot_rows: rows whose θ_k is returned at ``snapshot_steps``.
        snapshot_steps: sorted steps in [0, K].

    Returns a dict: ``loss [K+1, rows]``, ``nonfinite_step [rows]``, ``final`` (θ_K),
    ``records`` (each metric stacked on a leading recorded-step axis), ``snapshots`` (leaves
    ``[len(snapshot_steps), len(snapshot_rows), ...]``).
    """
    rec_index = np.full(steps + 1, -1, dtype=np.int32)
    rec_index[np.asarray(record_steps, dtype=int)] = np.arange(len(record_steps))
    snap_index = np.full(steps + 1, -1, dtype=np.int32)
    snap_index[np.asarray(snapshot_steps, dtype=int)] = np.arange(len(snapshot_steps))
    rec_index, snap_index = jnp.asarray(rec_index), jnp.asarray(snap_index)
    rows = np.asarray(snapshot_rows, dtype=int)
    record = functools.partial(_record, phi, layout)
    loss_fn = functools.partial(_loss, phi, layout.loss)

    def one_step(p, s, Xr, yr, lr):
        _, step = train.make_step(loss_fn, lr, layout.optimizer)
        return step(p, s, Xr, yr)

    opt, _ = train.make_step(loss_fn, 1.0, layout.optimizer)
    state0 = jax.vmap(opt.init)(params0)
    shapes = jax.eval_shape(record, params0, params0, sets)
    rec_buf = jax.tree.map(lambda s: jnp.zeros((len(record_steps),) + s.shape, s.dtype), shapes)
    snap_buf = jax.tree.map(
        lambda a: jnp.zeros((len(snapshot_steps), len(rows)) + a.shape[1:], a.dtype), params0)

    def observe(p, k, rec_buf, snap_buf):
        j, i = rec_index[k], snap_index[k]
        rec_buf = jax.lax.cond(
            j >= 0, lambda b: jax.tree.map(lambda B, v: B.at[j].set(v), b,
                                           record(p, params0, sets)),
            lambda b: b, rec_buf)
        if not snapshot_steps or not snapshot_rows:
            return rec_buf, snap_buf
        snap_buf = jax.lax.cond(
            i >= 0, lambda b: jax.tree.map(lambda B, a: B.at[i].set(a[rows]), b, p),
            lambda b: b, snap_buf)
        return rec_buf, snap_buf

    def body(c, k):
        p, s, bad, rec_buf, snap_buf = c
        rec_buf, snap_buf = observe(p, k, rec_buf, snap_buf)
        new_p, new_s, loss, gnorm = jax.vmap(one_step)(p, s, X, y, lrs)
        finite = jnp.isfinite(loss) & jnp.isfinite(gnorm)
        for leaf in jax.tree.leaves(new_p):
            finite &= jnp.all(jnp.isfinite(leaf.reshape(leaf.shape[0], -1)), axis=1)
        bad = jnp.where((bad < 0) & ~finite, k, bad)

        def keep(a, b):
            return jnp.where((bad >= 0).reshape((-1,) + (1,) * (a.ndim - 1)), a, b)

        return (jax.tree.map(keep, p, new_p), jax.tree.map(keep, s, new_s), bad, rec_buf,
                snap_buf), loss

    bad0 = jnp.full((layout.rows,), -1, jnp.int32)
    (final, _, bad, rec_buf, snap_buf), curve = jax.lax.scan(
        body, (params0, state0, bad0, rec_buf, snap_buf), jnp.arange(steps, dtype=jnp.int32))
    rec_buf, snap_buf = observe(final, steps, rec_buf, snap_buf)
    last = jax.vmap(loss_fn)(final, X, y)
    return {"loss": jnp.concatenate([curve, last[None]]), "nonfinite_step": bad,
            "final": final, "records": rec_buf, "snapshots": snap_buf}


def failed(loss_curve, nonfinite_step: int, trivial: float = math.log(2)) -> dict:
    """Per-run outcome from its loss curve L̂(θ_0..θ_K), independent of the init.

    * ``failed``: a non-finite loss, gradient or update at some step, or a final L̂(θ_K) above
      the trivial predictor's (Φ ≡ 0 has L̂ = ln 2 for ±1 labels): training ended worse than
      predicting nothing. ``failed_step``: the first non-finite step, else None.
    * ``spiked``: max_k L̂(θ_k) > L̂(θ_0) (the loss rose above its start at some step: GD left
      the monotone regime, the edge-of-stability "catapult"), whether or not it recovered;
      ``max_loss_ratio`` = max_k L̂(θ_k) / L̂(θ_0).
    """
    c = np.asarray(loss_curve, dtype=float)
    finite = np.isfinite(c)
    if nonfinite_step >= 0 or not finite.all():
        step = int(nonfinite_step) if nonfinite_step >= 0 else int(np.argmin(finite))
        return {"failed": True, "failed_step": step, "spiked": True, "max_loss_ratio": math.inf}
    return {"failed": bool(c[-1] > trivial), "failed_step": None,
            "spiked": bool(c.max() > c[0]), "max_loss_ratio": float(c.max() / c[0])}


def first_below(values, target: float):
    """The first index i with ``values[i] ≤ target`` (non-finite values never are), or None."""
    v = np.asarray(values, dtype=float)
    hit = np.nonzero(np.isfinite(v) & (v <= target))[0]
    return int(hit[0]) if hit.size else None
