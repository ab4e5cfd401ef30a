"""The heads sweep (``mhatheory run heads``) on a tiny grid: records, figures, resume, config
changes, divergence as data, the slope code, the claims, and bad input rejected before work."""

import inspect
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mhatheory import cli, trends
from mhatheory.experiments import _batched, heads
from mhatheory.experiments import sweep as _sweep
from mhatheory.experiments._common import make_problem

# H = 1 at η = 1000 fails to train (its loss ends above L̂(θ_0)); H = 2 at the same η recovers
TINY = dict(heads_grid=(1, 2), lr_grid=(4.0, 1e3), init_scale_grid=(1.0,), n_grid=(16,), n=16,
            lr=4.0, init_scale=1.0, seeds=2, steps=20, replace=1, probe_seeds=1, num_test=64,
            const_test=8, bayes_samples=2000, d=4, T=4, num_irrelevant=2)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("heads")
    summary = heads.run(heads.Config(**TINY), out, progress=False)
    return out, summary, json.loads((out / "results.json").read_text())


def test_records_hold_the_issue_fields_per_seed_values_and_figures(tiny_run):
    out, summary, res = tiny_run
    assert len(res["records"]) == 4  # 2 heads × 2 step sizes
    for rec in res["records"]:
        for key in ("heads", "lr", "init_scale", "n", "diverged_frac", "test_error", "gen_gap",
                    "gen_gap_se", "eps1", "final_loss", "eta_lambda_max0", "theta_dist",
                    "ntk_margin", "bayes_error", "per_seed"):
            assert key in rec, key
        assert len(rec["per_seed"]["eps1"]) == 2 and len(rec["per_seed"]["diverged"]) == 2
    stable = [r for r in res["records"] if r["lr"] == 4.0]
    assert all(r["diverged_frac"] == 0 and r["bound_lipschitz"] > 0 for r in stable)
    assert all(r["per_seed"]["kappa_hat_late"][0] is not None for r in stable)  # probe seed
    assert res["summary"]["slopes"][0]["quantities"]["eps1"]["kind"] == "log"
    assert [c["answer"] in ("yes", "no", "undecided") for c in summary["claims"]] == [True] * 5
    for f in res["figures"]:
        assert (out / f).stat().st_size > 1000


def test_divergence_is_detected_and_recorded_with_its_step(tiny_run):
    _, _, res = tiny_run
    rec = {(r["heads"], r["lr"]): r for r in res["records"]}
    failed = rec[(1, 1e3)]
    assert failed["diverged_frac"] == 1.0 and len(failed["diverged_steps"]) == 2
    assert all(1 <= s <= TINY["steps"] for s in failed["diverged_steps"])
    assert failed["test_error"] is None  # generalisation is averaged over stable seeds only
    assert rec[(2, 1e3)]["diverged_frac"] == 0.0  # two heads survive the same step size


def test_nonfinite_runs_freeze_and_report_the_step_while_others_continue():
    prob = make_problem(heads.Config(**TINY).mixture(16), 1, 1.0, 0, 4)
    p0 = jax.tree.map(lambda a: jnp.stack([a, a]), prob.params0)
    X = jnp.stack([prob.train.X] * 2)
    y = jnp.stack([prob.train.y] * 2)
    out = _batched.gd_runs(p0, X, y, jnp.array([1.0, jnp.inf]), steps=5, probe_steps=(0, 5))
    bad = np.asarray(out["nonfinite_step"])
    assert bad[0] == -1 and bad[1] == 0  # θ_1 = θ_0 − ∞·g is not finite: the first step fails
    for a, b in zip(jax.tree.leaves(out["final"]), jax.tree.leaves(p0), strict=True):
        assert np.array_equal(np.asarray(a[1]), np.asarray(b[1]))  # frozen at θ_0
    cls = _batched.classify(np.asarray(out["loss"][1]), int(bad[1]))
    assert cls["diverged"] and cls["diverged_step"] == bad[1]
    assert not _batched.classify(np.asarray(out["loss"][0]), -1)["diverged"]


