"""Spectral probes of any ``loss_fn(params, *args) -> scalar``: dense Hessian (reference),
Hessian–vector products, Lanczos extremes with certified intervals, Hutchinson trace, SLQ
spectral density, the Gauss–Newton / curvature split, and tracking along training.

Probes never import a model: they see a loss function (or a curvature operator) only.
"""

from mhatheory.spectral._blocks import (
    Block,
    BlockSpectrum,
    IndexedBlock,
    block_mask,
    head_blocks,
    per_block,
    subtree_blocks,
)
from mhatheory.spectral._coverage import Coverage, coverage, named_spectra, rotated
from mhatheory.spectral._density import Density, Estimate, spectral_density, trace
from mhatheory.spectral._exact import (
    DEFAULT_DENSE_BUDGET,
    DenseTooLargeError,
    dense,
    dense_bytes,
    dense_hessian,
    dense_with_asymmetry,
)
from mhatheory.spectral._lanczos import (
    DEFAULT_BASIS_BUDGET,
    ConvergenceWarning,
    EigResult,
    Lanczos,
    extreme_eigs,
    lambda_max,
    lambda_min,
    lanczos_bytes,
)
from mhatheory.spectral._operators import Hessian, as_operator, check_probe
from mhatheory.spectral._options import DEFAULT_MAX_HVPS, ESCALATION, escalated
from mhatheory.spectral._probabilistic import (
    DEFAULT_FAILURE_PROB,
    check_failure_prob,
    start_threshold,
    steps_needed,
)
from mhatheory.spectral._recurrence import Reortho
from mhatheory.spectral._resample import resampled
from mhatheory.spectral._split import LOSSES, Curvature, GaussNewton
from mhatheory.spectral._track import track


def hvp(loss_fn, params, *args):
    """The Hessian as a linear operator on flat vectors: ``(matvec, flat_params)``.

    ``matvec(v) = ∇²L̂(θ) v`` by forward-over-reverse (``jax.linearize`` of the gradient; one
    linearisation, then each product costs about one gradient). Vectors are in the order of
    ``jax.flatten_util.ravel_pytree(params)``. The inputs are checked first, as by every probe
    (a curvature operator in place of ``loss_fn`` gives its own matvec).
    """
    op = as_operator(loss_fn)
    check_probe(op, params, args)
    return op.build(params, args)


__all__ = [
    "Block", "BlockSpectrum", "IndexedBlock", "block_mask", "head_blocks", "per_block",
    "subtree_blocks",
    "Coverage", "coverage", "named_spectra", "rotated",
    "DEFAULT_FAILURE_PROB", "DEFAULT_MAX_HVPS", "ESCALATION", "escalated", "check_failure_prob",
    "start_threshold", "steps_needed",
    "DEFAULT_BASIS_BUDGET", "DEFAULT_DENSE_BUDGET", "ConvergenceWarning", "Curvature",
    "Density", "DenseTooLargeError",
    "EigResult", "Estimate", "LOSSES", "GaussNewton", "Hessian", "as_operator", "dense",
    "dense_bytes", "dense_with_asymmetry", "extreme_eigs",
    "dense_hessian", "hvp", "lambda_max", "lambda_min", "Lanczos", "lanczos_bytes", "Reortho",
    "resampled", "spectral_density", "trace",
    "track",
]
