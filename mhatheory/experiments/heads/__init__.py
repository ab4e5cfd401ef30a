"""``mhatheory run heads``: do more heads help? Answered the way a reviewer would accept.

Deora et al.'s headline is that more heads make GD train more stably and generalise better, with
heads, initialisation and step size as the levers. This sweep measures it on the Deora model and
the tokenized mixture, with

* **a validation split** per seed (drawn like the training set) that selects, per H, the step
  size η, the init scale and the stopping step; test error and gap are read only at the
  selected setting (:func:`analysis.tuned`), over a grid wide enough that a selected setting on
  its edge is flagged (``on_edge``);
* **matched training**: every run's training, validation and test curves are kept at recorded
  steps, so H is compared when L̂ first reaches each target level as well as after K steps
  (:func:`analysis.matched`);
* **robustness** as a claim of its own: the share of the η × init grid within δ of each H's best,
  and the η range that trains without failure (:func:`analysis.robustness`);
* **failure independent of the init**: a non-finite step, or a final L̂ above ln 2 (the trivial
  predictor's); every mean is over all seeds, the survivors-only mean beside it;
* **controls**: a fixed total attention width (the head size shrinks as H grows,
  :mod:`.families`) and the average of H independently trained one-head models;
* **statistics**: per-seed paired slopes, Student-t intervals, Benjamini–Hochberg across the
  primary slices of each claim (:mod:`.claims`);
* **cost**: parameters, FLOPs per GD step and seconds per step per H (:func:`analysis.cost`).

A cell is one (arm, H, init scale, n): all its step sizes, seeds and, on the primary slices,
replace-one retrainings are rows of one scanned GD program
(:mod:`mhatheory.experiments._batched`). On the primary slices of the growing arm the cell also
probes λmin, λmax at θ_0, θ_{K/10}, θ_K, the NTK margin at θ_0 and the constants of the Lei–Ying
stability bounds (:mod:`.records`).
"""

from mhatheory.experiments.heads.claims import CLAIMS, QUANTITIES, Claim, claims
from mhatheory.experiments.heads.experiment import (
    FULL,
    VERIFY,
    Config,
    plan,
    prepare,
    probe_steps,
    run,
    run_cell,
)
from mhatheory.experiments.heads.recompute import recompute_claims

__all__ = ["CLAIMS", "Claim", "Config", "FULL", "QUANTITIES", "VERIFY", "claims", "plan",
           "prepare", "probe_steps", "recompute_claims", "run", "run_cell"]
