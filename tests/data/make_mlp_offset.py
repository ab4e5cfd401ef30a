"""Write ``mlp_offset.npz``: a float32 flax.nnx MLP (4 → 16 → 16 → 1, tanh, P = 369) whose
targets sit at 30000 + O(1), trained with Adam until its float32 loss is exactly 0, with its
data.

At 30000 float32 resolves 0.002, so every float32 residual is 0 and a float32 product sees no
curvature term at all, while the same weights and data in float64 leave residuals of ~1e-3 and
λmin ≈ −5.6e-4. No product's linearity defect sees that difference (it is linear in the vector);
only the widened operator does, and only on the vectors it is compared at: the case where a
float32 run's probabilistic end missed λmin for every key
(``tests/test_spectral_probabilistic.py``).
Deterministic on CPU; rerun with ``python tests/data/make_mlp_offset.py``.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from flax import nnx

OFFSET = 30000.0


class MLP(nnx.Module):
    """4 → 16 → 16 → 1 with tanh, its output bias at the targets' offset; computes in its
    parameters' dtype."""

    def __init__(self, rngs, dtype=jnp.float32):
        self.l1 = nnx.Linear(4, 16, rngs=rngs, param_dtype=dtype)
        self.l2 = nnx.Linear(16, 16, rngs=rngs, param_dtype=dtype)
        self.l3 = nnx.Linear(16, 1, rngs=rngs, param_dtype=dtype)
        self.l3.bias[...] = jnp.full((1,), OFFSET, dtype)

    def __call__(self, x):
        return self.l3(jnp.tanh(self.l2(jnp.tanh(self.l1(x)))))[..., 0]


def main() -> None:
    from _fit import fit_and_save  # this folder's helper (the script's own directory)

    kx, kw = jax.random.split(jax.random.key(1))
    x = jax.random.normal(kx, (32, 4), jnp.float32)
    w = jax.random.normal(kw, (4,), jnp.float32) / 2
    y = (OFFSET + jnp.sin(2 * x @ w) + 0.5 * jnp.tanh(x[:, 0])).astype(jnp.float32)
    fit_and_save(MLP(nnx.Rngs(0)), x, y, optax.exponential_decay(3e-3, 8000, 0.01), 8000,
                 Path(__file__).with_name("mlp_offset.npz"))


if __name__ == "__main__":
    main()
