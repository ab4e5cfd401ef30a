"""Benchmark: compile seconds of one ``transformer-curvature`` cell (one model structure).

Each source tree (this checkout by default; ``--tree DIR`` adds another checkout, e.g. an older
commit in a ``git worktree``) runs the same one-cell sweep (H = 4, one layer, fixed d_model,
one seed, 30 AdamW steps, its probes) in a fresh process with the persistent
compilation cache off, and reports the wall time, the seconds XLA spent compiling (JAX's
``backend_compile`` events) and the programs that took longest.

    python experiments/bench/bench_curvature_compile.py [--tree /path/to/old/checkout]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CELL = """
import importlib, json, tempfile, time
from collections import defaultdict
import jax
seconds, count = defaultdict(float), defaultdict(int)
def listener(event, duration, **kw):
    if event == "/jax/core/compile/backend_compile_duration":
        seconds[kw.get("fun_name", "?")] += duration
        count[kw.get("fun_name", "?")] += 1
jax.monitoring.register_event_duration_secs_listener(listener)
import mhatheory
for name in ("mhatheory.experiments.transformer_curvature.experiment",
             "mhatheory.experiments.transformer_curvature"):
    try:
        mod = importlib.import_module(name)
        break
    except ModuleNotFoundError:
        continue
import dataclasses
fields = {f.name for f in dataclasses.fields(mod.Config)}
# the one-cell sweep in every generation of the config (fixed steps, or train-until-learned;
# one small late probe batch)
kw = dict(heads_grid=(4,), layers_grid=(1,), scaling_grid=("fixed_d_model",), seeds=1,
          num_train=200, probe_batch=16, batch=32, warmup=2)
kw.update(dict(steps=30, early_step=5) if "steps" in fields else
          dict(tasks=("addition",), d_model=16, num_val=50, num_test=50,
               max_steps=30, eval_every=5, lr_grid=(1e-2,), loss_levels=(1.5,)))
kw.update(dict(small_probe_batch=8) if "small_probe_batch" in fields else
          dict(late_probe_batches=(8,)) if "late_probe_batches" in fields else {})
cfg = mod.Config(**kw)
t0 = time.perf_counter()
with tempfile.TemporaryDirectory() as out:
    mod.run(cfg, out, progress=False)
top = sorted(seconds.items(), key=lambda kv: -kv[1])[:6]
print(json.dumps({"wall_s": time.perf_counter() - t0, "compile_s": sum(seconds.values()),
                  "programs": sum(count.values()),
                  "top": "; ".join(f"{k[4:-1]} {v:.1f} s ×{count[k]}" for k, v in top)}))
"""


def _commit(tree: Path) -> str:
    out = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "?"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", default=[],
                        help="another checkout to measure (before this one)")
    args = parser.parse_args(argv)
    here = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(Path(__file__).parent))
    import _util

    rows = []
    for tree in [Path(t).resolve() for t in args.tree] + [here]:
        env = {**os.environ, "PYTHONPATH": str(tree), "MHATHEORY_COMPILATION_CACHE": "0"}
        out = subprocess.run([sys.executable, "-c", CELL], env=env, cwd=tree,
                             capture_output=True, text=True, timeout=3600, check=True)
        rows.append({"commit": _commit(tree), **json.loads(out.stdout.strip().splitlines()[-1])})
    print(_util.table(rows, ["commit", "wall_s", "compile_s", "programs", "top"]))
    print(_util.write("curvature_compile", rows))


if __name__ == "__main__":
    main()
