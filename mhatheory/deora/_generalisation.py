"""The Deora side of the stability bounds of :mod:`mhatheory.stability`.

Lei & Ying's bounds need the per-sample loss ℓ_i(θ) = ℓ(y_i Φ(X_i; θ)) to be G-Lipschitz
(E[gen] ≤ G·ε₁) or β-smooth. For the Deora model with the logistic loss:

* ∇ℓ_i = ℓ'_i y_i ∇Φ_i, so ‖∇ℓ_i‖ = |ℓ'_i|·‖∇Φ_i‖ (exact; ∇Φ_i are the NTK features of
  :func:`mhatheory.deora.ntk_features`);
* ∇²ℓ_i = ℓ''_i ∇Φ_i∇Φ_iᵀ + ℓ'_i y_i ∇²Φ_i and ∇²Φ_i = (1/√H) blockdiag_h(∇²φ_{h,i}), so by the
  triangle inequality ‖∇²ℓ_i‖ ≤ β_i := ℓ''_i‖∇Φ_i‖² + |ℓ'_i|·max_h‖∇²φ_{h,i}‖/√H, with the block
  norms exact (:func:`mhatheory.deora.block_norms`).

G is then measured as the largest ‖∇ℓ_i‖ along the trajectories (an empirical constant) and β as
the largest certified β_i at the probed points.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from mhatheory.data import Batch
from mhatheory.deora._chain import block_norms
from mhatheory.deora._convergence import ntk_features
from mhatheory.losses import logistic, logistic_d1, logistic_d2
from mhatheory.models import deora


@jax.jit
def per_sample_constants(params, X, y):
    """Per sample: ‖∇_θ ℓ_i‖ and the certified smoothness bound β_i ≥ ‖∇²_θ ℓ_i‖₂ (module
    docstring), two ``[n]`` arrays. Cost: n gradients of Φ and n·H eigenproblems of size 2d."""
    H = params["U"].shape[0]
    grads = ntk_features(params, X)                                          # (n, P)
    m = y * deora.phi(params, X)
    gnorm = jnp.abs(logistic_d1(m)) * jnp.linalg.norm(grads, axis=1)
    hess = jnp.max(block_norms(params, X), axis=1) / math.sqrt(H)
    beta = logistic_d2(m) * jnp.sum(grads**2, axis=1) + jnp.abs(logistic_d1(m)) * hess
    return gnorm, beta


def test_loss(params, test: Batch) -> tuple[float, float]:
    """Mean logistic loss on fresh samples and its standard error (the test side of the gap)."""
    per = np.asarray(logistic(test.y * deora.phi(params, test.X)))
    return float(per.mean()), float(per.std(ddof=1) / math.sqrt(per.size))


test_loss.__test__ = False  # a metric, not a pytest test (its name starts with "test")
