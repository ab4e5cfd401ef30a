"""Write ``mlp_float32.npz``: a float32 flax.nnx MLP (8 → 32 → 32 → 1, tanh, P = 1,377)
trained with Adam on a squared loss until L̂ ≈ 2e-10, with its data.

Near such a minimum the Hessian is a dense bulk of eigenvalues near 0 (rank(G) ≤ n = 64 < P)
with λmin ≈ −4e-5 inside it, below float32's acceptance threshold (100ε₃₂·‖H‖ ≈ 1e-4): the case
where a converged-looking Lanczos interval missed λmin and ``assert_weakly_convex`` passed a
bound the dense Hessian refutes (``tests/test_spectral_probabilistic.py``). Deterministic on
CPU; rerun with ``python tests/data/make_mlp_float32.py``.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from flax import nnx


class MLP(nnx.Module):
    """8 → 32 → 32 → 1 with tanh; computes in its parameters' dtype."""

    def __init__(self, rngs, dtype=jnp.float32):
        self.l1 = nnx.Linear(8, 32, rngs=rngs, param_dtype=dtype)
        self.l2 = nnx.Linear(32, 32, rngs=rngs, param_dtype=dtype)
        self.l3 = nnx.Linear(32, 1, rngs=rngs, param_dtype=dtype)

    def __call__(self, x):
        return self.l3(jnp.tanh(self.l2(jnp.tanh(self.l1(x)))))[..., 0]


def main() -> None:
    from _fit import fit_and_save  # this folder's helper (the script's own directory)

    kx, kw = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (64, 8), jnp.float32)
    y = jnp.tanh(x @ jax.random.normal(kw, (8,), jnp.float32))
    fit_and_save(MLP(nnx.Rngs(0)), x, y, optax.exponential_decay(3e-3, 10_000, 0.3), 40_000,
                 Path(__file__).with_name("mlp_float32.npz"))


if __name__ == "__main__":
    main()
