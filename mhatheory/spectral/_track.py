"""Probes along a training trajectory, warm-started from the previous probe's eigenvector."""

from __future__ import annotations

import jax
import numpy as np

from mhatheory import _validate
from mhatheory.spectral._lanczos import check_options, extreme_eigs
from mhatheory.spectral._operators import as_operator, check_probe


def track(loss_fn, params_at, *args, steps=None, which=("smallest", "largest"), key=None,
          warm_start: bool = True, progress: bool = False, **kwargs) -> list[dict]:
    """Extreme eigenvalues at each stored θ (a pytree stacked over a leading axis, e.g.
    ``Trajectory.params_at``), each Lanczos run started from the previous probe's eigenvector.

    Returns one record per stored θ: ``step`` and, for each ``which`` (``name`` =
    ``lambda_min`` for "smallest", ``lambda_max`` for "largest"), the keys ``name`` (the value),
    ``name_residual``, ``name_interval`` (certified; open on its outer side when unconverged),
    ``name_prob_interval`` (its outer end with probability ≥ 1 − 10⁻⁶ over the random part of
    the warm start, see :class:`~mhatheory.spectral.EigResult`),
    ``name_converged``, ``name_hvps`` and ``name_seconds``.
    """
    from tqdm.auto import tqdm

    # every check before the first probe: a bad θ at the last step must not cost the others
    if "v0" in kwargs:
        raise TypeError("track takes no v0: each probe starts from the previous probe's "
                        "eigenvector (warm_start=True) or a random vector.")
    which = (which,) if isinstance(which, str) else tuple(which)
    for w in which:
        check_options(which=w, key=key, **kwargs)
    _validate.float_params(params_at, "params_at")
    _validate.finite_tree(params_at, "params_at")
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree.leaves(params_at)}
    if len(sizes) != 1 or None in sizes or 0 in sizes:
        raise ValueError("params_at must stack the parameters over a leading axis of the same "
                         f"length S >= 1 on every leaf (e.g. Trajectory.params_at), got leading "
                         f"sizes {sorted(sizes, key=str)}.")
    num = sizes.pop()
    steps = list(range(num)) if steps is None else list(steps)
    if len(steps) != num:
        raise ValueError(f"steps must hold one step per stored θ ({num}), got {len(steps)}.")
    check_probe(as_operator(loss_fn), jax.tree.map(lambda a: np.asarray(a)[0], params_at), args)
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
                        f"{name}_prob_interval": list(r.prob_interval),
                        f"{name}_converged": r.converged, f"{name}_hvps": r.num_hvps,
                        f"{name}_seconds": r.seconds})
        records.append(rec)
    return records
