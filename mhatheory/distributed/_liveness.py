"""Signs of life in the coordination service's store, so that a process that dies without a word
(killed, out of memory) is noticed, and the others stop cleanly, before JAX's own heartbeat
check aborts them (see :mod:`mhatheory.distributed`, "Failures while running").

JAX's client sends a heartbeat every ``heartbeat_timeout / 2`` seconds; the coordination
service declares a process dead once it has sent none for ``heartbeat_timeout`` seconds, and
then ends every other process with ``LOG(FATAL)``, without any Python running: between
``heartbeat_timeout / 2`` and ``heartbeat_timeout`` (plus up to a second) after the death,
depending on when its last heartbeat went (measured on CPU: 4.1 s after a kill with a timeout
of 6 s; 10.4–10.8 s with 10 s, killed just after a heartbeat; 52 s with 60 s). So every
process runs a :class:`Liveness` thread that, every ``heartbeat_timeout / 20`` seconds (at
most 1 s), advances its own counter ``mhatheory/alive/<id>`` and reads everyone's. A peer
whose counter has not moved for ``heartbeat_timeout / 5`` seconds, and that has not said it is
leaving (``mhatheory/left/<id>``), is *lost*. From then on this process stops (module docstring
of :mod:`mhatheory.distributed`) and, at the latest ``heartbeat_timeout / 10`` seconds later,
ends itself with :meth:`Liveness.end`: all of it within about 0.4 ``heartbeat_timeout`` of
the death, before JAX's earliest abort.

The counter is advanced by this thread alone, which needs the GIL only for microseconds per
beat; JAX releases the GIL while XLA compiles or runs and while the client waits on the store
(measured: a 5 ms ticker thread's longest gap was 65 ms, while JAX traced and lowered a
function; 5–50 ms during XLA compilation, execution and waits on the store), so a long
compilation or computation in the main thread does not silence a process: a two-process
stability sweep compiling from cold with ``heartbeat_timeout`` 2 (a loss after 0.4 s of
silence) ran through on 2 busy CPU cores without one.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time

import jax

ALIVE = "mhatheory/alive"
LEFT = "mhatheory/left"


class Liveness(threading.Thread):
    """This process's sign of life, and the watch over the other processes' (module docstring).

    ``lost``: the message naming the first peer found lost (``None`` while all are well);
    ``woken``: events set when that happens (a watchdog's, to stop the main thread)."""

    def __init__(self, client, process_id: int, num_processes: int, heartbeat_timeout: float):
        super().__init__(name="mhatheory-liveness", daemon=True)
        self.client, self.pid, self.n = client, process_id, num_processes
        self.beat_s = min(1.0, heartbeat_timeout / 20)
        self.silence_s = heartbeat_timeout / 5
        self.grace_s = heartbeat_timeout / 10
        self.lost: str | None = None
        self.delivered = False          # the loss was raised as an error in this process
        self.deadline = math.inf        # when this process ends itself, once a peer is lost
        self.woken: set[threading.Event] = set()
        self.halt = threading.Event()
        self._gone: set[int] = set()    # peers lost or left
        self._ending = threading.Lock()

    def run(self) -> None:
        own = f"{ALIVE}/{self.pid}"
        now = last = time.monotonic()
        seen = {k: (None, now) for k in range(self.n) if k != self.pid}  # value, first seen at
        while True:
            if time.monotonic() >= self.deadline:   # the main thread did not end in time
                self.end(late=True)
            try:
                self.client.key_value_increment(own, 1)
                values = dict(self.client.key_value_dir_get(ALIVE))
            except jax.errors.JaxRuntimeError:       # the service is gone: JAX ends us
                values = None
            if values is not None:
                now = time.monotonic()
                if now - last > self.silence_s / 2:  # this thread was held up: a silence seen
                    seen = {k: (v, now) for k, (v, _) in seen.items()}  # across it proves nothing
                last = now
                for k, (value, since) in seen.items():
                    if k in self._gone:
                        continue
                    if values.get(f"{ALIVE}/{k}") != value:
                        seen[k] = (values.get(f"{ALIVE}/{k}"), now)
                    elif now - since > self.silence_s and not self._has_left(k):
                        self._lose(k, now - since)
            if self.halt.wait(self.beat_s):
                return

    def _has_left(self, k: int) -> bool:
        try:
            self.client.key_value_try_get(f"{LEFT}/{k}")
        except jax.errors.JaxRuntimeError:           # NOT_FOUND
            return False
        self._gone.add(k)
        return True

    def _lose(self, k: int, silence: float) -> None:
        self._gone.add(k)
        if self.lost is not None:
            return
        self.lost = (f"process {k} stopped responding (no sign of life for {silence:.1f} s: "
                     "killed or out of memory?)")
        self.deadline = time.monotonic() + self.grace_s
        for event in list(self.woken):
            event.set()

    def leave(self, how: str) -> None:
        """Say that this process is leaving (its silence from now on is not a death)."""
        try:
            self.client.key_value_set(f"{LEFT}/{self.pid}", how, allow_overwrite=True)
        except jax.errors.JaxRuntimeError:
            pass

    def end(self, *, late: bool = False) -> None:
        """End this process now, with exit status 1, after a peer was lost.

        Not through Python's normal exit: that runs ``jax.distributed``'s shutdown, a barrier
        that waits for every process, the lost one too, until JAX's heartbeat check fails it
        and aborts this process (``LOG(FATAL)`` and a C++ stack trace). Process 0 hosts the
        coordination service, and the others abort as soon as it is gone, so it first waits
        (until :attr:`deadline`) for the other survivors to leave. Said on stderr unless the
        loss was raised in this process and the main thread ended in time (``late`` False)."""
        self._ending.acquire()                      # once; a second caller waits for the exit
        if late or not self.delivered:
            what = ("stops now, its computation in progress unfinished" if late
                    else "ends without jax.distributed's shutdown")
            print(f"mhatheory: {self.lost}; process {self.pid} {what}.", file=sys.stderr)
        self.leave("stopped")
        if self.pid == 0:
            others = set(range(1, self.n)) - self._gone
            while others and time.monotonic() < self.deadline:
                try:
                    others -= {int(key.rsplit("/", 1)[1])
                               for key, _ in self.client.key_value_dir_get(LEFT)}
                except jax.errors.JaxRuntimeError:
                    break
                time.sleep(0.05)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):           # closed or broken: nothing more to say
                pass
        os._exit(1)
