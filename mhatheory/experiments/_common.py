"""Pieces every Deora experiment shares: the data/model problem and its metrics."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import jax

from mhatheory import _validate, data, losses
from mhatheory.models import deora


@dataclass(frozen=True)
class Problem:
    """A training set, a fresh test set and an initial θ_0, all from one seed."""

    mixture: data.MixtureConfig
    train: data.Batch
    test: data.Batch
    params0: dict


def make_problem(mixture: data.MixtureConfig, heads: int, init_scale: float, seed: int,
                 num_test: int) -> Problem:
    """Keys: ``seed`` → (data, test, init). The init key does not depend on ``heads`` and heads
    are drawn independently, so heads 1..H of one seed are the same arrays for every H."""
    k_data, k_test, k_init = jax.random.split(jax.random.key(seed), 3)
    train = data.sample(mixture, k_data)
    test = data.sample(mixture, k_test, num_test)
    params0 = deora.init_params(k_init, mixture.d, heads, init_scale)
    return Problem(mixture, train, test, params0)


@jax.jit
def error_metrics(params, train: data.Batch, test: data.Batch) -> dict:
    """Train/test 0-1 error and test loss (pure; a ``metrics_fn`` for
    :func:`mhatheory.train.gd`; one compiled program when called on its own)."""
    f_test = deora.phi(params, test.X)
    return {
        "train_error": losses.zero_one_error(deora.phi(params, train.X), train.y),
        "test_error": losses.zero_one_error(f_test, test.y),
        "test_loss": losses.margin_loss(f_test, test.y),
    }


#: Config fields validated the same way in every experiment that has them (the smallest
#: allowed integer; numbers > 0; numbers >= 0), before any work; errors name the field, which
#: the CLI writes as its flag (``--heads``). An experiment's own ``__post_init__`` adds the
#: checks that involve several fields.
MIN_INT = {
    "heads": 1, "steps": 1, "num_test": 1, "seed": 0, "krylov": 2, "num_probes": 1,
    "trace_samples": 2, "dense_max_params": 0, "exact_max_params": 0, "seeds": 1,
    "convergence_heads": 1, "convergence_steps": 1, "fit_min_heads": 1, "d_model": 1,
    "layers": 1, "train_pool": 1, "batch": 1, "warmup": 0, "eval_every": 1, "num_train": 1,
    "checkpoint_every": 1, "lo": 0, "hi": 0, "subset": 1, "chunk": 1, "influence_samples": 1,
    "bayes_samples": 1,
}
POSITIVE_FLOAT = ("lr", "init_scale")
NON_NEGATIVE_FLOAT = ("weight_decay",)


def validate_common(config) -> None:
    """Validate the fields experiment configs share (:data:`MIN_INT`, :data:`POSITIVE_FLOAT`,
    :data:`NON_NEGATIVE_FLOAT`, the data fields, the dense-Hessian memory guard), before any
    work starts."""
    for name, minimum in MIN_INT.items():
        if hasattr(config, name):
            _validate.positive_int(name, getattr(config, name), minimum=minimum)
    for name in POSITIVE_FLOAT:
        if hasattr(config, name):
            _validate.positive_float(name, getattr(config, name))
    for name in NON_NEGATIVE_FLOAT:
        if hasattr(config, name):
            _validate.non_negative_float(name, getattr(config, name))
    for f in dataclasses.fields(config):
        values = getattr(config, f.name)
        if f.name.endswith("_grid") and isinstance(values, tuple):
            repeated = sorted({v for v in values if values.count(v) > 1}, key=values.index)
            if repeated:
                raise ValueError(f"{f.name} lists {', '.join(map(str, repeated))} more than "
                                 "once; a grid names each value once (a repeat would run its "
                                 "cells again and count them twice in the fits).")
    if hasattr(config, "mixture"):
        config.mixture()  # validates the data fields
        check_dense_guard(config)


def check_dense_guard(config) -> None:
    """A ``dense_max_params`` / ``exact_max_params`` threshold must not send a cell to a dense
    Hessian that cannot fit the memory budget (:func:`mhatheory.spectral.dense_bytes`): the
    run would fail only after training."""
    from mhatheory import spectral

    for field in ("dense_max_params", "exact_max_params"):
        limit = getattr(config, field, None)
        if limit is None:
            continue
        heads = getattr(config, "heads_grid", None) or (getattr(config, "heads", None),)
        for h in (h for h in heads if isinstance(h, int) and h >= 1):
            P = deora.parameter_count(config.d, h)
            need = spectral.dense_bytes(P, jax.dtypes.canonicalize_dtype(float))
            if P <= limit and need > spectral.DEFAULT_DENSE_BUDGET:
                raise ValueError(
                    f"{field}={limit} sends H={h} (P={P:,} parameters) to the dense Hessian, "
                    f"which needs about {need / 2**30:,.0f} GiB (over the "
                    f"{spectral.DEFAULT_DENSE_BUDGET / 2**30:.0f} GiB budget); use a threshold "
                    f"below {P:,} (Lanczos is used above it).")


@dataclass(frozen=True)
class DeoraFields:
    """The fields every Deora experiment shares: the tokenized-mixture data model (without n,
    which an experiment either fixes or sweeps), the initialisation scale, the GD step size, the
    test-set size and the seed. Experiments subclass it and may override defaults.

    Attributes:
        d: token dimension d (each head has a d×d W_h and a d-vector U_h; d ≥ num_irrelevant + 2).
        T: tokens per sample (≥ 2; the first token is the query).
        zeta: probability ζ that a token is label-relevant (drawn near the mean of its label).
        num_irrelevant: number K of label-irrelevant cluster means.
        sigma: standard deviation σ of the Gaussian noise on every token (> 0).
        scale: norm of every cluster mean.
        init_scale: initialisation scale: W_h and U_h entries ~ N(0, init_scale²/d).
        lr: GD step size η.
        num_test: fresh test samples for the test error and test loss.
        seed: base random seed (training data, test data and initialisation).
    """

    d: int = 8
    T: int = 8
    zeta: float = 0.6
    num_irrelevant: int = 4
    sigma: float = 0.1
    scale: float = 1.0
    init_scale: float = 1.0
    lr: float = 1.0
    num_test: int = 1000
    seed: int = 0

    def __post_init__(self):
        validate_common(self)

    def mixture(self, n: int | None = None) -> data.MixtureConfig:
        """The data config for ``n`` samples (default: the experiment's own ``n``)."""
        n = getattr(self, "n", 2) if n is None else n
        return data.MixtureConfig(d=self.d, T=self.T, n=n, zeta=self.zeta,
                                  num_irrelevant=self.num_irrelevant, sigma=self.sigma,
                                  scale=self.scale)
