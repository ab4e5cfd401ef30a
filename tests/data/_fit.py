"""What the fixture scripts of this folder share: fit a flax.nnx model with Adam on a squared
loss and store its parameters (by key path) with its data."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx


def fit_and_save(model: nnx.Module, x, y, schedule, steps: int, path: Path) -> None:
    """``steps`` Adam steps at learning rate ``schedule`` on mean((model(x) − y)²), then write
    ``path`` (.npz): x, y and every parameter under its ``jax.tree_util.keystr`` path."""
    graphdef, params = nnx.split(model, nnx.Param)

    def loss_fn(p, x, y):
        return jnp.mean((nnx.merge(graphdef, p)(x) - y) ** 2)

    opt = optax.adam(schedule)
    state = opt.init(params)

    @jax.jit
    def step(p, s):
        g = jax.grad(loss_fn)(p, x, y)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    for _ in range(steps):
        params, state = step(params, state)
    flat = {jax.tree_util.keystr(k): np.asarray(v)
            for k, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    print("loss", float(loss_fn(params, x, y)))
    np.savez(path, x=np.asarray(x), y=np.asarray(y), **flat)
