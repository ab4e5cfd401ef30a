"""``verify`` group ``spectral``: Lanczos, HVPs, the G + N split, Hutchinson and SLQ against the
dense reference."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from mhatheory import data, spectral
from mhatheory.checks import Check, figure, tendency, upper
from mhatheory.experiments import spectrum
from mhatheory.models import deora


def rows(full: bool, out, progress: bool = False) -> list[Check]:
    """Lanczos, HVP, the G + N split and Hutchinson against the dense reference."""
    cfg = data.MixtureConfig(d=8, T=6, n=64, num_irrelevant=3)
    batch = data.sample(cfg, jax.random.key(0))
    params = deora.init_params(jax.random.key(1), 8, 4, init_scale=2.0)
    H = np.asarray(spectral.dense_hessian(deora.loss_fn, params, batch))
    ev = np.linalg.eigvalsh(H)
    delta = spectral.DEFAULT_FAILURE_PROB
    lo = spectral.lambda_min(deora.loss_fn, params, batch, failure_prob=delta,
                            key=jax.random.key(4))
    hi = spectral.lambda_max(deora.loss_fn, params, batch, failure_prob=delta,
                            key=jax.random.key(5))
    matvec, flat = spectral.hvp(deora.loss_fn, params, batch)
    P = flat.size
    cols = np.stack([np.asarray(matvec(np.eye(P)[j])) for j in (0, 99, P - 1)])
    G = np.asarray(spectral.dense(spectral.GaussNewton(deora.phi), params, batch.X, batch.y))
    N = np.asarray(spectral.dense(spectral.Curvature(deora.phi), params, batch.X, batch.y))
    tr = spectral.trace(deora.loss_fn, params, batch, key=jax.random.key(3), num_samples=200)
    _, asym = spectral.Dense().matrix(spectral.linearise(deora.loss_fn, params, batch))
    ref_err = 2 * asym + P * np.finfo(np.float64).eps * np.abs(ev).max()
    def outside(iv, value):
        return max(iv[0] - value, value - iv[1], 0.0)

    out_rows = [
        upper(f"spectral: λmin prob_interval (δ = {delta:g}, any spectrum) ∋ eigh value",
              "identity", outside(lo.prob_interval, ev[0]), ref_err,
              f"outer end: a-posteriori Lanczos bound over the random start, width "
              f"{lo.prob_interval[1] - lo.prob_interval[0]:.2g} ({lo.prob_stop}); eigh's own "
              f"rounding {ref_err:.2g} (2‖Ĥ − Ĥᵀ‖_F + P·ε·‖H‖)"),
        upper(f"spectral: λmax prob_interval (δ = {delta:g}, any spectrum) ∋ eigh value",
              "identity", outside(hi.prob_interval, ev[-1]), ref_err,
              f"width {hi.prob_interval[1] - hi.prob_interval[0]:.2g} ({hi.prob_stop})"),
        upper("spectral: λmin interval (assumes a resolved spectrum) ∋ eigh value", "identity",
              outside(lo.interval, ev[0]), ref_err,
              f"outer end: Bauer–Fike/Kato–Temple from the residual; width "
              f"{lo.interval[1] - lo.interval[0]:.2g}"),
        upper("spectral: λmax interval (assumes a resolved spectrum) ∋ eigh value", "identity",
              outside(hi.interval, ev[-1]), ref_err,
              f"width {hi.interval[1] - hi.interval[0]:.2g}"),
        upper("spectral: Lanczos λmin vs eigh (relative)", "identity",
              abs(lo.value - ev[0]) / abs(ev[0]), 1e-8, f"P={P}, {lo.num_hvps} HVPs"),
        upper("spectral: Lanczos λmax vs eigh (relative)", "identity",
              abs(hi.value - ev[-1]) / abs(ev[-1]), 1e-8, f"P={P}, {hi.num_hvps} HVPs"),
        upper("spectral: HVP vs dense Hessian columns", "identity",
              np.max(np.abs(cols - H[:, [0, 99, P - 1]].T)), 1e-12, "forward-over-reverse"),
        upper("spectral: G + N = ∇²L̂", "identity", np.max(np.abs(G + N - H)), 1e-10,
              "Gauss-Newton + curvature split, max entry error"),
        upper("spectral: G is PSD (−λmin(G)/λmax(G))", "identity",
              -np.linalg.eigvalsh(G)[0] / np.linalg.eigvalsh(G)[-1], 1e-12, "rounding level"),
        upper("spectral: Hutchinson trace within 4 SE", "identity",
              abs(tr.value - ev.sum()), 4 * tr.se, f"200 Rademacher probes, SE {tr.se:.2g}"),
    ]
    summary = spectrum.run(spectrum.Config(steps=300 if not full else 3000,
                                           **(spectrum.FULL if full else {})),
                           Path(out) / "spectrum", progress=False)
    mass = summary.trained["negative_mass_slq"]
    figures = (figure(summary.figures["spectral_density"], out),)
    dense = summary.trained.get("dense")
    out_rows.append(
        upper("spectral: SLQ negative mass vs eigh (4 SE)", "identity",
              abs(mass["value"] - dense["negative_mass"]), 4 * mass["se"],
              "after training; SLQ with 10 probes", figures)
        if dense is not None else
        tendency("spectral: SLQ negative mass", mass["value"], 0.0, mass["se"],
                 "no dense reference at this size", figures))
    return out_rows
