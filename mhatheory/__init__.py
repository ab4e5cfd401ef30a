"""mhatheory: make the theory of multi-head attention checkable in JAX/Flax.

Importing the package enables float64 and the highest matmul precision (see
:mod:`mhatheory._numerics`; ``MHATHEORY_X64=0`` opts out of float64) and loads nothing else:
``import mhatheory.spectral`` loads the general toolkit (probes, training, stability,
assertions) without any of the study built on it (the Deora model, Transformers, experiments).
A submodule is also loaded on first use as an attribute (``mhatheory.attention.…`` after
``import mhatheory``; PEP 562).
"""

import importlib

from mhatheory import _numerics
from mhatheory._numerics import relieve_code_mappings

_numerics.configure()

__version__ = "0.1.0"


def __getattr__(name: str):
    """The public submodule ``name``, imported on first use."""
    if not name.startswith("_"):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["relieve_code_mappings", "__version__"]
