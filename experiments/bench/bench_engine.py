r"""Benchmark: the Lanczos recurrence in NumPy on the host against its compiled step, warm.

Every row is one Deora model (the peers' grid and two sizes between its last points, init
point, float64, n = 64 samples) and one
probe (λmin, λmax) at the default options, run with ``engine="host"`` and
``engine="compiled"`` on one linearisation, from the same key (so the same start vector, the
same steps and the same HVPs): median wall time of ``--repeats`` interleaved calls after a
warm-up that compiles everything. ``host/compiled`` < 1: the host engine is faster. The
crossover sets ``spectral.HOST_MAX_PARAMS``, the largest P that ``engine="auto"`` runs on the
host on a CPU. The first call (compilation included) is ``bench_cold.py``'s.

    python experiments/bench/bench_engine.py [--quick] [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).parent))
from _util import table, write  # noqa: E402

from mhatheory import data, spectral  # noqa: E402
from mhatheory.models import deora  # noqa: E402

#: (d, H): P = H(d² + d) = 2,176; 8,448; 133,120; 1,056,768 (bench_peers.py's grid) and, between
#: its last two points where the engines cross over, 266,240 and 446,976
GRID = [(16, 8), (32, 8), (64, 32), (64, 64), (96, 48), (128, 64)]
ENGINES = ("host", "compiled")


def row(d: int, H: int, which: str, repeats: int) -> dict:
    mix = data.MixtureConfig(d=d, T=8, n=64, num_irrelevant=min(4, d - 2))
    batch = data.sample(mix, jax.random.key(0))
    params = deora.init_params(jax.random.key(1), d, H)
    op = spectral.linearise(deora.loss_fn, params, batch)
    key = jax.random.key(2)
    probes = {e: spectral.Lanczos(which=which, engine=e) for e in ENGINES}
    results = {e: probes[e](op, key=key)[0] for e in ENGINES}       # warm-up: compiles
    times = {e: [] for e in ENGINES}
    for _ in range(repeats):                                         # interleaved rounds
        for e in ENGINES:
            t0 = time.perf_counter()
            probes[e](op, key=key)
            times[e].append(time.perf_counter() - t0)
    med = {e: statistics.median(times[e]) for e in ENGINES}
    host, comp = results["host"], results["compiled"]
    return {"P": op.P, "probe": f"lambda_{'min' if which == 'smallest' else 'max'}",
            "hvps": host.num_hvps, "hvps_compiled": comp.num_hvps,
            "host_s": med["host"], "compiled_s": med["compiled"],
            "host/compiled": med["host"] / med["compiled"],
            "ms_per_hvp_host": 1e3 * med["host"] / host.num_hvps,
            "ms_per_hvp_compiled": 1e3 * med["compiled"] / comp.num_hvps,
            "value_difference": abs(host.value - comp.value)}


def main(quick: bool, repeats: int) -> None:
    grid = GRID[:2] if quick else GRID
    rows = [row(d, H, which, repeats) for d, H in grid for which in ("smallest", "largest")]
    cols = ["P", "probe", "hvps", "hvps_compiled", "host_s", "compiled_s", "host/compiled",
            "ms_per_hvp_host", "ms_per_hvp_compiled", "value_difference"]
    print(table(rows, cols))
    print("wrote", write("engine", rows, {"repeats": repeats,
                                          "host_max_params": spectral.HOST_MAX_PARAMS},
                         quick=quick))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the two smallest models only")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per engine (median)")
    args = ap.parse_args()
    main(args.quick, args.repeats)
