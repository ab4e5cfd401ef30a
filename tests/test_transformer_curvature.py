"""transformer-curvature: config checks before any work (the d_model rule among them), the
matched-loss readings, the probe batch as weights, and the summary / verify rows."""

import jax
import numpy as np
import pytest
from flax import nnx

from mhatheory.experiments import EXPERIMENTS, load
from mhatheory.experiments import transformer_curvature as tc
from mhatheory.experiments.transformer_curvature import analysis, experiment, tasks
from mhatheory.testing import tol

PINNED = ("task", "heads", "layers", "d_model", "head_dim", "seed", "stage", "loss", "accuracy",
          "lambda_min", "lambda_max", "lambda_min_N", "probe_batch")


def test_registered():
    assert EXPERIMENTS["transformer-curvature"].endswith("transformer_curvature")
    assert load("transformer-curvature").Config is tc.Config


@pytest.mark.parametrize("kw, flag", [
    ({"tasks": ()}, "tasks"),
    ({"tasks": ("sorting",)}, "tasks"),
    ({"layers_grid": ()}, "layers_grid"),
    ({"scaling_grid": ("bogus",)}, "scaling_grid"),
    ({"heads_grid": (1, 3), "d_model": 16}, "heads_grid"),
    ({"layers_grid": (0,)}, "layers_grid"),
    ({"seeds": 0}, "seeds"),
    ({"target_accuracy": 0.0}, "target_accuracy"),
    ({"target_accuracy": 1.5}, "target_accuracy"),
    ({"target_loss": 0.0}, "target_loss"),
    ({"loss_levels": (0.3, 1.0)}, "loss_levels"),
    ({"loss_levels": (1.0, 0.0)}, "loss_levels"),
    ({"loss_levels": ()}, "loss_levels"),
    ({"probe_batch": 5_000}, "probe_batch"),
    ({"late_probe_batches": (32, 5_000)}, "late_probe_batches"),
    ({"late_probe_batches": (128,)}, "late_probe_batches"),
    ({"late_probe_batches": (0,)}, "late_probe_batches"),
    ({"max_steps": 1_010}, "eval_every"),
    ({"lr_grid": ()}, "lr_grid"),
    ({"lr_grid": (1e-2, -1.0)}, "lr_grid"),
])
def test_bad_input_named(kw, flag):
    with pytest.raises(ValueError, match=flag):
        tc.Config(**kw)


@pytest.mark.parametrize("kw", [
    {"d_model": 4, "heads_grid": (1, 2, 4)},                      # fixed width 4
    {"head_dim": 2, "fixed_head_dim_heads_grid": (1, 2, 4, 8)},   # d_model 2, 4
    {"head_dim": 4, "fixed_head_dim_heads_grid": (1, 2)},         # d_model 4
])
def test_degenerate_widths_refused(kw):
    with pytest.raises(ValueError, match="narrower than width 8"):
        tc.Config(**kw)


def test_default_grid():
    tc.Config(**tc.FULL), tc.Config(**tc.VERIFY)       # both valid
    cfg = tc.Config()
    assert min(d for d, _ in tc.widths(cfg)) >= tc.MIN_D_MODEL
    assert cfg.seeds >= 5
    # one cell per (d_model, H): the model both scalings read is computed once
    assert len(tc.widths(cfg)) == len(set(tc.widths(cfg)))
    assert {p for s in cfg.scaling_grid for p in tc.scaling_members(cfg, s)} == set(
        tc.widths(cfg))


def test_probe_batch_larger_than_digits_pool_refused():
    pytest.importorskip("sklearn")
    cfg = tc.Config(tasks=("digits",), probe_batch=1_000, num_train=2_000)
    with pytest.raises(ValueError, match="probing 1000 samples .* exceeds the digits training set"):
        tc.load_tasks(cfg)


def test_first_below_picks_the_first_reading_at_or_below():
    steps = [0, 25, 50, 75, 100]
    losses = [2.5, 0.9, 1.2, 0.3, 0.05]             # not monotone: 0.9 then back above 1
    assert tc.first_below(steps, losses, (1.0, 0.3, 0.1, 0.01)) == {
        1.0: 25, 0.3: 75, 0.1: 100, 0.01: None}
    assert tc.first_below([0, 25], [float("nan"), 0.5], (1.0,)) == {1.0: 25}


SMALL = dict(tasks=("addition",), scaling_grid=("fixed_d_model",), heads_grid=(2,),
             layers_grid=(1,), seeds=1, d_model=8, num_train=300, num_val=50, num_test=50,
             probe_batch=32, late_probe_batches=(8, 48), batch=32, max_steps=200, eval_every=20,
             warmup=5, lr_grid=(1e-2,), loss_levels=(2.2, 2.0), krylov=8, max_restarts=1)


