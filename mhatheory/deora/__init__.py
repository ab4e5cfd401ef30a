"""The theory of the Deora et al. MHA classifier (arXiv 2310.12680), checked numerically.

Everything here is specific to one model, :mod:`mhatheory.models.deora` (Φ = (1/√H) Σ_h φ_h
with the logistic loss); the machinery it stands on (:mod:`mhatheory.spectral`,
:mod:`mhatheory.train`, :mod:`mhatheory.stability`, :mod:`mhatheory.testing`) sees only a loss
function and never imports a model. Three concepts, one private module each:

* the self-bounded weak-convexity chain λmin(∇²L̂) ≥ … ≥ −(κ_ana/√H)·L̂ (``_chain``:
  :func:`chain`, :func:`block_norms`, :func:`kappa_analytic_blocks`, :func:`assert_chain`);
* convergence of GD: the descent lemma, the NTK realizability certificate and the finite-time
  bound (``_convergence``: :func:`descent_check`, :func:`max_margin`, :func:`finite_time_bound`);
* the Deora constants of the stability bounds: per-sample Lipschitz G_i and smoothness β_i, and
  the test loss on fresh samples (``_generalisation``: :func:`per_sample_constants`,
  :func:`test_loss`).

The model's own functions are re-exported (``deora.loss_fn``, ``deora.phi``, …), so
``from mhatheory import deora`` gives the model and its theory under one name.
"""

from mhatheory.deora._chain import (
    ROUNDING,
    Chain,
    ChainProbe,
    Link,
    assert_chain,
    block_norms,
    chain,
    kappa_analytic_blocks,
)
from mhatheory.deora._convergence import (
    ConvergenceBound,
    Descent,
    MaxMargin,
    descent_check,
    finite_time_bound,
    max_margin,
    ntk_features,
)
from mhatheory.deora._generalisation import per_sample_constants, test_loss
from mhatheory.models.deora import (
    DeoraMHA,
    check_params,
    head_outputs,
    init_params,
    loss_fn,
    parameter_count,
    phi,
)

__all__ = [
    "ROUNDING", "Chain", "ChainProbe", "ConvergenceBound", "DeoraMHA", "Descent", "Link",
    "MaxMargin",
    "assert_chain", "block_norms", "chain", "check_params", "descent_check", "finite_time_bound",
    "head_outputs", "init_params", "kappa_analytic_blocks", "loss_fn", "max_margin",
    "ntk_features", "parameter_count", "per_sample_constants", "phi", "test_loss",
]
