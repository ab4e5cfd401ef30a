"""mhatheory: make the theory of multi-head attention checkable in JAX/Flax.

Importing the package enables float64 and the highest matmul precision (see
:mod:`mhatheory._numerics`; ``MHATHEORY_X64=0`` opts out of float64).
"""

from mhatheory import _numerics
from mhatheory._numerics import relieve_code_mappings

_numerics.configure()

from mhatheory import data, losses, train  # noqa: E402
from mhatheory.data import Batch, MixtureConfig  # noqa: E402
from mhatheory.models import DeoraMHA  # noqa: E402

__version__ = "0.1.0"

__all__ = ["Batch", "DeoraMHA", "MixtureConfig", "data", "losses",
           "relieve_code_mappings", "train", "__version__"]
