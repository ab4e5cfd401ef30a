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
import numpy as np
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
    kx, kw = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (64, 8), jnp.float32)
    y = jnp.tanh(x @ jax.random.normal(kw, (8,), jnp.float32))
    graphdef, params = nnx.split(MLP(nnx.Rngs(0)), nnx.Param)

    def loss_fn(p, x, y):
        return jnp.mean((nnx.merge(graphdef, p)(x) - y) ** 2)

    opt = optax.adam(optax.exponential_decay(3e-3, 10_000, 0.3))
    state = opt.init(params)

    @jax.jit
    def step(p, s):
        g = jax.grad(loss_fn)(p, x, y)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    for _ in range(40_000):
        params, state = step(params, state)
    flat = {jax.tree_util.keystr(k): np.asarray(v)
            for k, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    print("loss", float(loss_fn(params, x, y)))
    np.savez(Path(__file__).with_name("mlp_float32.npz"), x=np.asarray(x), y=np.asarray(y),
             **flat)


if __name__ == "__main__":
    main()
