"""Results files: provenance metadata, JSON-safe conversion, atomic writes.

Every results file records the resolved config, the seed, package versions and the device, and
is written atomically (to a temporary file in the same folder, then ``os.replace``), so a failed
or killed run never leaves a half-written file behind.

In a multi-process run (``jax.distributed``) every process runs the same program and only
process 0 writes: on the others the writers below return the path without touching the file
system (the multi-controller convention; see :mod:`mhatheory.distributed`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
import tempfile
from collections.abc import Callable
from importlib import metadata as importlib_metadata
from pathlib import Path

import jax
import numpy as np

_PACKAGES = ("mhatheory", "jax", "jaxlib", "flax", "optax", "matfree", "numpy", "matplotlib")


def versions() -> dict:
    """Python and package versions (None for a package that is not installed)."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = None
    return out


def numerics() -> dict:
    """The settings that change computed numbers for the same config and code: float64 on or
    off (``MHATHEORY_X64``) and the default matmul precision. A resumed sweep reuses a cell
    only if they match (:mod:`mhatheory.experiments.sweep`)."""
    return {"x64": bool(jax.config.jax_enable_x64),
            "matmul_precision": str(jax.config.jax_default_matmul_precision)}


def device_info() -> dict:
    """Backend, devices, x64 and matmul precision settings, platform."""
    devs = jax.devices()
    return {
        "backend": jax.default_backend(),
        "devices": [str(d) for d in devs],
        "device_kind": devs[0].device_kind if devs else None,
        "count": len(devs),
        **numerics(),
        "platform": platform.platform(),
    }


def provenance(config=None, seed=None) -> dict:
    """Config, seed, versions, device and a UTC timestamp."""
    return {
        "config": to_jsonable(config),
        "seed": seed,
        "versions": versions(),
        "device": device_info(),
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def to_jsonable(obj):
    """Dataclasses, NamedTuples, numpy/JAX arrays and scalars to plain JSON values.

    Non-finite floats become the strings ``"nan"``, ``"inf"``, ``"-inf"`` (JSON has no NaN).
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple) and hasattr(obj, "_asdict"):
        return {k: to_jsonable(v) for k, v in obj._asdict().items()}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (jax.Array, np.ndarray, np.generic)):
        return to_jsonable(np.asarray(obj).tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else ("nan" if math.isnan(obj) else
                                               ("inf" if obj > 0 else "-inf"))
    if isinstance(obj, Path):
        return str(obj)
    return obj


def summary_table(summary, max_rows: int = 30) -> str:
    """A short two-column table of a run's summary for the terminal: every scalar field, the
    scalar entries of nested records one level down (``influence.spectral.cosine_median``),
    and a count in place of any list (its entries are in ``results.json``).

    >>> print(summary_table({"holds": True, "eps1": 0.0123456, "slopes": [1, 2, 3],
    ...                      "fit": {"slope": -1.02, "se": 0.04}}))
    holds      True
    eps1       0.0123456
    slopes     3 entries (results.json)
    fit.slope  -1.02
    fit.se     0.04
    """
    rows = []

    def show(v):
        return f"{v:.6g}" if isinstance(v, float) else str(v)

    def walk(prefix, v, depth):
        if isinstance(v, dict) and depth < 2:
            for k, w in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), w, depth + 1)
        elif isinstance(v, list):
            rows.append((prefix, f"{len(v)} entries (results.json)"))
        elif isinstance(v, dict):
            rows.append((prefix, f"{len(v)} fields (results.json)"))
        else:
            rows.append((prefix, show(v)))

    walk("", to_jsonable(summary), 0)
    if len(rows) > max_rows:
        rows = rows[:max_rows] + [("…", f"{len(rows) - max_rows} more rows in results.json")]
    width = max(len(k) for k, _ in rows) if rows else 0
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _file_mode() -> int:
    """The mode ``open()`` would give a new file: 0o666 less the process umask."""
    mask = os.umask(0o022)  # read the umask (the only portable way is to set it) and restore
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path, write: Callable[[str], None]) -> Path:
    """Create or replace ``path`` atomically; returns the path.

    ``write(tmp)`` writes the content to ``tmp``, a temporary file in the same folder whose name
    ends with ``path``'s suffix (so e.g. matplotlib infers the format). The file then gets the
    mode a plain ``open()`` would give (0o666 less the umask, so 0644 under the usual 022;
    ``tempfile.mkstemp`` creates 0600) and is renamed over ``path`` with ``os.replace``. On any
    error the temporary file is removed and ``path`` is left as it was. The one atomic writer
    behind :func:`write_text_atomic`, :func:`write_json_atomic`, :func:`save_figure_atomic`
    and the report pages. In a multi-process run only process 0 writes (module docstring).
    """
    path = Path(path)
    if jax.distributed.is_initialized() and jax.process_index() != 0:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}",
                               dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json_atomic(path, payload) -> Path:
    """Write ``payload`` as JSON to ``path`` atomically; returns the path. The payload is
    serialised before any file is created."""
    text = json.dumps(to_jsonable(payload), indent=2) + "\n"
    return write_text_atomic(path, text)


def save_figure_atomic(fig, path) -> Path:
    """Save a matplotlib figure atomically (PNG by suffix); closes the figure."""
    import matplotlib.pyplot as plt

    try:
        return write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight"))
    finally:
        plt.close(fig)


def check_out_dir(path, flag: str = "--out") -> Path:
    """Make sure ``path`` is a folder we can write into, before any work starts; returns it.

    Creates the folder (and its parents) when missing, then creates and removes a probe file
    in it, so a read-only file system or a missing permission is found too. Raises
    :class:`ValueError` naming ``flag`` (as the user typed it) and the fix when ``path`` is an
    existing file, lies under a file, or cannot be created or written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {str(path)!r} is an existing file, not a folder; name a folder "
                         "(new, or an existing one to add to) instead, or move the file away.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{flag} {str(path)!r}: cannot create this folder ({err.strerror or err})"
                         "; name a folder in a writable location.") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"{flag} {str(path)!r}: cannot write into this folder "
                         f"({err.strerror or err}); name a writable folder or fix its "
                         "permissions.") from None
    return path


def write_results(out_dir, experiment: str, config, seed, body: dict, figures=()) -> Path:
    """``out_dir/results.json`` = provenance + ``body`` + ``figures`` (the names of the files
    written beside it, which :func:`retire` removes with it), written atomically."""
    payload = {"experiment": experiment, **provenance(config, seed), **body,
               "figures": sorted(Path(f).name for f in figures)}
    return write_json_atomic(Path(out_dir) / "results.json", payload)


def retire(out_dir) -> None:
    """Remove the results a previous run left in ``out_dir``: its ``results.json`` first, then
    the files that file names under ``figures`` (files of this folder only). Every run calls it
    before its work starts, so a run that fails or is interrupted leaves no results rather than
    the previous run's looking like its own; the finished cells (``out_dir/cells``) stay for
    ``--resume``. In a multi-process run only process 0 removes, as only it writes."""
    if jax.distributed.is_initialized() and jax.process_index() != 0:
        return
    folder = Path(out_dir)
    path = folder / "results.json"
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except (OSError, ValueError):
        previous = None
    names = previous.get("figures") if isinstance(previous, dict) else None
    path.unlink(missing_ok=True)
    for name in names if isinstance(names, list) else ():
        if isinstance(name, str) and name and Path(name).name == name and name != "cells":
            file = folder / name
            if file.is_file():
                file.unlink()
