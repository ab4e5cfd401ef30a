"""Benchmark: what ``spectral.track`` costs against the GD training it watches.

GD (``train.gd``, ``STEPS`` full-batch steps on the Deora loss) stores θ every k steps
(k = 10, 100); ``spectral.track`` then probes λmin and λmax (default Lanczos options) at every
stored θ, each probe warm-started from the previous probe's eigenvector (the default) or from
a random vector (``warm_start=False``). Per (P, k, warm start): the training's seconds (the
recording run, best of 3 after a compiling call), the probing's seconds (best of 2 after a
first call, whose time, compilation included, is ``first_s``), their ratio, and the mean HVPs
per probe.

    python experiments/bench/bench_track.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import _util  # noqa: E402

from mhatheory import data, spectral, train  # noqa: E402
from mhatheory.models import deora  # noqa: E402

GRID = [(32, 8), (64, 16)]          # P = 8,448 and 66,560
EVERY = [10, 100]
STEPS, LR = 1_000, 1.0
N, T, SEED = 64, 8, 0


def timed(fn, repeats):
    """(first call's seconds, best of ``repeats`` further calls, last result)."""
    t0 = time.perf_counter()
    out = _util.block(fn())
    first = time.perf_counter() - t0
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = _util.block(fn())
        best = min(best, time.perf_counter() - t0)
    return first, best, out


def rows_for(d, H):
    mix = data.MixtureConfig(d=d, T=T, n=N, num_irrelevant=min(4, d - 2))
    batch = data.sample(mix, jax.random.key(SEED))
    params0 = deora.init_params(jax.random.key(SEED + 1), d, H)
    P = deora.parameter_count(d, H)
    rows = []
    for k in EVERY:
        record = list(range(0, STEPS + 1, k))

        def run_gd(record=record):
            return train.gd(deora.loss_fn, params0, batch, steps=STEPS, lr=LR,
                            record_steps=record).params_at

        _, t_train, params_at = timed(run_gd, 3)
        for warm in (True, False):
            def probe(warm=warm, params_at=params_at, record=record):
                return spectral.track(deora.loss_fn, params_at, batch, steps=record,
                                      key=jax.random.key(SEED + 2), warm_start=warm)

            first, t_probe, recs = timed(probe, 2)
            hvps = [r[f"{n}_hvps"] for r in recs for n in ("lambda_min", "lambda_max")]
            conv = all(r[f"{n}_converged"] for r in recs for n in ("lambda_min", "lambda_max"))
            rows.append({"P": P, "steps": STEPS, "every": k, "probes": 2 * len(record),
                         "warm_start": warm, "train_s": t_train, "track_s": t_probe,
                         "track_over_train": t_probe / t_train,
                         "hvps_per_probe": float(np.mean(hvps)), "all_converged": conv,
                         "first_s": first})
            print(f"done P={P} every={k} warm={warm}", flush=True)
    return rows


def main(quick: bool) -> None:
    rows = []
    for d, H in GRID[:1] if quick else GRID:
        rows += rows_for(d, H)
    print(_util.table(rows, list(rows[0])))
    extra = {"config": {"grid": GRID, "every": EVERY, "steps": STEPS, "lr": LR, "n": N,
                        "T": T, "which": ["smallest", "largest"]}, "seed": SEED}
    print(f"wrote {_util.write('track', rows, extra, quick=quick)}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only P = 8,448")
    main(ap.parse_args().quick)
