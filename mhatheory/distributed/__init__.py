"""Past one process: starting ``jax.distributed``, the coordination a multi-process sweep needs,
and data split over devices for data-parallel probes.

**Model.** Multi-controller JAX: every process runs the same program (``mhatheory run …`` with the
same flags, only ``--process-id`` differs); process 0 hosts JAX's coordination service and is the
only one that writes results. The coordination service (its key-value store, atomic counters and
heartbeats) is all this module uses to split work and to move finished cells to process 0: no
home-made process pool, no shared file system.

**Starting.** :func:`initialize` first checks what JAX would only find out by aborting the process
(a ``LOG(FATAL)`` that blames "another task"): a coordinator that cannot be reached, processes
that never arrive, two processes with one id, processes started with different settings. It does
so with a short handshake on the coordinator's port before JAX binds it
(:mod:`mhatheory.distributed._rendezvous`): process 0 listens, every other process connects and
sends its id, ``num_processes`` and an *identity* (the resolved experiment config); process 0
answers "ok" once all have arrived and agree, or the same error to all of them. Every failure is a
:class:`DistributedError` naming the flag, within ``connect_timeout`` seconds. Then
``jax.distributed.initialize`` runs with the same values; on CPU, cross-process collectives use
JAX's gloo implementation, so the whole path runs on one machine with several processes.

**Failures while running.** A process that raises publishes its error in the store
(:func:`report_failure`); the others stop with that message at once (between two JAX calls,
:func:`stop_on_peer_failure`) or at their next wait (:meth:`Channel.get`). A process that dies
without a word (killed, out of memory) is found by its silence: a thread in every process
advances the process's counter in the store about once a second and watches the others'
(:mod:`mhatheory.distributed._liveness`); a counter that stands still for a fifth of
``heartbeat_timeout`` stops the others the same way, with a :class:`DistributedError` naming it
("process 1 stopped responding (no sign of life for 20.3 s: killed or out of memory?)").
After such a loss a process ends with exit status 1 when Python exits, or by itself
``heartbeat_timeout / 10`` seconds later if its main thread is still busy (in an XLA
computation, or carrying on), always without ``jax.distributed``'s shutdown: that is a barrier
that would wait for the dead process until JAX's own heartbeat check aborts with a C++ stack
trace (between ``heartbeat_timeout / 2`` and ``heartbeat_timeout`` after the death). A process
that exits normally first says it is leaving, so that its silence while it waits in that
barrier is no loss. Either way no process hangs, and because process 0 writes each finished
cell atomically as it arrives, ``--resume`` loses at most the cells that were in progress. Not
covered: when process 0 dies, the coordination service goes with it and JAX aborts the others
at once; and a process that dies while the others are already in JAX's shutdown makes JAX abort
them there.

**Data-parallel probes.** :func:`shard_samples` places a data pytree with its sample axis split
over a mesh of (local) devices; every probe then runs data-parallel, since ``jit`` follows the
inputs' sharding (the loss's mean over samples becomes per-device partial sums and an
all-reduce). Results equal one device up to the order of the summation.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import re
import signal
import sys
import threading
from dataclasses import dataclass
from typing import NamedTuple

import jax
import numpy as np

from mhatheory.distributed import _liveness, _rendezvous
from mhatheory.distributed._errors import DistributedError

#: prefix of every key this package puts in the coordination service's store
_PREFIX = "mhatheory"
_FAILURE = f"{_PREFIX}/failure"

#: this process's sign of life and watch over the others' (a multi-process run only)
_liveness_thread: _liveness.Liveness | None = None


# --- launch settings -------------------------------------------------------------------------


def parse_address(text: str, name: str = "coordinator") -> tuple[str, int]:
    """``"HOST:PORT"`` (``"[IPv6]:PORT"`` for IPv6 literals) → ``(host, port)``; a
    :class:`ValueError` naming ``name`` otherwise."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.%\w]+)\]:(\d+)|([^\s:\[\]/]+):(\d+)", str(text).strip())
    if not m:
        raise ValueError(f"{name} must be HOST:PORT (e.g. 10.0.0.1:12345, or [::1]:12345 for an "
                         f"IPv6 address), got {text!r}.")
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    port = int(port)
    if not 1 <= port <= 65535:
        raise ValueError(f"{name} {text!r}: the port must lie in 1..65535, got {port}.")
    return host, port


