"""Benchmark: PyHessian's pitfalls, each measured (never assumed), on the Deora loss.

The model and weights of ``peers.py``; P = 2,176, float64, dense ``eigh`` reference:

1. **Normalisation epsilon.** PyHessian normalises by ``v / (‖v‖ + 1e-6)``, twice per power
   step (``normalization(Hv)``, then ``orthnormal`` again), so its iterate has norm
   n < 1 and it returns vᵀHv = λn², biased low: −2e-6 relative while λ ≫ 1e-6, more once λ
   nears 1e-6 (the fixed point n of n₁ = λn/(λn + ε), n = n₁/(n₁ + ε) is the prediction).
   Measured on the loss scaled by c = 1, 1e-2, 1e-4 (λ scales by c), power iteration run to
   convergence (up to 5,000 steps, stopping at a 1e-12 relative change), against the dense
   λmax (scaled).
2. **Default trace stopping.** ``trace()`` stops when two running means differ by < 1e-3
   relative to the running mean + 1e-6: measured over ``SEEDS`` seeds, the probes it used and
   its error against the dense trace. When the running mean is below −1e-6 the test divides
   by a negative number and passes at once: measured on −L (e.g. a maximised objective).
3. **A second ``hessian(model, …)`` on the same model.** Its constructor calls
   ``loss.backward(create_graph=True)``, which adds to ``param.grad``; measured: λmax and the
   trace (same seeds) from a second object over those of the first, the second built right
   after the first, or after the first has run a probe (its ``model.zero_grad()`` clears
   ``.grad``).

    python experiments/bench/bench_peer_pitfalls.py
"""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import jax
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import _util  # noqa: E402
from bench_peers import SEED, PassLoss, TorchDeora, setup  # noqa: E402

from mhatheory import spectral  # noqa: E402
from mhatheory.models import deora  # noqa: E402

_pyh = sys.modules["pyhessian.hessian"]
D, H = 16, 8
SEEDS = 20


class Scaled(TorchDeora):
    """``c`` × the Deora loss (c = −1: the Hessian of −L)."""

    def __init__(self, params, dtype, c):
        super().__init__(params, dtype)
        self.c = c

    def forward(self, inputs):
        """``c`` × the mean Deora loss."""
        return self.c * super().forward(inputs)


def make(params, batch, c=1.0):
    torch.set_default_dtype(torch.float64)
    model = Scaled(params, torch.float64, c)
    inputs = {"X": torch.tensor(np.asarray(batch.X)), "y": torch.tensor(np.asarray(batch.y))}
    return model, (inputs, inputs["y"])


def predicted_bias(lam, eps=1e-6):
    """vᵀHv/λ − 1 at the fixed point of PyHessian's two normalisations per power step."""
    n = 1.0
    for _ in range(1_000):
        n1 = lam * n / (lam * n + eps)
        n = n1 / (n1 + eps)
    return n * n - 1.0


def epsilon_bias(params, batch, lmax):
    rows = []
    for c in (1.0, 1e-2, 1e-4):
        model, data = make(params, batch, c)
        torch.manual_seed(SEED)
        h = _pyh.hessian(model, PassLoss(), data=data, cuda=False)
        lam = h.eigenvalues(maxIter=5_000, tol=1e-12)[0][0]
        true = c * lmax
        rows.append({"pitfall": "epsilon", "scale_c": c, "lambda_max": true,
                     "pyhessian": lam, "rel_err": (lam - true) / true,
                     "predicted_rel_err": predicted_bias(true)})
    return rows


def trace_stopping(params, batch, trace, c=1.0):
    model, data = make(params, batch, c)
    h = _pyh.hessian(model, PassLoss(), data=data, cuda=False)
    probes, errs = [], []
    for s in range(SEEDS):
        torch.manual_seed(s)
        vals = h.trace()                                  # defaults: maxIter=100, tol=1e-3
        probes.append(len(vals))
        errs.append(abs(np.mean(vals) - c * trace) / abs(c * trace))
    return {"pitfall": "trace default stop", "scale_c": c, "trace": c * trace,
            "seeds": SEEDS, "probes_min": min(probes), "probes_median": float(np.median(probes)),
            "probes_max": max(probes), "rel_err_median": float(np.median(errs)),
            "rel_err_max": float(max(errs))}


def second_hessian(params, batch):
    def probes(h):
        torch.manual_seed(SEED)
        lam = h.eigenvalues(maxIter=300, tol=1e-10)[0][0]
        torch.manual_seed(SEED)
        return lam, float(np.mean(h.trace(maxIter=50, tol=-np.inf)))

    out = []
    for scenario in ("built back to back", "built after the first ran a probe"):
        model, data = make(params, batch)
        h1 = _pyh.hessian(model, PassLoss(), data=data, cuda=False)
        if scenario == "built back to back":
            h2 = _pyh.hessian(model, PassLoss(), data=data, cuda=False)
            lam1, tr1 = probes(h1)
        else:
            lam1, tr1 = probes(h1)
            h2 = _pyh.hessian(model, PassLoss(), data=data, cuda=False)
        lam2, tr2 = probes(h2)
        out.append({"pitfall": "second hessian()", "scenario": scenario, "first_lambda": lam1,
                    "second_lambda": lam2, "lambda_ratio": lam2 / lam1, "first_trace": tr1,
                    "second_trace": tr2, "trace_ratio": tr2 / tr1})
    return out


def main() -> None:
    rows = []
    for point in ("init", "trained"):
        params, batch = setup(D, H, point)
        Hm = np.asarray(spectral.dense_hessian(deora.loss_fn, params, batch))
        ev = np.linalg.eigvalsh(Hm)
        lmax, trace = float(ev[-1]), float(np.trace(Hm))
        part = epsilon_bias(params, batch, lmax)
        part += [trace_stopping(params, batch, trace), trace_stopping(params, batch, trace, -1.0)]
        part += second_hessian(params, batch)
        for r in part:
            r["point"] = point
        rows += part
        print(f"done {point}", flush=True)
    cols = {"epsilon": ["point", "scale_c", "lambda_max", "pyhessian", "rel_err",
                        "predicted_rel_err"],
            "trace default stop": ["point", "scale_c", "trace", "seeds", "probes_min",
                                   "probes_median", "probes_max", "rel_err_median",
                                   "rel_err_max"],
            "second hessian()": ["point", "scenario", "lambda_ratio", "trace_ratio"]}
    for kind, c in cols.items():
        print(f"\n{kind}\n" + _util.table([r for r in rows if r["pitfall"] == kind], c))
    extra = {"config": {"d": D, "H": H, "P": deora.parameter_count(D, H), "seeds": SEEDS},
             "seed": SEED,
             "peers": {"torch": torch.__version__,
                       "pyhessian": importlib.metadata.version("pyhessian")}}
    print(f"wrote {_util.write('peer_pitfalls', rows, extra)}")


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", True)
    main()
