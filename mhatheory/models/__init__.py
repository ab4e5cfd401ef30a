"""Models: the Deora et al. MHA classifier and the Vaswani-style transformer stacks."""

from mhatheory.models.deora import (
    DeoraMHA,
    head_outputs,
    init_params,
    loss_fn,
    parameter_count,
    phi,
)
from mhatheory.models.transformer import (
    Block,
    DecoderTransformer,
    FeedForward,
    Seq2SeqTransformer,
    residual_plan,
)

__all__ = ["Block", "DecoderTransformer", "DeoraMHA", "FeedForward", "Seq2SeqTransformer",
           "head_outputs", "init_params", "loss_fn", "parameter_count", "phi", "residual_plan"]
