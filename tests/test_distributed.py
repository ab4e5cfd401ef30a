"""Multi-process runs (``jax.distributed`` with JAX's CPU collectives: several local processes on
one machine) and data-parallel probes (the sample axis sharded over 4 host devices).

The multi-process tests start real subprocesses (``python -m mhatheory.cli`` or a small driver
around :func:`mhatheory.experiments.sweep.run_cells`), each with its own host device count in
``XLA_FLAGS`` and without any SLURM/Open MPI variables of the machine running the tests (those
would start ``jax.distributed`` on their own). Ports come from the OS (bind to port 0).

Tolerances: records of a multi-process run against one process: :data:`RECORDS_RTOL`.
Data-parallel probes against one device: ``tol(float64, "reordered")`` relative to each result's
scale, since only the order of the sum over samples differs (measured on 2 CPU cores: λmin
3.5e-16 relative, HVP entries 3.5e-17 absolute against a largest entry of 0.05).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mhatheory import data, distributed, spectral
from mhatheory.distributed import _rendezvous
from mhatheory.models import deora
from mhatheory.testing import tol

# --- helpers ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "OMPI_", "PMI_", "JAX_COORDINATOR"))}
    # this session's XLA flags (conftest.py), with the subprocess's own device count
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    env.update(XLA_FLAGS=" ".join([f"--xla_force_host_platform_device_count={devices}", *flags]),
               PYTHONUNBUFFERED="1", **extra)
    return env


def _start(argv, devices: int, **extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *argv], env=_env(devices, **extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"process hung (> {timeout} s); stderr:\n{err[-3000:]}") from None
    return proc.returncode, out, err


def _relative_diff(a, b, path="") -> float:
    """Largest relative difference between two JSON values of the same structure (equality
    required for everything but floats)."""
    if isinstance(a, dict):
        assert set(a) == set(b), (path, set(a) ^ set(b))
        return max([_relative_diff(a[k], b[k], f"{path}.{k}") for k in a], default=0.0)
    if isinstance(a, list):
        assert len(a) == len(b), path
        return max([_relative_diff(x, y, f"{path}[{i}]")
                    for i, (x, y) in enumerate(zip(a, b, strict=True))], default=0.0)
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) / max(abs(a), abs(b), 1e-300)
    assert a == b, (path, a, b)
    return 0.0


def _cli(*argv) -> list[str]:
    return ["-m", "mhatheory.cli", *argv]


#: records of a multi-process run against one process, relative: the bound the README states
#: (measured: at most 4e-16, from a different number of devices per process). Looser than
#: ``tol(float64, "reordered")`` because records hold differences of nearly equal numbers
#: (gen_gap = test − train loss, the bounds' margins), whose relative error is their terms'
#: times the ratio of term to difference (16 for a gap of 0.036 between losses of 0.6).
RECORDS_RTOL = 1e-9

#: what JAX prints when it aborts a process itself (its heartbeat check's LOG(FATAL), the C++
#: stack trace after it, CPython's fatal error handler)
JAX_ABORT = re.compile(r"stopped sending heartbeats|Check failure|Fatal Python error|"
                       r"^\s*@\s+0x[0-9a-f]+", re.MULTILINE)


# --- 2 processes x 2 devices against 1 process x 4 devices: the stability records ------------

def _flags(config) -> list[str]:
    """``mhatheory run`` flags of every field of ``config`` that differs from its default."""
    default, flags = type(config)(), []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if value != getattr(default, f.name):
            text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
            flags += [f"--{f.name.replace('_', '-')}", text]
    return flags


def test_two_processes_write_the_single_process_stability_records(tmp_path, request,
                                                                  stability_config):
    """The reference is the session's one-process sweep (``stability_run``: 4 host devices in
    one pytest process, shared with the experiment smoke test); two processes of 2 devices each
    run the same sweep from the equivalent flags, started before the reference is asked for so
    that, when this worker is the one to compute it, the three runs overlap."""
    config = stability_config
    port = _free_port()
    multi = ["run", "stability", *_flags(config), "--no-progress",
             "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
    p0 = _start(_cli(*multi, "--out", str(tmp_path / "two"), "--process-id", "0"), 2)
    # process 1 gets its own --out: it must not write anything there
    p1 = _start(_cli(*multi, "--out", str(tmp_path / "not-written"), "--process-id", "1"), 2)
    try:
        reference, _, one = request.getfixturevalue("stability_run")     # while they run
    except BaseException:
        for p in (p0, p1):
            p.kill()
        raise
    assert reference == config
    (rc0, out0, err0), (rc1, out1, err1) = (_finish(p, timeout=400) for p in (p0, p1))
    assert rc0 == 0 and rc1 == 0, (err0[-3000:], err1[-3000:])
    assert "process 1 of 2" in err1 and "4 global devices" in err1
    assert "stability cells: process 1 computed 1 of 2 cells" in err1      # the work was split
    assert "wrote" in out0 and "wrote" not in out1
    assert "process 0 wrote the results to the --out folder it was given" in err1
    assert not (tmp_path / "not-written").exists()                         # only process 0 writes
    a = json.loads((one / "results.json").read_text())
    b = json.loads((tmp_path / "two" / "results.json").read_text())
    assert a["device"]["count"] == 4 and b["device"]["count"] == 4
    assert a["config"] == b["config"]                  # the flags are the reference's config
    assert len(a["records"]) == 2
    assert _relative_diff(a["records"], b["records"]) <= RECORDS_RTOL
    # the summary names each run's own figure files (their paths differ by output folder)
    strip = lambda summary: {k: v for k, v in summary.items() if k != "figures"}  # noqa: E731
    assert {Path(f).name for f in a["summary"]["figures"].values()} == \
        {Path(f).name for f in b["summary"]["figures"].values()}
    assert _relative_diff(strip(a["summary"]), strip(b["summary"])) <= RECORDS_RTOL
    assert a["sweep"] == b["sweep"]
    names = sorted(p.stem for p in (one / "cells").glob("*.json"))
    assert names == ["n4_H1_K2", "n8_H1_K2"]
    for name in names:
        ca = json.loads((one / "cells" / f"{name}.json").read_text())
        cb = json.loads((tmp_path / "two" / "cells" / f"{name}.json").read_text())
        assert _relative_diff(ca["record"], cb["record"]) <= RECORDS_RTOL
    assert {p.name for p in (tmp_path / "two").iterdir()} == {p.name for p in one.iterdir()}


# --- the sweep machinery with cheap cells: kill, failure, resume, cluster detection ----------

#: the drivers' --heartbeat-timeout: a process counts as lost after a fifth of it (2 s), and JAX
#: would abort the others between half of it and all of it after a death
HEARTBEAT = 10

# A sweep of cells that each take `seconds` and return a known value; prints the payloads.
DRIVER = r"""
import json, sys, time
import jax.numpy as jnp
from mhatheory import distributed
from mhatheory.experiments import sweep as _sweep

