"""Measure the probabilistic outer end's miss frequency against its stated failure probability.

For each of :func:`mhatheory.spectral.named_spectra` (P = 300: an eigenvalue pair 1e-11 apart,
a cluster of 50 eigenvalues 1e-9 wide, λmin inside a dense bulk near 0, an isolated λmin under a
1e-4 gap), rotated by a random orthogonal matrix, in float64 and with float32 products under
the float64 recurrence: 10,000 vmapped random starts, the end read every 5 steps up to 100, at
δ = 0.1, 0.01 and 1e-6 (:func:`mhatheory.spectral.coverage`). A run counts as a miss when its
end excluded λmin after any of those steps. Writes
``experiments/results/certificate-coverage/results.json``; ``experiments/tables.py`` renders it.

    python experiments/certificate_coverage.py [--starts 10000] [--quick]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from mhatheory import results, spectral

OUT = Path(__file__).parent / "results" / "certificate-coverage"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", type=int, default=10_000, help="random starts per spectrum")
    ap.add_argument("--quick", action="store_true", help="1,000 starts, written nowhere")
    args = ap.parse_args()
    starts = 1_000 if args.quick else args.starts
    config = {"num_params": 300, "num_starts": starts, "steps": 100, "every": 5,
              "failure_probs": [0.1, 0.01, 1e-6], "dtypes": ["float64", "float32"],
              "which": "smallest"}
    rows = []
    for name, lam in spectral.named_spectra(config["num_params"]).items():
        for dtype in config["dtypes"]:
            H = spectral.rotated(lam, jax.random.key(1), jnp.dtype(dtype))
            t0 = time.perf_counter()
            cov = spectral.coverage(H, failure_probs=config["failure_probs"],
                                    key=jax.random.key(2), num_starts=starts,
                                    steps=config["steps"], every=config["every"],
                                    exact=float(np.min(lam)))
            seconds = time.perf_counter() - t0
            for c in cov:
                row = {"spectrum": name, "dtype": dtype, "failure_prob": c.failure_prob,
                       "starts": c.num_starts, "misses": c.misses, "frequency": c.frequency,
                       "ci_low": c.interval[0], "ci_high": c.interval[1],
                       "within": c.within, "median_width": c.median_width,
                       "seconds": seconds}
                rows.append(row)
                print(f"{name:9s} {dtype}  δ={c.failure_prob:<6g} misses {c.misses:5d}/"
                      f"{c.num_starts}  freq {c.frequency:.4f}  95% [{c.interval[0]:.4f}, "
                      f"{c.interval[1]:.4f}]  within δ: {c.within}  median width/spread "
                      f"{c.median_width:.3g}", flush=True)
    if not args.quick:
        results.write_results(OUT, "certificate-coverage", config, 2,
                              {"rows": rows, "all_within": all(r["within"] for r in rows)})
        print(f"wrote {OUT / 'results.json'}")


if __name__ == "__main__":
    main()
