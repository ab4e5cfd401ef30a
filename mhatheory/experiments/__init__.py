"""Experiments: thin ``run(config, out_dir)`` entry points over the library, one module each.

``EXPERIMENTS`` maps the CLI name to the module path; modules are imported on demand. An
experiment module is named for what it runs, never for a library module: ``mhatheory run train``
is :mod:`~mhatheory.experiments.learning_curve` (over :mod:`mhatheory.train`), ``stability`` is
:mod:`~mhatheory.experiments.stability_sweep` and ``symmetry`` is
:mod:`~mhatheory.experiments.symmetry_sweep`.
"""

from __future__ import annotations

import importlib

EXPERIMENTS = {
    "train": "mhatheory.experiments.learning_curve",
    "spectrum": "mhatheory.experiments.spectrum",
    "weak-convexity": "mhatheory.experiments.weak_convexity",
    "seq2seq": "mhatheory.experiments.seq2seq",
    "symmetry": "mhatheory.experiments.symmetry_sweep",
    "stability": "mhatheory.experiments.stability_sweep",
    "heads": "mhatheory.experiments.heads",
    "transformer-curvature": "mhatheory.experiments.transformer_curvature",
}


def load(name: str):
    """The experiment module for a CLI name (``Config`` and ``run`` inside)."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {sorted(EXPERIMENTS)}.")
    return importlib.import_module(EXPERIMENTS[name])