def test_classify_separates_failure_from_a_catapult_that_recovers():
    catapult = _batched.classify([0.7, 3.0, 0.5, 0.01], -1)
    assert catapult["spiked"] and not catapult["diverged"]
    assert math.isclose(catapult["max_loss_ratio"], 3.0 / 0.7)
    failed = _batched.classify([0.7, 0.5, 2.0, 0.4, 5.0], -1)
    assert failed["diverged"] and failed["diverged_step"] == 2
    assert _batched.steps_to([0.7, 0.2, 0.05], 0.1) == 2
    assert _batched.steps_to([0.7, 0.2], 0.1) is None


def test_a_finished_cell_resumes_without_recomputation(tiny_run, tmp_path):
    src, _, first = tiny_run
    out = tmp_path / "copy"
    (out / "cells").mkdir(parents=True)
    for f in (src / "cells").glob("*.json"):
        (out / "cells" / f.name).write_text(f.read_text())
    kept, lost = sorted((out / "cells").glob("*.json"))
    before = kept.stat().st_mtime_ns
    lost.unlink()  # as if the run died in this cell
    heads.run(heads.Config(**TINY), out, progress=False, resume=True, figures=False)  # drawn
    assert kept.stat().st_mtime_ns == before and lost.exists()               # by tiny_run
    again = json.loads((out / "results.json").read_text())
    assert [r["eps1"] for r in again["records"]] == [r["eps1"] for r in first["records"]]


@pytest.mark.skipif("config" not in inspect.signature(_sweep.run_cells).parameters,
                    reason="run_cells does not store cell configs yet")
def test_a_cell_whose_config_changed_is_recomputed_and_new_grid_values_reuse_the_rest(tmp_path):
    # TINY's step sizes and seeds: the H = 1 and H = 2 cells have tiny_run's shapes, so they
    # reuse its compiled programs (only the data of sigma = 0.35 and the 3 seeds compile anew)
    base = dict(TINY, heads_grid=(1,), probe_seeds=0)

    def run(**change):
        heads.run(heads.Config(**dict(base, **change)), tmp_path, progress=False, resume=True,
                  figures=False)
        return json.loads((tmp_path / "results.json").read_text())

    run()
    cell = tmp_path / "cells" / "H1_init1_n16.json"
    stamp = cell.stat().st_mtime_ns
    # a new H only adds a cell; the finished one is reused
    assert run(heads_grid=(1, 2))["sweep"]["reused"] == 1 and cell.stat().st_mtime_ns == stamp
    # noisier data change every cell's result: recomputed, not reused
    res = run(heads_grid=(1, 2), sigma=0.35)
    assert res["sweep"]["recomputed_config_changed"] == 2 and cell.stat().st_mtime_ns != stamp
    assert json.loads(cell.read_text())["config"]["sigma"] == 0.35
    # a cell holds all its seeds (and step sizes), so changing them recomputes it too
    res = run(heads_grid=(1, 2), sigma=0.35, seeds=3)
    assert res["sweep"]["recomputed_config_changed"] == 2
    assert len(res["records"][0]["per_seed"]["eps1"]) == 3


@given(a=st.floats(-2, 2), c=st.floats(1e-3, 1e3))
def test_slope_code_recovers_an_exact_power_law(a, c):
    hs = [1, 2, 4, 8, 16, 32, 64]
    fit = trends.fit_slope(hs, [[c * h**a] * 3 for h in hs], "log")
    # an exact law fitted in float64: values up to |log c| + 2·log 64 ≈ 15 (log) or c ≤ 1e3
    # (linear) round at ≤ 1e3·ε ≈ 2e-13, so 1e-9 only catches a wrong fit, never rounding
    assert abs(fit["slope"] - a) < 1e-9 and fit["se"] < 1e-9
    lin = trends.fit_slope(hs, [[c + a * math.log2(h)] * 3 for h in hs], "linear")
    assert abs(lin["slope"] - a) < 1e-9  # as above


