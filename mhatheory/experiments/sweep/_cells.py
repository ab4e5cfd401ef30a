"""Resumable sweeps: each finished cell is one JSON file written atomically; ``resume`` reuses
cells whose file holds the same cell config, so a killed sweep loses at most the cell in
progress, and a changed setting never reuses a stale cell.

The numerics settings (:func:`mhatheory.results.numerics`: float64 on or off, matmul
precision) count as config: a sweep begun with ``MHATHEORY_X64=0`` and resumed without it
recomputes its float32 cells instead of mixing them into a float64 result.

A cell file holds ``cell`` (its name), ``spec`` (what distinguishes it from its siblings, e.g.
``{"heads": 4, "seed": 1}``), ``config`` (every experiment config field that can change the
cell's result, see :func:`cell_config`), ``versions`` (:func:`mhatheory.results.versions`, the
package version included; recorded, not compared), ``result_keys`` and the result itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from collections.abc import Callable, Collection
from pathlib import Path

from tqdm.auto import tqdm

from mhatheory import _numerics, _validate, results

_META = ("cell", "spec", "config", "versions", "result_keys")


def selector_fields(config) -> set[str]:
    """The config fields that only select *which* cells exist: every field whose name ends in
    ``_grid`` (``heads_grid``, ``n_grid``, ...) and ``seeds`` (the number of seeds). Changing
    them adds or drops cells but leaves the others valid."""
    return {f.name for f in dataclasses.fields(config)
            if f.name.endswith("_grid") or f.name == "seeds"}


def cell_config(config, ignore: Collection[str] | None = None) -> dict | None:
    """The part of an experiment's frozen dataclass ``config`` that a cell's result depends on,
    as JSON values: every field except those in ``ignore`` (default :func:`selector_fields`),
    and ``numerics`` (:func:`mhatheory.results.numerics`, the precision settings).
    An experiment whose cells do depend on a selector (stability averages each cell over
    ``seeds``) or that has fields no cell reads (weak-convexity's ``convergence_*``) passes its
    own ``ignore``; when in doubt keep a field (a needless recompute, never a stale cell)."""
    if config is None:
        return None
    ignore = selector_fields(config) if ignore is None else set(ignore)
    return {**{f.name: results.to_jsonable(getattr(config, f.name))
               for f in dataclasses.fields(config) if f.name not in ignore},
            "numerics": results.numerics()}


def cell_digest(config, spec: dict, ignore: Collection[str] | None = None) -> str:
    """A short hash of (cell config, spec): a name for state that must not outlive a config
    change (e.g. mid-training checkpoints)."""
    text = json.dumps([cell_config(config, ignore), results.to_jsonable(spec)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class Cells(list):
    """The cell payloads in order (a list), with ``info``: how many cells were ``reused``,
    ``recomputed_config_changed``, ``recomputed_corrupt`` and ``computed_new``, and
    ``changed_fields`` (the config/spec keys that differed)."""

    info: dict


def _load(path: Path, name: str) -> tuple[dict | None, str | None]:
    """The payload of a cell file, or ``(None, why it is corrupt)``."""
    try:
        payload = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"unreadable JSON ({err})"
    if not isinstance(payload, dict):
        return None, "not a JSON object"
    # files written before configs were recorded lack config/versions/result_keys: those are
    # not corrupt, their config is unknown (see run_cells)
    missing = [k for k in ("cell", "spec") if k not in payload]
    result_keys = payload.get("result_keys", [])
    if not missing and isinstance(result_keys, list):
        missing = [k for k in result_keys if k not in payload]
    if missing:
        return None, f"missing keys {missing}"
    if payload["cell"] != name:
        return None, f"names cell {payload['cell']!r}"
    return payload, None


def _changed(stored: dict, want: dict) -> list[str]:
    keys = sorted(set(stored) | set(want))
    return [k for k in keys if stored.get(k, _changed) != want.get(k, _changed)]


def _payload(name: str, spec: dict, want_config, versions: dict, result: dict) -> dict:
    clash = set(result) & set(_META)
    if clash:
        raise ValueError(f"cell results may not use the keys {sorted(clash)}.")
    return results.to_jsonable({"cell": name, "spec": spec, "config": want_config,
                                "versions": versions, "result_keys": sorted(result), **result})


def _plan(folder: Path, cells, want_config, resume: bool):
    """Which cells to reuse (``{name: payload}``) and which to compute (``[(name, spec)]``),
    with the counts and changed fields that :func:`run_cells` reports."""
    counts = dict.fromkeys(("reused", "recomputed_config_changed", "recomputed_corrupt",
                            "computed_new"), 0)
    changed_fields: set[str] = set()
    reused, todo = {}, []
    for name, spec in cells:
        path = folder / f"{name}.json"
        want_spec = results.to_jsonable(spec)
        why = "computed_new"
        if resume and path.exists():
            payload, corrupt = _load(path, name)
            if corrupt:
                warnings.warn(f"cell file {path} is corrupt ({corrupt}); recomputing it.",
                              RuntimeWarning, stacklevel=_validate.user_stacklevel())
                why = "recomputed_corrupt"
            else:
                stored_spec = payload["spec"]
                diff = (_changed(stored_spec, want_spec) if isinstance(stored_spec, dict)
                        else ["spec"])
                if want_config is not None:
                    stored = payload.get("config")
                    diff += (_changed(stored, want_config) if isinstance(stored, dict)
                             else ["config (not recorded)"])
                if not diff:
                    counts["reused"] += 1
                    reused[name] = payload
                    continue
                changed_fields.update(diff)
                why = "recomputed_config_changed"
        counts[why] += 1
        todo.append((name, spec))
    return reused, todo, {**counts, "changed_fields": sorted(changed_fields)}


def run_local(folder: Path, cells: list, compute: Callable[[dict], dict], *, want_config,
              versions: dict, resume: bool, progress: bool, desc: str) -> Cells:
    """:func:`mhatheory.experiments.sweep.run_cells` in one process: plan, then compute the
    remaining cells in order, writing each file atomically as it finishes."""
    folder.mkdir(parents=True, exist_ok=True)
    reused, todo, info = _plan(folder, cells, want_config, resume)
    done = dict(reused)
    for name, spec in tqdm(todo, desc=desc, unit="cell", disable=not progress,
                           initial=len(reused), total=len(cells)):
        payload = _payload(name, spec, want_config, versions, compute(spec))
        results.write_json_atomic(folder / f"{name}.json", payload)
        done[name] = payload
        _numerics.relieve_code_mappings()
    out = Cells(done[name] for name, _ in cells)
    out.info = info
    return out
