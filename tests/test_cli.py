import functools
import inspect
import json
import os
import stat
import sys
import warnings

import pytest

from mhatheory import cli, precision, results


def test_run_train_writes_results_with_provenance_and_figure(tmp_path):
    code = cli.main(["run", "train", "--out", str(tmp_path), "--heads", "2", "--steps", "30",
                     "--n", "32", "--num-test", "200", "--no-progress"])
    assert code == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["config"]["heads"] == 2 and res["seed"] == 0
    assert res["versions"]["jax"] and res["device"]["backend"] == "cpu"
    assert res["summary"]["final_loss"] < res["curves"]["loss"][0]
    assert (tmp_path / "loss_curve.png").stat().st_size > 1000


@pytest.mark.parametrize("argv", [["--help"], ["verify", "--help"], ["run", "--help"],
                                  ["run", "train", "--help"]])
def test_every_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_bad_config_value_is_reported(capsys, tmp_path):
    assert cli.main(["run", "train", "--out", str(tmp_path), "--heads", "0"]) == 2
    err = capsys.readouterr().err
    assert "--heads must be" in err and "num_heads" not in err
    assert not (tmp_path / "results.json").exists()


@pytest.mark.parametrize("flag, value, message", [
    ("--lr-grid", "-1,1.0", "--lr-grid must hold step sizes > 0"),
    ("--lr", "-4", "--lr must be a finite number > 0"),
    ("--lr-grid", "-inf", "--lr-grid must hold step sizes > 0"),
    ("--lr-grid", "-.5", "--lr-grid must hold step sizes > 0")])
def test_a_negative_value_reaches_the_flags_own_check(capsys, tmp_path, flag, value, message):
    """argparse would take "-1,1.0" for an option ("expected one argument")."""
    assert cli.main(["run", "heads", "--out", str(tmp_path / "x"), flag, value]) == 2
    assert message in capsys.readouterr().err


