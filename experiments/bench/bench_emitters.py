r"""Benchmark: XLA's CPU emitters for the two programs of a probe, compile time and speed.

A probe compiles two programs per model structure: the linearisation at θ (a forward and
backward pass that keeps the residuals; run once per point) and the product with the
linearised Hessian (run once per HVP). On a CPU, XLA emits fused loops either with its fusion
emitters (its default) or with the classic loop emitters (``xla_cpu_use_fusion_emitters=False``).
Per model, both programs are compiled with each setting (``Lowered.compile`` with and without
the option: distinct compilations, no cache between them) and then run interleaved, so the
two settings meet the same machine load: ``compile_s`` is the compilation of both programs,
``linearise_ms`` and ``hvp_ms`` the medians of ``--repeats`` rounds of ``--calls`` calls each.
``classic/default`` < 1: the classic emitters are cheaper. Each emitter's one-time set-up in a
process (paid by its first compilation, whatever the model) is paid before any timing, by a
small program; ``fresh_s_*`` is instead the first compilation of the smallest Deora model's two
programs in a new process (median of 3 processes), set-up included, as a first call meets it.

Models: Deora at P = 2,176 … 1,056,768 (the peers' grid, init point, float64), the one-block
flax.nnx Transformer of ``bench_cold.py`` (P = 2,578) and a two-layer
``models.EncoderClassifier`` (d_model 32, 4 heads; P = 18,050), float64.

    python experiments/bench/bench_emitters.py [--quick] [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("MHATHEORY_COMPILATION_CACHE", "0")     # compile as a fresh machine

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _util import table, write  # noqa: E402
from bench_cold import _deora, _transformer  # noqa: E402

from mhatheory import spectral  # noqa: E402
from mhatheory.spectral import _operators  # noqa: E402

GRID = [(16, 8), (32, 8), (64, 32), (128, 64)]
SETTINGS = {"default": None, "classic": {"xla_cpu_use_fusion_emitters": False}}


def _two_layer():
    """A two-layer encoder classifier on real-valued tokens, float64 (P = 18,050)."""
    import optax
    from flax import nnx

    from mhatheory.models import EncoderClassifier
    model = EncoderClassifier(8, 2, d_model=32, num_heads=4, num_layers=2, max_len=16,
                              rngs=nnx.Rngs(0), param_dtype=jnp.float64)
    graphdef, params = nnx.split(model, nnx.Param)
    x = jax.random.normal(jax.random.key(1), (64, 16, 8), jnp.float64)
    labels = (x.sum((-1, -2)) > 0).astype(jnp.int32)

    def loss(params, x, labels):
        logits = nnx.merge(graphdef, params)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    return loss, params, (x, labels)


def _median_ms(fn, calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e3


def row(name: str, loss, params, args, repeats: int, calls: int) -> dict:
    op = spectral.Hessian(loss)
    args = tuple(args)
    lin_lowered = _operators._linearise.trace(op, params, args).lower()
    lin, flat = _operators._linearise(op, params, args)
    mask = jnp.ones(flat.shape, flat.dtype)
    v = np.random.default_rng(0).standard_normal(flat.size)
    apply_lowered = _operators._apply.trace(lin, mask, jax.ShapeDtypeStruct(v.shape, v.dtype),
                                            1.0).lower()
    out = {"model": name, "P": int(flat.size)}
    programs = {}
    for setting, options in SETTINGS.items():
        t0 = time.perf_counter()
        programs[setting] = (lin_lowered.compile(options), apply_lowered.compile(options))
        out[f"compile_s_{setting}"] = time.perf_counter() - t0
    times = {s: {"linearise": [], "hvp": []} for s in SETTINGS}
    for c_lin, c_apply in programs.values():                # warm-up
        jax.block_until_ready(c_lin(params, args))
        np.asarray(c_apply(lin, mask, v, 1.0))
    for _ in range(repeats):
        for s, (c_lin, c_apply) in programs.items():
            times[s]["linearise"].append(_median_ms(
                lambda c=c_lin: jax.block_until_ready(c(params, args)), max(1, calls // 10)))
            times[s]["hvp"].append(_median_ms(
                lambda c=c_apply: np.asarray(c(lin, mask, v, 1.0)), calls))
    for s in SETTINGS:
        out[f"linearise_ms_{s}"] = statistics.median(times[s]["linearise"])
        out[f"hvp_ms_{s}"] = statistics.median(times[s]["hvp"])
    same = np.asarray(programs["classic"][1](lin, mask, v, 1.0))
    ref = np.asarray(programs["default"][1](lin, mask, v, 1.0))
    out["hvp_rel_difference"] = float(np.linalg.norm(same - ref) / np.linalg.norm(ref))
    for what in ("compile_s", "linearise_ms", "hvp_ms"):
        out[f"{what} classic/default"] = out[f"{what}_classic"] / out[f"{what}_default"]
    return out


def _fresh(setting: str) -> float:
    """Seconds of the first compilation of the smallest Deora model's two programs in a new
    process with ``setting``."""
    out = subprocess.run([sys.executable, __file__, "--fresh", setting], capture_output=True,
                         text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _fresh_child(setting: str) -> None:
    loss, params, args = _deora(*GRID[0])
    op, args = spectral.Hessian(loss), tuple(args)
    lin_lowered = _operators._linearise.trace(op, params, args).lower()
    lin, flat = _operators._linearise.trace(op, params, args).out_info
    t0 = time.perf_counter()
    lin_lowered.compile(SETTINGS[setting])
    mask = jax.ShapeDtypeStruct(flat.shape, flat.dtype)
    _operators._apply.trace(lin, mask, mask, 1.0).lower().compile(SETTINGS[setting])
    print(time.perf_counter() - t0)


def main(quick: bool, repeats: int, calls: int) -> None:
    fresh = {s: statistics.median(_fresh(s) for _ in range(3)) for s in SETTINGS}
    for options in SETTINGS.values():           # each emitter's one-time set-up, untimed
        jax.jit(lambda x: jnp.tanh(x) * 2).lower(jnp.ones(3)).compile(options)
    models = [("transformer 1 block", *_transformer()), ("encoder 2 layers", *_two_layer())]
    models += [(f"deora d={d} H={H}", *_deora(d, H)) for d, H in (GRID[:2] if quick else GRID)]
    rows = []
    for name, loss, params, args in models:
        rows.append(row(name, loss, params, args, repeats, calls))
        print(table(rows[-1:], ["model", "P", "compile_s classic/default",
                                "hvp_ms classic/default"]), flush=True)
    cols = ["model", "P", "compile_s_default", "compile_s_classic", "compile_s classic/default",
            "linearise_ms classic/default", "hvp_ms_default", "hvp_ms_classic",
            "hvp_ms classic/default", "hvp_rel_difference"]
    print(table(rows, cols))
    print("first compilation in a new process (Deora P = 2,176, both programs): "
          + ", ".join(f"{s} {t:.3f} s" for s, t in fresh.items()))
    print("wrote", write("emitters", rows, {"repeats": repeats, "calls": calls,
                                            "settings": dict(SETTINGS),
                                            **{f"fresh_s_{s}": t for s, t in fresh.items()}},
                         quick=quick))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the two smallest Deora models only")
    ap.add_argument("--repeats", type=int, default=7, help="interleaved rounds (median)")
    ap.add_argument("--calls", type=int, default=50, help="HVPs per round")
    ap.add_argument("--fresh", choices=SETTINGS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fresh:
        _fresh_child(args.fresh)
    else:
        main(args.quick, args.repeats, args.calls)
