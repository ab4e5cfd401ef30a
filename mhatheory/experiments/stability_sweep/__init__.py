"""``mhatheory run stability``: leave-one-out and replace-one retraining of GD on the Deora
model over a sweep of n, H and the number of steps K; on-average model stability ε₁, ε₂²; the
generalisation gap on ≥ 10⁴ fresh samples; the Lipschitz and smooth bounds of Lei & Ying (2020);
influence-function estimates against exact retraining.

A cell is one (n, H, K); expectations over training sets are means over ``seeds`` data sets.
Cells are written atomically and ``--resume`` skips finished ones.
"""

from mhatheory.experiments.stability_sweep.experiment import (
    FULL,
    BoundCheck,
    Config,
    Summary,
    eps1_slopes,
    one_seed,
    run,
    run_cell,
)

__all__ = ["BoundCheck", "Config", "FULL", "Summary", "eps1_slopes", "one_seed", "run", "run_cell"]
