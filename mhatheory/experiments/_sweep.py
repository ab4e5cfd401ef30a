"""Resumable sweeps: each finished cell is one JSON file written atomically; ``resume`` skips
cells whose file exists, so a killed sweep loses at most the cell in progress."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from tqdm.auto import tqdm

from mhatheory import results


def run_cells(out_dir, cells: Iterable[tuple[str, dict]], compute: Callable[[dict], dict],
              *, resume: bool, progress: bool, desc: str) -> list[dict]:
    """Compute (or, with ``resume``, load) every cell; returns their payloads in order."""
    cells = list(cells)
    folder = Path(out_dir) / "cells"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, spec in tqdm(cells, desc=desc, unit="cell", disable=not progress):
        path = folder / f"{name}.json"
        if resume and path.exists():
            out.append(json.loads(path.read_text()))
            continue
        payload = results.to_jsonable({"cell": name, "spec": spec, **compute(spec)})
        results.write_json_atomic(path, payload)
        out.append(payload)
    return out