@dataclass(frozen=True)
class Launch:
    """How this process joins a multi-process run (every field left ``None`` is taken from the
    cluster environment: SLURM, Open MPI, …, by JAX's own detection).

    Attributes:
        coordinator: ``HOST:PORT`` of process 0, which runs the coordination service; every
            process gives the same value, and HOST must reach process 0 from every host.
        num_processes: how many processes take part (N ≥ 1).
        process_id: this process's id in [0, N); each id exactly once.
        connect_timeout: seconds to wait for the coordinator to be reachable and for all N
            processes to arrive, before a clear error.
        heartbeat_timeout: seconds without a heartbeat after which JAX counts a process as dead
            and aborts the others; they notice a silent process after a fifth of it and stop
            cleanly first.
    """

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    connect_timeout: float = 120.0
    heartbeat_timeout: int = 60

    def __post_init__(self):
        from mhatheory import _validate

        if self.coordinator is not None:
            parse_address(self.coordinator)
        if self.num_processes is not None:
            _validate.positive_int("num_processes", self.num_processes)
        if self.process_id is not None:
            _validate.positive_int("process_id", self.process_id, minimum=0)
            if self.num_processes is not None and self.process_id >= self.num_processes:
                raise ValueError(f"process_id {self.process_id} is outside [0, "
                                 f"{self.num_processes}) for num_processes {self.num_processes}"
                                 "; number the processes 0, 1, …, N-1.")
        _validate.positive_float("connect_timeout", self.connect_timeout)
        _validate.positive_int("heartbeat_timeout", self.heartbeat_timeout)

    def given(self) -> bool:
        """True when any of coordinator, num_processes, process_id was given."""
        return any(v is not None for v in (self.coordinator, self.num_processes,
                                           self.process_id))


def cluster_environment() -> tuple[str, int] | None:
    """``(name, number of processes)`` when this process was started by a multi-task launcher
    JAX knows how to read without a network call (SLURM ``srun``, Open MPI ``mpirun``), else
    ``None``. Used to start ``jax.distributed`` without flags: N copies of one command that did
    not would each run the whole sweep into the same folder."""
    try:
        from jax._src.clusters import OmpiCluster, SlurmCluster
    except ImportError:  # a JAX without these: only explicit flags start a distributed run
        return None
    for env in (SlurmCluster, OmpiCluster):
        try:
            if env.is_env_present():
                return env.name, int(env.get_process_count())
        except (KeyError, ValueError):
            continue
    return None


def _resolve(launch: Launch):
    """Fill the fields left ``None`` from the cluster environment (JAX's detection);
    ``(coordinator, num_processes, process_id, local_device_ids)``."""
    values = (launch.coordinator, launch.num_processes, launch.process_id, None)
    if None in values[:3]:
        try:
            from jax._src.clusters import ClusterEnv

            values = ClusterEnv.auto_detect_unset_distributed_params(
                *values, None, math.ceil(launch.connect_timeout))
        except ImportError:
            pass
    names = ("coordinator", "num_processes", "process_id")
    missing = [n for n, v in zip(names, values[:3], strict=True) if v is None]
    if missing:
        raise DistributedError(
            f"{', '.join(missing)} not given, and no cluster environment (SLURM, Open MPI, …) "
            f"provides {'it' if len(missing) == 1 else 'them'}: give coordinator, num_processes "
            "and process_id explicitly.")
    resolved = Launch(values[0], int(values[1]), int(values[2]), launch.connect_timeout,
                      launch.heartbeat_timeout)
    return resolved, values[3]


# --- initialize ------------------------------------------------------------------------------


class Session(NamedTuple):
    """A started multi-process run: this process's id, how many, the coordinator, and the
    device counts (this process's, all processes')."""

    process_id: int
    num_processes: int
    coordinator: str
    local_devices: int
    global_devices: int


