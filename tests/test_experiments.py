"""Tiny-config smoke tests of every experiment, and resume behaviour."""

import dataclasses
import json
import shutil
import sys
import warnings

import jax
import numpy as np
import pytest

from mhatheory import results
from mhatheory.experiments import seq2seq, spectrum, symmetry_sweep
from mhatheory.experiments import weak_convexity as wc
from mhatheory.tasks import addition
from mhatheory.testing import tol
from mhatheory.verdicts import Verdict, combine


def test_weak_convexity_records_and_figures(weak_convexity_run):
    config, summary, out = weak_convexity_run
    res = json.loads((out / "results.json").read_text())
    assert summary.chain_holds_everywhere and summary.negative_curvature_found
    assert summary.chain_verdict == "HOLDS" and summary.worst_link_margin >= 0
    rec = res["records"][0]
    for key in ("heads", "step", "loss", "lambda_min", "kappa_hat", "bound", "holds",
                "kappa_blk", "kappa_ana", "lambda_max", "lambda_min_residual"):
        assert key in rec
    assert res["config"]["heads_grid"] == list(config.heads_grid) and res["versions"]["jax"]
    assert res["summary"]["num_probes"] == len(res["records"]) == summary.num_probes
    assert sorted(res["figures"]) == sorted(p.name for p in summary.figures.values())
    for f in summary.figures.values():
        assert f.parent == out and f.stat().st_size > 1000
    assert set(res["summary"]["slopes"]["kappa_hat"]) == {"init", "early", "late"}


def test_killed_sweep_resumes_without_recomputing_finished_cells(weak_convexity_run, tmp_path):
    cfg, _, finished = weak_convexity_run
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    cells = sorted((tmp_path / "cells").glob("*.json"))
    kept, lost = cells[0], cells[-1]
    before = kept.stat().st_mtime_ns
    first = json.loads((tmp_path / "results.json").read_text())["records"]
    lost.unlink()  # as if the run died in this cell
    wc.run(cfg, tmp_path, progress=False, resume=True)
    assert kept.stat().st_mtime_ns == before and lost.exists()
    again = json.loads((tmp_path / "results.json").read_text())["records"]
    assert [r["lambda_min"] for r in again] == [r["lambda_min"] for r in first]


def test_a_rerun_that_dies_leaves_no_results_not_the_previous_runs(weak_convexity_run, tmp_path,
                                                                   monkeypatch):
    """A rerun into a folder of finished results removes them before its work starts: killed,
    it leaves no results.json and none of the figures that results.json listed, rather than
    the previous run's looking like its own; the cells stay for --resume, other files stay."""
    cfg, _, finished = weak_convexity_run
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    figures = json.loads((tmp_path / "results.json").read_text())["figures"]
    assert figures and all((tmp_path / f).exists() for f in figures)
    (tmp_path / "notes.txt").write_text("mine")

    def killed(*args):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(sys.modules[wc.run.__module__], "probe_cell", killed)
    with pytest.raises(KeyboardInterrupt):
        wc.run(dataclasses.replace(cfg, steps=cfg.steps + 1), tmp_path, progress=False)
    assert not (tmp_path / "results.json").exists()
    assert not any((tmp_path / f).exists() for f in figures)
    assert list((tmp_path / "cells").glob("*.json")) and (tmp_path / "notes.txt").exists()


def test_spectrum_smoke(tmp_path):
    summary = spectrum.run(spectrum.Config(heads=2, d=4, T=4, n=16, num_irrelevant=2, steps=20,
                                           krylov=20, num_probes=3, trace_samples=10,
                                           num_test=20), tmp_path, progress=False)
    stage = summary.initial
    saved = json.loads((tmp_path / "results.json").read_text())
    # results.json holds the summary's names, so what `mhatheory run spectrum` prints is there
    assert [saved["initial"], saved["trained"]] == [summary.initial, summary.trained]
    assert saved["labels"] == {"initial": "initialisation", "trained": "after 20 GD steps"}
    assert stage["lambda_min"]["value"] <= stage["lambda_max"]["value"]
    norm = max(abs(stage["lambda_min"]["value"]), abs(stage["lambda_max"]["value"]))  # ‖H‖₂
    assert abs(stage["lambda_min"]["value"] - stage["dense"]["lambda_min"]) <= tol(
        np.float64, "eig") * norm
    assert summary.figures["spectral_density"] == tmp_path / "spectral_density.png"
    assert summary.figures["spectral_density"].exists()


