"""``mhatheory run spectrum``: Hessian eigen-extremes, trace and spectral density at
initialisation and after GD training (Deora MHA on the tokenized mixture).

Writes ``results.json`` (per stage: λmin/λmax with residuals, certified intervals and HVP
counts; the Hutchinson trace ± SE; SLQ negative-eigenvalue count and mass ± SE; the dense
reference when P is small) and ``spectral_density.png``.
"""

from mhatheory.experiments.spectrum.experiment import (
    FULL,
    Config,
    Summary,
    probe,
    run,
)

__all__ = ["Config", "FULL", "Summary", "probe", "run"]
