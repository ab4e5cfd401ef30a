import json

import pytest

from mhatheory import cli, results


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
    assert "num_heads must be" in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()


def test_verify_only_model_passes_and_writes_report(tmp_path):
    assert cli.main(["verify", "--only", "model", "--out", str(tmp_path), "--no-progress"]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["all_pass"] and res["checks"][0]["status"] == "PASS"
    assert (tmp_path / "index.html").exists() and (tmp_path / "index.md").exists()


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(TypeError):
        results.write_json_atomic(tmp_path / "r.json", {"x": object()})
    assert list(tmp_path.iterdir()) == []


def test_verify_exits_1_when_a_theorem_fails(tmp_path, monkeypatch):
    from mhatheory import verify

    def failing(full, out):
        return [verify.upper("a false inequality", "theorem", 2.0, 1.0),
                verify.Check("a trend", "tendency", True, 0.3, -0.5, 0.1)]

    monkeypatch.setitem(verify.CHECKS, "model", ("fails on purpose", failing))
    assert cli.main(["verify", "--only", "model", "--out", str(tmp_path), "--no-progress"]) == 1
    res = json.loads((tmp_path / "results.json").read_text())
    assert not res["all_pass"] and [c["status"] for c in res["checks"]] == ["FAIL", "REPORT"]
    assert "FAIL" in (tmp_path / "index.md").read_text()