TINY_SYM = dict(causal_grid=("noncausal",), positional_grid=("none",), residual_grid=("all",),
                seeds=1, d_model=16, heads=2, layers=1, num_train=300, num_test=100, lo=0,
                hi=99, batch=16, steps=40, warmup=2, eval_every=20, checkpoint_every=20)


def test_symmetry_resumes_mid_training_from_an_orbax_checkpoint(tmp_path, monkeypatch):
    cfg = symmetry_sweep.Config(**TINY_SYM)
    full = symmetry_sweep.run(cfg, tmp_path / "a", progress=False)
    real_step, calls = addition.train_step, {"n": 0}

    def dying_step(*args):
        calls["n"] += 1
        if calls["n"] == 30:
            raise KeyboardInterrupt("killed")
        return real_step(*args)

    monkeypatch.setattr(addition, "train_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        symmetry_sweep.run(cfg, tmp_path / "b", progress=False)
    assert not list((tmp_path / "b" / "cells").glob("*.json"))
    monkeypatch.setattr(addition, "train_step", real_step)
    resumed = symmetry_sweep.run(cfg, tmp_path / "b", progress=False, resume=True)
    cell_a = json.loads(next((tmp_path / "a" / "cells").glob("*.json")).read_text())
    cell_b = json.loads(next((tmp_path / "b" / "cells").glob("*.json")).read_text())
    assert cell_a["curve"] == cell_b["curve"]  # same batches, restored optimiser state
    assert resumed.table == full.table
    row = resumed.table[0]
    # C13's bound (symmetry_sweep/check.py): the float64 copy's logits, as C6 in test_symmetry
    assert row["trained_invariance_max"] <= 1e-10 and row["under_ceiling"]


def test_symmetry_cell_names_are_file_names():
    """The residual spec off:K becomes off-K in the names of the cells' records and
    checkpoints (a colon is not a file name on every system)."""
    cfg = symmetry_sweep.Config(**{**TINY_SYM, "residual_grid": ("all", "off:0"),
                                   "noncausal_residual_ablation": True})
    names = [name for name, _ in symmetry_sweep.plan(cfg)]
    assert names == ["noncausal_none_res-all_seed0", "noncausal_none_res-off-0_seed0"]
    assert [spec["residual"] for _, spec in symmetry_sweep.plan(cfg)] == ["all", "off:0"]


def test_seq2seq_smoke(tmp_path):
    final = seq2seq.run(seq2seq.Config(length=4, vocab=6, d_model=16, heads=2, layers=1,
                                       train_pool=500, num_test=50, batch=16, steps=20,
                                       warmup=2, eval_every=10), tmp_path, progress=False)
    assert 0 <= final["greedy_token_acc"] <= 1
    res = json.loads((tmp_path / "results.json").read_text())
    curve = res["curve"]
    assert res["disjoint"] and [c["step"] for c in curve] == [10, 20] and curve[-1] == final
    # it learns: the loss falls between evaluations and below a uniform guess over the 6
    # content tokens, log 6 ≈ 1.79 (a uniform guess over the whole vocabulary costs more)
    assert curve[-1]["train_loss"] < curve[0]["train_loss"] < np.log(6)


def test_seq2seq_evaluates_in_chunks_as_in_one(monkeypatch):
    """The held-out metrics are the same decoded in chunks (a large test set would not fit one
    program) as all at once."""
    from flax import nnx

    from mhatheory.experiments.seq2seq import experiment as s2s
    cfg = seq2seq.Config(length=4, vocab=6, d_model=16, heads=2, layers=1, train_pool=200,
                         num_test=100, batch=16, steps=2, warmup=1, eval_every=2)
    _, test = s2s.make_data(cfg)
    model = s2s.Seq2SeqTransformer(cfg.vocab, cfg.vocab, cfg.d_model, cfg.heads, cfg.layers,
                                   max_len=cfg.length + 1, rngs=nnx.Rngs(0))
    whole = s2s.evaluate(model, cfg, test)
    monkeypatch.setattr(s2s, "EVAL_CHUNK", 7)    # chunks of 7 and a shorter last one
    # the same counts summed in another order: equal to float64 rounding
    assert s2s.evaluate(model, cfg, test) == pytest.approx(whole, rel=1e-12, abs=1e-15)


def test_stability_records_bounds_and_figures(stability_run):
    cfg, summary, out = stability_run
    res = json.loads((out / "results.json").read_text())
    assert len(res["records"]) == len(cfg.n_grid) == 2
    for key in ("n", "heads", "steps", "eps1", "eps2", "gen_gap", "gen_gap_se",
                "bound_lipschitz", "bound_smooth"):
        assert key in res["records"][0]
    assert summary.eps1_positive and len(summary.eps1_slopes) == 1 and summary.num_cells == 2
    assert summary.min_eps1 == min(r["eps1"] for r in res["records"]) > 0
    # each cell's verdict follows from its numbers (the gap ± 3 SE against G·ε₁), and the
    # summary's is the worst of them
    expected = []
    for r in res["records"]:
        lo, hi = r["gen_gap"] - 3 * r["gen_gap_se"], r["gen_gap"] + 3 * r["gen_gap_se"]
        bound = r["bound_lipschitz"]
        expected.append(Verdict.HOLDS if hi <= bound else
                        Verdict.VIOLATED if lo > bound else Verdict.INCONCLUSIVE)
        assert Verdict(r["bound_lipschitz_verdict"]) == expected[-1], r
    assert summary.lipschitz.verdict == combine(expected)
    assert summary.lipschitz.worst_margin == min(r["bound_lipschitz_margin"]
                                                 for r in res["records"])
    for f in summary.figures.values():
        assert f.stat().st_size > 1000


def test_symmetry_figures_without_position_free_cells(tmp_path):
    cfg = symmetry_sweep.Config(**dict(TINY_SYM, causal_grid=("causal",),
                                 positional_grid=("learned",), steps=4, eval_every=2,
                                 checkpoint_every=2))
    res = symmetry_sweep.run(cfg, tmp_path, progress=False)
    assert "ceiling" not in res.table[0]
    assert (tmp_path / "correlations.png").exists()


def _fake_trajectory(steps=20):
    from types import SimpleNamespace

    k = np.arange(steps + 1)
    err = 0.4 * np.exp(-k / 5) + 0.05
    return SimpleNamespace(loss=0.7 * np.exp(-k / 10), grad_norm=0.2 * np.exp(-k / 10),
                           lr=1.0, metrics={"train_error": err, "test_error": err + 0.01,
                                            "test_loss": 0.8 * np.exp(-k / 12)})


def test_loss_curve_plots_error_in_percent_from_step_0_with_the_bayes_floor():
    from mhatheory import plots

    traj = _fake_trajectory()
    fig = plots.loss_curve(traj, bayes_error=0.04, bayes_error_se=0.002)
    loss_ax, err_ax = fig.axes
    assert "%" in err_ax.get_ylabel() and "%" not in loss_ax.get_ylabel()
    lines = {ln.get_label(): ln for ax in fig.axes for ln in ax.get_lines()}
    test_err = lines["test error"]
    assert test_err.axes is err_ax
    assert test_err.get_xdata()[0] == 0                      # step 0 is kept
    np.testing.assert_allclose(test_err.get_ydata(), 100 * traj.metrics["test_error"])
    assert lines["test loss"].axes is loss_ax                # a loss is not an error in %
    np.testing.assert_allclose(lines["test loss"].get_ydata(), traj.metrics["test_loss"])
    floor = next(ln for name, ln in lines.items() if name.startswith("Bayes error"))
    assert floor.axes is err_ax and np.allclose(floor.get_ydata(), 4.0)
    assert "0.20" in floor.get_label()                       # its standard error, in %


def test_chain_vs_step_axis_spans_the_data_only():
    from mhatheory.experiments.weak_convexity import plots

    records = [{"heads": h, "seed": 0, "step": s, "lambda_min": -1e-2 / (s + 1) / h,
                "lambda_min_N": -2e-2 / (s + 1) / h, "bound": -1e-1 / (s + 1) / h}
               for h in (1, 4) for s in (0, 10, 100)]
    fig = plots.chain_vs_step(records)
    for ax, h in zip(fig.axes, (1, 4), strict=False):
        bottom, top = ax.get_ylim()
        values = [r[k] for r in records if r["heads"] == h
                  for k in ("lambda_min", "lambda_min_N", "bound")]
        assert top < 0 and top >= max(values) and bottom <= min(values)
        assert bottom >= 10 * min(values)    # no empty decades below the data either


# --- resumable sweeps (mhatheory.experiments.sweep) --------------------------------------


@dataclasses.dataclass(frozen=True)
class _SweepConfig:
    heads_grid: tuple = (1, 2)
    seeds: int = 2
    steps: int = 5
    lr: float = 0.5


def _sweep(tmp_path, config, calls, resume=True, **kw):
    from mhatheory.experiments.sweep import run_cells

    cells = [(f"H{h}_seed{s}", {"heads": h, "seed": s})
             for h in config.heads_grid for s in range(config.seeds)]

    def compute(spec):
        calls.append((spec["heads"], spec["seed"]))
        return {"value": spec["heads"] * config.steps * config.lr + spec["seed"]}

    return run_cells(tmp_path, cells, compute, resume=resume, progress=False, desc="cells",
                     config=config, **kw)


def test_resume_recomputes_cells_whose_config_changed(tmp_path, capsys):
    import mhatheory

    calls = []
    _sweep(tmp_path, _SweepConfig(), calls, resume=False)
    cell = json.loads((tmp_path / "cells" / "H1_seed0.json").read_text())
    assert cell["config"] == {"steps": 5, "lr": 0.5, "numerics": results.numerics()}
    assert cell["spec"] == {"heads": 1, "seed": 0}
    assert cell["versions"]["mhatheory"] == mhatheory.__version__
    calls.clear()
    again = _sweep(tmp_path, _SweepConfig(), calls)
    assert calls == [] and again.info["reused"] == 4
    assert "reused 4" in capsys.readouterr().err
    out = _sweep(tmp_path, _SweepConfig(steps=10), calls)
    assert len(calls) == 4 and [p["value"] for p in out] == [10 * 0.5 * h + s
                                                               for h in (1, 2) for s in (0, 1)]
    assert out.info["recomputed_config_changed"] == 4 and out.info["changed_fields"] == ["steps"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "recomputed 4 (config changed (steps))" in err[0]


def test_resume_recomputes_cells_whose_fingerprints_changed(tmp_path):
    """A config that names a user's model or data holds only the name: their fingerprints join
    the cell config, so a cell computed from other code or arrays is not reused."""
    calls = []
    _sweep(tmp_path, _SweepConfig(), calls, resume=False, fingerprints={"data": "a"})
    calls.clear()
    assert _sweep(tmp_path, _SweepConfig(), calls, fingerprints={"data": "a"}).info["reused"] == 4
    out = _sweep(tmp_path, _SweepConfig(), calls, fingerprints={"data": "b"})
    assert len(calls) == 4 and out.info["changed_fields"] == ["fingerprints"]


def test_resume_keeps_cells_when_only_the_grids_or_seed_count_change(tmp_path):
    calls = []
    _sweep(tmp_path, _SweepConfig(), calls, resume=False)
    calls.clear()
    out = _sweep(tmp_path, _SweepConfig(heads_grid=(1, 2, 4), seeds=3), calls)
    assert sorted(calls) == [(1, 2), (2, 2), (4, 0), (4, 1), (4, 2)]
    assert out.info["reused"] == 4 and out.info["computed_new"] == 5
    assert out.info["recomputed_config_changed"] == 0
    calls.clear()
    assert len(_sweep(tmp_path, _SweepConfig(heads_grid=(2,), seeds=1), calls)) == 1
    assert calls == []


def test_resume_ignore_keeps_a_selector_that_enters_the_cells(tmp_path):
    from mhatheory.experiments.sweep import selector_fields

    calls = []
    cfg = _SweepConfig()
    assert selector_fields(cfg) == {"heads_grid", "seeds"}
    _sweep(tmp_path, cfg, calls, resume=False, ignore={"heads_grid"})
    calls.clear()
    out = _sweep(tmp_path, _SweepConfig(seeds=1), calls, ignore={"heads_grid"})
    assert out.info["recomputed_config_changed"] == 2 and out.info["changed_fields"] == ["seeds"]


@pytest.mark.parametrize("damage", ["{not json", "[1, 2]", "drop_key", "drop_result", "old"])
def test_resume_names_and_recomputes_a_corrupt_cell(tmp_path, damage):
    calls = []
    _sweep(tmp_path, _SweepConfig(), calls, resume=False)
    path = tmp_path / "cells" / "H2_seed1.json"
    cell = json.loads(path.read_text())
    if damage == "drop_key":
        del cell["spec"]
    elif damage == "drop_result":
        del cell["value"]
    elif damage == "old":   # a cell file from before configs were recorded
        cell = {"cell": cell["cell"], "spec": cell["spec"], "value": cell["value"]}
    path.write_text(damage if damage.startswith(("{", "[")) else json.dumps(cell))
    calls.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = _sweep(tmp_path, _SweepConfig(), calls)
    assert calls == [(2, 1)] and out[-1]["value"] == 2 * 5 * 0.5 + 1
    named = [w for w in caught if "H2_seed1.json" in str(w.message)]
    if damage == "old":
        assert out.info["recomputed_config_changed"] == 1 and not named
    else:
        assert out.info["recomputed_corrupt"] == 1 and len(named) == 1
        assert "corrupt" in str(named[0].message)
        assert named[0].filename == __file__        # the user's line, not the package's
    assert json.loads(path.read_text())["config"] == {"steps": 5, "lr": 0.5,
                                                      "numerics": results.numerics()}


def test_resume_recomputes_cells_computed_at_another_precision(tmp_path, capsys):
    """A sweep begun in float32 (MHATHEORY_X64=0) and resumed in float64 must not mix the
    float32 cells into a float64 result, nor the reverse (checkpoint names follow too)."""
    from mhatheory.experiments.sweep import cell_digest

    calls = []
    with jax.enable_x64(False):
        _sweep(tmp_path, _SweepConfig(), calls, resume=False)
        digest32 = cell_digest(_SweepConfig(), {"heads": 1})
    stored = json.loads((tmp_path / "cells" / "H1_seed0.json").read_text())
    assert stored["config"]["numerics"]["x64"] is False
    calls.clear()
    out = _sweep(tmp_path, _SweepConfig(), calls)       # the session's float64
    assert len(calls) == 4 and out.info["recomputed_config_changed"] == 4
    assert out.info["changed_fields"] == ["numerics"]
    assert "config changed (numerics)" in capsys.readouterr().err
    assert json.loads((tmp_path / "cells" / "H1_seed0.json").read_text()
                      )["config"]["numerics"]["x64"] is True
    assert cell_digest(_SweepConfig(), {"heads": 1}) != digest32


def test_cell_digest_follows_the_cell_config_only():
    from mhatheory.experiments.sweep import cell_digest

    base = cell_digest(_SweepConfig(), {"heads": 1})
    assert cell_digest(_SweepConfig(heads_grid=(1,), seeds=5), {"heads": 1}) == base
    assert cell_digest(_SweepConfig(lr=0.25), {"heads": 1}) != base
    assert cell_digest(_SweepConfig(), {"heads": 2}) != base


def test_results_md_is_what_tables_py_renders_from_the_committed_results():
    """experiments/RESULTS.md is regenerated from the committed results JSON: rendering them
    again gives it to the byte (and the script runs)."""
    import importlib.util
    from pathlib import Path
    folder = Path(__file__).resolve().parents[1] / "experiments"
    spec = importlib.util.spec_from_file_location("tables", folder / "tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    assert tables.render() == (folder / "RESULTS.md").read_text()