out, coordinator, n, pid, resume, seconds, fail, heartbeat = sys.argv[1:9]
n, pid, seconds, fail, heartbeat = int(n), int(pid), float(seconds), int(fail), int(heartbeat)
given = () if coordinator == "env" else (coordinator, n, pid)
launch = distributed.Launch(*given, connect_timeout=60, heartbeat_timeout=heartbeat)
session = distributed.initialize(launch)
print(json.dumps({"session": session._asdict()}), flush=True)

def compute(spec):
    time.sleep(seconds)
    if fail and distributed.process_index() == 1:     # process 1 fails on its first cell
        raise RuntimeError("injected failure")
    return {"value": float(jnp.sum(jnp.arange(spec["i"] + 1.0) ** 2)),
            "process": distributed.process_index()}

cells = [(f"c{i}", {"i": i}) for i in range(8)]
try:
    got = _sweep.run_cells(out, cells, compute, resume=resume == "1", progress=False,
                           desc="fake cells")
except distributed.DistributedError as err:
    print("STOPPED:", err, file=sys.stderr, flush=True)
    sys.exit(3)
print(json.dumps({"info": got.info, "values": [c["value"] for c in got],
                  "process": [c["process"] for c in got]}), flush=True)
"""

EXPECTED = [float(sum(k * k for k in range(i + 1))) for i in range(8)]


def _driver(out, coordinator, n, pid, *, resume=False, seconds=0.0, fail=False, env=None):
    argv = ["-c", DRIVER, str(out), coordinator, str(n), str(pid), "1" if resume else "0",
            str(seconds), str(int(fail)), str(HEARTBEAT)]
    return _start(argv, 1, **(env or {}))


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def _cell_files(folder: Path) -> dict:
    return {p.stem: json.loads(p.read_text()) for p in sorted((folder / "cells").glob("*.json"))}


def _kill_mid_sweep(p0, p1, out: Path, cells: int, wait_s: float):
    """Once ``cells`` cell files exist (mid-sweep), SIGKILL process 1 and wait for process 0:
    its status, its stderr and the seconds it took to stop after the kill."""
    deadline = time.monotonic() + wait_s
    while len(list((out / "cells").glob("*.json"))) < cells:
        assert time.monotonic() < deadline and p0.poll() is None and p1.poll() is None, \
            "the sweep did not get going"
        time.sleep(0.1)
    p1.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    rc0, _, err0 = _finish(p0, timeout=60)
    stopped = time.monotonic() - killed
    p1.communicate()
    return rc0, err0, stopped


def test_a_killed_process_stops_the_others_and_resume_continues(tmp_path):
    out = tmp_path / "sweep"
    coordinator = f"127.0.0.1:{_free_port()}"
    p0 = _driver(out, coordinator, 2, 0, seconds=1.5)
    p1 = _driver(out / "unused", coordinator, 2, 1, seconds=1.5)
    rc0, err0, stopped = _kill_mid_sweep(p0, p1, out, cells=2, wait_s=90)
    # process 0 finds process 1 silent for HEARTBEAT / 5 s and ends with status 1 (whatever
    # the driver's sys.exit asked: Python's exit would run JAX's shutdown, which waits for the
    # dead process), before JAX's own heartbeat check could abort it with a C++ trace
    assert rc0 == 1, err0[-2000:]
    assert re.search(r"STOPPED: process 1 stopped responding \(no sign of life for [\d.]+ s: "
                     r"killed or out of memory\?\)", err0), err0[-2000:]
    assert not JAX_ABORT.search(err0) and "Traceback" not in err0, err0[-2000:]
    assert stopped < HEARTBEAT, stopped
    files = _cell_files(out)
    assert 2 <= len(files) < 8, sorted(files)
    for name, payload in files.items():                      # each file whole and right
        assert payload["value"] == EXPECTED[int(name[1:])]
    assert not (out / "results.json").exists()

    coordinator = f"127.0.0.1:{_free_port()}"
    runs = [_driver(out, coordinator, 2, 0, resume=True, seconds=0.2),
            _driver(out / "unused", coordinator, 2, 1, resume=True, seconds=0.2)]
    (rc0, out0, err0), (rc1, out1, err1) = (_finish(p, timeout=90) for p in runs)
    assert rc0 == 0 and rc1 == 0, (err0[-2000:], err1[-2000:])
    r0, r1 = _last_json(out0), _last_json(out1)
    assert r0["values"] == EXPECTED and r1["values"] == EXPECTED
    assert r0["info"] == r1["info"]
    assert r0["info"]["reused"] == len(files)
    assert r0["info"]["computed_new"] == 8 - len(files)
    assert "reused" in err0 and "reused" not in err1          # process 0 reports the plan
    assert sorted(_cell_files(out)) == [f"c{i}" for i in range(8)]
    assert not (out / "unused").exists()


def test_a_killed_process_ends_the_cli_run_with_a_message(tmp_path, stability_config):
    """``mhatheory run stability`` in two processes, process 1 killed mid-sweep (8 cells):
    process 0 names it, keeps the cells written so far and exits with status 1, before JAX's
    heartbeat check would abort it."""
    config = dataclasses.replace(stability_config, steps_grid=(2, 3, 4, 5))
    multi = ["run", "stability", *_flags(config), "--no-progress", "--heartbeat-timeout",
             str(HEARTBEAT), "--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", "2"]
    out = tmp_path / "out"
    p0 = _start(_cli(*multi, "--out", str(out), "--process-id", "0"), 1)
    p1 = _start(_cli(*multi, "--out", str(tmp_path / "unused"), "--process-id", "1"), 1)
    rc0, err0, stopped = _kill_mid_sweep(p0, p1, out, cells=1, wait_s=120)
    assert rc0 == 1, err0[-2000:]
    assert re.search(r"mhatheory run stability: process 1 stopped responding \(no sign of life "
                     r"for [\d.]+ s: killed or out of memory\?\)\. The cells finished so far "
                     r"are in process 0's --out/cells; .* --resume continues\.", err0), err0[-2000:]
    assert not JAX_ABORT.search(err0) and "Traceback" not in err0, err0[-2000:]
    assert stopped < HEARTBEAT, stopped
    files = list((out / "cells").glob("*.json"))
    assert 1 <= len(files) < 8
    for f in files:                                           # each file whole
        payload = json.loads(f.read_text())
        assert payload["cell"] == f.stem and "record" in payload
    assert not (out / "results.json").exists()


def test_a_failing_process_stops_the_others_with_its_message(tmp_path):
    out = tmp_path / "sweep"
    coordinator = f"127.0.0.1:{_free_port()}"
    # process 0's cells take 60 s: it must stop in the middle of one, not after it
    t0 = time.monotonic()
    runs = [_driver(out, coordinator, 2, 0, seconds=60, fail=True),
            _driver(out, coordinator, 2, 1, seconds=0.5, fail=True)]
    (rc0, _, err0), (rc1, _, err1) = (_finish(p, timeout=90) for p in runs)
    assert time.monotonic() - t0 < 40
    assert rc1 != 0 and "RuntimeError: injected failure" in err1
    assert rc0 == 3, err0[-2000:]
    failed = re.search(r"STOPPED: stopping: process 1: cell (c\d) failed: RuntimeError: "
                       r"injected failure", err0)
    assert failed, err0[-2000:]
    assert _cell_files(out) == {}


# Process 1 reports a failure while process 0 waits in a gc callback, where Python ignores the
# stop raised there; then process 0 runs plain Python, where the stop must arrive again.
GC_DRIVER = r"""
import gc, sys, time
from mhatheory import distributed

