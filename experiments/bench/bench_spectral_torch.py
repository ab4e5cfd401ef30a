"""Benchmark: our Hessian–vector product and λmax against the PyTorch route PyHessian uses
(HVP by double backward, λmax by 100 steps of power iteration), on the same Deora model, data
and parameters, in one process, float64 on CPU.

Per P: one HVP (ours: ``jax.linearize`` of the gradient applied to a batch of vectors; theirs:
``torch.autograd.grad`` with ``create_graph``), and λmax after 100 HVPs: power iteration (theirs)
and Lanczos (ours) against a converged Lanczos reference with 300 HVPs.

    pip install -e ".[bench]" && python experiments/bench/bench_spectral_torch.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import _util  # noqa: E402
from bench_spectral import GRID, N, T, _hvps  # noqa: E402  (same grid, data sizes and HVP program)

from mhatheory import data, spectral  # noqa: E402
from mhatheory.models import deora  # noqa: E402

torch.set_default_dtype(torch.float64)


def torch_loss(W, U, X, y):
    """The Deora loss in PyTorch (same formula as mhatheory.models.deora.loss_fn)."""
    H = W.shape[0]
    scores = torch.einsum("ntd,hde,ne->nht", X, W, X[:, 0])
    attn = torch.softmax(scores, dim=-1)
    phi = torch.einsum("hd,ntd,nht->n", U, X, attn) / H**0.5
    return torch.nn.functional.softplus(-y * phi).mean()


def double_backward_hvp(params, batch):
    """PyTorch's HVP of the Deora loss at ``params`` on ``batch`` (PyHessian's route): the
    gradient graph is built once (``create_graph``), each product is one more backward pass.
    Takes and returns flat torch vectors in (U, W) order, as ``ravel_pytree`` orders the dict."""
    X, y = torch.tensor(np.asarray(batch.X)), torch.tensor(np.asarray(batch.y))
    W = torch.tensor(np.asarray(params["W"]), requires_grad=True)
    U = torch.tensor(np.asarray(params["U"]), requires_grad=True)
    gW, gU = torch.autograd.grad(torch_loss(W, U, X, y), (W, U), create_graph=True)

    def torch_hvp(v):
        vU, vW = v[: U.numel()].view_as(U), v[U.numel():].view_as(W)
        hW, hU = torch.autograd.grad((gW * vW).sum() + (gU * vU).sum(), (W, U),
                                     retain_graph=True)
        return torch.cat([hU.reshape(-1), hW.reshape(-1)])

    return torch_hvp


def row(d, H):
    mix = data.MixtureConfig(d=d, T=T, n=N, num_irrelevant=min(4, d - 2))
    batch = data.sample(mix, jax.random.key(0))
    params = deora.init_params(jax.random.key(1), d, H)
    P = deora.parameter_count(d, H)
    torch_hvp = double_backward_hvp(params, batch)

    vs = np.asarray(jax.random.normal(jax.random.key(2), (10, P)))
    ours = np.asarray(_hvps(params, batch, vs))
    theirs = torch.stack([torch_hvp(torch.tensor(v)) for v in vs]).detach().numpy()
    agree = float(np.max(np.abs(ours - theirs)) / np.max(np.abs(ours)))
    t_ours = _util.best_time(lambda: _hvps(params, batch, vs)) / 10
    tv = [torch.tensor(v) for v in vs]

    def run_torch():
        return [torch_hvp(v) for v in tv]

    run_torch()
    t0 = time.perf_counter()
    for _ in range(3):
        run_torch()
    t_torch = (time.perf_counter() - t0) / 30

    v = torch.tensor(vs[0])
    v = v / v.norm()
    for _ in range(100):                      # PyHessian: 100 steps of power iteration
        w = torch_hvp(v).detach()
        lam_pi = float(v @ w)
        v = w / w.norm()
    lam_l = spectral.lambda_max(deora.loss_fn, params, batch, krylov=99, max_restarts=0,
                                v0=vs[0]).value
    ref = spectral.lambda_max(deora.loss_fn, params, batch, krylov=min(300, P - 1),
                              max_restarts=0, tol=1e-13, key=jax.random.key(5)).value
    return {"P": P, "H": H, "d": d, "hvp_agreement": agree, "ours_hvp_ms": 1e3 * t_ours,
            "torch_hvp_ms": 1e3 * t_torch, "torch_over_ours": t_torch / t_ours,
            "power100_rel_err": abs(lam_pi - ref) / abs(ref),
            "lanczos100_rel_err": abs(lam_l - ref) / abs(ref)}


def main() -> None:
    rows = []
    for d, H in GRID:
        rows.append(row(d, H))
        print(f"done P={rows[-1]['P']}", flush=True)
    print(_util.table(rows, ["P", "H", "d", "hvp_agreement", "ours_hvp_ms", "torch_hvp_ms",
                             "torch_over_ours", "power100_rel_err", "lanczos100_rel_err"]))
    out = _util.write("spectral_torch", rows, {"torch": torch.__version__,
                                               "torch_threads": torch.get_num_threads()})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
