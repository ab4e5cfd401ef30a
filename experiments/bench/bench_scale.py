"""Benchmark: past one process and one device, each ratio measured in the same run.

A. The stability sweep (``mhatheory run stability``, wall clock from launch to exit, compilation
   included since every sweep pays it) as 1 process x 1 host device, 1 process x 4 host devices
   and 2 processes x 2 host devices (``jax.distributed`` with CPU collectives, cells shared out
   by the coordination service); the records of the three runs are compared.
B. λmin of the Deora Hessian by restarted Lanczos with the sample axis of the data on 1 device
   and sharded over 4 host devices (:func:`mhatheory.distributed.shard_samples`), best of
   ``repeats`` after a warm-up (compilation excluded); the two values are compared.

Host devices share the machine's cores: on a machine with C cores, more devices or processes than
C cannot go faster than C times, and XLA already spreads one device's large operations over the
cores. The table says how many cores there were and how loaded the machine was.

    python experiments/bench/bench_scale.py [--quick]      # runs both, writes JSON and scale.md
    python experiments/bench/bench_scale.py --markdown-only   # scale.md again from the JSON
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import argparse  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import _util  # noqa: E402

from mhatheory import data, distributed, results, spectral  # noqa: E402
from mhatheory.models import deora  # noqa: E402

# cells that share n and H (each process compiles one set of programs, plus a GD scan per K),
# sized so that the retrainings, not the compilation, take most of a cell
SWEEP = {"full": ["--n-grid", "256", "--heads-grid", "4",
                  "--steps-grid", "2000,3000,4000,5000", "--seeds", "2", "--subset", "32",
                  "--num-test", "2000", "--influence-samples", "2"],
         "quick": ["--n-grid", "8", "--heads-grid", "1", "--steps-grid", "4,6", "--seeds", "2",
                   "--subset", "4", "--num-test", "20", "--d", "4", "--T", "4",
                   "--num-irrelevant", "2", "--influence-samples", "1"]}
PROBE = {"full": dict(n=4096, d=16, T=8, heads=8, repeats=3),
         "quick": dict(n=256, d=6, T=4, heads=2, repeats=1)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(argv, devices):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "OMPI_"))}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return subprocess.Popen([sys.executable, "-m", "mhatheory.cli", *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _sweep(out: Path, sweep: list, processes: int, devices: int) -> float:
    """Seconds from launch until every process has exited (each must succeed)."""
    base = ["run", "stability", "--out", str(out), "--no-progress", *sweep]
    t0 = time.perf_counter()
    if processes == 1:
        procs = [_launch(base, devices)]
    else:
        flags = ["--coordinator", f"127.0.0.1:{_free_port()}",
                 "--num-processes", str(processes)]
        procs = [_launch([*base, *flags, "--process-id", str(i)], devices)
                 for i in range(processes)]
    errs = [p.communicate()[1] for p in procs]
    seconds = time.perf_counter() - t0
    for p, err in zip(procs, errs, strict=True):
        if p.returncode:
            raise SystemExit(f"stability sweep failed ({processes}x{devices}):\n{err[-3000:]}")
    return seconds


def _max_rel(a, b) -> float:
    if isinstance(a, dict):
        return max([_max_rel(a[k], b[k]) for k in a], default=0.0)
    if isinstance(a, list):
        return max([_max_rel(x, y) for x, y in zip(a, b, strict=True)], default=0.0)
    if isinstance(a, float):
        return abs(a - b) / max(abs(a), abs(b), 1e-300)
    return 0.0 if a == b else float("inf")


def bench_sweep(size: str) -> tuple[list[dict], dict]:
    rows, records = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for processes, devices in ((1, 1), (1, 4), (2, 2)):
            out = Path(tmp) / f"p{processes}d{devices}"
            seconds = _sweep(out, SWEEP[size], processes, devices)
            res = json.loads((out / "results.json").read_text())
            records[(processes, devices)] = res["records"]
            rows.append({"part": "A stability sweep", "route": f"{processes} "
                         f"process{'es' if processes > 1 else ''} x "
                         f"{devices} host device{'s' if devices > 1 else ''}",
                         "seconds": seconds, "cells": len(res["records"])})
    for r in rows:
        r["speedup"] = rows[0]["seconds"] / r["seconds"]
    ref = records[(1, 1)]
    diff = {f"{p}x{d}": _max_rel(ref, rec) for (p, d), rec in records.items()}
    return rows, {"sweep_flags": SWEEP[size], "records_max_rel_diff_vs_1x1": diff}


def bench_probe(size: str) -> tuple[list[dict], dict]:
    cfg = PROBE[size]
    devices = jax.local_devices()[:4]
    mix = data.MixtureConfig(d=cfg["d"], T=cfg["T"], n=cfg["n"])
    batch = data.sample(mix, jax.random.key(0))
    params = deora.init_params(jax.random.key(1), cfg["d"], cfg["heads"])
    one = jax.device_put(batch, devices[0])
    four = distributed.shard_samples(batch, devices)
    key = jax.random.key(2)
    out = {}

    def probe(b):
        res = spectral.lambda_min(deora.loss_fn, params, b, key=key, krylov=40)
        out[len(jax.tree.leaves(b)[0].sharding.device_set)] = res
        return res.value

    rows = []
    for name, b in (("1 host device", one), (f"{len(devices)} host devices (data-parallel)",
                                             four)):
        seconds = _util.best_time(lambda b=b: probe(b), repeats=cfg["repeats"])
        rows.append({"part": "B λmin", "route": name, "seconds": seconds,
                     "hvps": out[len(jax.tree.leaves(b)[0].sharding.device_set)].num_hvps})
    for r in rows:
        r["speedup"] = rows[0]["seconds"] / r["seconds"]
    a, b = out[1], out[len(devices)]
    P = deora.parameter_count(cfg["d"], cfg["heads"])
    return rows, {"probe": {**cfg, "P": P, "lambda_min_1": a.value,
                            f"lambda_min_{len(devices)}": b.value,
                            "rel_diff": abs(a.value - b.value) / abs(a.value)}}


def markdown(path: Path) -> Path:
    """``scale.md`` next to the JSON: the table, the machine and its load, the agreement."""
    res = json.loads(path.read_text())
    m, probe = res["machine"], res["probe"]
    lines = [
        "## Scale: several processes and data-parallel probes",
        "",
        f"`python experiments/bench/bench_scale.py` on {m['cpu_cores']} CPU cores "
        f"({res['device']['backend']}, float64), {res['created_utc'][:10]}; load average "
        f"{m['loadavg_before'][0]:.1f} before / {m['loadavg_after'][0]:.1f} after the run "
        "(other jobs shared the cores, so the ratios are what this machine gave, not a limit). "
        "Every row of a part ran in the same invocation, one after another.",
        "",
        "| part | route | seconds | speedup |",
        "|---|---|---:|---:|",
    ]
    for r in res["rows"]:
        lines.append(f"| {r['part']} | {r['route']} | {r['seconds']:.3g} | {r['speedup']:.2f}× |")
    diff = res["records_max_rel_diff_vs_1x1"]
    lines += [
        "",
        f"A: `mhatheory run stability {' '.join(res['sweep_flags'])}` "
        f"({res['rows'][0]['cells']} cells), wall clock from launch to exit, compilation "
        "included (each process compiles the programs of the cells it computes). Records "
        "against 1 × 1, largest relative difference: "
        + ", ".join(f"{k} {v:.1e}" for k, v in diff.items()) + ".",
        f"B: λmin of the Deora Hessian (n = {probe['n']:,}, d = {probe['d']}, T = {probe['T']}, "
        f"H = {probe['heads']}, P = {probe['P']:,}), restarted Lanczos, best of "
        f"{probe['repeats']} after a warm-up; relative difference between the two values "
        f"{probe['rel_diff']:.1e}.",
        "",
        "Host devices and processes share the same cores: beyond the core count nothing can go "
        "faster, and XLA already spreads one device's large operations over the cores. Two "
        "processes x 2 devices and 1 process x 4 devices shard the retrainings over the same 4 "
        "host devices; what the second process adds is, probably, overlap of the work that a "
        "process does on one thread (tracing and compiling, small eager operations, the "
        "influence solves), which is a large part of a cell at this size.",
    ]
    return results.write_text_atomic(path.with_name("scale.md"), "\n".join(lines) + "\n")


def main(quick: bool) -> None:
    size = "quick" if quick else "full"
    load = os.getloadavg()
    rows_b, extra_b = bench_probe(size)
    rows_a, extra_a = bench_sweep(size)
    rows = rows_a + rows_b
    machine = {"cpu_cores": os.cpu_count(), "loadavg_before": load,
               "loadavg_after": os.getloadavg()}
    print(f"backend {jax.default_backend()}, {os.cpu_count()} cores, load average "
          f"{load[0]:.1f} before / {machine['loadavg_after'][0]:.1f} after")
    print(_util.table(rows, ["part", "route", "seconds", "speedup", "cells", "hvps"]))
    print(f"stability records, max relative difference against 1x1: "
          f"{extra_a['records_max_rel_diff_vs_1x1']}")
    print(f"λmin, relative difference 1 vs 4 devices: {extra_b['probe']['rel_diff']:.2g} "
          f"(P = {extra_b['probe']['P']:,}, n = {extra_b['probe']['n']})")
    path = _util.write("scale", rows, {**extra_a, **extra_b, "machine": machine}, quick)
    print(f"wrote {path} and {markdown(path)}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    ap.add_argument("--markdown-only", action="store_true",
                    help="only write scale.md again from the last full run's JSON")
    a = ap.parse_args()
    if a.markdown_only:
        print(f"wrote {markdown(Path(__file__).parent / 'results' / 'scale_cpu.json')}")
    else:
        main(a.quick)
