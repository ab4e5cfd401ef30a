"""``mhatheory run transformer-curvature``: the λmin–H law on Transformers that have learned,
read at matched loss, on two tasks (:mod:`.tasks`): a causal
:class:`~mhatheory.models.DecoderTransformer` on 3-digit addition and an
:class:`~mhatheory.models.EncoderClassifier` on the 10-class UCI digits.

Each cell (task, d_model, H, layers, seed) trains with AdamW (:mod:`.training`) until it has
learned: validation exact-match accuracy ≥ ``target_accuracy`` or probe-batch loss ≤
``target_loss``, and every matched loss level reached (or ``max_steps``; a cell that stops there
is reported as not learned, never dropped), at the peak learning rate of ``lr_grid`` chosen per
cell on validation data. It is probed on a fixed batch of ``probe_batch``
training samples

* at init (step 0);
* at each matched level — the task's marginal entropy, then ``loss_levels`` — at the first
  reading whose loss is at or below it, so that H is compared at equal progress, not equal step;
* at the end of training (``late``), on the probe batch and on the first n training samples for
  each n of ``late_probe_batches`` (more or fewer than the probe batch).

A probe measures L̂ (the weighted cross-entropy the model trains on), certified λmin and λmax of
∇²L̂ and λmin(N), N the curvature term of the split ∇²L̂ = G + N
(:class:`mhatheory.spectral.Curvature`), and −λmin/L̂, the quantity whose H-dependence the
one-layer theory bounds by κ/√H. The theorem λmin(∇²L̂) ≥ λmin(N) (Weyl, G ⪰ 0) is decided at
every probe from the intervals (:func:`mhatheory.verdicts.compare`); the tendencies are the
per-seed log-log slopes of −λmin/L̂ against H with Student-t intervals (:mod:`.analysis`).

Scalings (:mod:`.grid`): ``fixed_d_model`` (Vaswani: head size d_model/H) and ``fixed_head_dim``
(d_model = head_dim·H, the width grows with H as in the Deora model). No cell is narrower than
d_model 8.
"""

from mhatheory.experiments.transformer_curvature.analysis import rows, summarise
from mhatheory.experiments.transformer_curvature.experiment import (
    FULL,
    VERIFY,
    Config,
    Summary,
    load_tasks,
    run,
    run_cell,
)
from mhatheory.experiments.transformer_curvature.grid import (
    MIN_D_MODEL,
    SCALINGS,
    scaling_members,
    stage_names,
    widths,
)
from mhatheory.experiments.transformer_curvature.probes import HEAD_SELECT, operators, probe
from mhatheory.experiments.transformer_curvature.training import first_below

__all__ = ["Config", "FULL", "HEAD_SELECT", "MIN_D_MODEL", "SCALINGS", "Summary", "VERIFY",
           "first_below", "load_tasks", "operators", "probe", "rows", "run", "run_cell",
           "scaling_members", "stage_names", "summarise", "widths"]
