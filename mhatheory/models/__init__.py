"""Models: the Deora et al. MHA classifier (and, in :mod:`mhatheory.models.transformer`, the
Vaswani-style stacks)."""

from mhatheory.models.deora import (
    DeoraMHA,
    head_outputs,
    init_params,
    loss_fn,
    parameter_count,
    phi,
)

__all__ = ["DeoraMHA", "head_outputs", "init_params", "loss_fn", "parameter_count", "phi"]
