r"""Benchmark: mhatheory's probes against PyHessian and curvlinops (+ scipy ARPACK ``eigsh``) on
the same Deora model, weights and data, in one process on the CPU.

Per cell (P, dtype, point), for λmax, λmin, the trace and the spectral density:

* **ours**: ``spectral.Lanczos(which=…)`` on the cell's linearised Hessian (defaults:
  adaptive Lanczos, tol = 1e-10, krylov = 40), ``spectral.trace`` (100 probes),
  ``spectral.spectral_density`` (8 probes × 60 nodes; its default ``reortho="none"``, O(P)
  memory; and ``reortho="selective"``, which stores the basis);
* **ours tol=0.001**, **ours tol=0.01**: ``lambda_max`` with the residual tolerance at 1e-3‖H‖
  (PyHessian's stopping tolerance, a relative change) and 1e-2‖H‖: two points of our
  time-against-error curve beside PyHessian's one, whose errors are 5e-4–4e-3 (a Ritz value's
  error is about ρ²/gap, so these tolerances give errors far below it);
* **arpack+ours**: scipy ``eigsh`` (ARPACK, k = 1, ncv = 20) on our JAX HVP, at the tolerance
  our probe accepts (tol + 100ε of the dtype);
* **curvlinops**: ``HessianLinearOperator(...).to_scipy()`` under the same ``eigsh``,
  ``hutchinson_trace`` (100 probes), ``fast_lanczos`` (its SLQ run, no reorthogonalisation)
  for 8 probes × 60 nodes up to P = ``CURVLINOPS_DENSITY_MAX`` (each matvec carries ~30 ms of
  ``torch.func`` overhead, so past it a call costs 480 of the matvecs timed in its λ rows);
* **pyhessian**: ``hessian(...).eigenvalues()`` at its defaults (power iteration, ≤ 100 HVPs,
  stop at a 1e-3 relative change), ``.trace(maxIter=100, tol=-inf)`` (all 100 probes: its own
  stopping rule is measured in ``peer_pitfalls.py``), ``.density(iter=60, n_v=8)``. PyHessian
  has no λmin. Its density calls ``torch.eig``, which torch ≥ 2.0 removed: the benchmark puts
  back a ``torch.eig`` that calls ``torch.linalg.eigh`` (T is symmetric) and says so in the JSON.

The PyTorch loss is ``spectral_torch.torch_loss`` (imported): a module holding U, W (in the
order of ``ravel_pytree``) returns the loss as its output and the criterion passes it on, so
both peers differentiate exactly that formula. Set-up shared by all calls of a cell (our HVP's
linearisation for ARPACK, curvlinops' operator, PyHessian's double-backward graph) is built once
per cell outside the timed calls, and so is ours for the eigenvalue probes: one
``spectral.linearise`` per cell, shared by every configured ``Lanczos`` probe there (as a user
probing λmin and λmax at one point would). The trace and the density are timed through the
conveniences ``spectral.trace`` / ``spectral.spectral_density``, which form the operator inside
the call (each product in one program up to ``spectral.ONE_PROGRAM_MAX_PARAMS`` parameters,
linearised above).

Error against a reference computed in float64 from the cell's (possibly float32-rounded)
weights and data: dense ``eigh`` where P ≤ ``DENSE_MAX``, else the tightest converged Lanczos
(krylov 200, tol 1e-13) for λ, a long Hutchinson run (``REF_PROBES``, its standard error in
``ref_se``) for the trace, and a full-reorthogonalisation SLQ with twice the nodes for the
density. λmin's error is relative to |λmax| (λmin may be ≈ 0); the density's error is the
Wasserstein-1 distance between the SLQ measure and the reference measure over λmax − λmin.
Timing: the first call (our compilation; the peers' warm-up) is reported apart as
``first_s``; then ``ROUNDS`` rounds in which every method of the cell runs once, in turn, each
round starting one method later than the one before, and the median is ``median_s``;
``vs_ours`` = median_s / ours' median_s for the same quantity (> 1: ours is faster). The
rotation matters on 2 cores: a call right after a PyTorch peer runs while torch's worker
threads still spin (a λmax of ours at P = 2,176 took 12.6 ms after curvlinops against 9.7 ms
after ARPACK, medians of 15), and in a fixed order the same methods would always pay it.
The trained point is ``TRAIN_STEPS`` steps of full-batch GD (``mhatheory.train.gd``).
Past P = ``FULL_MAX`` only λmax and λmin are measured (time budget of the run on 2 cores).

    pip install torch==2.13.0 && pip install -e ".[bench]"   # torch first: see pyproject
    python experiments/bench/bench_peers.py [--quick] [--max-p P]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import scipy
import torch
from scipy.sparse.linalg import LinearOperator, eigsh

sys.path.insert(0, str(Path(__file__).parent))
import _util  # noqa: E402
import pyhessian  # noqa: E402,F401  (imports the pyhessian.hessian module)
from bench_spectral_torch import torch_loss  # noqa: E402  (the Deora loss in PyTorch)
from curvlinops import HessianLinearOperator  # noqa: E402
from curvlinops.papyan2020traces.spectrum import fast_lanczos  # noqa: E402
from curvlinops.trace.hutchinson import hutchinson_trace  # noqa: E402

from mhatheory import data, spectral, train  # noqa: E402
from mhatheory.models import deora  # noqa: E402

#: (d, H): P = H(d² + d) = 2,176; 8,448; 133,120; 1,056,768
GRID = [(16, 8), (32, 8), (64, 32), (128, 64)]
N, T = 64, 8
SEED = 0
TRAIN_STEPS, LR = 300, 1.0
DENSE_MAX = 3_000          # dense eigh reference up to here (P = 8,448 took 91 s per point in
                           # spectral.py: four of them would cost a quarter of the run)
REF_PROBES = 1_000         # Hutchinson reference past DENSE_MAX
TRACE_PROBES, SLQ_PROBES, SLQ_NODES = 100, 8, 60
ROUNDS = 5
LOOSE_TOLS = (1e-3, 1e-2)  # λmax rows of ours at looser tolerances, beside PyHessian
QUANTITIES = ("lambda_max", "lambda_min", "trace", "density")
#: past this P only λmax and λmin are measured (the trace and density cells would take the
#: run past its time budget on 2 cores; see the README)
FULL_MAX = 200_000
#: curvlinops' SLQ only up to here: its matvec carries ~30 ms of torch.func overhead whatever P
#: (see its λ rows), so 8 × 60 matvecs take ~20 s a call (its HVP time × 480 past this)
CURVLINOPS_DENSITY_MAX = 10_000


# ----------------------------------------------------------------------------- PyTorch side

class TorchDeora(torch.nn.Module):
    """Deora's U and W (U first: ``ravel_pytree``'s order of the params dict) around
    ``torch_loss``; ``forward(inputs)`` returns the mean loss as a 1-vector."""

    def __init__(self, params, dtype):
        super().__init__()
        self.U = torch.nn.Parameter(torch.tensor(np.asarray(params["U"]), dtype=dtype))
        self.W = torch.nn.Parameter(torch.tensor(np.asarray(params["W"]), dtype=dtype))

    def forward(self, inputs):
        """The mean Deora loss on ``inputs = {"X": …, "y": …}``, shape ``[1]``."""
        return torch_loss(self.W, self.U, inputs["X"], inputs["y"]).reshape(1)


class PassLoss(torch.nn.Module):
    """The criterion: the model's output already is the loss (``reduction="sum"`` tells
    curvlinops not to rescale it by batch size)."""

    reduction = "sum"

    def forward(self, output, target):
        """The loss the model returned (``target`` is unused)."""
        return output.sum()


def _torch_eig(T, eigenvectors=True):
    """``torch.eig`` as PyHessian 0.1 calls it (removed in torch 2): eigenvalues as
    ``[n, 2]`` (real, imaginary) and eigenvectors, by ``torch.linalg.eigh`` (T is symmetric)."""
    w, V = torch.linalg.eigh(T)
    return torch.stack([w, torch.zeros_like(w)], 1), V


def _needs_eig_shim() -> bool:
    try:
        torch.eig(torch.eye(2), eigenvectors=True)
        return False
    except (AttributeError, RuntimeError):   # torch ≥ 2: absent, or a stub that raises
        return True


EIG_SHIM = _needs_eig_shim()
if EIG_SHIM:
    torch.eig = _torch_eig


class Counter:
    """A function wrapper counting its calls (HVPs)."""

    def __init__(self, fn):
        self.fn, self.n = fn, 0

    def __call__(self, *a, **kw):
        """Count one call and make it."""
        self.n += 1
        return self.fn(*a, **kw)


# the module (``pyhessian.hessian`` as an attribute is the class, which shadows it)
_pyh = sys.modules["pyhessian.hessian"]
_PYH_HVP = _pyh.hessian_vector_product


def pyhessian_counted():
    """Count PyHessian's HVPs by wrapping the function its module calls."""
    c = Counter(_PYH_HVP)
    _pyh.hessian_vector_product = c
    return c


