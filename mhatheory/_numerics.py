"""Process-wide numerics: float64 and highest matmul precision.

The toolkit checks inequalities whose margins can be small, so it runs in float64 by default
(``jax_enable_x64``) and forces the highest matmul precision: on GPUs XLA otherwise uses TF32
for float32 matmuls (about 1e-3 relative error), which would fake violations.

Set ``MHATHEORY_X64=0`` in the environment before importing ``mhatheory`` to keep JAX's float32
default (for example, to benchmark float32 models); nothing else in JAX is changed.
"""

from __future__ import annotations

import os

import jax


def configure() -> None:
    """Enable float64 (unless ``MHATHEORY_X64=0``) and the highest matmul precision."""
    if os.environ.get("MHATHEORY_X64", "1") != "0":
        jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")
