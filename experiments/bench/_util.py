"""Benchmark helpers: wall-clock timing with a warm-up, a table printer, JSON output."""

from __future__ import annotations

import time
from pathlib import Path

import jax

from mhatheory import results


def block(x):
    return jax.block_until_ready(x)


def best_time(fn, repeats: int = 3) -> float:
    """Best-of-``repeats`` seconds of ``fn()`` after one warm-up call (compilation excluded)."""
    block(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        block(fn())
        times.append(time.perf_counter() - t0)
    return min(times)


def table(rows: list[dict], columns: list[str]) -> str:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    widths = {c: max(len(c), *(len(fmt(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.rjust(widths[c]) for c in columns)]
    lines += ["  ".join(fmt(r.get(c, "")).rjust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def write(name: str, rows: list[dict], extra: dict | None = None, quick: bool = False) -> Path:
    """``experiments/bench/results/{name}_{backend}.json`` with provenance (under
    ``results/quick/``, which is not rendered or committed, for a reduced ``--quick`` run)."""
    folder = Path(__file__).parent / "results" / ("quick" if quick else "")
    out = folder / f"{name}_{jax.default_backend()}.json"
    payload = {"benchmark": name, **results.provenance(), "rows": rows, **(extra or {})}
    results.write_json_atomic(out, payload)
    return out