# ----------------------------------------------------------------------------- helpers

def arpack(matvec, P, dtype, which, tol, seed):
    """λ by ``eigsh`` (k = 1) on ``matvec`` (numpy in, numpy out): (value, matvecs)."""
    c = Counter(matvec)
    A = LinearOperator((P, P), matvec=c, dtype=dtype)
    v0 = np.random.default_rng(seed).standard_normal(P).astype(dtype)
    w = eigsh(A, k=1, which=which, tol=tol, v0=v0, return_eigenvectors=False)
    return float(w[0]), c.n


def w1(nodes_a, weights_a, nodes_b, weights_b) -> float:
    """Wasserstein-1 distance between two discrete measures on the line (each normalised)."""
    x = np.concatenate([nodes_a, nodes_b])
    w = np.concatenate([weights_a / weights_a.sum(), -weights_b / weights_b.sum()])
    order = np.argsort(x)
    x, cdf = x[order], np.cumsum(w[order])
    return float(np.sum(np.abs(cdf[:-1]) * np.diff(x)))


def slq_measure(nodes, weights):
    """The probe-averaged SLQ measure: all nodes, weights / number of probes."""
    nodes, weights = np.asarray(nodes, float), np.asarray(weights, float)
    return nodes.reshape(-1), weights.reshape(-1) / nodes.shape[0]


