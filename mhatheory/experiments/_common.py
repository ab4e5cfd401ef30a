"""Pieces every Deora experiment shares: the data/model problem and its metrics."""

from __future__ import annotations

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


def error_metrics(params, train: data.Batch, test: data.Batch) -> dict:
    """Train/test 0-1 error and test loss (pure; a ``metrics_fn`` for
    :func:`mhatheory.train.gd`)."""
    f_test = deora.phi(params, test.X)
    return {
        "train_error": losses.zero_one_error(deora.phi(params, train.X), train.y),
        "test_error": losses.zero_one_error(f_test, test.y),
        "test_loss": losses.margin_loss(f_test, test.y),
    }


def validate_common(config) -> None:
    """Validate the fields experiment configs share, before any work starts."""
    for name in ("heads", "steps", "num_test"):
        if hasattr(config, name):
            _validate.positive_int(name, getattr(config, name))
    for name in ("lr", "init_scale"):
        if hasattr(config, name):
            _validate.positive_float(name, getattr(config, name))
    config.mixture()  # validates the data fields


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
