"""Benchmark: n = 256 leave-one-out retrainings of GD on the Deora model, three ways in one run:
a Python loop of jitted runs (baseline), one vmapped program on one device, and the vmapped
program sharded over 4 host devices (``--xla_force_host_platform_device_count=4``).

    python experiments/bench/bench_stability.py [--steps 100]
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import _util  # noqa: E402

from mhatheory import data, stability, train  # noqa: E402
from mhatheory.models import deora  # noqa: E402


def main(steps: int, n: int) -> None:
    mix = data.MixtureConfig(d=8, T=6, n=n)
    batch = data.sample(mix, jax.random.key(0))
    params0 = deora.init_params(jax.random.key(1), 8, 4)
    _, base = stability.base_trajectory(deora.loss_fn, params0, batch, steps, 1.0)
    idx = stability.loo_indices(n, range(n))
    one = [jax.devices()[0]]

    def loop():
        out = None
        for rows in idx:
            out = train.gd(deora.loss_fn, params0, data.Batch(batch.X[rows], batch.y[rows]),
                           steps=steps, lr=1.0).final_params
        return out

    def vmapped():
        return stability.retrain(deora.loss_fn, params0, batch, idx, steps=steps, lr=1.0,
                                 base_traj=base, chunk=n, devices=one).params

    def sharded():
        return stability.retrain(deora.loss_fn, params0, batch, idx, steps=steps, lr=1.0,
                                 base_traj=base, chunk=n).params

    t_loop = _util.best_time(loop, repeats=1)
    t_vmap = _util.best_time(vmapped, repeats=2)
    t_shard = _util.best_time(sharded, repeats=2)
    diff = float(np.max(np.abs(np.asarray(vmapped()["W"]) - np.asarray(sharded()["W"]))))
    rows = [{"route": "python loop of jitted runs", "seconds": t_loop, "speedup": 1.0},
            {"route": "vmapped, 1 device", "seconds": t_vmap, "speedup": t_loop / t_vmap},
            {"route": f"vmapped, sharded over {len(jax.devices())} host devices",
             "seconds": t_shard, "speedup": t_loop / t_shard}]
    print(f"n={n} leave-one-out retrainings, K={steps} steps, H=4, d=8, T=6, float64, "
          f"backend {jax.default_backend()}")
    print(_util.table(rows, ["route", "seconds", "speedup"]))
    print(f"max |θ_vmapped − θ_sharded| = {diff:.2g}")
    print(f"wrote {_util.write('stability', rows, {'n': n, 'steps': steps, 'diff': diff})}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--n", type=int, default=256)
    a = ap.parse_args()
    main(a.steps, a.n)
