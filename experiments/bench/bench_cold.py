r"""Benchmark: the first call, compilation included, each probe and each peer in a fresh process.

A user in a notebook or a CLI run meets the cold call first. Every row here is one new Python
process that imports its libraries, builds the model and data (not timed), and then times the
**first** call of one probe: for ours that is the linearisation, every compilation and the
HVPs; for scipy's ARPACK on our HVP it is ``jax.jit`` of the HVP compiled on its first product
plus the products; the PyTorch peers compile nothing. Columns:

* ``cold_s``: the first call with the persistent compilation cache off
  (``MHATHEORY_COMPILATION_CACHE=0``): a fresh machine;
* ``cached_s`` (ours only): the first call of a second process that finds the programs of the
  first one in a shared persistent cache folder (a rerun notebook, a second CLI run);
* ``ours, worker`` (λmin): ours with the compilation worker thread on
  (``MHATHEORY_BACKGROUND_COMPILE=1``; ``spectral._compile``);
* ``jit floor`` (quantity ``hvp``): the least a first call through ``jax.jit`` can cost, the
  bare HVP traced (``trace_s``), lowered and compiled, no product run; its ``cached_s`` loads
  the program from the cache instead of compiling it, so the tracing remains;
* ``vs_arpack``: ``cold_s`` / the cold ARPACK-on-our-HVP row of the same model and quantity
  (< 1: ours is faster); ``cached_vs_arpack`` likewise for ``cached_s``.

With ``--repeats N`` every cold row is N fresh processes and ``cold_s`` their median (on a
shared machine one process can take twice another's time).

Models: Deora at P = 2,176 … 1,056,768 (the peers' grid, init point, float64), and a one-block
flax.nnx Transformer encoder classifier (P = 2,578) whose ``per_block`` runs over its parameter
sub-trees. Past ``FULL_MAX`` only λmin and λmax are measured (the trace's 100 and the density's
8 × 60 HVPs at P = 10⁶ would take the run past its time budget on 2 cores).

    python experiments/bench/bench_cold.py [--quick] [--max-p P] [--only-p P ...] [--no-torch]
                                           [--tools TOOL ...] [--repeats N] [--name NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: (d, H): P = H(d² + d) = 2,176; 8,448; 133,120; 1,056,768 (bench_peers.py's grid)
GRID = [(16, 8), (32, 8), (64, 32), (128, 64)]
FULL_MAX = 200_000
TOL = 1e-10                       # ours' default Lanczos tolerance; ARPACK gets the same
TRACE_PROBES, SLQ_PROBES, SLQ_NODES = 100, 8, 60
OURS = ("lambda_min", "lambda_max", "trace", "density", "per_block")
ARPACK = ("lambda_min", "lambda_max")
TORCH = {"pyhessian": ("lambda_max", "trace"), "arpack+torch": ("lambda_min", "lambda_max")}
#: ours with the worker thread on (MHATHEORY_BACKGROUND_COMPILE=1; the default is off)
WORKER = "ours, worker"
#: the least any first call through ``jax.jit`` costs: the bare HVP traced, lowered and compiled
#: (or, with the cache, loaded), no product run
FLOOR = "jit floor"


# ----------------------------------------------------------------------------- one process

def _deora(d, H):
    import jax

    from mhatheory import data
    from mhatheory.models import deora
    mix = data.MixtureConfig(d=d, T=8, n=64, num_irrelevant=min(4, d - 2))
    batch = data.sample(mix, jax.random.key(0))
    return deora.loss_fn, deora.init_params(jax.random.key(1), d, H), (batch,)


def _transformer():
    """A one-block Transformer encoder classifier (flax.nnx): embeddings + learned positions,
    one pre-LN layer (4-head self-attention, MLP), mean pooling, a linear head; P = 2,578."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from mhatheory.models import TransformerLayer

    class Encoder(nnx.Module):
        def __init__(self, rngs):
            self.embed = nnx.Embed(12, 16, rngs=rngs, param_dtype=jnp.float64)
            self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (8, 16)))
            self.layer = TransformerLayer(16, 4, 32, rngs=rngs, param_dtype=jnp.float64)
            self.head = nnx.Linear(16, 2, rngs=rngs, param_dtype=jnp.float64)

        def __call__(self, tokens):
            x = self.embed(tokens) + self.pos[...]
            return self.head(self.layer(x).mean(-2))

    graphdef, params = nnx.split(Encoder(nnx.Rngs(0)), nnx.Param)
    tokens = jax.random.randint(jax.random.key(2), (64, 8), 0, 12)
    labels = (tokens.sum(-1) % 2).astype(jnp.int32)

    def loss(params, tokens, labels):
        logits = nnx.merge(graphdef, params)(tokens)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    return loss, params, (tokens, labels)