def setup(d, H, point):
    """Float64 Deora params (init or trained) and data; the same draw for every dtype."""
    mix = data.MixtureConfig(d=d, T=T, n=N, num_irrelevant=min(4, d - 2))
    batch = data.sample(mix, jax.random.key(SEED))
    params = deora.init_params(jax.random.key(SEED + 1), d, H)
    if point == "trained":
        params = train.gd(deora.loss_fn, params, batch, steps=TRAIN_STEPS, lr=LR).final_params
    return params, batch


def cast(tree, dtype):
    return jax.tree.map(lambda a: jnp.asarray(a, dtype), tree)


def reference(params, batch, P, full: bool, quantities=QUANTITIES):
    """Float64 references at (params, batch) (already rounded to the cell's dtype), for the
    ``quantities`` measured (the trace alone needs no λ)."""
    t0 = time.perf_counter()
    ref = {}
    if P > DENSE_MAX and set(quantities) == {"trace"}:
        tr = spectral.trace(deora.loss_fn, params, batch, num_samples=REF_PROBES,
                            key=jax.random.key(SEED + 6))
        ref.update(trace=tr.value, trace_se=tr.se, kind=f"trace {REF_PROBES} probes")
    elif P <= DENSE_MAX:
        Hm = np.asarray(spectral.dense_hessian(deora.loss_fn, params, batch))
        ev = np.linalg.eigvalsh(Hm)
        ref.update(lmax=float(ev[-1]), lmin=float(ev[0]), trace=float(np.trace(Hm)),
                   trace_se=0.0, measure=(ev, np.full(P, 1.0 / P)), kind="dense eigh")
    else:
        kw = dict(krylov=200, tol=1e-13, max_restarts=2, key=jax.random.key(SEED + 5))
        ref.update(lmax=spectral.lambda_max(deora.loss_fn, params, batch, **kw).value,
                   lmin=spectral.lambda_min(deora.loss_fn, params, batch, **kw).value,
                   kind="lanczos krylov 200 tol 1e-13")
        if full:
            tr = spectral.trace(deora.loss_fn, params, batch, num_samples=REF_PROBES,
                                key=jax.random.key(SEED + 6))
            dn = spectral.spectral_density(deora.loss_fn, params, batch, num_probes=SLQ_PROBES,
                                           krylov=2 * SLQ_NODES, reortho="full",
                                           key=jax.random.key(SEED + 7))
            ref.update(trace=tr.value, trace_se=tr.se, measure=slq_measure(dn.nodes, dn.weights),
                       kind=ref["kind"] + f"; trace {REF_PROBES} probes; SLQ full 8×120")
    ref["seconds"] = time.perf_counter() - t0
    return ref


# ----------------------------------------------------------------------------- one cell

