"""``mhatheory run weak-convexity``: λmin(∇²L̂) against −κ/√H·L̂ along GD, for H = 1..64 heads.

For every (H, seed) cell: GD on the tokenized mixture from a per-head initialisation that does not
depend on H, the weak-convexity chain of :mod:`mhatheory.deora` at log-spaced steps
(warm-started Lanczos), λmax and the descent lemma there. Then the log-log slopes of −λmin/L̂ and
κ̂ against H (per seed, mean ± standard error over seeds) at initialisation, early and late in
training, and the finite-time convergence bound for one H. Figures: the chain against step per
H, κ̂ against H with fits, the tightness of each link, convergence.
"""

from mhatheory.experiments.weak_convexity.experiment import (
    FULL,
    Config,
    Summary,
    fit_slopes,
    probe_cell,
    run,
    run_convergence,
)

__all__ = ["Config", "FULL", "Summary", "fit_slopes", "probe_cell", "run", "run_convergence"]
