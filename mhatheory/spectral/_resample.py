"""Statistical error bars: bootstrap over the samples of a batch.

When the loss is a mean over samples drawn from a distribution, a probe's value is itself a
random quantity. Resampling the n rows of every batch leaf with replacement (shapes unchanged,
so one compiled program serves every replicate) and rerunning the probe gives its bootstrap
standard error. This is kept apart from the numerical (Ritz residual) error.
"""

from __future__ import annotations

import jax
import numpy as np

from mhatheory import _validate


def resampled(probe, params, batch, *, key, num: int = 20) -> tuple[float, float, np.ndarray]:
    """Bootstrap ``probe(params, batch) -> float`` over the leading (sample) axis of ``batch``.

    Returns ``(mean, standard error, values)``; the standard error is the bootstrap standard
    deviation (the spread of the probe under resampling of the data set).
    """
    num = _validate.positive_int("num", num, minimum=2)
    _validate.callable_arg("probe", probe, "probe(params, batch) -> float")
    _validate.prng_key("key", key)
    _validate.finite_tree(params, "params")
    _validate.finite_tree(batch, "batch")
    leaves = [x for x in jax.tree.leaves(batch) if x is not None]
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
    if len(sizes) != 1 or None in sizes or 0 in sizes:
        raise ValueError("every leaf of batch must hold the same number of samples n >= 1 "
                         f"along its leading axis, got leading sizes {sorted(sizes, key=str)}.")
    n = leaves[0].shape[0]
    values = []
    for k in jax.random.split(key, num):
        idx = jax.random.randint(k, (n,), 0, n)
        values.append(float(probe(params, jax.tree.map(lambda a, idx=idx: a[idx], batch))))
    values = np.asarray(values)
    return float(values.mean()), float(values.std(ddof=1)), values


__all__ = ["resampled"]
