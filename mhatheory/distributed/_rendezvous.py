"""The handshake before ``jax.distributed`` starts (see :mod:`mhatheory.distributed`).

JAX's own start-up aborts the process (``LOG(FATAL)``, blaming "another task") when the
coordinator cannot be reached or a process never arrives, and never compares the processes'
settings. So, first, on the coordinator's port: process 0 listens (:func:`serve`), connects to
its own coordinator address once (which must lead back to it), and waits for processes 1..N−1
(:func:`join`), each sending one JSON line: its id, its N and its *identity* (a JSON dict of the
settings that must agree). Process 0 answers every process "ok" once all have arrived and agree,
or the same error to all of them. The port is then free for JAX. Every failure is a
:class:`~mhatheory.distributed.DistributedError` within the timeout; messages use the launch
field names (``process_id``), which the CLI writes as flags.
"""

from __future__ import annotations

import json
import secrets
import socket
import time

from mhatheory.distributed._errors import DistributedError

_MAX_LINE = 1 << 20


def _send(conn: socket.socket, obj) -> None:
    conn.sendall(json.dumps(obj).encode() + b"\n")


def _receive(conn: socket.socket, deadline: float):
    """One JSON line from ``conn`` before ``deadline``; ``None`` on EOF, timeout or garbage."""
    buf = b""
    while b"\n" not in buf and len(buf) < _MAX_LINE:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        conn.settimeout(min(left, 1.0))
        try:
            chunk = conn.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    try:
        return json.loads(buf.split(b"\n", 1)[0])
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def differences(mine: dict, theirs: dict) -> list[str]:
    """The keys whose values differ between two identity dicts (missing counts as differing)."""
    missing = object()
    return sorted(k for k in set(mine) | set(theirs)
                  if mine.get(k, missing) != theirs.get(k, missing))


def _mismatch(pid: int, mine: dict, theirs: dict) -> str | None:
    keys = differences(mine, theirs)
    if not keys:
        return None
    shown = "; ".join(f"{k} is {theirs.get(k, '(unset)')!r} on process {pid} but "
                      f"{mine.get(k, '(unset)')!r} on process 0" for k in keys[:5])
    more = f" (and {len(keys) - 5} more)" if len(keys) > 5 else ""
    return (f"the processes were started with different settings: {shown}{more}. Every process "
            "must get the same experiment flags; only process_id differs.")


def serve(port: int, host: str, n: int, identity: dict, timeout: float) -> None:
    """Process 0: wait for processes 1..n−1, check them, answer all; raise on any problem."""
    deadline = time.monotonic() + timeout
    try:
        if socket.has_dualstack_ipv6():
            server = socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True)
        else:
            server = socket.create_server(("", port))
    except OSError as err:
        raise DistributedError(f"coordinator port {port} cannot be opened on this machine "
                               f"(process 0): {err.strerror or err}; pick a free port.") from None
    nonce = secrets.token_hex(8)
    peers: dict[int, socket.socket] = {}
    reached_self = False
    probe = None
    try:
        try:  # does coordinator's HOST lead back to this machine? (process 0 must own it)
            probe = socket.create_connection((host, port), timeout=min(10.0, timeout))
            _send(probe, {"self": nonce})
        except OSError as err:
            raise DistributedError(
                f"coordinator {host}:{port}: process 0 cannot reach its own coordinator "
                f"address ({err.strerror or err}); give process 0's own address, reachable "
                "from every host, as coordinator.") from None
        error = None
        while (len(peers) < n - 1 or not reached_self) and error is None:
            left = deadline - time.monotonic()
            if left <= 0:
                if not reached_self:
                    error = (f"coordinator {host}:{port} does not lead back to process 0's "
                             "machine; give process 0's own address (reachable from every "
                             "host) as coordinator.")
                else:
                    missing = sorted(set(range(1, n)) - set(peers))
                    error = (f"only {len(peers) + 1} of num_processes {n} processes arrived "
                             f"within connect_timeout {timeout:g} s; missing process_id "
                             f"{', '.join(map(str, missing))}. Start every process with the "
                             f"same coordinator {host}:{port} and its own process_id.")
                break
            server.settimeout(min(left, 1.0))
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            hello = _receive(conn, min(deadline, time.monotonic() + 10))
            if not isinstance(hello, dict):
                conn.close()              # not one of ours (a port scanner, a stale client)
                continue
            if hello.get("self") == nonce:
                reached_self = True
                conn.close()
                continue
            pid, their_n = hello.get("process_id"), hello.get("num_processes")
            if their_n != n:
                error = (f"num_processes differs: {their_n} on process {pid} but {n} on "
                         "process 0; give every process the same num_processes.")
            elif not isinstance(pid, int) or not 1 <= pid < n:
                error = f"a process arrived with process_id {pid!r}, outside [1, {n})."
            elif pid in peers:
                error = (f"two processes were started with process_id {pid}; give each "
                         "process its own id in [0, N).")
            else:
                error = _mismatch(pid, identity, hello.get("identity") or {})
            if error is None:
                peers[pid] = conn
            else:                         # tell this one too, then everyone below
                _safe_send(conn, {"error": error})
                conn.close()
        reply = {"error": error} if error is not None else {"ok": True}
        for conn in peers.values():
            _safe_send(conn, reply)
        # let each client close first, so the port is not left in TIME_WAIT for JAX's bind
        for conn in peers.values():
            _receive(conn, time.monotonic() + 2.0)
            conn.close()
        if error is not None:
            raise DistributedError(error)
    finally:
        if probe is not None:
            probe.close()
        server.close()


def _safe_send(conn, obj) -> None:
    try:
        _send(conn, obj)
    except OSError:
        pass


def join(host: str, port: int, pid: int, n: int, identity: dict,
                    timeout: float) -> None:
    """Process i > 0: reach process 0, introduce itself, wait for its verdict."""
    deadline = time.monotonic() + timeout
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise DistributedError(f"coordinator {host}:{port}: cannot resolve host {host!r} "
                               f"({err.strerror or err}).") from None
    conn, last = None, None
    while conn is None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DistributedError(
                f"coordinator {host}:{port} could not be reached within connect_timeout "
                f"{timeout:g} s ({last or 'no answer'}): is process 0 running, and is "
                f"{host}:{port} its address as seen from this host?")
        try:
            conn = socket.create_connection((host, port), timeout=min(left, 5.0))
        except OSError as err:
            last = err.strerror or str(err)
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
    try:
        _send(conn, {"process_id": pid, "num_processes": n, "identity": identity})
        reply = _receive(conn, deadline)
    except OSError as err:
        reply, last = None, err
    finally:
        conn.close()
    if isinstance(reply, dict) and reply.get("ok"):
        return
    if isinstance(reply, dict) and "error" in reply:
        raise DistributedError(str(reply["error"]))
    raise DistributedError(f"coordinator {host}:{port} accepted the connection but not all "
                           f"num_processes {n} processes arrived within connect_timeout "
                           f"{timeout:g} s (or process 0 stopped); see process 0's message.")