coordinator, pid = sys.argv[1], int(sys.argv[2])
distributed.initialize(distributed.Launch(coordinator, 2, pid, connect_timeout=60))
if pid == 1:
    time.sleep(2)                            # process 0 is in its gc callback by then
    distributed.report_failure("injected failure")
    sys.exit(0)
raised_in_callback = 0

def wait_for_the_stop(phase, info):
    global raised_in_callback
    if phase == "start" and not raised_in_callback:
        try:
            while True:
                time.sleep(0.01)
        except distributed.DistributedError:
            raised_in_callback += 1
            raise

try:
    with distributed.stop_on_peer_failure(poll_s=0.2):
        gc.callbacks.append(wait_for_the_stop)
        gc.collect()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            sum(range(100_000))
except distributed.DistributedError as err:
    print(f"STOPPED after {raised_in_callback} in the callback: {err}", flush=True)
    sys.exit(3)
"""


def test_a_stop_that_python_ignores_is_sent_again(tmp_path):
    coordinator = f"127.0.0.1:{_free_port()}"
    runs = [_start(["-c", GC_DRIVER, coordinator, str(pid)], 1) for pid in (0, 1)]
    (rc0, out0, err0), (rc1, _, err1) = (_finish(p, timeout=60) for p in runs)
    assert rc1 == 0, err1[-2000:]
    assert rc0 == 3, err0[-2000:]
    assert "STOPPED after 1 in the callback: stopping: process 1: injected failure" in out0
    assert "Exception ignored" not in err0, err0[-2000:]


def test_slurm_environment_starts_the_run_without_flags(tmp_path):
    """JAX's SLURM detection: ``srun -n 2`` sets these variables; ``JAX_COORDINATOR_PORT``
    overrides the port JAX derives from the job id."""
    out = tmp_path / "sweep"
    port = str(_free_port())
    slurm = dict(SLURM_JOB_ID="4242", SLURM_STEP_NODELIST="localhost", SLURM_NTASKS="2",
                 JAX_COORDINATOR_PORT=port)
    runs = [_driver(out, "env", 0, 0, seconds=0.1,
                    env=dict(slurm, SLURM_PROCID=str(i), SLURM_LOCALID=str(i)))
            for i in range(2)]
    results = [_finish(p, timeout=90) for p in runs]
    for i, (rc, stdout, err) in enumerate(results):
        assert rc == 0, err[-2000:]
        session = json.loads(stdout.splitlines()[0])["session"]
        assert session["process_id"] == i and session["num_processes"] == 2
        assert session["coordinator"] == f"localhost:{port}"
        assert _last_json(stdout)["values"] == EXPECTED
    processes = set(_last_json(results[0][1])["process"])
    assert processes == {0, 1}                                  # both computed cells


# --- bad input: clear errors naming the flag, before any work --------------------------------


STAB = ["run", "stability", "--n-grid", "4", "--steps-grid", "2", "--no-progress"]


@pytest.fixture(scope="module")
def refused_launches(tmp_path_factory):
    """The launches below that must be refused, started together: each spends most of its
    time starting Python or waiting out a connect timeout, so they overlap instead of
    queueing. Each test then waits for its own processes: ``{name: (t0, out, [Popen])}``."""
    root = tmp_path_factory.mktemp("refused")
    t0 = time.monotonic()
    port = lambda: f"127.0.0.1:{_free_port()}"                          # noqa: E731
    mismatched = [*STAB, "--coordinator", port(), "--num-processes", "2",
                  "--connect-timeout", "30", "--out", str(root / "mismatched")]
    return {
        "unreachable": (t0, root / "unreachable", [_start(_cli(
            *STAB, "--out", str(root / "unreachable"), "--coordinator", port(),
            "--num-processes", "2", "--process-id", "1", "--connect-timeout", "2"), 1)]),
        "missing": (t0, root / "missing", [_start(_cli(
            *STAB, "--out", str(root / "missing"), "--coordinator", port(),
            "--num-processes", "3", "--process-id", "0", "--connect-timeout", "2"), 1)]),
        "mismatched": (t0, root / "mismatched", [
            _start(_cli(*mismatched, "--process-id", "0"), 1),
            _start(_cli(*mismatched, "--process-id", "1", "--lr", "0.5"), 1)]),
    }


def test_unreachable_coordinator_is_a_clear_error_within_the_timeout(refused_launches):
    t0, out, (proc,) = refused_launches["unreachable"]
    rc, _, err = _finish(proc, timeout=60)
    assert rc == 2 and time.monotonic() - t0 < 30
    assert "--coordinator 127.0.0.1:" in err and "--connect-timeout 2 s" in err
    assert "Traceback" not in err and not out.exists()


def test_missing_processes_are_named_by_process_0(refused_launches):
    _, out, (proc,) = refused_launches["missing"]
    rc, _, err = _finish(proc, timeout=60)
    assert rc == 2 and "only 1 of --num-processes 3" in err and "missing --process-id 1, 2" in err
    assert not out.exists()


def test_mismatched_settings_are_refused_on_every_process_naming_the_flag(refused_launches):
    _, out, runs = refused_launches["mismatched"]
    for rc, _, err in (_finish(p, timeout=60) for p in runs):
        assert rc == 2, err[-2000:]
        assert "--lr is 0.5 on process 1 but 1.0 on process 0" in err
    assert not out.exists()


@pytest.mark.parametrize("argv, expect", [
    (["--num-processes", "2", "--process-id", "2", "--coordinator", "127.0.0.1:1234"],
     "--process-id 2 is outside [0, 2) for --num-processes 2"),
    (["--num-processes", "2", "--process-id", "-1", "--coordinator", "127.0.0.1:1234"],
     "--process-id must be an integer >= 0"),
    (["--num-processes", "0", "--process-id", "0", "--coordinator", "127.0.0.1:1234"],
     "--num-processes must be an integer >= 1"),
    (["--num-processes", "2", "--process-id", "0", "--coordinator", "localhost"],
     "--coordinator must be HOST:PORT"),
    (["--num-processes", "2", "--process-id", "0", "--coordinator", "h:99999"],
     "the port must lie in 1..65535"),
    (["--num-processes", "2", "--process-id", "0", "--coordinator", "h:1",
      "--connect-timeout", "0"], "--connect-timeout must be a finite number > 0"),
    (["--num-processes", "2"], "--coordinator, --process-id not given"),
])
def test_bad_launch_flags_are_refused_before_any_work(argv, expect, tmp_path, capsys,
                                                      monkeypatch):
    from mhatheory import cli

    for key in [k for k in os.environ if k.startswith(("SLURM_", "OMPI_"))]:
        monkeypatch.delenv(key)
    assert cli.main([*STAB, "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert expect in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_launch_follows_the_flags_and_the_cluster_environment(monkeypatch):
    from mhatheory import cli

    for key in [k for k in os.environ if k.startswith(("SLURM_", "OMPI_"))]:
        monkeypatch.delenv(key)
    parse = cli.build_parser().parse_args
    base = [*STAB, "--out", "x"]
    assert cli.launch_requested(parse(base)) is None                          # plain: one process
    assert cli.launch_requested(parse(["run", "train", "--out", "x"])) is None  # not a sweep
    launch = cli.launch_requested(parse([*base, "--num-processes", "2"]))
    assert launch.num_processes == 2 and launch.coordinator is None
    for key, value in dict(SLURM_JOB_ID="7", SLURM_STEP_NODELIST="node[01-02]",
                           SLURM_NTASKS="2", SLURM_PROCID="1", SLURM_LOCALID="0").items():
        monkeypatch.setenv(key, value)
    assert distributed.cluster_environment() == ("slurm", 2)
    assert cli.launch_requested(parse(base)) is not None                      # srun -n 2: on
    assert cli.launch_requested(parse([*base, "--no-distributed"])) is None   # opted out
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert cli.launch_requested(parse(base)) is None                          # one task: off


# --- the handshake itself (no JAX), in threads ------------------------------------------------


def _handshake(n: int, ids, identities, timeout=10.0):
    """Run process 0's side and ``ids``' sides of the handshake in threads; returns
    ``{pid: error message or None}``."""
    port = _free_port()
    errors = {}

    def side(pid, identity):
        try:
            if pid == 0:
                _rendezvous.serve(port, "127.0.0.1", n, identity, timeout)
            else:
                _rendezvous.join("127.0.0.1", port, pid, n, identity, timeout)
            errors[pid] = None
        except distributed.DistributedError as err:
            errors[pid] = str(err)

    threads = [threading.Thread(target=side, args=(0, identities[0]))]
    threads += [threading.Thread(target=side, args=(pid, identities[k + 1]))
                for k, pid in enumerate(ids)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 15)
    assert not any(t.is_alive() for t in threads), "handshake hung"
    return errors


def test_handshake_accepts_agreeing_processes():
    same = {"--lr": 1.0, "experiment": "stability"}
    assert _handshake(3, [1, 2], [same, same, same]) == {0: None, 1: None, 2: None}


def test_handshake_refuses_differences_duplicates_and_missing_processes():
    a, b = {"--lr": 1.0, "--seeds": 3}, {"--lr": 1.0, "--seeds": 4}
    errors = _handshake(2, [1], [a, b])
    assert errors[0] == errors[1] and "--seeds is 4 on process 1 but 3 on process 0" in errors[0]
    errors = _handshake(3, [1, 1], [a, a, a])
    assert "two processes were started with process_id 1" in errors[0]
    assert sum("two processes" in (e or "") for e in errors.values()) >= 2
    errors = _handshake(3, [2], [a, a], timeout=2.0)
    assert "missing process_id 1" in errors[0] and errors[2] is not None


# --- data-parallel probes: the sample axis over 4 host devices -------------------------------


@pytest.fixture(scope="module")
def problem():
    assert jax.local_device_count() >= 4, "conftest sets 4 host devices"
    mix = data.MixtureConfig(d=5, T=4, n=32, zeta=0.6, num_irrelevant=2, sigma=0.1, scale=1.0)
    batch = data.sample(mix, jax.random.key(0))
    params = deora.init_params(jax.random.key(1), 5, 3, 1.0)
    return params, batch, distributed.shard_samples(batch, jax.local_devices()[:4])


def _rel(a, b):
    return abs(a - b) / max(abs(a), abs(b))


def _assert_reordered(actual, desired):
    """Equal up to the order of a summation: ``tol(dtype, "reordered")`` relative to the
    largest entry (the table's row is for O(1) values) and to each entry."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    r = tol(desired, "reordered")
    np.testing.assert_allclose(actual, desired, rtol=r, atol=r * np.abs(desired).max())


def test_sharded_data_lives_on_four_devices(problem):
    _, batch, sharded = problem
    assert len(sharded.X.sharding.device_set) == 4
    assert {s.data.shape for s in sharded.X.addressable_shards} == {(8, 4, 5)}
    np.testing.assert_array_equal(np.asarray(sharded.X), np.asarray(batch.X))


def test_data_parallel_lambda_min_equals_one_device(problem):
    params, batch, sharded = problem
    one = spectral.lambda_min(deora.loss_fn, params, batch, key=jax.random.key(2))
    four = spectral.lambda_min(deora.loss_fn, params, sharded, key=jax.random.key(2))
    assert one.converged and four.converged
    assert _rel(one.value, four.value) <= tol(batch.X, "reordered")


def test_data_parallel_hvp_trace_and_density_equal_one_device(problem):
    params, batch, sharded = problem
    mv1, flat = spectral.hvp(deora.loss_fn, params, batch)
    mv4, _ = spectral.hvp(deora.loss_fn, params, sharded)
    v = jax.random.normal(jax.random.key(4), flat.shape)
    _assert_reordered(mv4(v), mv1(v))
    gn = spectral.GaussNewton(deora.phi, loss="logistic")        # an operator of _split.py
    g1, _ = spectral.hvp(gn, params, batch.X, batch.y)
    g4, _ = spectral.hvp(gn, params, sharded.X, sharded.y)
    _assert_reordered(g4(v), g1(v))
    t1 = spectral.trace(deora.loss_fn, params, batch, key=jax.random.key(5), num_samples=8)
    t4 = spectral.trace(deora.loss_fn, params, sharded, key=jax.random.key(5), num_samples=8)
    assert _rel(t1.value, t4.value) <= tol(batch.X, "reordered")
    d1 = spectral.spectral_density(deora.loss_fn, params, batch, key=jax.random.key(6),
                                   num_probes=2, krylov=10)
    d4 = spectral.spectral_density(deora.loss_fn, params, sharded, key=jax.random.key(6),
                                   num_probes=2, krylov=10)
    _assert_reordered(d4.nodes, d1.nodes)


def test_the_hvp_program_is_partitioned_over_the_samples(problem):
    """The linearisation on sharded data keeps its residuals sharded (a quarter of the samples
    per device), and the compiled product applied to them sums the partial gradients with an
    all-reduce: nothing gathers the data onto one device."""
    params, _, sharded = problem
    H = spectral.linearise(deora.loss_fn, params, sharded)
    big = [x for x in jax.tree.leaves(H.lin) if x.shape == (32, 4, 5)]
    assert big and all({s.data.shape for s in x.addressable_shards} == {(8, 4, 5)} for x in big)
    text = jax.jit(lambda lin, v: lin(v)).lower(H.lin, H.flat).compile().as_text()
    assert "f64[8,4,5]" in text and "all-reduce" in text
    assert "f64[32,4,5]" not in text


def test_shard_samples_refuses_uneven_splits_and_ragged_data():
    x = jnp.zeros((10, 3))
    with pytest.raises(ValueError, match="10 samples cannot be split evenly over 4 devices"):
        distributed.shard_samples(x, jax.local_devices()[:4])
    with pytest.raises(ValueError, match="share the leading sample axis"):
        distributed.shard_samples((jnp.zeros((4, 2)), jnp.zeros((6,))),
                                  jax.local_devices()[:2])
    assert math.prod(distributed.shard_samples(x, jax.local_devices()[:2]).shape) == 30


def test_coordinator_addresses_parse_with_ipv6_brackets():
    assert distributed.parse_address("10.0.0.1:12345") == ("10.0.0.1", 12345)
    assert distributed.parse_address("[::1]:8476") == ("::1", 8476)
    assert distributed.parse_address("node-01.cluster:80") == ("node-01.cluster", 80)
    for bad in ("::1:8476", "host:", ":123", "a b:1"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            distributed.parse_address(bad)
