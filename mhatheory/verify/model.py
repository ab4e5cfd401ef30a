"""``verify`` group ``model``: the Deora MHA formula against the NumPy loop reference."""

from __future__ import annotations

import jax
import numpy as np

from mhatheory import data
from mhatheory.checks import Check, upper
from mhatheory.models import deora, reference


def rows(full: bool, out, progress: bool = False) -> list[Check]:
    """DeoraMHA (JAX einsums) against the NumPy loop reference, float64, tolerance 1e-12."""
    cfg = data.MixtureConfig(d=8, T=6, n=32)
    batch = data.sample(cfg, jax.random.key(0))
    params = deora.init_params(jax.random.key(1), cfg.d, 4, init_scale=2.0)
    ours = np.asarray(deora.phi(params, batch.X))
    ref = reference.deora_phi_numpy(params["W"], params["U"], batch.X)
    err = float(np.max(np.abs(ours - ref)))
    return [upper("model: Φ vs NumPy reference", "identity", err, 1e-12,
                  "max |Φ_jax − Φ_numpy| over 32 samples, H=4, d=8 (float64)")]
