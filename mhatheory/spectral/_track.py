"""Probes along a training trajectory, warm-started from the previous probe's eigenvector."""

from __future__ import annotations

import jax

from mhatheory.spectral._lanczos import extreme_eigs


def track(loss_fn, params_at, *args, steps=None, which=("smallest", "largest"), key=None,
          warm_start: bool = True, progress: bool = False, **kwargs) -> list[dict]:
    """Extreme eigenvalues at each stored θ (a pytree stacked over a leading axis, e.g.
    ``Trajectory.params_at``), each Lanczos run started from the previous probe's eigenvector.

    Returns one record per stored θ: ``step`` and, for each ``which`` (``name`` =
    ``lambda_min`` for "smallest", ``lambda_max`` for "largest"), the keys ``name`` (the value),
    ``name_residual``, ``name_interval`` (certified; open on its outer side when unconverged),
    ``name_converged``, ``name_hvps`` and ``name_seconds``.
    """
    from tqdm.auto import tqdm

    num = jax.tree.leaves(params_at)[0].shape[0]
    steps = list(range(num)) if steps is None else list(steps)
    key = jax.random.key(0) if key is None else key
    last = {w: None for w in which}
    records = []
    for i in tqdm(range(num), desc="probes", disable=not progress, leave=False):
        params = jax.tree.map(lambda a, i=i: a[i], params_at)
        rec = {"step": int(steps[i])}
        for w in which:
            r = extreme_eigs(loss_fn, params, *args, which=w, key=key,
                             v0=last[w] if warm_start else None, **kwargs)[0]
            last[w] = r.vector
            name = "lambda_min" if w == "smallest" else "lambda_max"
            rec.update({name: r.value, f"{name}_residual": r.residual,
                        f"{name}_interval": list(r.interval),
                        f"{name}_converged": r.converged, f"{name}_hvps": r.num_hvps,
                        f"{name}_seconds": r.seconds})
        records.append(rec)
    return records
