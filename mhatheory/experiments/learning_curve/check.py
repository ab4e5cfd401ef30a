"""``verify`` group ``train``: gradient descent decreases the loss; the test error against the
Bayes floor."""

from __future__ import annotations

import jax
import numpy as np

from mhatheory import data, train
from mhatheory.checks import Check, tendency, upper
from mhatheory.experiments._common import error_metrics, make_problem
from mhatheory.models import deora


def rows(full: bool, out, progress: bool = False) -> list[Check]:
    """GD with a small step decreases L̂ monotonically; test error against the Bayes floor."""
    mixture = data.MixtureConfig(n=128)
    prob = make_problem(mixture, heads=4, init_scale=1.0, seed=0, num_test=4000)
    traj = train.gd(deora.loss_fn, prob.params0, prob.train, steps=400, lr=0.5)
    # Summation rounding: each L̂ is a mean of n terms, so its float64 error is ≤ n·ε·L̂.
    tol = mixture.n * np.finfo(np.float64).eps * traj.loss[:-1]
    worst = float(np.max(np.diff(traj.loss) - tol))
    mets = error_metrics(traj.final_params, prob.train, prob.test)
    bayes, se = data.bayes_error(mixture, jax.random.key(99), num=40_000)
    test_err = float(mets["test_error"])
    return [
        upper("train: GD loss monotone (η=0.5, 400 steps)", "theorem", worst, 0.0,
              "max_k L̂(θ_{k+1}) − L̂(θ_k) − n·ε·L̂(θ_k); descent lemma with η below 1/λmax"),
        tendency("train: test error vs Bayes floor", test_err, bayes, se,
                 f"test error {test_err:.4f} on 4000 fresh samples; Bayes error "
                 f"{bayes:.4f} ± {se:.4f} (margin column: the floor's SE)"),
    ]
