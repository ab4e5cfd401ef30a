"""Results files: the one atomic writer (modes, failure), and the ``--out`` check."""

import json
import os
import stat

import pytest

from mhatheory import results


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_writers_create_files_readable_by_others(tmp_path, umask_022):
    import matplotlib.pyplot as plt

    results.write_json_atomic(tmp_path / "r.json", {"a": 1.0})
    results.write_text_atomic(tmp_path / "t.md", "# hi ü\n")
    results.save_figure_atomic(plt.figure(), tmp_path / "f.png")
    for name in ("r.json", "t.md", "f.png"):
        assert _mode(tmp_path / name) == 0o644, name
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 1.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png", "r.json", "t.md"]


def test_atomic_writer_respects_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        results.write_json_atomic(tmp_path / "r.json", {})
    finally:
        os.umask(old)
    assert _mode(tmp_path / "r.json") == 0o600


def test_failed_atomic_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "r.txt"
    target.write_text("old")

    def boom(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        results.write_atomic(target, boom)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["r.txt"]


def test_check_out_dir_creates_a_missing_folder(tmp_path):
    out = results.check_out_dir(tmp_path / "a" / "b")
    assert out.is_dir() and list(out.iterdir()) == []


@pytest.mark.parametrize("make", ["file", "under_file"])
def test_check_out_dir_rejects_files_naming_the_flag(tmp_path, make):
    (tmp_path / "f").write_text("keep me")
    path = tmp_path / "f" if make == "file" else tmp_path / "f" / "sub"
    with pytest.raises(ValueError, match="--report-dir .*folder"):
        results.check_out_dir(path, flag="--report-dir")
    assert (tmp_path / "f").read_text() == "keep me"


def test_check_out_dir_rejects_an_unwritable_folder(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(results.tempfile, "mkstemp", denied)
    with pytest.raises(ValueError, match="--out .*cannot write.*Permission denied"):
        results.check_out_dir(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits")
def test_check_out_dir_rejects_a_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(ValueError, match="--out"):
        results.check_out_dir(ro / "new")


def test_retire_removes_results_and_the_files_they_list_only(tmp_path):
    """``results.retire`` removes results.json and the files it lists under ``figures``, and
    nothing else: not a listed name that leaves the folder, not the cells, not a folder."""
    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / "a.json").write_text("{}")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.png"
    outside.write_text("x")
    for name in ("a.png", "mine.txt"):
        (tmp_path / name).write_text("x")
    results.write_results(tmp_path, "demo", {"n": 1}, 0, {},
                          figures=[tmp_path / "a.png", "missing.png"])
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["figures"] == ["a.png", "missing.png"]
    payload["figures"] += [f"../{outside.name}", "cells", ""]
    (tmp_path / "results.json").write_text(json.dumps(payload))
    results.retire(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells", "mine.txt"]
    assert outside.exists() and (tmp_path / "cells" / "a.json").exists()
    results.retire(tmp_path)                    # nothing to retire: no error
    (tmp_path / "results.json").write_text("{not json")
    results.retire(tmp_path)                    # unreadable: removed, listing nothing
    assert not (tmp_path / "results.json").exists()
