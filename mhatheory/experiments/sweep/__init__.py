"""Resumable sweeps: each finished cell is one JSON file written atomically; ``resume`` reuses
cells whose file holds the same cell config, so a killed sweep loses at most the cell in
progress, and a changed setting never reuses a stale cell (:mod:`._cells`). In a multi-process
run (``jax.distributed``) the cells are shared out among the processes (:mod:`._shared`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Iterable
from pathlib import Path

from mhatheory import distributed, results
from mhatheory.experiments.sweep._cells import (
    Cells,
    cell_config,
    cell_digest,
    run_local,
    selector_fields,
)
from mhatheory.experiments.sweep._shared import run_shared


def run_cells(out_dir, cells: Iterable[tuple[str, dict]], compute: Callable[[dict], dict],
              *, resume: bool, progress: bool, desc: str, config=None,
              ignore: Collection[str] | None = None, fingerprints: dict | None = None) -> Cells:
    """Compute (or, with ``resume``, load) every cell; returns their payloads in order.

    ``cells`` are ``(name, spec)`` pairs; ``compute(spec)`` returns the cell's result (a dict).
    ``config`` is the experiment's frozen dataclass config: each cell file stores
    :func:`cell_config` ``(config, ignore)`` next to its spec, and with ``resume`` a cell is
    reused only when both match the current ones; otherwise it is recomputed. ``fingerprints``
    (``{name: digest}``) join that config where it names what it does not hold (a user's model
    family or data by ``MODULE:FUNCTION``): a cell computed from other code or arrays is
    recomputed (the changed field ``fingerprints``). A corrupt cell
    file (bad JSON, missing keys) is named in a warning and recomputed. With ``resume``, one line
    on stderr says how many cells were reused, recomputed (config changed / corrupt) and newly
    computed; the same counts are in the result's ``info``.

    In a multi-process run (``jax.distributed``) the cells to compute are shared out among the
    processes (:func:`._shared.run_shared`): process 0 decides
    what to reuse and writes every cell file; every process returns all payloads.
    """
    cells = list(cells)
    folder = Path(out_dir) / "cells"
    want_config = cell_config(config, ignore)
    if fingerprints:
        want_config = {**(want_config or {}), "fingerprints": dict(fingerprints)}
    versions = results.versions()
    run = run_shared if distributed.process_count() > 1 else run_local
    out = run(folder, cells, compute, want_config=want_config, versions=versions, resume=resume,
              progress=progress, desc=desc)
    if resume and distributed.is_writer():
        counts, changed = out.info, out.info["changed_fields"]
        detail = f" ({', '.join(changed)})" if changed else ""
        print(f"{desc}: reused {counts['reused']}, recomputed {counts['recomputed_config_changed']}"
              f" (config changed{detail}), recomputed {counts['recomputed_corrupt']} (corrupt), "
              f"computed {counts['computed_new']} new", file=sys.stderr)
    return out


__all__ = ["Cells", "cell_config", "cell_digest", "run_cells", "selector_fields"]