def test_run_cell_probes_where_each_level_is_first_reached(monkeypatch):
    """The loop around the probes, with the probes replaced by their probe-batch loss: a stage
    is probed at the first reading at or below its level, late after the target or max_steps,
    on both probe batches; each (step, batch) is probed once."""
    cfg = tc.Config(**SMALL)
    task = tc.load_tasks(cfg)["addition"]
    calls, values = [], {}

    def fake_probe(ops, params, data, config, key):
        calls.append(int(np.sum(np.asarray(data[2]).reshape(len(data[2]), -1).any(-1))))
        # compiled once per operator (op by op, each call compiled ~100 small programs)
        value = values.setdefault(id(ops["curv"]), jax.jit(ops["curv"].value))
        return {"loss": float(value(params, *data))}

    monkeypatch.setattr(experiment, "probe", fake_probe)
    out = tc.run_cell(cfg, dict(task="addition", d_model=8, heads=2, layers=1, seed=0,
                                name="t"), task, progress=False)
    curve = out["curve"]
    levels = {"entropy": task.entropy, "loss_2.2": 2.2, "loss_2": 2.0}
    by_stage = {r["stage"]: r for r in out["records"] if r["probe_batch"] == 32}
    for stage, level in levels.items():
        if stage not in by_stage:       # never reached: training ran to max_steps
            assert out["steps"] == cfg.max_steps and min(curve["loss"]) > level
            continue
        r = by_stage[stage]
        i = curve["step"].index(r["step"])
        assert curve["loss"][i] <= level
        # the same loss through two compiled programs: summation order only
        assert abs(r["loss"] - curve["loss"][i]) <= tol(np.float64, "reordered") * level
        assert all(v > level for v in curve["loss"][:i])
    assert by_stage["init"]["step"] == 0
    late = [r for r in out["records"] if r["stage"] == "late"]
    assert [r["probe_batch"] for r in late] == [8, 32, 48] and {r["step"] for r in late} == {
        out["steps"]}
    assert out["trained"] == (curve["accuracy"][-1] >= cfg.target_accuracy
                              or curve["loss"][-1] <= cfg.target_loss)
    assert out["trained"] or out["steps"] == cfg.max_steps
    probes = {(r["step"], r["probe_batch"]) for r in out["records"]}
    assert len(calls) == len(probes) and sorted(calls) == sorted(b for _, b in probes)


def test_learning_rate_chosen_on_validation(monkeypatch):
    """Two rates, neither learns in 200 steps: the lower validation loss wins, and the probed
    run retraces the chosen rate's trial (same init, same minibatches)."""
    cfg = tc.Config(**{**SMALL, "lr_grid": (1e-3, 1e-2)})
    task = tc.load_tasks(cfg)["addition"]
    monkeypatch.setattr(experiment, "probe", lambda *a: {"loss": 0.0})
    out = tc.run_cell(cfg, dict(task="addition", d_model=8, heads=2, layers=1, seed=0,
                                name="t"), task, progress=False)
    trials = {t["lr"]: t for t in out["lr_trials"]}
    assert set(trials) == {1e-3, 1e-2}
    best = min(trials.values(), key=lambda t: (not t["learned"],
                                              t["steps"] if t["learned"] else 0, t["val_loss"]))
    assert out["lr"] == best["lr"] and {r["lr"] for r in out["records"]} == {best["lr"]}
    assert out["steps"] == best["steps"] and out["curve"]["accuracy"][-1] == best["accuracy"]


def test_small_probe_batch_is_the_weighted_loss_of_its_samples():
    """Weights zero beyond the first samples give their loss and their Hessian exactly (the
    loss is a weighted mean), so the small batch needs no program of its own."""
    cfg = tc.Config(**SMALL)
    task = tc.load_tasks(cfg)["addition"]
    model = task.make(8, 2, 1, 0)
    graphdef, state = nnx.split(model)
    params = nnx.to_pure_dict(state)
    ops = tc.operators(graphdef, 1)
    padded = experiment._probe_data(task, 8, cfg)
    alone = tuple(a[:8] for a in padded)
    value = jax.jit(ops["curv"].value)       # one program per shape, not one per operation
    np.testing.assert_allclose(value(params, *padded), value(params, *alone),
                               rtol=tol(np.float64, "dense"))
    lin_p = ops["hess"].linearise(params, *padded)
    lin_a = ops["hess"].linearise(params, *alone)
    v = jax.random.normal(jax.random.key(1), (lin_a.P,), np.float64)
    hv_a = np.asarray(lin_a.mv(v))
    np.testing.assert_allclose(lin_p.mv(v), hv_a,
                               atol=tol(np.float64, "dense") * np.abs(hv_a).max())