def initialize(launch: Launch, identity: dict | None = None) -> Session:
    """Start ``jax.distributed`` for ``launch`` after the handshake (module docstring).

    ``identity`` is a JSON dict that must be equal on every process (the resolved experiment
    config, package versions): a difference is refused, naming the keys that differ. Must run
    before any JAX computation in the process (JAX's rule). With one process nothing is
    started. Raises :class:`DistributedError` (or :class:`ValueError` for malformed fields)
    before any long work.
    """
    from jax._src import xla_bridge


    launch, local_ids = _resolve(launch)
    if jax.distributed.is_initialized():
        raise DistributedError("jax.distributed is already initialized in this process.")
    if xla_bridge.backends_are_initialized():
        raise DistributedError("jax.distributed must start before any JAX computation in the "
                               "process (call initialize first).")
    identity = json.loads(json.dumps(identity or {}))
    host, port = parse_address(launch.coordinator)
    n, pid = launch.num_processes, launch.process_id
    if n > 1:
        if pid == 0:
            _rendezvous.serve(port, host, n, identity, launch.connect_timeout)
        else:
            _rendezvous.join(host, port, pid, n, identity, launch.connect_timeout)
        if jax.config.jax_cpu_collectives_implementation is None:
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            launch.coordinator, n, pid, local_device_ids=local_ids,
            initialization_timeout=math.ceil(launch.connect_timeout),
            heartbeat_timeout_seconds=launch.heartbeat_timeout)
        _watch_liveness(pid, n, launch.heartbeat_timeout)
    return Session(pid, n, launch.coordinator, jax.local_device_count(), jax.device_count())


# --- who am I, who writes --------------------------------------------------------------------


def process_index() -> int:
    """This process's id (0 when ``jax.distributed`` is not running; never starts a backend)."""
    return jax.process_index() if jax.distributed.is_initialized() else 0


def process_count() -> int:
    """How many processes take part (1 when ``jax.distributed`` is not running)."""
    return jax.process_count() if jax.distributed.is_initialized() else 1


def is_writer() -> bool:
    """True on the one process that writes results (process 0, or the only process)."""
    return process_index() == 0


# --- the coordination service's key-value store ------------------------------------------------


def _client():
    # jax.distributed keeps its client here (the public API exposes no accessor); orbax and
    # jax.experimental.multihost_utils read it the same way
    from jax._src import distributed as _dist

    client = _dist.global_state.client
    if client is None:
        raise DistributedError("jax.distributed is not initialized.")
    return client


def _watch_liveness(process_id: int, num_processes: int, heartbeat_timeout: int) -> None:
    """Start this process's :class:`~._liveness.Liveness` thread, and register what a process
    does on its way out: say it is leaving (its silence is then no death), or, when a peer was
    lost, end without ``jax.distributed``'s shutdown (:meth:`~._liveness.Liveness.end`). Python
    runs exit handlers in the reverse order of registration, so this one, registered after
    ``import jax``, runs before JAX's shutdown."""
    global _liveness_thread

    _liveness_thread = _liveness.Liveness(_client(), process_id, num_processes,
                                          heartbeat_timeout)
    _liveness_thread.start()
    atexit.register(_at_exit, _liveness_thread)


def _at_exit(liveness: _liveness.Liveness) -> None:
    if liveness.lost is not None:
        liveness.end()
    liveness.leave("done")
    liveness.halt.set()


def report_failure(message: str) -> None:
    """Tell the other processes that this one is stopping, and why (the first report wins).
    A no-op in a single-process run or when the service is gone."""
    if process_count() <= 1:
        return
    try:
        _client().key_value_set(_FAILURE, f"process {process_index()}: {message}")
    except Exception:  # noqa: BLE001  (already reported, or the service is gone: JAX stops us)
        pass


def _stop_reason(client, *, own: bool = True) -> str | None:
    """Why this process must stop: a lost peer, or a failure a process reported (this one's
    own report too when ``own``); ``None`` while all is well."""
    if _liveness_thread is not None and _liveness_thread.lost is not None:
        return _liveness_thread.lost
    try:
        failure = client.key_value_try_get(_FAILURE)
    except jax.errors.JaxRuntimeError:            # NOT_FOUND: nobody has failed
        return None
    if not own and failure.startswith(f"process {process_index()}:"):
        return None
    return f"stopping: {failure}"


