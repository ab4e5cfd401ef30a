"""The heads sweep (``mhatheory run heads``) on a tiny grid: the tuned / robustness / matched /
cost tables, validation selection, all-seeds against survivors-only means, matched-loss
reading, the t-interval and Benjamini–Hochberg code, the run layout, resume, and bad input
rejected before any work."""

import json
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from mhatheory import cli, trends
from mhatheory.experiments import _batched, heads
from mhatheory.experiments._common import make_problem
from mhatheory.experiments.heads import analysis, families
from mhatheory.experiments.heads.records import make_records
from mhatheory.models import deora

# H = 1 at η = 1000 fails to train (a non-finite step or L̂(θ_K) > ln 2); H = 2 recovers
TINY = dict(heads_grid=(1, 2), lr_grid=(4.0, 1e3), init_scale_grid=(1.0,), n_grid=(16,), n=16,
            lr=4.0, init_scale=1.0, primary_lrs=(4.0, 1e3), primary_inits=(1.0, 1.0), seeds=3,
            steps=20, replace=1, probe_seeds=1, num_test=64, num_val=16, const_test=8,
            bayes_samples=2000, d=4, T=4, num_irrelevant=2, width=2, record_points=8)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("heads")
    summary = heads.run(heads.Config(**TINY), out, progress=False)
    return out, summary, json.loads((out / "results.json").read_text())


def test_results_hold_the_tuned_robustness_matched_and_cost_tables(tiny_run):
    out, summary, res = tiny_run
    s = res["summary"]
    for table, keys in (
            ("tuned", ("heads", "lr", "init_scale", "val_error", "test_error", "test_error_se",
                       "on_edge")),
            ("robustness", ("heads", "delta", "good_frac", "good_frac_se", "stable_lr_range")),
            ("matched", ("heads", "target", "reached_frac", "test_error", "gen_gap", "eps1")),
            ("cost", ("heads", "params", "flops_per_step", "seconds_per_step"))):
        assert s[table], table
        for row in s[table]:
            assert all(k in row for k in keys), (table, row)
    # both arms tuned per H; the ensemble control read at matched loss on the primary slices
    assert {(t["arm"], t["heads"]) for t in s["tuned"]} == {
        ("growing", 1), ("growing", 2), ("fixed_width", 1), ("fixed_width", 2)}
    assert {m["arm"] for m in s["matched"]} == {"growing", "fixed_width", "average"}
    cost = {(c["arm"], c["heads"]): c for c in s["cost"]}
    assert cost[("growing", 2)]["params"] == deora.parameter_count(4, 2)
    assert cost[("fixed_width", 2)]["params"] == families.parameter_count("fixed_width", 4, 2, 2)
    assert cost[("growing", 2)]["flops_per_step"] > cost[("growing", 1)]["flops_per_step"] > 0
    assert {c["answer"] for c in s["claims"]} <= {"yes", "no", "depends", "undecided"}
    assert len(s["claims"]) == len(heads.CLAIMS)  # both controls on
    rec = next(r for r in res["records"] if r["arm"] == "growing" and r["primary"])
    steps = heads.Config(**TINY).record_steps()
    assert rec["record_steps"] == list(steps) and len(rec["curves"]["val_error"][0]) == len(steps)
    # the curves end at θ_K: rounded to 7 decimals in the cell files
    assert [c[-1] for c in rec["curves"]["train_loss"]] == pytest.approx(
        rec["per_seed"]["final_loss"], abs=1e-7)
    for f in res["figures"]:
        assert (out / f).stat().st_size > 1000


def test_failure_is_recorded_and_counts_in_the_all_seeds_mean(tiny_run):
    _, _, res = tiny_run
    rec = {(r["arm"], r["heads"], r["lr"]): r for r in res["records"]}
    failed = rec[("growing", 1, 1e3)]
    assert failed["failed_frac"] == 1.0
    assert failed["test_error"] is not None          # all seeds: the failed runs count
    assert failed["test_error_survivors"] is None    # no survivor
    assert rec[("growing", 2, 1e3)]["failed_frac"] < 1.0


