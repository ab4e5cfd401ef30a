"""``verify`` group ``symmetry``: the Zuo–Guerzhoy permutation theorem, its negative controls,
the one-layer causal edge case, and the enumerated addition ceiling."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from mhatheory import symmetry
from mhatheory.checks import Check, figure, lower, upper
from mhatheory.experiments import symmetry_sweep
from mhatheory.models import DecoderTransformer
from mhatheory.tasks import addition as ad

#: a short prefix-wise training run of a non-causal no-PE model (C10, C13)
TRAINING = dict(causal_grid=("noncausal",), positional_grid=("none",), residual_grid=("all",),
                seeds=1, d_model=32, layers=2, num_train=4000, num_test=1000, steps=150,
                warmup=10, eval_every=150, checkpoint_every=1000)


def _model(layers, causal=False, pe="none", residual=True):
    m = DecoderTransformer(ad.VOCAB, 32, 4, layers, positional=pe, causal=causal,
                           residual=residual, rngs=nnx.Rngs(layers), param_dtype=jnp.float64)
    return lambda t: m(t)


def rows(full: bool, out, progress: bool = False) -> list[Check]:
    """The Zuo–Guerzhoy theorem, its controls, and the enumerated addition ceiling."""
    tokens = jnp.asarray(ad.encode(123, 456)[0, :8])
    theorem = max(symmetry.last_position_invariance(_model(L, residual=r), tokens).max_deviation
                  for L in (1, 2, 4) for r in (True, False))
    controls = {
        "moves the last position": symmetry.moving_last_deviation(_model(2), tokens),
        "learned PE": symmetry.last_position_invariance(_model(2, pe="learned"), tokens),
        "sinusoidal PE": symmetry.last_position_invariance(_model(2, pe="sinusoidal"), tokens),
        "causal, 2 layers": symmetry.last_position_invariance(_model(2, causal=True), tokens),
    }
    one = _model(1, causal=True)
    out_rows = [upper("symmetry C6: non-causal no-PE invariant at n (L=1,2,4, ±res)", "theorem",
                      theorem, 1e-10, "max |Δ logits| over 50 random permutations, float64")]
    for name, res in controls.items():
        out_rows.append(lower(f"symmetry C7 control breaks it: {name}", "sanity",
                              res.max_deviation, 1e-2, "max |Δ logits| must exceed 1e-2"))
    out_rows.append(upper("symmetry C8: 1-layer causal invariant at n", "theorem",
                          symmetry.last_position_invariance(one, tokens).max_deviation, 1e-10,
                          ""))
    early = symmetry.earlier_position_deviation(one, tokens).max_deviation
    out_rows.append(lower("symmetry C8: …but not at k < n", "sanity", early, 1e-2,
                          "max |Δ logits| at positions k < n"))
    cfg = symmetry_sweep.Config(**TRAINING)
    s = symmetry_sweep.run(cfg, Path(out) / "symmetry", progress=progress)
    row, ceil = s.table[0], s.ceilings
    noise = 2 * np.sqrt(ceil.exact_match * (1 - ceil.exact_match) / cfg.num_test)
    out_rows.append(upper("symmetry C13: theorem on a trained model", "theorem",
                          row["trained_invariance_max"], 1e-10,
                          "float64 copy of the trained model"))
    out_rows.append(upper("symmetry C10: exact match ≤ enumerated ceiling (+2σ)", "theorem",
                          row["exact_match_mean"], ceil.exact_match + noise,
                          f"ceiling {ceil.exact_match:.4f} by enumerating 10⁶ problems",
                          [figure(s.figures[f], out) for f in ("learning_curves",
                                                               "correlations")]))
    small = ad.ceilings(0, 20, True)
    brute = ad.ceilings_by_counting(0, 20, True)
    out_rows.append(upper("symmetry: vectorised ceiling = brute force (0..20)", "identity",
                          abs(small.exact_match - brute.exact_match), 1e-15, ""))
    return out_rows
