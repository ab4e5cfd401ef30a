"""The grid of ``transformer-curvature``: which (d_model, H) cells each scaling reads, and the
stages at which a cell is probed. Functions of a config's fields, shared by the run and its
analysis."""

from __future__ import annotations

SCALINGS = ("fixed_d_model", "fixed_head_dim")

#: the narrowest model a cell may have: below it the law would be read on a model too small to
#: learn the task (a d_model 8 decoder stalls at 75 % exact match on addition; d_model 2 and 4
#: never get below the answer digits' marginal entropy)
MIN_D_MODEL = 8


def scaling_members(config, scaling: str) -> list[tuple[int, int]]:
    """The (d_model, H) pairs of one scaling, in increasing H: fixed_d_model reads
    ``config.d_model`` over ``heads_grid``, fixed_head_dim reads ``head_dim·H`` over
    ``fixed_head_dim_heads_grid``."""
    if scaling == "fixed_d_model":
        return [(config.d_model, h) for h in sorted(config.heads_grid)]
    return [(config.head_dim * h, h) for h in sorted(config.fixed_head_dim_heads_grid)]


def widths(config) -> list[tuple[int, int]]:
    """The (d_model, H) pairs of the grid, without repeats: a model of both scalings (d_model 32
    with 4 heads of size 8) is one cell, read by both."""
    return list(dict.fromkeys(p for s in config.scaling_grid for p in scaling_members(config, s)))


def stage_names(config) -> list[str]:
    """``init``, one stage per matched loss level (``entropy``, the task's marginal entropy,
    first) and ``late``, the end of training."""
    return ["init", "entropy", *(f"loss_{v:g}" for v in config.loss_levels), "late"]