def test_train_runs_freeze_nonfinite_rows_and_record_distances_to_their_base():
    prob = make_problem(heads.Config(**TINY).mixture(16), 1, 1.0, 0, 8)
    p0 = jax.tree.map(lambda a: jnp.stack([a, a, a]), prob.params0)
    X = jnp.stack([prob.train.X, prob.train.X, prob.train.X.at[0].set(prob.train.X[1])])
    y = jnp.stack([prob.train.y] * 3)
    sets = {"val": (prob.test.X[None], prob.test.y[None])}
    # rows: (η = 1, seed 0), (η = ∞, seed 0), then a retraining of row 0 with sample 0 replaced
    out = _batched.train_runs(deora.phi, p0, X, y, jnp.array([1.0, jnp.inf, 1.0]), sets,
                              layout=_batched.Layout(2, 1, 1, (0,)), steps=5,
                              record_steps=(0, 2, 5))
    bad = np.asarray(out["nonfinite_step"])
    assert bad.tolist() == [-1, 0, -1]   # θ_1 = θ_0 − ∞·g is not finite: the first step fails
    for a, b in zip(jax.tree.leaves(out["final"]), jax.tree.leaves(p0), strict=True):
        assert np.array_equal(np.asarray(a[1]), np.asarray(b[1]))  # frozen at θ_0
    assert _batched.failed(np.asarray(out["loss"][:, 1]), int(bad[1]))["failed"]
    dist = np.asarray(out["records"]["pair_dist"])[:, 0]
    assert dist[0] == 0 and dist[-1] > 0            # same θ_0, different data
    final = jax.tree.leaves(out["final"])
    direct = math.sqrt(sum(float(jnp.sum((a[2] - a[0]) ** 2)) for a in final))
    assert dist[-1] == pytest.approx(direct, rel=1e-12)   # float64 sums of 20 squares
    err = np.asarray(out["records"]["val_error"])[:, 0, 0, 0]
    f = deora.phi(jax.tree.map(lambda a: a[0], out["final"]), prob.test.X)
    assert err[-1] == float(jnp.mean(prob.test.y * f <= 0))


def test_a_nonfinite_output_is_a_mistake():
    """A NaN or infinite output predicts nothing: counted right (y·f ≤ 0 is False for NaN,
    argmax picks a NaN logit), a failed run would win the tuning on validation error."""
    y = jnp.array([1.0, 1.0, 1.0, -1.0])
    _, wrong = _batched._per_sample("logistic", jnp.array([1.0, jnp.nan, jnp.inf, -2.0]), y)
    assert wrong.tolist() == [0, 1, 1, 0]
    logits = jnp.array([[2.0, 0.0], [jnp.nan, 0.0], [0.0, jnp.nan], [0.0, 1.0]])
    _, wrong = _batched._per_sample("cross_entropy", logits, jnp.array([0, 0, 1, 1]))
    assert wrong.tolist() == [0, 1, 1, 0]


def test_failed_is_independent_of_the_init_and_separates_a_catapult():
    catapult = _batched.failed([0.7, 3.0, 0.5, 0.01], -1)
    assert catapult["spiked"] and not catapult["failed"]
    assert math.isclose(catapult["max_loss_ratio"], 3.0 / 0.7)
    # ends below its large start (L̂(θ_0) = 6) but above ln 2: worse than predicting 0
    assert _batched.failed([6.0, 3.0, 1.1], -1)["failed"]
    assert not _batched.failed([0.69, 0.6, 0.5], -1)["failed"]
    assert _batched.failed([0.7, math.nan], -1)["failed"]


def _fake(lr, init, val_curve, test_curve, train_curve=None, seeds=2, failed=None, heads_=1):
    steps = list(range(len(val_curve)))
    train_curve = train_curve or [0.5] * len(val_curve)
    return {"arm": "growing", "heads": heads_, "lr": lr, "init_scale": init, "n": 8,
            "seeds": seeds, "primary": True, "record_steps": steps,
            "per_seed": {"failed": failed or [False] * seeds},
            "curves": {"val_error": [val_curve] * seeds, "val_loss": [val_curve] * seeds,
                       "test_error": [test_curve] * seeds, "test_loss": [test_curve] * seeds,
                       "train_loss": [train_curve] * seeds}}