def methods(params, batch, P, dtype_name, full):
    """{(quantity, tool): fn() -> (value, hvps)} for one cell."""
    jdt = jnp.dtype(dtype_name)
    tdt = torch.float64 if dtype_name == "float64" else torch.float32
    torch.set_default_dtype(tdt)
    thr = 1e-10 + 100 * float(jnp.finfo(jdt).eps)     # the residual tolerance ours accepts
    key = jax.random.key(SEED + 2)

    # linearised once per cell: ARPACK's products and our probes share it
    H = spectral.linearise(deora.loss_fn, params, batch)

    def jax_mv(v):
        return np.asarray(H.mv(jnp.asarray(v, jdt)))

    model = TorchDeora(params, tdt)
    inputs = {"X": torch.tensor(np.asarray(batch.X), dtype=tdt),
              "y": torch.tensor(np.asarray(batch.y), dtype=tdt)}
    y = inputs["y"]
    H_op = HessianLinearOperator(model, PassLoss(), list(model.parameters()), [(inputs, y)],
                                 batch_size_fn=lambda X: X["X"].shape[0],
                                 check_deterministic=False)
    H_sp = H_op.to_scipy(np.dtype(dtype_name))
    torch.manual_seed(SEED)
    pyh = _pyh.hessian(model, PassLoss(), data=(inputs, y), cuda=False)

    def ours_eig(which, **kw):
        probe = spectral.Lanczos(which=which, **kw)

        def fn():
            r = probe(H, key=key)[0]
            return r.value, r.num_hvps
        return fn

    def arpack_fn(mv, which):
        return lambda: arpack(mv, P, np.dtype(dtype_name), which, thr, SEED)

    def pyh_eig():
        c = pyhessian_counted()
        torch.manual_seed(SEED)
        return float(pyh.eigenvalues()[0][0]), c.n

    out = {
        ("lambda_max", "ours"): ours_eig("largest"),
        ("lambda_max", "arpack+ours"): arpack_fn(jax_mv, "LA"),
        ("lambda_max", "curvlinops"): arpack_fn(H_sp.matvec, "LA"),
        ("lambda_max", "pyhessian"): pyh_eig,
        # ours at looser tolerances: PyHessian's power iteration stops at a 1e-3 relative change
        **{("lambda_max", f"ours tol={t:g}"): ours_eig("largest", tol=t) for t in LOOSE_TOLS},
        ("lambda_min", "ours"): ours_eig("smallest"),
        ("lambda_min", "arpack+ours"): arpack_fn(jax_mv, "SA"),
        ("lambda_min", "curvlinops"): arpack_fn(H_sp.matvec, "SA"),
    }
    if not full:
        return out

    def ours_trace():
        e = spectral.trace(deora.loss_fn, params, batch, num_samples=TRACE_PROBES, key=key)
        return e.value, e.num_hvps

    def cl_trace():
        torch.manual_seed(SEED)
        return float(hutchinson_trace(H_op, TRACE_PROBES)), TRACE_PROBES

    def pyh_trace():
        c = pyhessian_counted()
        torch.manual_seed(SEED)
        return float(np.mean(pyh.trace(maxIter=TRACE_PROBES, tol=-np.inf))), c.n

    def ours_density(reortho):
        def fn():
            dn = spectral.spectral_density(deora.loss_fn, params, batch, key=key,
                                           num_probes=SLQ_PROBES, krylov=SLQ_NODES,
                                           reortho=reortho)
            return slq_measure(dn.nodes, dn.weights), SLQ_PROBES * SLQ_NODES
        return fn

    def cl_density():
        torch.manual_seed(SEED)
        nodes, weights = [], []
        for _ in range(SLQ_PROBES):
            ev, evec = fast_lanczos(H_op, SLQ_NODES)
            nodes.append(ev.numpy())
            weights.append(evec[0].numpy() ** 2)
        return slq_measure(nodes, weights), SLQ_PROBES * SLQ_NODES

    def pyh_density():
        c = pyhessian_counted()
        torch.manual_seed(SEED)
        nodes, weights = pyh.density(iter=SLQ_NODES, n_v=SLQ_PROBES)
        return slq_measure(nodes, weights), c.n

    out.update({
        ("trace", "ours"): ours_trace,
        ("trace", "curvlinops"): cl_trace,
        ("trace", "pyhessian"): pyh_trace,
        ("density", "ours"): ours_density("none"),
        ("density", "ours reortho=selective"): ours_density("selective"),
        ("density", "pyhessian"): pyh_density,
    })
    if P <= CURVLINOPS_DENSITY_MAX:
        out[("density", "curvlinops")] = cl_density
    return out


def error(quantity, value, ref):
    if quantity == "lambda_max":
        return abs(value - ref["lmax"]) / abs(ref["lmax"])
    if quantity == "lambda_min":
        return abs(value - ref["lmin"]) / abs(ref["lmax"])
    if quantity == "trace":
        return abs(value - ref["trace"]) / abs(ref["trace"])
    return w1(*value, *ref["measure"]) / (ref["lmax"] - ref["lmin"])


