"""Results files: provenance metadata, JSON-safe conversion, atomic writes.

Every results file records the resolved config, the seed, package versions and the device, and
is written atomically (to a temporary file in the same folder, then ``os.replace``), so a failed
or killed run never leaves a half-written file behind.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
import tempfile
from importlib import metadata as importlib_metadata
from pathlib import Path

import jax
import numpy as np

_PACKAGES = ("mhatheory", "jax", "jaxlib", "flax", "optax", "matfree", "numpy", "matplotlib")


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_info() -> dict:
    devs = jax.devices()
    return {
        "backend": jax.default_backend(),
        "devices": [str(d) for d in devs],
        "device_kind": devs[0].device_kind if devs else None,
        "count": len(devs),
        "x64": bool(jax.config.jax_enable_x64),
        "matmul_precision": str(jax.config.jax_default_matmul_precision),
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


def write_json_atomic(path, payload) -> Path:
    """Write ``payload`` as JSON to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(to_jsonable(payload), f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_figure_atomic(fig, path) -> Path:
    """Save a matplotlib figure atomically (PNG by suffix); closes the figure."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return path


def write_results(out_dir, experiment: str, config, seed, body: dict) -> Path:
    """``out_dir/results.json`` = provenance + ``body``, written atomically."""
    payload = {"experiment": experiment, **provenance(config, seed), **body}
    return write_json_atomic(Path(out_dir) / "results.json", payload)