def test_validation_selects_a_planted_optimum_and_flags_the_edge():
    cfg = heads.Config(**dict(TINY, lr_grid=(1.0, 4.0, 16.0), init_scale_grid=(0.3, 1.0, 3.0),
                              primary_lrs=(4.0,), primary_inits=(1.0,)))
    recs = [_fake(lr, init, [0.3, 0.2, 0.25], [0.4, 0.3, 0.35])
            for lr in cfg.lr_grid for init in cfg.init_scale_grid]
    planted = next(r for r in recs if (r["lr"], r["init_scale"]) == (4.0, 1.0))
    planted["curves"]["val_error"] = [[0.3, 0.1, 0.2]] * 2
    # its test error is not the best anywhere: selection must not look at test data
    planted["curves"]["test_error"] = [[0.9, 0.8, 0.9]] * 2
    for r in recs:
        r["n"] = cfg.n
    (row,) = analysis.tuned(recs, cfg)
    assert (row["lr"], row["init_scale"], row["stop_step"]) == (4.0, 1.0, 1)
    assert row["test_error"] == 0.8 and not row["on_edge"]
    planted["lr"] = 16.0
    next(r for r in recs if r is not planted and (r["lr"], r["init_scale"]) == (16.0, 1.0))[
        "lr"] = 4.0
    planted["curves"]["val_error"] = [[0.3, 0.1, 0.2], [0.3, 0.12, 0.2]]
    (row,) = analysis.tuned(recs, cfg)
    # at η's edge and better than the best at η = 4 (0.2) by 0.09 ± 0.01: on it
    assert row["lr"] == 16.0 and row["at_edge"] == ["lr"] and row["on_edge"]
    assert row["edge"]["lr"]["inside"] == 4.0
    assert row["edge"]["lr"]["difference"] == pytest.approx(-0.09, abs=1e-15)
    # a plateau: the next value inside is as good within noise; at the edge, not on it
    inside = next(r for r in recs if (r["lr"], r["init_scale"]) == (4.0, 3.0))
    inside["curves"]["val_error"] = [[0.3, 0.12, 0.2], [0.3, 0.105, 0.2]]
    (row,) = analysis.tuned(recs, cfg)
    assert row["at_edge"] == ["lr"] and not row["on_edge"]


@pytest.mark.parametrize("verdicts, held", [
    (["HOLDS", "HOLDS"], True), (["HOLDS", "INCONCLUSIVE"], None),
    (["HOLDS", "VIOLATED", "INCONCLUSIVE"], False)])
def test_an_assumption_row_is_held_only_when_every_probe_holds(verdicts, held):
    """The certified rows are three-valued: an INCONCLUSIVE probe is never a pass."""
    cfg = heads.Config(primary_lrs=(4.0,), primary_inits=(1.0,), init_scale=1.0)
    rec = {"primary": True, "arm": "growing", "n": cfg.n, "lr": 4.0, "init_scale": 1.0,
           "heads": 1, "per_seed": {},
           "probes": [{"theorem_verdict": v, "chain_verdict": v} for v in verdicts]}
    rows = {a["assumption"]: a for a in analysis.assumptions([rec], cfg)}
    for name in ("λmin(∇²L̂) ≥ λmin(N) at every probe (theorem, certified)",
                 "weak-convexity chain at θ_K (certified)"):
        assert rows[name]["held"] is held
        assert f"INCONCLUSIVE {verdicts.count('INCONCLUSIVE')}" in rows[name]["detail"]


