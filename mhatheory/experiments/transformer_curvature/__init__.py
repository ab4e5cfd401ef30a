"""``mhatheory run transformer-curvature``: the λmin–H law beyond one layer, on a causal
:class:`~mhatheory.models.DecoderTransformer` trained on 3-digit addition.

Each cell (scaling, H, layers, seed) trains with AdamW exactly as ``mhatheory run symmetry`` does
(teacher forcing on the answer digits, :func:`mhatheory.experiments.symmetry.loss`, warm-up +
cosine, batches a function of (seed, step)) and probes, on one FIXED training batch of
``probe_batch`` sequences, at three stages (init = step 0, early = ``early_step``, late =
``steps``):

* L̂: cross-entropy on the answer tokens only (``weights`` = the answer mask over
  [batch, positions]), the same loss the model trains on;
* λmin, λmax of ∇²L̂ and λmin(N), N the curvature term of the split ∇²L̂ = G + N
  (:class:`mhatheory.spectral.Curvature` with ``loss="cross_entropy"``), all certified intervals;
* −λmin/L̂, the quantity whose H-dependence the one-layer theory predicts (≤ κ/√H);
* per-layer block λmin of ∇²L̂ (:func:`mhatheory.spectral.subtree_blocks` under ``layers``) and
  per-head block λmin of N in the first layer (query/key/value kernels and biases of head h,
  whose head axis is −2 in :class:`mhatheory.attention.MultiHeadAttention`; the output kernel
  mixes heads and is left out).

The theorem row λmin(∇²L̂) ≥ λmin(N) (Weyl, G ⪰ 0) is decided at every probe from the certified
intervals (:func:`mhatheory.verdicts.compare`). The tendency rows are log-log slopes of −λmin/L̂
against H per (scaling, layers, stage), mean ± SE over seeds (:func:`mhatheory.trends.fit_slope`),
set beside the H^(−1/2) of the one-layer Deora bound.

Scalings: ``fixed_d_model`` (Vaswani: head size d_model/H) and ``fixed_head_dim`` (d_model =
head_dim·H, the width grows with H as in the Deora model).
"""

from mhatheory.experiments.transformer_curvature.experiment import (
    HEAD_SELECT,
    SCALINGS,
    STAGES,
    VERIFY,
    Config,
    Summary,
    answer_problem,
    operators,
    probe,
    rows,
    run,
    run_cell,
    summarise,
    width,
)

__all__ = ["Config", "HEAD_SELECT", "SCALINGS", "STAGES", "Summary", "VERIFY", "answer_problem",
           "operators", "probe", "rows", "run", "run_cell", "summarise", "width"]
