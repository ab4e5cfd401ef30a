"""pytest runs the notebooks (nbmake) at a small size: each notebook reads
``MHATHEORY_NOTEBOOK_SCALE`` (``small`` here, ``full`` when unset, as in Jupyter) and shrinks
only its sweep sizes; every cell still runs and every figure is drawn. Set
``MHATHEORY_NOTEBOOK_SCALE=full`` to run them at the size of the text under pytest."""

import os

os.environ.setdefault("MHATHEORY_NOTEBOOK_SCALE", "small")
# the kernels inherit the environment: compile at LLVM level 0 as the tests do (tests/conftest.py
# says why), unless XLA_FLAGS names a level
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_backend_optimization_level=0").strip()
