"""Benchmark: λmin in bounded memory, basis-free Lanczos against the stored Krylov basis.

Every run is a fresh Python process (so its peak resident memory is its own): build the Deora
data and parameters, then ``spectral.lambda_min(..., store_basis=...)`` twice on the same key,
the first call including compilation, the second timed. Reported per run: P, the Krylov size,
whether the basis was kept, λmin and its certified interval, HVPs, seconds (first call and
warm), the resident memory before the probe and the process's peak, and the peak's growth over
the memory before the probe (what the probe itself cost: compiled programs, HVP intermediates,
Lanczos vectors).

Three questions, answered by the rows:

* does the basis-free run give the stored-basis value (same certified interval) at the largest
  P where both fit, and what does it cost in time and HVPs (it replays the recurrence to form
  the Ritz vector: about twice the HVPs per cycle)?
* does its peak memory stay flat as the Krylov size grows, while the stored basis grows by
  ``krylov``·P·8 bytes?
* does λmin at P ≈ 10⁷ (Deora H = 64, d = 384: P = 9,461,760) run within this machine's memory?

    python experiments/bench/bench_bounded_memory.py [--quick]
    python experiments/bench/bench_bounded_memory.py --markdown-only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

#: (H, d, store_basis, krylov) per run; d = 384 keeps the HVP's FLOPs per parameter equal
RUNS = {
    "full": [(16, 384, True, 20), (16, 384, False, 20), (16, 384, True, 80), (16, 384, False, 80),
             (64, 384, False, 20), (64, 384, False, 80), (64, 384, True, 20)],
    "quick": [(2, 32, True, 10), (2, 32, False, 10), (2, 32, False, 30)],
}
DATA = {"full": dict(n=32, T=4, tol=1e-8, max_restarts=30),
        "quick": dict(n=16, T=4, tol=1e-8, max_restarts=30)}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(spec: dict) -> dict:
    """One run (in its own process): see the module docstring."""
    import jax

    from mhatheory import data, spectral
    from mhatheory.models import deora

    H, d, store, krylov = spec["H"], spec["d"], spec["store_basis"], spec["krylov"]
    mix = data.MixtureConfig(d=d, T=spec["T"], n=spec["n"])
    batch = data.sample(mix, jax.random.key(0))
    params = deora.init_params(jax.random.key(1), d, H)
    jax.block_until_ready(params)
    before = _rss_bytes()
    opts = dict(key=jax.random.key(2), krylov=krylov, tol=spec["tol"],
                max_restarts=spec["max_restarts"], store_basis=store,
                memory_budget_bytes=64 * 2**30)
    t0 = time.perf_counter()
    spectral.lambda_min(deora.loss_fn, params, batch, **opts)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = spectral.lambda_min(deora.loss_fn, params, batch, **opts)
    warm = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"H": H, "d": d, "P": deora.parameter_count(d, H), "krylov": krylov,
            "store_basis": bool(r.store_basis), "lambda_min": r.value,
            "interval": list(r.interval), "converged": bool(r.converged), "hvps": r.num_hvps,
            "restarts": r.restarts, "first_call_s": first, "seconds": warm,
            "rss_before_gb": before / 2**30, "peak_rss_gb": peak / 2**30,
            "probe_gb": (peak - before) / 2**30,
            "basis_gb": krylov * deora.parameter_count(d, H) * 8 / 2**30 if store else 0.0}


def run_all(size: str) -> list[dict]:
    rows = []
    for H, d, store, krylov in RUNS[size]:
        spec = {"H": H, "d": d, "store_basis": store, "krylov": krylov, **DATA[size]}
        proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                              capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"run {spec} failed:\n{proc.stderr[-3000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"P={row['P']:>10,} krylov={krylov:>3} store_basis={row['store_basis']!s:5} "
              f"λmin={row['lambda_min']:+.10e} hvps={row['hvps']:>4} {row['seconds']:7.1f} s "
              f"peak {row['peak_rss_gb']:.2f} GiB (probe {row['probe_gb']:+.2f})", flush=True)
        rows.append(row)
    return rows


def agreement(rows: list[dict]) -> list[dict]:
    """Basis-free against stored, per (P, krylov) where both ran: relative λ difference, the
    two intervals overlap, time and HVP ratios."""
    out = []
    for a in rows:
        if not a["store_basis"]:
            continue
        for b in rows:
            if b["P"] == a["P"] and b["krylov"] == a["krylov"] and not b["store_basis"]:
                out.append({"P": a["P"], "krylov": a["krylov"],
                            "rel_diff": abs(a["lambda_min"] - b["lambda_min"])
                            / abs(a["lambda_min"]),
                            "intervals_overlap": max(a["interval"][0], b["interval"][0])
                            <= min(a["interval"][1], b["interval"][1]),
                            "time_ratio": b["seconds"] / a["seconds"],
                            "hvp_ratio": b["hvps"] / a["hvps"],
                            "peak_saved_gb": a["peak_rss_gb"] - b["peak_rss_gb"]})
    return out


def markdown(path: Path) -> Path:
    from mhatheory import results

    res = json.loads(path.read_text())
    lines = ["## Lanczos in bounded memory: λmin without the Krylov basis", "",
             f"`python experiments/bench/bench_bounded_memory.py` on "
             f"{res['machine']['cpu_cores']} CPU "
             f"cores ({res['machine']['memory_gb']:.0f} GiB; {res['device']['backend']}, "
             f"float64), {res['created_utc'][:10]}; load average "
             f"{res['machine']['loadavg_before'][0]:.1f} before / "
             f"{res['machine']['loadavg_after'][0]:.1f} after. Deora loss, n = "
             f"{res['data']['n']}, T = {res['data']['T']}, tol = {res['data']['tol']:g}; each "
             "row a fresh process, λmin twice on the same key (the second call timed).", "",
             "| P | Krylov | basis | λmin | HVPs | s (warm) | s (1st call) | peak RSS GiB | "
             "probe GiB | basis GiB |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        lines.append(f"| {r['P']:,} | {r['krylov']} | {'stored' if r['store_basis'] else 'free'}"
                     f" | {r['lambda_min']:+.10e} | {r['hvps']} | {r['seconds']:.1f} | "
                     f"{r['first_call_s']:.1f} | {r['peak_rss_gb']:.2f} | {r['probe_gb']:.2f} | "
                     f"{r['basis_gb']:.2f} |")
    lines += ["", "Basis-free against stored (same P, Krylov size):", "",
              "| P | Krylov | rel. λ difference | intervals overlap | time × | HVPs × | "
              "peak saved GiB |", "|---:|---:|---:|---|---:|---:|---:|"]
    for a in res["agreement"]:
        lines.append(f"| {a['P']:,} | {a['krylov']} | {a['rel_diff']:.1e} | "
                     f"{a['intervals_overlap']} | {a['time_ratio']:.2f} | {a['hvp_ratio']:.2f} | "
                     f"{a['peak_saved_gb']:.2f} |")
    lines += ["", "'probe GiB' is the peak resident memory minus the memory before the first "
              "probe (data and parameters built): compiled programs, HVP intermediates and the "
              "Lanczos vectors; 'basis GiB' is krylov·P·8 bytes, what the stored basis alone "
              "needs."]
    return results.write_text_atomic(path.with_name("bounded_memory.md"), "\n".join(lines) + "\n")


def main(size: str) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    import _util

    load = os.getloadavg()
    rows = run_all(size)
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    extra = {"data": DATA[size], "agreement": agreement(rows),
             "machine": {"cpu_cores": os.cpu_count(), "memory_gb": mem, "loadavg_before": load,
                         "loadavg_after": os.getloadavg()}}
    print(_util.table(extra["agreement"], ["P", "krylov", "rel_diff", "intervals_overlap",
                                           "time_ratio", "hvp_ratio", "peak_saved_gb"]))
    path = _util.write("bounded_memory", rows, extra, quick=size == "quick")
    print(f"wrote {path}" + ("" if size == "quick" else f" and {markdown(path)}"))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    ap.add_argument("--markdown-only", action="store_true",
                    help="only write bounded_memory.md again from the last full run's JSON")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        import jax

        jax.config.update("jax_enable_x64", True)
        print(json.dumps(worker(json.loads(a.worker))))
    elif a.markdown_only:
        print(f"wrote {markdown(Path(__file__).parent / 'results' / 'bounded_memory_cpu.json')}")
    else:
        main("quick" if a.quick else "full")
