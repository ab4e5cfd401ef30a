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
    DecoderTransformer,
    EncoderClassifier,
    FeedForward,
    Positional,
    Seq2SeqTransformer,
    TransformerLayer,
    residual_plan,
)

__all__ = ["DecoderTransformer", "DeoraMHA", "EncoderClassifier", "FeedForward", "Positional",
           "Seq2SeqTransformer", "TransformerLayer", "head_outputs", "init_params", "loss_fn",
           "parameter_count", "phi", "residual_plan"]
