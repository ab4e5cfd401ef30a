import json

from mhatheory import cli, verify
from mhatheory.verdicts import Verdict


def _run(tmp_path, monkeypatch, rows):
    monkeypatch.setitem(verify.CHECKS, "model", ("stub", lambda full, out, progress: rows))
    code = cli.main(["verify", "--only", "model", "--out", str(tmp_path), "--no-progress"])
    return code, json.loads((tmp_path / "results.json").read_text())


def test_verify_exits_1_when_a_theorem_fails(tmp_path, monkeypatch):
    code, res = _run(tmp_path, monkeypatch, [
        verify.upper("a false inequality", "theorem", 2.0, 1.0),
        verify.tendency("a trend", 0.3, -0.5, 0.1)])
    assert code == 1
    assert not res["all_pass"] and [c["status"] for c in res["checks"]] == ["FAIL", "REPORT"]
    assert "FAIL" in (tmp_path / "index.md").read_text()


def test_an_inconclusive_row_is_its_own_status_and_never_a_pass(tmp_path, monkeypatch):
    rows = [verify.upper("holds", "theorem", 0.5, 1.0),
            verify.Check("undecided", "theorem", Verdict.INCONCLUSIVE, -0.1, 0.0, -0.1)]
    code, res = _run(tmp_path, monkeypatch, rows)
    assert code == 3 and not res["all_pass"]
    assert [c["status"] for c in res["checks"]] == ["PASS", "INCONCLUSIVE"]
    md = (tmp_path / "index.md").read_text()
    assert "| INCONCLUSIVE | theorem | undecided |" in md and "1 INCONCLUSIVE" in md
    assert "INCONCLUSIVE" in (tmp_path / "index.html").read_text()


def test_a_run_of_report_rows_only_does_not_say_all_checks_pass(tmp_path, monkeypatch, capsys):
    code, res = _run(tmp_path, monkeypatch, [verify.tendency("a trend", 0.3, -0.5, 0.1)])
    out = capsys.readouterr().out
    assert code == 0 and not res["all_pass"]          # nothing failed, and nothing passed
    assert "NO GATED CHECK RAN" in out and "ALL CHECKS PASS" not in out


def test_nan_is_never_a_pass():
    assert verify.upper("nan", "identity", float("nan"), 1.0).status == "INCONCLUSIVE"


def test_long_check_names_are_not_cut_in_the_table():
    name = "a check whose name is much longer than fifty-two characters, all of it kept"
    table = verify.format_table([verify.upper(name, "theorem", 0.0, 1.0)])
    assert name in table


def test_slope_rows_use_the_right_reference(weak_convexity_run, monkeypatch):
    """A constant κ means −λmin/L̂ ∝ H^(−1/2) and a flat κ̂: the κ̂ rows' reference is 0 (it was
    −1/2 on main), and both fits (all H and H ≥ fit_min_heads) are shown. The group runs the
    shared tiny sweep (its run() answers with that sweep's summary)."""
    from mhatheory.experiments import weak_convexity as wc

    cfg, summary, out = weak_convexity_run
    monkeypatch.setattr(wc, "Config", lambda **_: cfg)
    monkeypatch.setattr(wc, "run", lambda config, folder, progress: summary)
    rows = verify.check_weak_convexity(False, out.parent)
    assert {r.status for r in rows if r.kind != "tendency"} == {"PASS"}
    assert all((out.parent / f).exists() for r in rows for f in r.figures)
    for quantity, reference in (("κ̂", 0.0), ("−λmin/L̂", -0.5)):
        mine = [r for r in rows if r.kind == "tendency" and f"of {quantity} " in r.name]
        assert {r.reference for r in mine} == {reference}
        assert any("all H" in r.name for r in mine) and any("H ≥ 2" in r.name for r in mine)