def _problem(model, d, H):
    return _transformer() if model == "transformer" else _deora(d, H)


def _ours(quantity, loss, params, args):
    import jax

    from mhatheory import spectral
    key = jax.random.key(3)
    if quantity == "lambda_min":
        r = spectral.lambda_min(loss, params, *args, key=key, tol=TOL)
        return r.value, r.num_hvps
    if quantity == "lambda_max":
        r = spectral.lambda_max(loss, params, *args, key=key, tol=TOL)
        return r.value, r.num_hvps
    if quantity == "trace":
        e = spectral.trace(loss, params, *args, num_samples=TRACE_PROBES, key=key)
        return e.value, e.num_hvps
    if quantity == "density":
        dn = spectral.spectral_density(loss, params, *args, num_probes=SLQ_PROBES,
                                       krylov=SLQ_NODES, key=key)
        return float(dn.nodes.max()), SLQ_PROBES * SLQ_NODES
    rows = spectral.per_block(loss, params, *args, blocks=spectral.subtree_blocks(params),
                              key=key, tol=TOL)
    return min(r.lambda_min for r in rows), len(rows)


def _arpack_ours(quantity, loss, params, args):
    """scipy ``eigsh`` (k = 1) on a jitted HVP of the same loss, compiled on its first call."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.flatten_util import ravel_pytree
    from scipy.sparse.linalg import LinearOperator, eigsh

    flat, unravel = ravel_pytree(params)
    grad = jax.grad(lambda f: loss(unravel(f), *args))
    hvp = jax.jit(lambda v: jax.jvp(grad, (flat,), (v,))[1])
    count = [0]

    def mv(v):
        count[0] += 1
        return np.asarray(hvp(jnp.asarray(v.reshape(-1), flat.dtype)))

    P = flat.size
    v0 = np.random.default_rng(0).standard_normal(P)
    w = eigsh(LinearOperator((P, P), matvec=mv, dtype=np.float64), k=1,
              which="SA" if quantity == "lambda_min" else "LA", tol=TOL, ncv=20, v0=v0,
              return_eigenvectors=False)
    return float(w[0]), count[0]


def _jit_floor(loss, params, args):
    """ARPACK's HVP program (:func:`_arpack_ours`) made ready without running it: traced,
    lowered, compiled or loaded from the persistent cache. Returns its phases' seconds."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    t0 = time.perf_counter()
    flat, unravel = ravel_pytree(params)
    grad = jax.grad(lambda f: loss(unravel(f), *args))
    traced = jax.jit(lambda v: jax.jvp(grad, (flat,), (v,))[1]).trace(jnp.zeros_like(flat))
    t1 = time.perf_counter()
    lowered = traced.lower()
    t2 = time.perf_counter()
    lowered.compile()
    return {"trace_s": t1 - t0, "lower_s": t2 - t1, "compile_s": time.perf_counter() - t2}


