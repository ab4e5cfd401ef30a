"""Spectral probes of any ``loss_fn(params, *args) -> scalar`` or curvature operator: Lanczos
extremes with certified and probabilistic intervals, the Hutchinson trace, the SLQ spectral
density, the dense reference, the Gauss–Newton / curvature split, blocks, and tracking along
training.

One way to run a probe: an operator linearised at a point, a configured probe, an explicit key::

    H = spectral.linearise(loss_fn, params, batch)          # spectral.Hessian(loss_fn) at θ
    lo = spectral.Lanczos(which="smallest")(H, key=key)[0]   # EigResult
    tr = spectral.Hutchinson(num_samples=100)(H, key=key)    # Estimate
    rho = spectral.SLQ(num_probes=8)(H, key=key)             # Density
    A = spectral.Dense()(H)                                  # the matrix

``lambda_min``, ``lambda_max``, ``extreme_eigs``, ``trace``, ``spectral_density``, ``dense`` and
``dense_hessian`` are one-line conveniences over these; the probing ones, made for one call,
form each product in one compiled program up to ``ONE_PROGRAM_MAX_PARAMS`` parameters instead
of linearising (a first call compiles one program, not two); ``Exact`` is the dense route in a
probe's form (``eig_probe(method, ...)`` picks one of the two). Probes never import a model:
they see a loss function or an operator only.
"""

from mhatheory.spectral._blocks import (
    BlockSpectrum,
    head_blocks,
    per_block,
    subtree_blocks,
)
from mhatheory.spectral._coverage import Coverage, coverage, named_spectra, rotated
from mhatheory.spectral._density import (
    SLQ,
    Density,
    Estimate,
    Hutchinson,
    spectral_density,
    trace,
)
from mhatheory.spectral._exact import (
    DEFAULT_DENSE_BUDGET,
    Dense,
    DenseTooLargeError,
    dense,
    dense_bytes,
    dense_hessian,
)
from mhatheory.spectral._lanczos import (
    ConvergenceWarning,
    EigResult,
    Exact,
    Lanczos,
    eig_probe,
    extreme_eigs,
    lambda_max,
    lambda_min,
)
from mhatheory.spectral._mask import block_mask
from mhatheory.spectral._operators import (
    Block,
    Hessian,
    LinearOperator,
    Operator,
    linearise,
)
from mhatheory.spectral._options import (
    DEFAULT_BASIS_BUDGET,
    DEFAULT_MAX_HVPS,
    HOST_MAX_PARAMS,
    ONE_PROGRAM_MAX_PARAMS,
    THICK_LAMBDA_MIN_MAX_PARAMS,
    Engine,
    Method,
    Reortho,
    Which,
    lanczos_bytes,
    resolve_key,
)
from mhatheory.spectral._probabilistic import (
    DEFAULT_FAILURE_PROB,
    start_threshold,
    steps_needed,
)
from mhatheory.spectral._resample import resampled
from mhatheory.spectral._split import Curvature, GaussNewton, Loss
from mhatheory.spectral._track import track


def hvp(loss_fn, params, *args):
    """The Hessian (or a curvature operator) at ``params`` as ``(matvec, flat_params)``:
    ``matvec(v) = ∇²L̂(θ) v`` on flat vectors in the order of ``ravel_pytree(params)``; the
    :class:`LinearOperator`'s ``mv`` (one linearisation, then each product about one
    gradient).

    Example:
        >>> import jax.numpy as jnp
        >>> matvec, flat = hvp(lambda x: jnp.sum(x**3), jnp.array([1.0, 2.0]))
        >>> matvec(jnp.array([1.0, 1.0])).tolist()
        [6.0, 12.0]
    """
    op = linearise(loss_fn, params, *args)
    return op.mv, op.flat


__all__ = [
    "Block", "BlockSpectrum", "ConvergenceWarning", "Coverage", "Curvature",
    "DEFAULT_BASIS_BUDGET", "DEFAULT_DENSE_BUDGET", "DEFAULT_FAILURE_PROB", "DEFAULT_MAX_HVPS",
    "Dense", "DenseTooLargeError", "Density", "EigResult", "Engine", "Estimate", "Exact",
    "GaussNewton", "HOST_MAX_PARAMS", "Hessian", "Hutchinson", "Lanczos", "LinearOperator", "Loss",
    "Method", "ONE_PROGRAM_MAX_PARAMS", "Operator", "Reortho", "SLQ",
    "THICK_LAMBDA_MIN_MAX_PARAMS", "Which", "block_mask",
    "coverage", "dense", "dense_bytes", "dense_hessian", "eig_probe", "extreme_eigs",
    "head_blocks", "hvp", "lambda_max", "lambda_min", "lanczos_bytes", "linearise",
    "named_spectra", "per_block", "resampled", "resolve_key", "rotated", "spectral_density",
    "start_threshold", "steps_needed", "subtree_blocks", "trace", "track",
]
