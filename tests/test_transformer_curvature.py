"""transformer-curvature: config checks before any work, and the summary / verify rows.

(The end-to-end run is too slow for the unit suite on CPU today: each probe compiles its Lanczos
programs afresh; see the experiment module.)"""

import pytest

from mhatheory.experiments import EXPERIMENTS, load
from mhatheory.experiments import transformer_curvature as tc

PINNED = ("heads", "layers", "head_dim", "step", "seed", "loss", "lambda_min", "lambda_max",
          "lambda_min_N")


def test_registered():
    assert EXPERIMENTS["transformer-curvature"].endswith("transformer_curvature")
    assert load("transformer-curvature").Config is tc.Config


@pytest.mark.parametrize("kw, flag", [
    ({"heads_grid": ()}, "heads_grid"),
    ({"layers_grid": ()}, "layers_grid"),
    ({"scaling_grid": ()}, "scaling_grid"),
    ({"heads_grid": (1, 3), "d_model": 16}, "heads_grid"),
    ({"layers_grid": (0,)}, "layers_grid"),
    ({"scaling_grid": ("bogus",)}, "scaling_grid"),
    ({"seeds": 0}, "seeds"),
    ({"early_step": 0}, "early_step"),
])
def test_bad_input_named(kw, flag):
    with pytest.raises(ValueError, match=flag):
        tc.Config(**kw)


def test_fixed_head_dim_allows_any_heads():
    tc.Config(heads_grid=(3,), scaling_grid=("fixed_head_dim",))


def _rec(h, seed, stage, lam, verdict="HOLDS"):
    return {"scaling": "fixed_d_model", "heads": h, "layers": 1, "head_dim": 16 // h,
            "step": {"init": 0, "early": 2, "late": 10}[stage], "stage": stage, "seed": seed,
            "loss": 1.0, "lambda_min": lam, "lambda_max": 1.0, "lambda_min_N": lam - 1,
            "neg_lambda_over_loss": -lam, "theorem_verdict": verdict, "theorem_margin": 0.5,
            "lambda_min_converged": True, "lambda_min_N_converged": True}


def test_summary_and_rows():
    cfg = tc.Config(heads_grid=(1, 4), layers_grid=(1,), scaling_grid=("fixed_d_model",),
                    seeds=2)
    recs = [_rec(h, s, st, -(h ** -0.5) * (1 + 0.01 * s)) for h in (1, 4) for s in (0, 1)
            for st in tc.STAGES]
    assert all(k in recs[0] for k in PINNED)
    summ = tc.summarise(recs, cfg)
    assert summ["theorem"]["counts"]["HOLDS"] == len(recs)
    out = tc.rows(summ)
    assert out[0]["kind"] == "theorem" and out[0]["verdict"] == "HOLDS"
    slopes = [r for r in out if r["kind"] == "tendency"]
    assert len(slopes) == 3
    # an exact power law (slope −0.5 for every seed): float64 rounding is ≪ 1e-6
    assert all(abs(r["measured"] + 0.5) < 1e-6 for r in slopes)
    bad = tc.rows(tc.summarise(recs[:-1] + [_rec(4, 1, "late", -0.5, "VIOLATED")], cfg))
    assert bad[0]["verdict"] == "VIOLATED"