def _torch(tool, quantity, d, H):
    """The PyTorch peers on the same Deora weights and data (bench_peers.py's set-up), timed
    from the moment the model and data exist (their gradient graph built inside the timing):
    nothing to compile. ARPACK's products are bench_spectral_torch's double-backward HVP."""
    import numpy as np
    import torch
    from scipy.sparse.linalg import LinearOperator, eigsh

    sys.path.insert(0, str(Path(__file__).parent))
    import bench_peers as peers
    import bench_spectral_torch
    params, batch = peers.setup(d, H, "init")
    torch.set_default_dtype(torch.float64)
    model = peers.TorchDeora(params, torch.float64)
    inputs = {"X": torch.tensor(np.asarray(batch.X)), "y": torch.tensor(np.asarray(batch.y))}
    t0 = time.perf_counter()
    if tool == "pyhessian":
        torch.manual_seed(0)
        pyh = peers._pyh.hessian(model, peers.PassLoss(), data=(inputs, inputs["y"]),
                                 cuda=False)
        c = peers.pyhessian_counted()
        if quantity == "lambda_max":
            value = float(pyh.eigenvalues()[0][0])
        else:
            value = float(np.mean(pyh.trace(maxIter=TRACE_PROBES, tol=-np.inf)))
        return time.perf_counter() - t0, value, c.n
    hvp = bench_spectral_torch.double_backward_hvp(params, batch)
    P = sum(p.numel() for p in model.parameters())
    count = [0]

    def mv(v):
        count[0] += 1
        return hvp(torch.tensor(v.reshape(-1))).detach().numpy()

    v0 = np.random.default_rng(0).standard_normal(P)
    w = eigsh(LinearOperator((P, P), matvec=mv, dtype=np.float64), k=1,
              which="SA" if quantity == "lambda_min" else "LA", tol=TOL, ncv=20, v0=v0,
              return_eigenvectors=False)
    return time.perf_counter() - t0, float(w[0]), count[0]


def one(tool, quantity, model, d, H) -> dict:
    """Time one first call in this (fresh) process."""
    if tool in TORCH:
        seconds, value, hvps = _torch(tool, quantity, d, H)
        return {"seconds": seconds, "value": value, "hvps": hvps}
    import jax
    import scipy.sparse.linalg  # noqa: F401  (ARPACK's module, imported untimed like ours)

    import mhatheory  # noqa: F401  (float64; the cache as the environment says)
    from mhatheory import spectral  # noqa: F401
    loss, params, args = _problem(model, d, H)
    jax.block_until_ready((params, args))
    size = sum(x.size for x in jax.tree.leaves(params))
    where = {"P": int(size), "compile_cache": str(jax.config.jax_compilation_cache_dir)}
    if tool == FLOOR:
        phases = _jit_floor(loss, params, args)
        return {"seconds": sum(phases.values()), **phases, **where}
    t0 = time.perf_counter()
    value, hvps = (_ours if tool == "ours" else _arpack_ours)(quantity, loss, params, args)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "value": value, "hvps": hvps, **where}


# ----------------------------------------------------------------------------- the driver