def _payload(test_errors, failed):
    S, P = len(test_errors), 3
    curve = [[0.5] * P for _ in range(S)]
    part = {"lr": 1.0, "primary": False,
            "outcome": {"failed": failed, "failed_step": [None] * S, "spiked": [False] * S,
                        "max_loss_ratio": [1.0] * S},
            "final_loss": [0.5] * S,
            "curves": {"train_loss": curve, "val_loss": curve, "val_error": curve,
                       "test_loss": curve, "train_error": curve, "theta_dist": curve,
                       "test_error": [[0.5, 0.5, e] for e in test_errors]}}
    spec = {"arm": "growing", "heads": 1, "init_scale": 1.0, "n": 8, "seeds": S}
    return {"spec": spec, "record_steps": [0, 1, 2], "per_lr": [part]}


def test_a_planted_failed_run_moves_the_all_seeds_mean_not_the_survivors_mean():
    (clean,) = make_records([_payload([0.1, 0.2, 0.3], [False] * 3)], 0.0)
    (planted,) = make_records([_payload([0.1, 0.2, 0.3, 0.5], [False] * 3 + [True])], 0.0)
    assert planted["test_error_survivors"] == pytest.approx(clean["test_error"], rel=1e-15)
    assert planted["test_error"] == pytest.approx((0.1 + 0.2 + 0.3 + 0.5) / 4, rel=1e-15)
    assert planted["failed_frac"] == 0.25


def test_matched_reading_picks_the_first_recorded_step_below_target():
    rec = _fake(1.0, 1.0, [0.3] * 5, [0.4, 0.3, 0.2, 0.1, 0.05],
                train_curve=[0.9, 0.5, 0.29, 0.31, 0.05])
    rec["record_steps"] = [0, 10, 20, 30, 40]
    m = analysis.read_matched(rec, 0.3)
    # the first recorded step at or below 0.3 is 20 (not 40, where L̂ is below it again)
    assert m["per_seed"]["first_step_below"] == [20, 20] and m["reached_frac"] == 1.0
    # read at the crossing, linear in log L̂ between steps 10 (0.5) and 20 (0.29)
    t = math.log(0.5 / 0.3) / math.log(0.5 / 0.29)
    assert m["step"] == pytest.approx(10 + 10 * t, rel=1e-12)
    assert m["test_error"] == pytest.approx(0.3 + t * (0.2 - 0.3), rel=1e-12)
    # the gap is read at L̂ = target exactly: test loss there minus 0.3
    assert m["gen_gap"] == pytest.approx(m["test_error"] - 0.3, rel=1e-12)
    exact = analysis.read_matched(rec, 0.29)        # a recorded value: no interpolation
    assert exact["step"] == 20 and exact["test_error"] == 0.2
    never = analysis.read_matched(rec, 0.01)
    assert never["reached_frac"] == 0.0 and never["test_error"] is None


@given(st.lists(st.floats(-3, 3), min_size=3, max_size=12))
def test_t_interval_matches_scipy(values):
    v = np.asarray(values)
    t = trends.t_test(values)
    if np.std(v) < 1e-9 * (1 + np.abs(v).max()):
        return  # scipy's t is undefined at zero spread; t_test's convention is tested below
    ref = stats.ttest_1samp(v, 0.0)
    ci = ref.confidence_interval(0.95)
    # both the same t quantile × SE; the SE is a float64 sum of ≤ 12 terms
    assert t["lo"] == pytest.approx(ci.low, rel=1e-9, abs=1e-12)
    assert t["hi"] == pytest.approx(ci.high, rel=1e-9, abs=1e-12)
    assert t["p"] == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)


def test_t_test_conventions_at_zero_spread_and_too_few_values():
    """Equal values: the exact sign-flip test, p = 2^(1−n) (1 for zeros), so two seeds that
    agree decide nothing and six decide at 5 %."""
    assert trends.t_test([0.0, 0.0, 0.0])["p"] == 1.0
    assert trends.t_test([0.2, 0.2, 0.2])["p"] == 0.25
    assert trends.t_test([-0.01, -0.01])["p"] == 0.5
    assert trends.t_test([0.2] * 6)["p"] == 2.0 ** -5 < 0.05
    assert trends.t_test([0.2])["p"] is None and trends.t_test([])["mean"] is None