def test_verify_only_model_passes_and_writes_report(tmp_path):
    assert cli.main(["verify", "--only", "model", "--out", str(tmp_path), "--no-progress"]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["all_pass"] and res["checks"][0]["status"] == "PASS"
    assert (tmp_path / "index.html").exists() and (tmp_path / "index.md").exists()


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(TypeError):
        results.write_json_atomic(tmp_path / "r.json", {"x": object()})
    assert list(tmp_path.iterdir()) == []


# --- sweeps you can trust: --resume after a config change -------------------------------


class _SweepDone(Exception):
    pass


@pytest.fixture
def fake_weak_convexity(monkeypatch):
    """``mhatheory run weak-convexity`` through the CLI down to its sweep, with each cell's
    GD/Lanczos work replaced by a stub that records its calls; the run stops once the sweep
    returns (its payloads are kept in ``sweeps``), so the test does not depend on what the
    experiment does with the records."""
    from mhatheory.experiments import sweep as _sweep
    from mhatheory.experiments import weak_convexity as wc

    calls, sweeps = [], []

    def probe_cell(config, heads, seed):
        calls.append((heads, seed, config.steps))
        return {"records": [{"heads": heads, "seed": seed, "step": s}
                            for s in (0, config.steps)]}

    def run_cells(*args, **kwargs):
        sweeps.append(_sweep.run_cells(*args, **kwargs))
        raise _SweepDone

    monkeypatch.setattr(wc.experiment, "probe_cell", probe_cell)
    monkeypatch.setattr(wc.experiment, "run_cells", run_cells)

    def run(argv):
        with pytest.raises(_SweepDone):
            cli.main(argv)
        return sweeps[-1]

    return calls, run


def test_resume_after_changing_steps_recomputes_the_cells(tmp_path, capsys, fake_weak_convexity):
    """The reproduced bug: --steps 30, then --steps 60 --resume reused the step-30 cells."""
    calls, run = fake_weak_convexity
    argv = ["run", "weak-convexity", "--out", str(tmp_path), "--heads-grid", "1,2",
            "--seeds", "1", "--no-progress"]
    old = os.umask(0o022)
    try:
        run(argv + ["--steps", "30"])
        cells = run(argv + ["--steps", "60", "--resume"])
    finally:
        os.umask(old)
    assert {r["step"] for c in cells for r in c["records"]} == {0, 60}
    assert calls == [(1, 0, 30), (2, 0, 30), (1, 0, 60), (2, 0, 60)]
    assert cells.info["recomputed_config_changed"] == 2 and cells.info["reused"] == 0
    err = capsys.readouterr().err
    assert "reused 0, recomputed 2 (config changed (steps))" in err
    cell = json.loads((tmp_path / "cells" / "H1_seed0.json").read_text())
    assert cell["config"]["steps"] == 60 and cell["versions"]["mhatheory"]
    assert "heads_grid" not in cell["config"] and "seeds" not in cell["config"]
    for path in (tmp_path / "cells").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    # a wider grid keeps the finished cells
    cells = run(argv[:5] + ["1,2,4", *argv[6:], "--steps", "60", "--resume"])
    assert calls[4:] == [(4, 0, 60)] and len(cells) == 3
    assert "reused 2, recomputed 0 (config changed), recomputed 0 (corrupt), computed 1 new" \
        in capsys.readouterr().err


def test_resume_recomputes_a_corrupt_cell_naming_it(tmp_path, capsys, fake_weak_convexity):
    calls, run = fake_weak_convexity
    argv = ["run", "weak-convexity", "--out", str(tmp_path), "--heads-grid", "1,2",
            "--seeds", "1", "--steps", "5", "--no-progress"]
    run(argv)
    (tmp_path / "cells" / "H2_seed0.json").write_text('{"cell": "H2_se')
    with pytest.warns(RuntimeWarning, match=r"H2_seed0\.json is corrupt"):
        run(argv + ["--resume"])
    assert calls[2:] == [(2, 0, 5)]
    assert "recomputed 1 (corrupt)" in capsys.readouterr().err


# --- --out checked before any work ---------------------------------------------------------


def _no_work(monkeypatch):
    from mhatheory import verify
    from mhatheory.experiments import learning_curve

    def fail(*args, **kwargs):
        raise AssertionError("work started before --out was checked")

    monkeypatch.setattr(learning_curve, "run", fail)
    monkeypatch.setattr(verify, "run_checks", fail)


@pytest.mark.parametrize("command", [["run", "train"], ["verify", "--only", "model"]])
@pytest.mark.parametrize("where", ["file", "under_file"])
def test_bad_out_is_refused_before_any_work(tmp_path, capsys, monkeypatch, command, where):
    _no_work(monkeypatch)
    (tmp_path / "taken").write_text("precious")
    out = tmp_path / "taken" if where == "file" else tmp_path / "taken" / "sub"
    assert cli.main([*command, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and str(out) in err and "folder" in err and "Traceback" not in err
    assert (tmp_path / "taken").read_text() == "precious"


@pytest.mark.parametrize("command", [["run", "train"], ["verify", "--only", "model"]])
def test_out_holding_another_experiments_results_is_refused(tmp_path, capsys, monkeypatch,
                                                            command):
    """A folder whose results.json is another experiment's is refused before any work (its
    figures would stay beside the new results); the same experiment's folder is written again."""
    _no_work(monkeypatch)
    (tmp_path / "results.json").write_text('{"experiment": "spectrum"}')
    assert cli.main([*command, "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "holds the results of 'spectrum'" in err and "another folder" in err
    name = command[1] if command[0] == "run" else "verify"
    (tmp_path / "results.json").write_text(json.dumps({"experiment": name}))
    with pytest.raises(AssertionError, match="work started"):
        cli.main([*command, "--out", str(tmp_path), "--no-progress"])


def test_unwritable_out_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    from mhatheory import results

    _no_work(monkeypatch)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(results.tempfile, "mkstemp", denied)
    assert cli.main(["run", "train", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "--out" in capsys.readouterr().err


@pytest.mark.parametrize("argv, usage", [
    (["verify", "--bogus"], "usage: mhatheory verify"),
    (["run", "train", "--out", "OUT", "--bogus", "3"], "usage: mhatheory run train"),
    (["info", "--bogus"], "usage: mhatheory info"),
    (["--bogus", "info"], "usage: mhatheory ["),
])
def test_an_unknown_flag_shows_the_usage_of_its_command(argv, usage, capsys, tmp_path):
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith(usage), err
    assert "unrecognized arguments: --bogus" in err and not (tmp_path / "out").exists()


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("name, hint", [("weak-convexity", "the same command with --resume"),
                                        ("train", "run the command again")])
def test_ctrl_c_ends_a_run_with_status_130_and_how_to_continue(name, hint, tmp_path, capsys,
                                                               monkeypatch):
    from mhatheory import experiments

    module = experiments.load(name)
    monkeypatch.setattr(module, "run", functools.wraps(module.run)(_interrupt))  # same flags
    assert cli.main(["run", name, "--out", str(tmp_path), "--no-progress"]) == cli.INTERRUPTED
    err = capsys.readouterr().err
    assert f"mhatheory run {name}: interrupted before writing --out/results.json; {hint}" in err
    assert "Traceback" not in err and not (tmp_path / "results.json").exists()


def test_ctrl_c_ends_verify_with_status_130(tmp_path, capsys, monkeypatch):
    from mhatheory import verify

    monkeypatch.setattr(verify, "run_checks", _interrupt)
    assert cli.main(["verify", "--out", str(tmp_path / "r")]) == cli.INTERRUPTED
    assert "mhatheory verify: interrupted; no report was written" in capsys.readouterr().err
    assert not (tmp_path / "r" / "index.html").exists()


# --- --resume only where it means something --------------------------------------------------


def test_resume_flag_only_on_commands_that_resume(capsys):
    from mhatheory import experiments

    for name in experiments.EXPERIMENTS:
        module = experiments.load(name)
        resumes = "resume" in inspect.signature(module.run).parameters
        with pytest.raises(SystemExit):
            cli.main(["run", name, "--help"])
        assert ("--resume" in capsys.readouterr().out) == resumes, name
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "train", "--out", "x", "--resume"])
    assert exc.value.code == 2 and "--resume" in capsys.readouterr().err


# --- help text and flag names ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["train", "spectrum", "weak-convexity", "seq2seq", "symmetry",
                                  "stability"])
def test_every_config_flag_has_help_from_the_field_docs(name, capsys):
    import dataclasses

    from mhatheory import experiments

    config = experiments.load(name).Config
    docs = cli.field_docs(config)
    missing = [f.name for f in dataclasses.fields(config) if not docs.get(f.name)]
    assert not missing, f"{name}: fields without an Attributes: entry: {missing}"
    with pytest.raises(SystemExit):
        cli.main(["run", name, "--help"])
    out = "".join(capsys.readouterr().out.split())   # argparse wraps lines, also at hyphens
    assert "`" not in out
    for f in dataclasses.fields(config):
        assert "".join(docs[f.name].rstrip(".").split()) in out, (name, f.name)


def test_field_docs_parse_google_attributes_with_continuations_and_inheritance():
    from mhatheory.experiments import stability_sweep

    docs = cli.field_docs(stability_sweep.Config)
    assert docs["lr"] == "GD step size η."                                 # from DeoraFields
    assert docs["influence_samples"].endswith("exact leave-one-out retraining.")
    assert docs["seeds"].startswith("training sets per cell")               # not DeoraFields'


def test_run_help_lists_whole_first_sentences_without_backticks(capsys):
    from mhatheory import experiments

    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "`" not in out
    for name in experiments.EXPERIMENTS:
        short = cli._first_sentence(cli._plain(experiments.load(name).__doc__))
        assert short.endswith((".", "?", "!")) and short in out, name
    assert "as in Vaswani et al.) learns to reverse (or copy) token sequences." in out


@pytest.mark.parametrize("argv, expect", [
    (["run", "weak-convexity", "--heads-grid", "1,x"],
     "argument --heads-grid: expected comma-separated int values such as --heads-grid 1,2,4"),
    (["run", "weak-convexity", "--heads-grid", ","], "argument --heads-grid: expected a comma"),
    (["run", "stability", "--n-grid", "8,1.5"], "argument --n-grid: expected comma-separated"),
    (["run", "train", "--heads", "two"], "argument --heads: invalid int value: 'two'"),
])
def test_malformed_values_name_the_flag(argv, expect, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert expect in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, expect", [
    (["run", "symmetry", "--d-model", "10", "--heads", "4"], "--d-model=10 is not divisible by "
                                                              "--heads=4"),
    (["run", "symmetry", "--positional-grid", "none,rotary"], "--positional-grid entries"),
    (["run", "symmetry", "--residual-grid", "all,sideways"], "--residual-grid entries"),
    (["run", "weak-convexity", "--heads-grid", "0,2"], "--heads-grid must hold"),
    (["run", "stability", "--steps-grid", "0"], "--steps-grid must hold"),
    (["run", "train", "--d", "3"], "--d=3 is too small"),
    (["run", "seq2seq", "--task", "sort"], "--task must be 'reverse' or 'copy', got 'sort'"),
])
def test_invalid_values_name_the_flag_as_typed(argv, expect, tmp_path, capsys):
    assert cli.main([*argv, "--out", str(tmp_path / "o")]) == 2
    assert expect in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_flag_translation_leaves_quoted_values_alone():
    message = cli._flags_in("task must be 'seed', got seed=1 and d_model",
                            ["seed", "task", "d_model"])
    assert message == "--task must be 'seed', got --seed=1 and --d-model"


# --- notebooks -------------------------------------------------------------------------------


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib")
def test_dev_extra_can_execute_notebooks():
    import pathlib

    import tomllib

    pyproject = pathlib.Path(__file__).parents[1] / "pyproject.toml"
    dev = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]["dev"]
    assert any(req.split(">")[0].split("=")[0].strip() == "nbconvert" for req in dev)


def test_a_command_shows_a_repeated_warning_once():
    """Each probe of a sweep enters ``catch_warnings``, which clears Python's "once" registry;
    the command still shows one model's PrecisionWarning once, and a different one again."""
    with warnings.catch_warnings(record=True) as log:
        warnings.simplefilter("always")
        with cli.command_warnings():
            for _ in range(3):
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Lanczos did not converge")
                    warnings.warn("the same text", precision.PrecisionWarning, stacklevel=1)
            warnings.warn("another text", precision.PrecisionWarning, stacklevel=1)
    assert [str(w.message) for w in log] == ["the same text", "another text"]


def test_a_command_prints_a_warning_without_the_console_scripts_line():
    """In a command a warning reads ``Category: text``: the file and line its stacklevel finds
    outside the toolkit are the console script's. Python's hooks come back after the command."""
    show, fmt = warnings.showwarning, warnings.formatwarning
    with cli.command_warnings():
        text = warnings.formatwarning("the text", precision.PrecisionWarning,
                                      "/venv/bin/mhatheory", 8, "sys.exit(main())")
    assert text == "PrecisionWarning: the text\n"
    assert (warnings.showwarning, warnings.formatwarning) == (show, fmt)