def _spawn(tool, quantity, model, d, H, cache) -> dict:
    env = {**os.environ, "MHATHEORY_COMPILATION_CACHE": cache}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    if tool == WORKER:
        env["MHATHEORY_BACKGROUND_COMPILE"] = "1"
    out = subprocess.run([sys.executable, __file__, "--one", "ours" if tool == WORKER else tool,
                          quantity, model, str(d), str(H)], env=env, capture_output=True,
                         text=True, timeout=3600)
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def cells(max_p, torch_peers):
    """(model, d, H, P, tool, quantity) for every row of the run."""
    models = [("transformer", 0, 0, 2_578)] + [("deora", d, H, H * (d * d + d))
                                               for d, H in GRID if H * (d * d + d) <= max_p]
    for model, d, H, P in models:
        quantities = OURS if P <= FULL_MAX else ("lambda_min", "lambda_max", "per_block")
        for q in quantities:
            yield model, d, H, P, "ours", q
            if q == "lambda_min":
                yield model, d, H, P, WORKER, q
            if q in ARPACK:
                yield model, d, H, P, "arpack+ours", q
            if q == "lambda_min":
                yield model, d, H, P, FLOOR, "hvp"
            for tool, qs in TORCH.items():
                if torch_peers and model == "deora" and q in qs and (q != "trace" or
                                                                     P <= FULL_MAX):
                    yield model, d, H, P, tool, q


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=5, metavar=("TOOL", "QUANTITY", "MODEL", "D", "H"))
    parser.add_argument("--quick", action="store_true", help="P ≤ 10,000 only")
    parser.add_argument("--max-p", type=int, default=1_100_000)
    parser.add_argument("--only-p", type=int, nargs="+", default=None,
                        help="only the models of these sizes (e.g. 133120)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch peers")
    parser.add_argument("--tools", nargs="+", default=None,
                        help="only these tools (ours, 'ours, worker', arpack+ours, 'jit floor', "
                             "pyhessian, arpack+torch)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="fresh processes per cold row (cold_s is their median, "
                             "cold_s_all lists them)")
    parser.add_argument("--name", default="cold",
                        help="results name: experiments/bench/results/NAME_{backend}.json")
    args = parser.parse_args(argv)
    if args.one:
        tool, quantity, model, d, H = args.one
        print(json.dumps(one(tool, quantity, model, int(d), int(H))))
        return

    sys.path.insert(0, str(Path(__file__).parent))
    import _util
    from tqdm import tqdm

    torch_peers = not args.no_torch
    if torch_peers:
        try:
            import curvlinops  # noqa: F401
            import pyhessian  # noqa: F401
            import torch  # noqa: F401
        except ImportError as err:
            sys.exit(f"bench_cold.py: the PyTorch peers need `pip install torch==2.13.0 && "
                     f"pip install -e \".[bench]\"` ({err}); or pass --no-torch.")
    max_p = 10_000 if args.quick else args.max_p
    todo = [c for c in cells(max_p, torch_peers) if (args.tools is None or c[4] in args.tools)
            and (args.only_p is None or c[3] in args.only_p)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-cold-cache-") as tmp:
        for model, d, H, P, tool, q in tqdm(todo, desc="fresh processes", unit="process"):
            row = {"model": model, "P": P, "quantity": q, "tool": tool}
            colds = [_spawn(tool, q, model, d, H, "0") for _ in range(args.repeats)]
            cold = colds[0]
            if cold.get("P", P) != P:
                raise RuntimeError(f"{model}: P is {cold['P']}, not the {P} of its label")
            seconds = [c["seconds"] for c in colds if "seconds" in c]
            row.update(cold_s=statistics.median(seconds) if seconds else None,
                       value=cold.get("value"), hvps=cold.get("hvps"), error=cold.get("error"))
            if args.repeats > 1:
                row["cold_s_all"] = seconds
            if tool == FLOOR:
                row.update({k: statistics.median(c[k] for c in colds if k in c)
                            for k in ("trace_s", "lower_s", "compile_s")})
            if tool in ("ours", FLOOR):
                cache = str(Path(tmp) / f"{model}-{P}-{q}-{tool}")
                _spawn(tool, q, model, d, H, cache)               # fills the cache
                row["cached_s"] = _spawn(tool, q, model, d, H, cache).get("seconds")
            rows.append({k: v for k, v in row.items() if v is not None})
    base = {(r["model"], r["P"], r["quantity"]): r["cold_s"] for r in rows
            if r["tool"] == "arpack+ours" and "cold_s" in r}
    lmin = {(r["model"], r["P"]): r["cold_s"] for r in rows
            if r["tool"] == "ours" and r["quantity"] == "lambda_min" and "cold_s" in r}
    for r in rows:
        ref = base.get((r["model"], r["P"], r["quantity"]))
        if ref and "cold_s" in r:
            r["vs_arpack"] = r["cold_s"] / ref
            if "cached_s" in r:
                r["cached_vs_arpack"] = r["cached_s"] / ref
        if r["quantity"] == "per_block" and "cold_s" in r and (r["model"], r["P"]) in lmin:
            r["vs_lambda_min"] = r["cold_s"] / lmin[(r["model"], r["P"])]
    cols = ["model", "P", "quantity", "tool", "cold_s", "cached_s", "vs_arpack",
            "cached_vs_arpack", "vs_lambda_min", "trace_s", "hvps", "value"]
    print(_util.table(rows, cols))
    extra = {"tol": TOL, "full_max": FULL_MAX, "torch_peers": torch_peers,
             "repeats": args.repeats}
    if torch_peers:
        import torch
        extra["torch"] = torch.__version__
    print(_util.write(args.name, rows, extra, quick=args.quick))


if __name__ == "__main__":
    main()