def test_a_flat_curve_has_slope_zero_and_decides_nothing():
    """Equal means at every H give slope exactly 0 (np.polyfit gave −3.9e-17, which the
    zero-spread branch then resolved as a decrease), per seed and over bootstrap curves."""
    fit = trends.fit_slope([1, 2, 4], [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]], "linear")
    assert fit["per_seed"] == [0.0, 0.0] and trends.t_test(fit["per_seed"])["p"] == 1.0
    assert trends.fit_slope([1, 2], [[0.3] * 3, [0.3] * 3], "log")["per_seed"] == [0.0] * 3
    boot = np.tile([[0.1], [0.7], [0.2]], (1, 5)) * np.ones((3, 5))
    assert trends.slope(np.log2([1, 2, 4]), boot).tolist() == [trends.slope(
        np.log2([1, 2, 4]), boot[:, 0])] * 5
    assert np.all(trends.slope([0.0, 1.0, 2.0], np.full((3, 4), 0.37)) == 0)


def test_benjamini_hochberg_matches_a_hand_computation():
    ps = [0.001, 0.045, 0.025, 0.2, 0.012]  # adjusted: 0.005, 0.056, 0.042, 0.2, 0.03
    tests = [{"p": p, "mean": -1.0} for p in ps]
    verdicts = trends.decide(tests, -1, alpha=0.05)
    # BH by hand: sorted p·m/rank with a running minimum from the top
    order = np.argsort(ps)
    adj = np.minimum.accumulate((np.array(ps)[order] * len(ps) / np.arange(1, 6))[::-1])[::-1]
    hand = np.empty(5)
    hand[order] = np.minimum(adj, 1)
    assert [t["p_adjusted"] for t in tests] == pytest.approx(hand.tolist(), rel=1e-12)
    assert verdicts == ["yes" if q < 0.05 else "undecided" for q in hand]
    assert trends.decide([{"p": 0.001, "mean": 2.0}], -1) == ["no"]
    assert trends.decide([{"p": None, "mean": None}], -1) == ["undecided"]


def test_config_takes_lists_and_numpy_numbers_and_names_a_function_passed_itself():
    cfg = heads.Config(heads_grid=[1, np.int64(2)], n_grid=np.array([32, 128, 512]))
    assert cfg.heads_grid == (1, 2) and type(cfg.heads_grid[1]) is int
    assert cfg.n_grid == (32, 128, 512) and hash(cfg) == hash(heads.Config(heads_grid=(1, 2)))
    with pytest.raises(ValueError, match="must be a tuple of numbers"):
        heads.Config(heads_grid={1, 2})

    def make(num_heads, *, rngs):
        raise AssertionError("never built")

    with pytest.raises(ValueError, match=f"'{__name__}:make'"):
        heads.Config(model=make)


def test_failed_runs_leave_a_slice_unresolved_where_they_measure_the_divergence():
    """A loss-type slice with one failed run, or a test-error slice whose every run failed, is
    unresolved with its reason; a test-error slice with some runs trained reads them all."""
    from mhatheory.experiments.heads.claims import _with_failures

    def rows(*failed):
        return [{"per_seed": {"failed": list(f)}} for f in failed]

    sl = {"p": 0.01, "mean": -1.0}
    one = rows([False, True], [False, False])
    assert _with_failures(sl, one, "gen_gap")["p"] is None
    kept = _with_failures(sl, one, "test_error")
    assert kept["p"] == 0.01 and (kept["failed_runs"], kept["runs"]) == (1, 4)
    gone = _with_failures(sl, rows([True, True], [True, True]), "test_error")
    assert gone["p"] is None and gone["excluded"] == "all 4 runs failed"