def _rec(h, seed, stage, lam, batch=32, verdict="HOLDS", d=16):
    return {"task": "addition", "heads": h, "layers": 1, "d_model": d, "head_dim": d // h,
            "step": {"init": 0, "entropy": 5, "late": 10}[stage], "stage": stage, "seed": seed,
            "level": None, "probe_batch": batch, "loss": 1.0, "accuracy": 0.97,
            "test_accuracy": 0.96, "lambda_min": lam, "lambda_max": 1.0,
            "lambda_min_N": lam - 1, "neg_lambda_over_loss": -lam, "theorem_verdict": verdict,
            "theorem_margin": 0.5, "lambda_min_converged": True, "lambda_min_N_converged": True}


def test_summary_and_rows():
    cfg = tc.Config(tasks=("addition",), heads_grid=(1, 4), layers_grid=(1,),
                    scaling_grid=("fixed_d_model",), seeds=6, d_model=16, loss_levels=(0.5,),
                    late_probe_batches=(8,), probe_batch=32)
    # six seeds on one exact law: their slopes agree, so the exact sign-flip test decides
    # (p = 2^(1−6) ≈ 0.031; three seeds that agree would give 0.25: trends.t_test)
    recs = [_rec(h, s, st, -(h ** -0.5) * (1 + 0.01 * s)) for h in (1, 4) for s in range(6)
            for st in ("init", "entropy", "late")]
    recs += [_rec(h, s, "late", -2 * h ** -0.5 * (1 + 0.01 * s), batch=8) for h in (1, 4)
             for s in range(6)]
    assert all(k in recs[0] for k in PINNED)
    cells = [{"task": "addition", "d_model": 16, "heads": h, "layers": 1, "seed": s,
              "trained": True, "steps": 10} for h in (1, 4) for s in range(6)]
    summ = tc.summarise(recs, cells, cfg, {"addition": 1.9})
    assert summ["theorem"]["probes"] == len(recs)
    assert summ["theorem"]["counts"]["HOLDS"] == len(recs)
    assert summ["training"]["addition"]["learned"] == 12
    out = tc.rows(summ)
    assert out[0]["kind"] == "theorem" and out[0]["verdict"] == "HOLDS"
    slopes = summ["slopes"]
    assert [s["stage"] for s in slopes] == ["init", "entropy", "late"]
    # an exact power law (slope −0.5 for every seed): float64 rounding ≪ the "dense" tolerance
    for s in slopes:
        assert abs(s["slope"] + 0.5) < tol(np.float64, "dense")
        assert s["lo"] <= s["slope"] <= s["hi"] and s["n"] == 6
        assert s["verdict"] == "falls" and s["p_adjusted"] < 0.05
    (batch,) = summ["probe_batch"]
    assert batch["cells"] == 12
    assert abs(batch["log_ratio"]["mean"] - np.log(2)) < tol(np.float64, "dense") * 10
    assert batch["log_ratio"]["verdict"] == "larger on fewer samples"
    bad = tc.rows(tc.summarise(recs[:-1] + [_rec(4, 5, "late", -0.5, 8, "VIOLATED")], cells,
                               cfg, {"addition": 1.9}))
    assert bad[0]["verdict"] == "VIOLATED"


def test_stages_sharing_a_step_count_one_probe():
    recs = [_rec(2, 0, "init", -1.0), {**_rec(2, 0, "init", -1.0), "stage": "entropy"}]
    assert analysis.theorem(recs)["probes"] == 1


def test_tasks_share_one_loss_contract():
    pytest.importorskip("sklearn")
    d = tasks.digits(100, 0)
    a = tasks.addition(200, 50, 50, 0)
    for t in (a, d):
        for s in (t.train, t.val, t.test):
            assert s.targets.shape == s.weights.shape and np.issubdtype(s.targets.dtype,
                                                                          np.integer)
    # addition: only the 4 answer positions count; digits: every image
    assert (a.train.weights.sum(-1) == 4).all() and (d.train.weights == 1).all()
    # the digits' classes are balanced to a few images in ~90 each: entropy ln 10 − O(1e-3)
    assert 0 < a.entropy < np.log(10) and abs(d.entropy - np.log(10)) < 0.01
