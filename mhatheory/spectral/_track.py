"""Probes along a training trajectory, warm-started from the previous probe's eigenvector."""

from __future__ import annotations

import jax
import numpy as np
from tqdm.auto import tqdm

from mhatheory import _validate
from mhatheory.spectral._lanczos import eig_probe
from mhatheory.spectral._operators import as_operator, size_of
from mhatheory.spectral._options import Method, Which, as_enum, resolve_key


def track(loss_fn, params_at, *args, steps=None, which=(Which.SMALLEST, Which.LARGEST),
          method: Method | str = Method.LANCZOS, key=None, warm_start: bool = True,
          progress: bool = False, **lanczos) -> list[dict]:
    """Extreme eigenvalues at each stored θ (a pytree stacked over a leading axis, or a
    :class:`~mhatheory.train.Trajectory`, whose ``params_at`` it probes), each Lanczos run
    started from the previous probe's eigenvector.
    At each θ the operator is linearised once and every ``which`` is probed on it; the compiled
    HVP and recurrence serve every θ.

    Returns one record per stored θ: ``step`` (from ``steps``; by default a Trajectory's
    ``record_steps``, else the index 0…S−1) and, for each ``which`` (``name`` =
    ``lambda_min`` for "smallest", ``lambda_max`` for "largest"), the keys ``name`` (the value),
    ``name_residual``, ``name_interval`` (certified; open on its outer side when unconverged),
    ``name_prob_interval`` (its outer end with probability ≥ 1 − 10⁻⁶ over the random part of
    the warm start, see :class:`~mhatheory.spectral.EigResult`), ``name_converged``,
    ``name_hvps`` and ``name_seconds``. ``key=None`` is a fresh random draw. ``method="exact"``
    probes each θ densely instead (deterministic; ``lanczos`` then takes only
    ``memory_budget_bytes``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> stacked = jnp.stack([jnp.ones(3), 2 * jnp.ones(3)])      # θ at two steps
        >>> recs = track(lambda x: jnp.sum(x**4), stacked, which="smallest",
        ...              key=jax.random.key(0))
        >>> [round(r["lambda_min"], 9) for r in recs]                # 12 x²
        [12.0, 48.0]
    """
    # every check before the first probe: a bad θ at the last step must not cost the others
    if "v0" in lanczos:
        raise TypeError("track takes no v0: each probe starts from the previous probe's "
                        "eigenvector (warm_start=True) or a random vector.")
    which = (which,) if isinstance(which, str) else tuple(which)
    which = tuple(as_enum(Which, w, "which") for w in which)
    probes = {w: eig_probe(method, which=w, **lanczos) for w in which}
    op = as_operator(loss_fn)
    if hasattr(params_at, "record_steps") and hasattr(params_at, "params_at"):
        steps = params_at.record_steps if steps is None else steps
        params_at = params_at.params_at
    if params_at is None:
        raise ValueError("params_at is None: train.gd stores θ only at the steps it is given as "
                         "record_steps; pass record_steps=[...] to train.gd and its Trajectory "
                         "to track.")
    _validate.float_params(params_at, "params_at")
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree.leaves(params_at)}
    if len(sizes) != 1 or None in sizes or 0 in sizes:
        raise ValueError("params_at must stack the parameters over a leading axis of the same "
                         f"length S >= 1 on every leaf (e.g. Trajectory.params_at), got leading "
                         f"sizes {sorted(sizes, key=str)}.")
    num = sizes.pop()
    try:
        _validate.finite_tree(params_at, "params_at")
    except ValueError as err:
        where = _validate.nonfinite_rows(params_at, num)
        raise ValueError(f"{str(err).rstrip('.')} (at {len(where)} of the {num} stored θ: "
                         f"indices {_validate.listed(where)} along the leading axis); probe the "
                         "finite ones, e.g. the steps before a divergence.") from None
    steps = list(range(num)) if steps is None else list(steps)
    if len(steps) != num:
        raise ValueError(f"steps must hold one step per stored θ ({num}), got {len(steps)}.")
    key = resolve_key(key, allow_none=True)
    first = jax.tree.map(lambda a: np.asarray(a)[0], params_at)
    op.check_inputs(first, args)
    for probe in probes.values():
        probe.check_fits(size_of(op, first), _validate.num_params(first)[1])
    last = dict.fromkeys(probes)
    records = []
    for i in tqdm(range(num), desc="probes", disable=not progress, leave=False):
        at = op.at(jax.tree.map(lambda a, i=i: a[i], params_at), *args)
        rec = {"step": int(steps[i])}
        for n, (w, probe) in enumerate(probes.items()):
            r = probe(at, key=jax.random.fold_in(key, 2 * i + n),
                      v0=last[w] if warm_start else None)[0]
            last[w] = r.vector
            name = "lambda_min" if w == Which.SMALLEST else "lambda_max"
            rec.update({name: r.value, f"{name}_residual": r.residual,
                        f"{name}_interval": list(r.interval),
                        f"{name}_prob_interval": list(r.prob_interval),
                        f"{name}_converged": r.converged, f"{name}_hvps": r.num_hvps,
                        f"{name}_seconds": r.seconds})
        records.append(rec)
    return records

