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
from mhatheory.spectral._density import Estimate


def resampled(probe, params, batch, *, key, num: int = 20) -> Estimate:
    """Bootstrap ``probe(params, batch) -> float`` over the leading (sample) axis of ``batch``.

    Returns an :class:`~mhatheory.spectral.Estimate`: the mean of the ``num`` replicates, the
    bootstrap standard error (their standard deviation: the spread of the probe under
    resampling of the data set) and the replicates as ``samples``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> x = jnp.arange(8.0)
        >>> est = resampled(lambda p, b: float(jnp.mean(b)), None, x, key=jax.random.key(0))
        >>> est.samples.shape, 0 < est.se < 2
        ((20,), True)
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
    return Estimate(float(values.mean()), float(values.std(ddof=1)), 0, values)


__all__ = ["resampled"]