def cell(d, H, point, dtype_name, base, full_max=FULL_MAX, quantities=QUANTITIES):
    P = deora.parameter_count(d, H)
    full = P <= full_max
    params, batch = cast(base[0], dtype_name), cast(base[1], dtype_name)
    ref = reference(cast(params, "float64"), cast(batch, "float64"), P, full, quantities)
    fns = {k: fn for k, fn in methods(params, batch, P, dtype_name, full).items()
           if k[0] in quantities}
    results = {}
    for name, fn in fns.items():                       # first call: compile / warm-up
        t0 = time.perf_counter()
        value, hvps = fn()
        results[name] = {"first_s": time.perf_counter() - t0, "value": value, "hvps": hvps,
                         "times": []}
    names = list(fns)
    for i in range(ROUNDS):                            # interleaved rounds, rotated
        for name in names[i % len(names):] + names[:i % len(names)]:
            fn = fns[name]
            t0 = time.perf_counter()
            value, hvps = fn()
            results[name]["times"].append(time.perf_counter() - t0)
            results[name].update(value=value, hvps=hvps)
    rows = []
    for (quantity, tool), r in results.items():
        med = statistics.median(r["times"])
        ours = statistics.median(results[(quantity, "ours")]["times"])
        row = {"P": P, "dtype": dtype_name, "point": point, "quantity": quantity, "tool": tool,
               "value": r["value"] if quantity != "density" else None,
               "rel_err": error(quantity, r["value"], ref), "hvps": r["hvps"],
               "median_s": med, "first_s": r["first_s"], "vs_ours": med / ours,
               "reference": ref["kind"]}
        if quantity == "trace":
            row["ref_se_rel"] = ref["trace_se"] / abs(ref["trace"])
        rows.append(row)
    print(f"done P={P} {dtype_name} {point} (reference {ref['seconds']:.1f} s)", flush=True)
    return rows


def main(quick: bool, max_p: int | None, min_p: int | None = None, full_max: int = FULL_MAX,
         name: str = "peers", quantities=QUANTITIES) -> None:
    grid = GRID[:2] if quick else GRID
    grid = [(d, H) for d, H in grid
            if (max_p is None or deora.parameter_count(d, H) <= max_p)
            and (min_p is None or deora.parameter_count(d, H) >= min_p)]
    rows = []
    for d, H in grid:
        for point in ("init", "trained"):
            base = setup(d, H, point)
            for dtype_name in ("float64", "float32"):
                rows += cell(d, H, point, dtype_name, base, full_max, quantities)
    print(_util.table(rows, ["P", "dtype", "point", "quantity", "tool", "value", "rel_err",
                             "hvps", "median_s", "first_s", "vs_ours"]))
    extra = {
        "config": {"grid": grid, "n": N, "T": T, "train_steps": TRAIN_STEPS, "lr": LR,
                   "dense_max": DENSE_MAX, "ref_probes": REF_PROBES,
                   "trace_probes": TRACE_PROBES, "slq": [SLQ_PROBES, SLQ_NODES],
                   "rounds": ROUNDS, "full_max": full_max, "min_p": min_p,
                   "quantities": list(quantities),
                   "curvlinops_density_max": CURVLINOPS_DENSITY_MAX, "max_p": max_p},
        "seed": SEED,
        "peers": {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                  "pyhessian": importlib.metadata.version("pyhessian"),
                  "curvlinops": importlib.metadata.version("curvlinops-for-pytorch"),
                  "scipy": scipy.__version__,
                  "pyhessian_torch_eig_shim": EIG_SHIM},
    }
    out = _util.write(name, rows, extra, quick=quick)
    print(f"wrote {out}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only P ≤ ~8,500")
    ap.add_argument("--max-p", type=int, default=None, help="skip cells with P above this")
    ap.add_argument("--min-p", type=int, default=None, help="skip cells with P below this")
    ap.add_argument("--full-max", type=int, default=FULL_MAX,
                    help=f"trace and density up to this P (default {FULL_MAX:,})")
    ap.add_argument("--name", default="peers",
                    help="results name: experiments/bench/results/NAME_{backend}.json")
    ap.add_argument("--quantities", nargs="+", choices=QUANTITIES, default=QUANTITIES,
                    help="measure only these (default: all)")
    a = ap.parse_args()
    main(a.quick, a.max_p, a.min_p, a.full_max, a.name, tuple(a.quantities))
