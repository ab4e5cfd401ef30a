"""``mhatheory verify``: every check of the toolkit at small size, as one table and a report.

Each check returns :class:`Check` rows. Kinds:

* ``theorem``: an inequality that must hold at every point probed; FAIL is a bug or a finding.
* ``identity``: two computations that must agree to a stated tolerance (float64 unless noted).
* ``tendency``: an empirical trend from a paper, measured and reported with its uncertainty; it
  is never gated (status REPORT).

The exit status is 1 when any theorem or identity row fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

from mhatheory import data, results, train
from mhatheory.experiments._common import make_problem
from mhatheory.models import deora, reference


@dataclass(frozen=True)
class Check:
    """One row of the verification table.

    ``margin`` is signed so that ≥ 0 means the check holds (e.g. bound − measured for an upper
    bound, tolerance − error for an identity).
    """

    name: str
    kind: str
    passed: bool
    measured: float
    reference: float
    margin: float
    detail: str = ""
    figures: tuple = field(default=())

    @property
    def status(self) -> str:
        if self.kind == "tendency":
            return "REPORT"
        return "PASS" if self.passed else "FAIL"


def upper(name, kind, measured, bound, detail="", figures=()) -> Check:
    """A check of ``measured ≤ bound``."""
    measured, bound = float(measured), float(bound)
    return Check(name, kind, bool(measured <= bound), measured, bound, bound - measured, detail,
                 tuple(figures))


# --------------------------------------------------------------------------------------------
# Foundation checks


def check_model(full: bool, out: Path) -> list[Check]:
    """DeoraMHA (JAX einsums) against the NumPy loop reference, float64, tolerance 1e-12."""
    cfg = data.MixtureConfig(d=8, T=6, n=32)
    batch = data.sample(cfg, jax.random.key(0))
    params = deora.init_params(jax.random.key(1), cfg.d, 4, init_scale=2.0)
    ours = np.asarray(deora.phi(params, batch.X))
    ref = reference.deora_phi_numpy(params["W"], params["U"], batch.X)
    err = float(np.max(np.abs(ours - ref)))
    return [upper("model: Φ vs NumPy reference", "identity", err, 1e-12,
                  "max |Φ_jax − Φ_numpy| over 32 samples, H=4, d=8 (float64)")]


def check_training(full: bool, out: Path) -> list[Check]:
    """GD with a small step decreases L̂ monotonically; test error against the Bayes floor."""
    mixture = data.MixtureConfig(n=128)
    prob = make_problem(mixture, heads=4, init_scale=1.0, seed=0, num_test=4000)
    traj = train.gd(deora.loss_fn, prob.params0, prob.train, steps=400, lr=0.5)
    # Summation rounding: each L̂ is a mean of n terms, so its float64 error is ≤ n·ε·L̂.
    tol = mixture.n * np.finfo(np.float64).eps * traj.loss[:-1]
    worst = float(np.max(np.diff(traj.loss) - tol))
    from mhatheory.experiments._common import error_metrics

    mets = error_metrics(traj.final_params, prob.train, prob.test)
    bayes, se = data.bayes_error(mixture, jax.random.key(99), num=40_000)
    test_err = float(mets["test_error"])
    return [
        upper("train: GD loss monotone (η=0.5, 400 steps)", "theorem", worst, 0.0,
              "max_k L̂(θ_{k+1}) − L̂(θ_k) − n·ε·L̂(θ_k); descent lemma with η below 1/λmax"),
        Check("train: test error vs Bayes floor", "tendency", True, test_err, bayes,
              bayes - test_err, f"test error {test_err:.4f} on 4000 fresh samples; Bayes error "
              f"{bayes:.4f} ± {se:.4f}"),
    ]


CHECKS: dict[str, tuple[str, Callable[[bool, Path], list[Check]]]] = {
    "model": ("the Deora MHA formula", check_model),
    "train": ("gradient descent", check_training),
}


def run_checks(only=None, full: bool = False, out_dir="report", progress: bool = True):
    """Run the selected checks; returns ``(rows, seconds per group)``."""
    from tqdm.auto import tqdm

    names = list(CHECKS) if not only else list(only)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; choose from {list(CHECKS)}.")
    out = Path(out_dir)
    rows, timing = [], {}
    for name in tqdm(names, desc="verify", unit="check", disable=not progress):
        t0 = time.perf_counter()
        rows.extend(CHECKS[name][1](full, out))
        timing[name] = time.perf_counter() - t0
    return rows, timing


def format_table(rows: list[Check]) -> str:
    head = (f"{'status':<7} {'kind':<9} {'check':<52} {'measured':>11} {'reference':>11} "
            f"{'margin':>11}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.status:<7} {r.kind:<9} {r.name[:52]:<52} {r.measured:>11.3g} "
                     f"{r.reference:>11.3g} {r.margin:>11.3g}")
    return "\n".join(lines)


def write_report(rows: list[Check], timing: dict, out_dir, full: bool) -> Path:
    """``report/results.json``, ``report/index.md`` and ``report/index.html``."""
    from mhatheory import report

    out = Path(out_dir)
    results.write_json_atomic(out / "results.json", {
        "experiment": "verify", **results.provenance({"full": full, "checks": list(timing)}, 0),
        "checks": [dict(r.__dict__, status=r.status) for r in rows], "seconds": timing,
        "all_pass": all_pass(rows)})
    return report.write(rows, timing, out)


def all_pass(rows: list[Check]) -> bool:
    return all(r.passed for r in rows if r.kind != "tendency")
