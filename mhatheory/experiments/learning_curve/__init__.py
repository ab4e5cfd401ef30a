"""``mhatheory run train``: GD on the tokenized mixture with the Deora MHA model.

Writes ``results.json`` (config, seed, versions, device, the loss/error curves, final numbers and
the Bayes-error floor) and ``loss_curve.png``.
"""

from mhatheory.experiments.learning_curve.experiment import (
    Config,
    run,
)

__all__ = ["Config", "run"]
