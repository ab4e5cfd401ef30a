"""``mhatheory run heads``: do more heads help? H × η × init scale × n, measured.

Deora et al.'s headline is that more heads make GD train more stably and generalise
better, with heads, initialisation and step size as the levers. This sweep measures it. A cell is
one (H, init scale, n); inside it every step size η of its slice, every seed (training set) and
``replace`` replace-one retrainings per seed are rows of one vmapped, scanned GD program
(:mod:`mhatheory.experiments._batched`). Per (H, η, init, n) and seed it records:

* optimisation: divergence (GD failed: L̂(θ_K) ≥ L̂(θ_0) or a non-finite loss; the logistic loss
  never overflows here, so a failed run ends with a *finite* large loss) and its step; whether
  the loss ever rose above L̂(θ_0) (a catapult); L̂(θ_K); the steps to L̂ ≤ 0.1 and ≤ 0.01;
  λmax(θ_0) and η·λmax(θ_0) (Lanczos; dense for P ≤ 300); ‖θ_K − θ_0‖; the NTK max margin at θ_0
  and separability (:func:`mhatheory.deora.max_margin`);
* curvature (on the first ``probe_seeds`` seeds): λmin, λmax, −λmin/L̂, κ̂ = max(0, −λmin)·√H/L̂
  and η·λmax at θ_0, θ_{K/10} and θ_K;
* generalisation: test loss and error on ``num_test`` fresh samples, the gap test − train loss,
  the Bayes floor (:func:`mhatheory.data.bayes_error`), replace-one ε₁ = mean ‖θ_K − θ_K^{(i)}‖ and
  ε₂² = mean ‖θ_K − θ_K^{(i)}‖² over ``replace`` random i, and the Lei–Ying bounds
  G·ε₁ and min_γ (β/γ)L̂ + ((β+γ)/2)ε₂² (:mod:`mhatheory.stability`) with G, β the largest
  per-sample gradient norm and certified smoothness at θ_0, θ_{K/10}, θ_K of the probe seeds on
  the training set, the replacements and ``const_test`` test samples.

Expectations over training sets are means over the seeds that did not diverge (SE over seeds; the
gap's SE adds the test-sample SE). For every quantity and every slice (η, init, n): the slope
against H fitted per seed (paired: heads 1..H of a seed are the same arrays for every H) and
mean ± SE over seeds, log-log for positive quantities (an exponent), per doubling of H for signed
ones; and whether the seed-mean curve is monotone. :func:`claims` turns the five claims of the
seed into rows answered "yes" / "no" / "undecided" from those slopes.

**The CPU default grid** (``full_product=False``) runs H × η × init at the reference n (``n``),
and H × n at the reference (η, init) (``lr``, ``init_scale``); ``--full`` is the full product.
"""

from mhatheory.experiments.heads.claims import QUANTITIES, Claim, claims
from mhatheory.experiments.heads.experiment import (
    FULL,
    VERIFY,
    Config,
    plan,
    probe_steps,
    run,
    run_cell,
)

__all__ = ["Claim", "Config", "FULL", "QUANTITIES", "VERIFY", "claims", "plan", "probe_steps",
           "run", "run_cell"]
