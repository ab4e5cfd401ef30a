"""``mhatheory run seq2seq``: an encoder–decoder transformer (post-LN, sinusoidal positions, as
in Vaswani et al.) learns to reverse (or copy) token sequences.

The training pool and the held-out test set are disjoint by construction (test sequences are
removed from the pool). Reported: teacher-forced and greedy-decoded held-out token accuracy and
exact match along training (a learning curve), in float32 with AdamW (optax).
"""

from mhatheory.experiments.seq2seq.experiment import (
    BOS,
    FIRST,
    Config,
    evaluate,
    make_data,
    run,
    target,
)

__all__ = ["BOS", "Config", "FIRST", "evaluate", "make_data", "run", "target"]