def test_slope_code_recovers_a_noisy_power_law_within_its_se():
    rng = np.random.default_rng(0)
    hs = [1, 2, 4, 8, 16, 32, 64]
    hits = 0
    for _ in range(40):
        noise = rng.normal(0, 0.2, (len(hs), 6))
        fit = trends.fit_slope(hs, (2.0 * np.array(hs)[:, None] ** -0.5 * np.exp(noise)).tolist(),
                               "log")
        hits += abs(fit["slope"] + 0.5) < 2 * fit["se"]
        assert fit["monotone"] in ("decreasing", "no")
    assert hits >= 32  # ≈ 95 % coverage of a 2-SE interval (t with 5 dof: ~88 %)
    exact = trends.fit_slope(hs, [[h**-0.5, None, -1.0] for h in hs], "log")
    assert exact["per_seed"][1] is None and exact["excluded"] == len(hs)
    assert exact["monotone"] == "decreasing"


def _summary(slopes_per_seed, q="eps1", means=(1.0, 0.5)):
    fit = {"per_seed": slopes_per_seed, "means": list(means),
           "slope": float(np.mean(slopes_per_seed)), "se": float(np.std(slopes_per_seed,
                                                                          ddof=1) / 2),
           "verdict": "", "monotone": "decreasing"}
    fit["verdict"] = trends.verdict(fit["slope"], fit["se"])
    return {"slopes": [{"lr": 1.0, "init_scale": 1.0, "n": 8, "quantities": {q: fit}}]}


def test_claims_answer_yes_no_and_undecided_from_the_slopes():
    by = {c.name: c for c in heads.claims(_summary([-0.5, -0.6, -0.4, -0.55]))}
    assert by["more heads → smaller ε₁ (replace-one stability)"].answer == "yes"
    by = {c.name: c for c in heads.claims(_summary([0.5, 0.6, 0.4, 0.55]))}
    assert by["more heads → smaller ε₁ (replace-one stability)"].answer == "no"
    by = {c.name: c for c in heads.claims(_summary([0.5, -0.6, 0.4, -0.55]))}
    assert by["more heads → smaller ε₁ (replace-one stability)"].answer == "undecided"
    two = _summary([-0.5, -0.6, -0.4, -0.55])
    two["slopes"].append(dict(_summary([0.2, 0.3, 0.25, 0.2])["slopes"][0], init_scale=30.0))
    row = {c.name: c for c in heads.claims(two)}["more heads → smaller ε₁ (replace-one stability)"]
    assert row.answer == "undecided" and row.detail.startswith("conditional:")
    assert "1 decrease, 1 increase" in row.detail
    no_div = {c.name: c for c in heads.claims(_summary([0.0] * 4, "diverged", (0.0, 0.0)))}
    row = no_div["more heads → fewer divergences at the same η"]
    assert row.answer == "undecided" and "no run diverged" in row.detail
    assert heads.Config(**heads.VERIFY).seeds >= 2  # the verify grid is a valid config


@pytest.mark.parametrize("field, value, flag", [
    ("heads_grid", (), "--heads-grid"), ("heads_grid", (0, 2), "--heads-grid"),
    ("lr_grid", (1.0, -1.0), "--lr-grid"), ("lr_grid", (0.0,), "--lr-grid"),
    ("init_scale_grid", (0.0,), "--init-scale-grid"), ("n_grid", (1, 8), "--n-grid"),
    ("n_grid", (), "--n-grid"), ("seeds", 1, "--seeds"), ("lr", 3.0, "--lr"),
    ("replace", 17, "--replace"), ("probe_seeds", 3, "--probe-seeds")])
def test_bad_input_names_the_flag(field, value, flag):
    with pytest.raises(ValueError, match=flag):
        heads.Config(**dict(TINY, **{field: value}))


def test_cli_rejects_bad_input_before_any_work(tmp_path, capsys):
    out = tmp_path / "never"
    assert cli.main(["run", "heads", "--out", str(out), "--heads-grid", "0,1"]) == 2
    assert "--heads-grid" in capsys.readouterr().err
    assert not (out / "cells").exists()