def test_the_curvature_slope_is_not_read_from_failed_runs_after_init():
    """−λmin/L̂ at a diverged θ measures the divergence: past θ₀ a slice with a failed run says
    so instead of a slope; at θ₀ every run is read."""
    cfg = heads.Config(primary_lrs=(4.0,), primary_inits=(1.0,), init_scale=1.0)
    recs = [{"primary": True, "arm": "growing", "n": cfg.n, "lr": 4.0, "init_scale": 1.0,
             "heads": h, "per_seed": {"failed": [False, h == 2, False],
                                      **{f"neg_lambda_over_loss_{s}": [1.0 / h, 1.1 / h, 0.9 / h]
                                         for s in ("init", "late")}}} for h in (1, 2, 4)]
    rows = {a["assumption"]: a["detail"] for a in analysis.assumptions(recs, cfg)}
    assert rows["−λmin/L̂ ∝ H^b at late (bound: b = −1/2)"] == \
        "η=4/init=1: not read (1 of 9 runs failed)"
    assert rows["−λmin/L̂ ∝ H^b at init (bound: b = −1/2)"].startswith("η=4/init=1: -1.00")


def test_recompute_claims_rebuilds_what_the_run_computed(tiny_run, tmp_path):
    """``recompute_claims`` reads only results.json: on a copy whose claims were damaged it
    writes back the run's own slopes, claims and assumption rows, and says when it did."""
    import shutil
    out, _, res = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("cells"))
    damaged = json.loads((copy / "results.json").read_text())
    for key in ("claims", "slopes", "assumptions"):
        damaged["summary"][key] = []
    (copy / "results.json").write_text(json.dumps(damaged))
    heads.recompute_claims(copy)
    again = json.loads((copy / "results.json").read_text())
    for key in ("claims", "slopes", "assumptions"):
        assert again["summary"][key] == res["summary"][key], key
    assert again["summary"]["claims_recomputed"]["versions"]["mhatheory"]
    assert again["created_utc"] == res["created_utc"]           # the run's provenance stays
    with pytest.raises(ValueError, match="not a heads sweep"):
        (copy / "results.json").write_text(json.dumps({"experiment": "stability"}))
        heads.recompute_claims(copy)


def _claim_summary(per_seed_slices):
    return {"slopes": [{"claim": "c", "quantity": "gen_gap", "arm": "growing", "direction": -1,
                        "kind": "linear",
                        "slices": [dict(trends.t_test(ps), slice=f"s{i}", per_seed=ps,
                                        verdict=v)
                                   for i, (ps, v) in enumerate(per_seed_slices)]}]}


def test_claim_answers_yes_no_depends_and_undecided():
    def answer(*slices):
        return heads.claims(_claim_summary(slices))[0]

    assert answer(([-0.5, -0.6, -0.4], "yes")).answer == "yes"
    assert answer(([0.5, 0.6, 0.4], "no")).answer == "no"
    row = answer(([-0.5, -0.6, -0.4], "yes"), ([0.5, 0.6, 0.4], "no"))
    assert row.answer == "depends" and "as claimed at s0; against at s1" in row.detail
    assert answer(([0.5, -0.6, 0.4], "undecided")).answer == "undecided"
    none = heads.claims({"slopes": [{"claim": "c", "quantity": "q", "arm": "growing",
                                      "direction": -1, "kind": "linear", "slices": []}]})[0]
    assert none.answer == "undecided" and none.measured is None


@given(a=st.floats(-2, 2), c=st.floats(1e-3, 1e3))
def test_slope_code_recovers_an_exact_power_law(a, c):
    hs = [1, 2, 4, 8, 16, 32, 64]
    fit = trends.fit_slope(hs, [[c * h**a] * 3 for h in hs], "log")
    # an exact law fitted in float64: values up to |log c| + 2·log 64 ≈ 15 (log) or c ≤ 1e3
    # (linear) round at ≤ 1e3·ε ≈ 2e-13, so 1e-9 only catches a wrong fit, never rounding
    assert abs(fit["slope"] - a) < 1e-9 and fit["se"] < 1e-9
    lin = trends.fit_slope(hs, [[c + a * math.log2(h)] * 3 for h in hs], "linear")
    assert abs(lin["slope"] - a) < 1e-9  # as above


