"""``mhatheory run symmetry``: 3-digit addition across {causal, non-causal} × positional encoding
× residual connections, with the permutation-invariance theorem checked on the trained models.

Each (variant, seed) cell trains a :class:`~mhatheory.models.DecoderTransformer` with AdamW
(warm-up + cosine). Causal models use teacher forcing on the answer digits; non-causal models are
trained and evaluated prefix-wise (one forward pass per answer digit, later positions masked), so
no target leaks. Cells checkpoint with orbax and resume mid-training; finished cells are written
atomically and skipped by ``--resume``. Outputs: a results table (mean ± std test exact match,
steps to 95 %), learning curves with the enumerated ceiling for non-causal no-PE cells, residual
ablation curves, activation-correlation heatmaps (the correlation analyses (a) and (b) of
``experiment.correlations``), and the theorem (C13) on the trained non-causal no-PE checkpoints.
"""

from mhatheory.experiments.symmetry_sweep.experiment import (
    FULL,
    Config,
    Summary,
    build,
    correlations,
    plan,
    run,
    summarise,
    train_cell,
    variants,
)

__all__ = ["Config", "FULL", "Summary", "build", "correlations", "plan", "run", "summarise",
           "train_cell", "variants"]
