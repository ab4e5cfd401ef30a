"""The ``learning-curve`` experiment's config and run; see
:mod:`mhatheory.experiments.learning_curve`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from mhatheory import data, plots, results, train
from mhatheory.experiments._common import DeoraFields, error_metrics, make_problem
from mhatheory.models import deora


@dataclass(frozen=True)
class Config(DeoraFields):
    """GD on the tokenized mixture (data and GD fields: see ``DeoraFields``).

    Attributes:
        heads: number of heads H.
        n: training-set size.
        steps: GD steps K.
    """

    d: int = 16
    num_test: int = 10_000
    heads: int = 8
    n: int = 256
    steps: int = 2000


def run(config: Config, out_dir, progress: bool = True) -> dict:
    """Train, write ``results.json`` and ``loss_curve.png`` to ``out_dir``; returns the summary."""
    results.retire(out_dir)
    mixture = config.mixture()
    prob = make_problem(mixture, config.heads, config.init_scale, config.seed, config.num_test)
    data.check_batch(prob.train, config.d)
    traj = train.gd(deora.loss_fn, prob.params0, prob.train, steps=config.steps, lr=config.lr,
                    record_steps=train.log_schedule(config.steps, 12), metrics_fn=error_metrics,
                    metric_args=(prob.train, prob.test), progress=progress)
    bayes, bayes_se = data.bayes_error(mixture, jax.random.key(config.seed + 10_007))
    summary = {
        "final_loss": float(traj.loss[-1]),
        "final_grad_norm": float(traj.grad_norm[-1]),
        "final_train_error": float(traj.metrics["train_error"][-1]),
        "final_test_error": float(traj.metrics["test_error"][-1]),
        "final_test_loss": float(traj.metrics["test_loss"][-1]),
        "bayes_error": bayes,
        "bayes_error_se": bayes_se,
        "parameters": deora.parameter_count(config.d, config.heads),
    }
    out = Path(out_dir)
    results.save_figure_atomic(plots.loss_curve(traj, f"Deora MHA, H={config.heads}",
                                                bayes_error=bayes, bayes_error_se=bayes_se),
                               out / "loss_curve.png")
    stride = max(1, config.steps // 500)
    curves = {"step": np.arange(0, config.steps + 1, stride), "loss": traj.loss[::stride],
              "grad_norm": traj.grad_norm[::stride],
              **{k: v[::stride] for k, v in traj.metrics.items()}}
    results.write_results(out, "train", config, config.seed, {"summary": summary, "curves": curves},
                          figures=["loss_curve.png"])
    return summary
