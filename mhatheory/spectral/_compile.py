"""How a probe's own programs compile: written once for NumPy and JAX (:func:`probe_program`),
compiled with options of their own (:func:`probe_jit`), and optionally on a worker thread while
the main thread compiles the model's.

A probe's first call on the compiled engine (:class:`~mhatheory.spectral.Engine`) is mostly
compilation: the model's linearisation and its HVP, and small programs of the Lanczos
recurrence (its start, its step, the Ritz vectors; on an accelerator also the residuals and the
certificate, which on a CPU run in NumPy). On the host engine those small programs run in NumPy
and compile nothing (:func:`probe_program`). Compiled in order, their times add up. XLA
releases the GIL while it compiles, and JAX's ahead-of-time path
(``jax.jit(f).lower(shapes).compile()``) fills the very cache a later call of ``f`` looks up,
so a program compiled on a worker thread while the main thread compiles another costs no extra
wall time on a machine with a core to spare (the measured
first calls are in ``experiments/bench/bench_cold.py``). Two jobs run this way, each once per
process and key (:func:`background`):

* the HVP ``_apply`` for the structure of a linearisation, submitted by
  :meth:`~mhatheory.spectral.Operator.at` as soon as the linearisation is traced, while the main
  thread compiles and runs the linearisation itself;
* the recurrence's programs for a Lanczos configuration and size, submitted by the convenience
  functions before they linearise: the probe runs on a stand-in operator of the same size and
  dtype (a diagonal quadratic whose spectrum, −1 once and +1 otherwise, the recurrence resolves
  in two steps), which compiles the programs a real run needs without naming them.

The main thread waits for a job before it needs what the job compiles (the first product, the
first Lanczos run), so nothing is compiled twice, and a failed job changes nothing: the main
thread then compiles the program itself and reports any error where it happens.

The worker is **off by default**; ``MHATHEORY_BACKGROUND_COMPILE=1`` turns it on. On the 2-core
development machine, busy with other work, it bought nothing measurable: a cold λmin took
9.2 s with it and 9.4 s without on a one-block Transformer (P = 2,578; three runs each), and
5.0 s against 4.0 s on the Deora model at P = 2,176, where the stand-in's own compilation and
run compete with the model's for the two cores. It can only pay where a core is idle while
the main thread compiles; measure before turning it on.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import os
import threading
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

#: XLA options of the probes' own programs (the recurrence's start and step, the draws, the Ritz
#: vectors and residuals, the certificate): XLA's classic CPU loop emitters, which compile these
#: programs (loops over Krylov vectors, small dense linear algebra) markedly faster than the
#: default fusion emitters (a cold λmin on a one-block Transformer, P = 2,578: 6.5 s → 4.3 s
#: with the option process-wide), and run them no slower (a warm λmin on Deora at
#: P = 1,056,768: 4.4–6.8 s with these options on the probe's programs, 8.1–9.6 s without),
#: from the same HLO with the same floating-point semantics (XLA enables no fast-math on CPU).
#: Other backends ignore the option. The model's own programs
#: (its linearisation and HVP) keep XLA's defaults.
PROBE_OPTIONS = {"xla_cpu_use_fusion_emitters": False}


def probe_jit(fun=None, **kwargs):
    """``jax.jit`` with :data:`PROBE_OPTIONS`, for a probe's own programs (usable bare or
    through ``functools.partial`` with jit's keyword arguments). Called inside another traced
    function (``jit``, ``vmap``), where JAX takes compiler options from the outermost program
    only, it is a plain ``jax.jit``."""
    if fun is None:
        return functools.partial(probe_jit, **kwargs)
    top = jax.jit(fun, compiler_options=PROBE_OPTIONS, **kwargs)
    nested = jax.jit(fun, **kwargs)

    @functools.wraps(fun)
    def call(*args, **kw):
        traced = any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((args, kw)))
        return (nested if traced else top)(*args, **kw)

    return call


def array_namespace(*args):
    """``numpy`` when the first array among ``args`` (pytrees allowed) is a NumPy array (the host
    engine's), else ``jax.numpy``."""
    arrays = [x for x in jax.tree.leaves(args) if hasattr(x, "shape")]
    return np if arrays and isinstance(arrays[0], np.ndarray) else jnp


def probe_program(fun=None, **kwargs):
    """A probe's own program written once against an array namespace, its first parameter
    ``xp``: called with NumPy arrays (its first array argument a ``numpy.ndarray``) it runs on
    the host with ``xp = numpy`` and compiles nothing; otherwise it is the :func:`probe_jit`
    program with ``xp = jax.numpy`` (``static_argnums`` count the arguments after ``xp``)."""
    if fun is None:
        return functools.partial(probe_program, **kwargs)
    compiled = probe_jit(functools.partial(fun, jnp), **kwargs)

    @functools.wraps(fun)
    def call(*args, **kw):
        if array_namespace(*args) is np:
            return fun(np, *args, **kw)
        return compiled(*args, **kw)

    return call


#: The environment variable that turns compilation on a worker thread on ("1").
ENV = "MHATHEORY_BACKGROUND_COMPILE"

#: How many finished jobs are remembered (least recently used forgotten first).
MAX_JOBS = 512

_LOCK = threading.Lock()
_JOBS: collections.OrderedDict = collections.OrderedDict()
_POOL: concurrent.futures.ThreadPoolExecutor | None = None


def enabled() -> bool:
    """Whether jobs run on a worker thread (``MHATHEORY_BACKGROUND_COMPILE=1``)."""
    return os.environ.get(ENV, "0") == "1"


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = concurrent.futures.ThreadPoolExecutor(max_workers=2,
                                                      thread_name_prefix="mhatheory-compile")
    return _POOL


def _quietly(job: Callable[[], object]) -> None:
    try:
        job()
    except Exception:  # noqa: BLE001  (the main thread compiles it again and reports errors)
        pass


def background(key, job: Callable[[], object]) -> concurrent.futures.Future | None:
    """``job()`` on a worker thread, once per ``key`` (a later call returns the first one's
    future, done or not); None when the worker is off (the default). The job must not submit jobs
    itself. Exceptions are swallowed (see the module docstring)."""
    if not enabled():
        return None
    with _LOCK:
        future = _JOBS.get(key)
        if future is not None:
            _JOBS.move_to_end(key)
            return future
        future = _pool().submit(_quietly, job)
        _JOBS[key] = future
        while len(_JOBS) > MAX_JOBS:
            _JOBS.popitem(last=False)
    return future


def wait(future: concurrent.futures.Future | None) -> None:
    """Block until ``future``'s job is done (nothing when None)."""
    if future is not None:
        future.result()