def _stop(reason: str) -> DistributedError:
    if _liveness_thread is not None and reason == _liveness_thread.lost:
        _liveness_thread.delivered = True
    return DistributedError(reason)


def check_peers() -> None:
    """Raise :class:`DistributedError` when another process has reported a failure
    (:func:`report_failure`) or has stopped responding (module docstring)."""
    reason = _stop_reason(_client())
    if reason is not None:
        raise _stop(reason)


class _Watchdog(threading.Thread):
    """Polls the failure key every ``poll_s`` seconds, and wakes at once when a peer is lost;
    then interrupts the main thread, again every ``poll_s`` seconds until the block ends."""

    def __init__(self, poll_s: float):
        super().__init__(name="mhatheory-failure-watchdog", daemon=True)
        self.poll_s, self.reason, self.halt = poll_s, None, False
        self.wake = threading.Event()
        self.main = threading.main_thread().ident

    def run(self) -> None:
        client = _client()
        while not self.halt:
            if self.reason is None:
                try:
                    self.reason = _stop_reason(client, own=False)
                except jax.errors.JaxRuntimeError:  # the service is gone: JAX stops us
                    pass
            if self.reason is not None:
                # a real signal (not _thread.interrupt_main): it also wakes a sleeping main
                # thread. Sent again until the block has ended: the error it raises is lost
                # where Python ignores exceptions (a gc callback such as JAX's, a __del__) or
                # where a library catches Exception
                signal.pthread_kill(self.main, signal.SIGUSR1)
            self.wake.wait(self.poll_s)
            self.wake.clear()


@contextlib.contextmanager
def stop_on_peer_failure(poll_s: float = 1.0):
    """Within the block, a failure another process reports (:func:`report_failure`) or a
    process that stops responding stops this process at once, as a :class:`DistributedError`
    raised in the main thread between two Python steps (a running XLA computation finishes
    first), instead of at the next cell.

    A thread polls the store every ``poll_s`` seconds (and is woken when a peer is lost) and
    delivers the stop as ``SIGUSR1`` to the main thread, whose handler (installed for the
    block, the previous one restored after the thread has ended) raises the error; it is sent
    again every ``poll_s`` seconds while the block runs, and at once when Python reports the
    error as ignored (``sys.unraisablehook``, which then prints nothing). Does nothing in a
    single-process run, outside the main thread, or without POSIX signals (then the next wait
    stops the process)."""
    if (process_count() <= 1 or not hasattr(signal, "pthread_kill")    # (not on Windows)
            or threading.current_thread() is not threading.main_thread()):
        yield
        return
    dog = _Watchdog(poll_s)

    def stop(signum, frame):
        if dog.reason is not None:
            raise _stop(dog.reason)

    def ignored(unraisable):
        if (isinstance(unraisable.exc_value, DistributedError)
                and unraisable.exc_value.args == (dog.reason,)):
            dog.wake.set()                      # raised where Python ignores it: again, now
        else:
            hook(unraisable)

    previous, hook = signal.signal(signal.SIGUSR1, stop), sys.unraisablehook
    sys.unraisablehook = ignored
    try:
        if _liveness_thread is not None:
            _liveness_thread.woken.add(dog.wake)
        dog.start()
        yield
    finally:
        dog.halt = True
        dog.wake.set()
        try:
            if dog.ident is not None:
                dog.join()
        finally:            # also when the stop arrives while joining
            if _liveness_thread is not None:
                _liveness_thread.woken.discard(dog.wake)
            signal.signal(signal.SIGUSR1, previous)
            sys.unraisablehook = hook


