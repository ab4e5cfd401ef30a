"""Benchmark: scanned GD (``mhatheory.train.gd``) against a Python loop over a jitted step.

Problem: Deora MHA with H=8, d=16, T=8 on n=256 tokenized-mixture samples, float64. Both
routes run the same number of steps from the same θ_0 in this process; the ratio is what counts.

    python experiments/bench/bench_train.py [--steps 3000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import _util  # noqa: E402

from mhatheory import data, train  # noqa: E402
from mhatheory.models import deora  # noqa: E402


def main(steps: int) -> None:
    mixture = data.MixtureConfig(d=16, T=8, n=256)
    batch = data.sample(mixture, jax.random.key(0))
    params0 = deora.init_params(jax.random.key(1), 16, 8)
    lr = 1.0

    def scanned():
        return train.gd(deora.loss_fn, params0, batch, steps=steps, lr=lr).final_params

    opt, step = train.make_step(deora.loss_fn, lr)
    jstep = jax.jit(step)

    def looped():
        p, s = params0, opt.init(params0)
        for _ in range(steps):
            p, s, _, _ = jstep(p, s, batch)
        return p

    t_scan = _util.best_time(scanned, repeats=2)
    t_loop = _util.best_time(looped, repeats=2)
    traj = train.gd(deora.loss_fn, params0, batch, steps=steps, lr=lr)
    diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
               for a, b in zip(jax.tree.leaves(scanned()), jax.tree.leaves(looped()), strict=True))
    rows = [
        {"route": "lax.scan (mhatheory.train.gd)", "steps": steps, "seconds": t_scan,
         "steps_per_s": steps / t_scan, "speedup_vs_loop": t_loop / t_scan},
        {"route": "python loop over jitted step", "steps": steps, "seconds": t_loop,
         "steps_per_s": steps / t_loop, "speedup_vs_loop": 1.0},
    ]
    print(_util.table(rows, ["route", "steps", "seconds", "steps_per_s", "speedup_vs_loop"]))
    print(f"final loss {traj.loss[-1]:.4g} (target < 0.05): "
          f"{'OK' if traj.loss[-1] < 0.05 else 'NOT REACHED'}; max |θ_scan − θ_loop| = {diff:.2g}")
    out = _util.write("train", rows, {"final_loss": float(traj.loss[-1]),
                                      "max_param_diff_scan_vs_loop": diff,
                                      "problem": {"H": 8, "d": 16, "T": 8, "n": 256, "lr": lr}})
    print(f"wrote {out}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    main(ap.parse_args().steps)
