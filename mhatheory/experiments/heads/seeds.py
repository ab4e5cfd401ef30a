"""The data of one seed of a ``heads`` cell: its training, validation and test sets, θ_0 of
every member, the model output and the replace-one samples, for the mixture (drawn per seed),
the digits and a user's data (split per seed), and the Deora or a flax.nnx family.
``config`` is the experiment's :class:`~mhatheory.experiments.heads.Config`."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mhatheory import data, deora
from mhatheory.experiments._common import make_problem
from mhatheory.experiments.heads import datasets, families


def stack(trees):
    """The trees stacked leaf by leaf along a new leading axis."""
    return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def take(tree, idx):
    """Every leaf indexed by ``idx``."""
    return jax.tree.map(lambda a: a[idx], tree)


def replacements(mix, seed: int, n: int, R: int):
    """R distinct indices i and a fresh sample for each (keyed by the seed only)."""
    k_idx, k_new = jax.random.split(jax.random.fold_in(jax.random.key(seed), 7919))
    which = np.sort(np.asarray(jax.random.choice(k_idx, n, (R,), replace=False)))
    return which, data.sample(mix, k_new, R)


def validation(mix, seed: int, num: int) -> data.Batch:
    """The seed's validation set: drawn like the training set from a key of its own, so it is
    independent of the training and test sets (continuous features: no sample is shared)."""
    return data.sample(mix, jax.random.fold_in(jax.random.key(seed), 104_729), num)


def task_of(data: str, digits_pair: tuple) -> datasets.Task | None:
    """The checked dataset of ``--data`` (None for the mixture, drawn per seed), loaded once per
    process and data callable: a ``MODULE:FUNCTION`` is looked up again at every call, so a
    function redefined in a notebook is called again, not served from the cache."""
    if data == "mixture":
        return None
    return _task(data, tuple(digits_pair),
                 datasets.resolve(data, digits_pair) if ":" in data else None)


@functools.cache
def _task(data: str, digits_pair: tuple, fn) -> datasets.Task:
    fn = fn or datasets.resolve(data, digits_pair)
    try:
        arrays = fn()
    except ImportError as e:        # an optional extra (scikit-learn for the digits)
        raise ValueError(f"--data {data}: {e}") from e
    except Exception as e:  # noqa: BLE001 - a user's data callable failing
        raise ValueError(f"--data {data}: calling it failed: {type(e).__name__}: {e}") from e
    return datasets.check(arrays)


def data_shape(config, task) -> tuple[tuple, str, int]:
    """(input shape of one sample, loss, classes) of the run's data."""
    if task is None:
        return (config.T, config.d), "logistic", 1
    return task.arrays["x_train"].shape[1:], task.loss, task.classes


#: The config fields of the tokenized mixture, which a run on a dataset does not read.
MIXTURE_FIELDS = ("d", "T", "zeta", "num_irrelevant", "sigma", "scale", "num_test")


def data_summary(config) -> dict:
    """What the run's data were, for its results: the source, one sample's shape, the loss and
    classes its labels imply and the test set's size; for a dataset also its training pool
    and the config fields it did not read (:data:`MIXTURE_FIELDS`), which results.json's
    config still lists."""
    task = task_of(config.data, config.digits_pair)
    shape, loss, classes = data_shape(config, task)
    out = {"source": config.data, "sample_shape": list(shape), "loss": loss, "classes": classes}
    if task is None:
        return {**out, "num_test": config.num_test}
    return {**out, "num_test": int(len(task.arrays["x_test"])),
            "pool": int(len(task.arrays["x_train"])), "config_fields_unused": list(MIXTURE_FIELDS)}


def nnx_make(config, task, arm: str):
    """The nnx family's ``make`` for an arm (None for the Deora family's pure functions)."""
    if config.model == "deora":
        return None
    if config.model == "transformer":
        shape, loss, classes = data_shape(config, task)
        return families.transformer(shape[-1], classes if loss == "cross_entropy" else 1,
                                    **({"d_model": config.width} if arm == "fixed_width"
                                       else {"head_dim": config.head_dim}))
    return datasets.load_callable(config.model, "--model")


class SeedData(NamedTuple):
    """One seed of a cell: its sets, θ_0 of every member (one unless ensembles), the model
    output, and the replace-one indices with their replacement samples."""

    train: data.Batch
    val: data.Batch
    test: data.Batch
    members: list
    phi: object
    which: np.ndarray
    fresh: data.Batch | None


def seed_data(config, spec: dict, seed: int) -> SeedData:
    """The data, θ_0 and replacements of one seed of a cell."""
    arm, H, init, n = (spec[k] for k in ("arm", "heads", "init_scale", "n"))
    M = H if arm == "average" else 1
    R = 0 if arm == "average" else config.replace
    task = task_of(config.data, config.digits_pair)
    deora_family = config.model == "deora"
    if task is None:
        mix = config.mixture(n)
        prob = make_problem(mix, H if deora_family and arm != "fixed_width" else 1, init, seed,
                            config.num_test)
        train_, test, val = prob.train, prob.test, validation(mix, seed, config.num_val)
        which, fresh = replacements(mix, seed, n, R) if R else (np.zeros(0, int), None)
        p0 = prob.params0
    else:
        sp = datasets.seed_split(task, seed, n, config.num_val, spare=R)
        train_, val, test = (data.Batch(jnp.asarray(sp[f"x_{k}"]), jnp.asarray(sp[f"y_{k}"]))
                             for k in ("train", "val", "test"))
        rng = np.random.default_rng([seed, 7_919])
        which = np.sort(rng.choice(n, R, replace=False)) if R else np.zeros(0, int)
        fresh = data.Batch(jnp.asarray(sp["x_spare"]), jnp.asarray(sp["y_spare"])) if R else None
        k_init = jax.random.split(jax.random.key(seed), 3)[2]
        p0 = (deora.init_params(k_init, train_.X.shape[-1], H, init) if deora_family
              and arm != "fixed_width" else None)
    if deora_family:
        if arm == "fixed_width":
            k_init = jax.random.fold_in(jax.random.split(jax.random.key(seed), 3)[2], H)
            p0 = families.fixed_width_init(k_init, train_.X.shape[-1], H, init, config.width)
        members = [take(p0, slice(m, m + 1)) for m in range(M)] if M > 1 else [p0]
        phi = families.phi_of("fixed_width" if arm == "fixed_width" else "growing")
    else:
        make = nnx_make(config, task, arm)
        built = ([families.nnx_params(make, 1, seed * 100_003 + m, init) for m in range(M)]
                 if M > 1 else [families.nnx_params(make, H, seed, init)])
        members, phi = [p for p, _ in built], built[0][1]
    return SeedData(train_, val, test, members, phi, which, fresh)