class Channel:
    """A namespace in the coordination service's key-value store: JSON values, an atomic
    counter, and waits that stop (instead of hanging) when another process fails or dies."""

    def __init__(self, name: str):
        self.name = f"{_PREFIX}/{name}"

    def _key(self, key: str) -> str:
        return f"{self.name}/{key}"

    def put(self, key: str, value) -> None:
        """Store a JSON value (each key once)."""
        _client().key_value_set(self._key(key), json.dumps(value))

    def get(self, key: str, *, poll_s: float = 1.0, stop=None):
        """The value stored under ``key``, waiting for it; raises :class:`DistributedError`
        when another process reports a failure or stops responding before it arrives
        (:func:`check_peers`). ``stop``: a :class:`threading.Event` that ends the wait early
        (returning ``None``)."""
        client = _client()
        while stop is None or not stop.is_set():
            try:
                return json.loads(client.blocking_key_value_get(self._key(key),
                                                                int(poll_s * 1000)))
            except jax.errors.JaxRuntimeError as err:
                if "DEADLINE_EXCEEDED" not in str(err):
                    raise DistributedError(f"the coordination service failed while waiting "
                                           f"for {key!r}: {err}") from None
            check_peers()
        return None

    def items(self, prefix: str) -> list[tuple[str, object]]:
        """Every ``(key, value)`` under ``prefix`` (keys relative to the channel)."""
        start = len(self.name) + 1
        return [(k[start:], json.loads(v))
                for k, v in _client().key_value_dir_get(self._key(prefix))]

    def ticket(self, key: str) -> int:
        """0, 1, 2, … in the order processes ask (an atomic counter: a work queue)."""
        return int(_client().key_value_increment(self._key(key), 1)) - 1


# --- data-parallel probes ----------------------------------------------------------------------


def shard_samples(data, mesh=None, axis: str | None = None):
    """``data`` (a pytree whose array leaves share a leading sample axis) with that axis split
    over ``mesh``, so every probe on it runs data-parallel.

    ``mesh``: a :class:`jax.sharding.Mesh` (``axis`` names the mesh axis to split over; default
    its first), a sequence of devices, or ``None`` for all of this process's devices. The number
    of samples must be a multiple of the number of devices along ``axis``: padding would change a
    mean loss, so it is refused rather than done silently. Other leaves (scalars) are replicated.
    """
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    if mesh is None or not isinstance(mesh, Mesh):
        devices = list(jax.local_devices() if mesh is None else mesh)
        if not devices:
            raise ValueError("mesh must be a jax.sharding.Mesh or a non-empty list of devices.")
        mesh = Mesh(np.array(devices), ("data",))
    axis = mesh.axis_names[0] if axis is None else axis
    if axis not in mesh.axis_names:
        raise ValueError(f"axis {axis!r} is not an axis of the mesh {mesh.axis_names}.")
    parts = mesh.shape[axis]
    leaves = [a for a in jax.tree.leaves(data) if np.ndim(a) > 0]
    sizes = {int(np.shape(a)[0]) for a in leaves}
    if len(sizes) != 1:
        raise ValueError(f"every array leaf of data must share the leading sample axis, got "
                         f"leading sizes {sorted(sizes)}.")
    n = sizes.pop()
    if n % parts:
        raise ValueError(f"{n} samples cannot be split evenly over {parts} devices; use a number "
                         f"of devices that divides {n} (mesh=jax.local_devices()[:k]) or a "
                         "sample count that is a multiple of it.")

    def place(a):
        spec = P(axis, *([None] * (np.ndim(a) - 1))) if np.ndim(a) else P()
        return jax.device_put(a, NamedSharding(mesh, spec))

    return jax.tree.map(place, data)


def session_line(session: Session) -> str:
    """One line for stderr at the start of a run."""
    role = "writes the results" if session.process_id == 0 else "sends its cells to process 0"
    return (f"mhatheory: process {session.process_id} of {session.num_processes} "
            f"(coordinator {session.coordinator}; {session.local_devices} local / "
            f"{session.global_devices} global devices); this process {role}.")


__all__ = ["Channel", "DistributedError", "Launch", "Session", "cluster_environment",
           "check_peers", "initialize", "is_writer", "parse_address",
           "process_count", "process_index", "report_failure", "session_line", "shard_samples",
           "stop_on_peer_failure"]