def test_fixed_width_init_matches_the_deora_variance_and_output():
    p = families.fixed_width_init(jax.random.key(0), 8, 2, 3.0, 8)
    assert p["Q"].shape == (2, 8, 4) and p["U"].shape == (2, 8)
    big = families.fixed_width_init(jax.random.key(1), 8, 400, 3.0, 1600)
    W = jnp.einsum("hdr,her->hde", big["Q"], big["K"])
    # Var W_ij = s²/d = 1.125 over 25,600 entries: the sample variance's relative SD is
    # √(2/25,600)·(kurtosis factor ≤ 3) ≈ 2.7 %; 15 % is > 5 SD
    assert float(jnp.var(W)) == pytest.approx(9.0 / 8, rel=0.15)
    X = jax.random.normal(jax.random.key(2), (5, 4, 8))
    full = {"W": jnp.einsum("hdr,her->hde", p["Q"], p["K"]), "U": p["U"]}
    assert np.allclose(families.fixed_width_phi(p, X), deora.phi(full, X), rtol=1e-12)


@pytest.mark.parametrize("change, flag", [
    ({"heads_grid": ()}, "--heads-grid"), ({"heads_grid": (0, 2)}, "--heads-grid"),
    ({"lr_grid": (1.0, -1.0)}, "--lr-grid"), ({"init_scale_grid": (0.0,)}, "--init-scale-grid"),
    ({"n_grid": (1, 8)}, "--n-grid"), ({"seeds": 1}, "--seeds"),
    ({"num_val": 1}, "--num-val"), ({"delta": 0.0}, "--delta"), ({"delta": -0.1}, "--delta"),
    ({"loss_targets": (0.1, 0.3)}, "--loss-targets"), ({"loss_targets": (0.3, 0.0)},
                                                       "--loss-targets"),
    ({"primary_lrs": (3.0, 4.0)}, "--primary-lrs"), ({"primary_inits": (5.0, 1.0)},
                                                     "--primary-inits"),
    ({"primary_lrs": (4.0,)}, "--primary-lrs and --primary-inits"),
    ({"lr": 1e3, "init_scale": 1.0, "primary_lrs": (4.0,), "primary_inits": (1.0,)}, "--lr"),
    ({"replace": 17}, "--replace"), ({"probe_seeds": 4}, "--probe-seeds"),
    ({"width": 3}, "--width"), ({"alpha": 1.5}, "--alpha")])
def test_bad_input_names_the_flag(change, flag):
    with pytest.raises(ValueError, match=flag):
        heads.Config(**dict(TINY, **change))


@pytest.mark.parametrize("argv, flag", [
    (["--num-val", "1"], "--num-val"), (["--delta", "0"], "--delta"),
    (["--loss-targets", "0.1,0.3"], "--loss-targets"), (["--primary-lrs", "3,4"],
                                                        "--primary-lrs")])
def test_cli_rejects_bad_input_before_any_work(tmp_path, capsys, argv, flag):
    out = tmp_path / "never"
    assert cli.main(["run", "heads", "--out", str(out), *argv]) == 2
    assert flag in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


@given(st.integers(0, 2**31 - 1))
def test_the_bootstraps_good_fractions_read_the_best_step_as_best_step_does(seed):
    """The bootstrap's shares of settings within δ equal those from ``_best_step``'s choice per
    resample, with exact ties, NaN runs and a setting whose every value is NaN."""
    rng = np.random.default_rng(seed)
    S, T = 3, 5

    def curve():                                  # few distinct values, so ties are common
        a = rng.choice([0.1, 0.2, 0.3, np.nan], size=(S, T), p=[0.3, 0.3, 0.3, 0.1])
        return a.tolist()

    recs = [{"curves": {"val_error": curve(), "val_loss": curve()}} for _ in range(4)]
    recs.append({"curves": {"val_error": np.full((S, T), np.nan).tolist(),
                            "val_loss": curve()}})
    resamples = rng.integers(0, S, (50, S))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # means of all-NaN slices
        got = analysis._good_fractions(recs, resamples, 0.05)
        want = [analysis._good(recs, idx, 0.05)[1].mean() for idx in resamples]
    assert got.tolist() == want
