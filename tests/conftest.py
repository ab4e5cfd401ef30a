"""Shared test settings.

Tolerances: one table by dtype and kind, :data:`mhatheory.testing.TOLERANCES`, read with
:func:`mhatheory.testing.tol` (``tol(np.float32, "eig")``) and, for identities, through
:func:`mhatheory.testing.assert_allclose`; a test that needs another tolerance passes it
explicitly with a comment saying why (a Monte-Carlo standard error, a solver's stopping rule).

Speed: experiments compile one XLA program per shape, so a run is shared by every test that can
read it (session fixtures below) instead of being repeated at slightly different sizes, and
compiling is made cheaper (:data:`TEST_XLA_FLAGS`).
"""

import contextlib
import functools
import gc
import os
import pickle
import random
import sys
import threading
import types
import zlib
from collections import Counter

#: XLA flags of the test session, added to any ``XLA_FLAGS`` already set unless it names them:
#: 4 host devices (the sharding tests), LLVM optimisation level 0 and XLA's classic CPU fusion
#: emitters. The suite's problems are tiny, so its time goes to compiling one XLA program per
#: shape, not to running them. Level 0 compiles about 40 % faster (measured on 2 cores:
#: test_split + test_deora_chain + the spectrum smoke test, 80 s → 49 s); the classic emitters
#: (``--xla_cpu_use_fusion_emitters=false``) another 40 % on top: one restarted-Lanczos program
#: compiles in 0.30 s instead of 0.77 s, and test_split + test_deora_chain + test_spectral +
#: test_symmetry take 82 s of CPU instead of 134 s. The HLO and its floating-point semantics
#: are the same (XLA does not enable fast-math on CPU; matmuls call the same Eigen/oneDNN
#: kernels); only how fused loops are emitted and optimised by LLVM changes. Eigen's
#: operations run on one thread (``--xla_cpu_multi_thread_eigen=false``): two test workers
#: share 2 cores, and the suite's tiny matmuls gain nothing from a second thread but its
#: wake-ups (six compile-heavy files on two workers: 70.8–72.3 s with Eigen's thread pool,
#: 66.2 s twice without; 7 % less user CPU). LLVM compiles each program as one module
#: (``--xla_cpu_parallel_codegen_split_count=1``) instead of splitting it for a thread pool: the
#: suite's programs are small, and two workers already keep both cores busy (test_spectral +
#: test_symmetry in one process: 45.7 s and 45.3 s of user CPU against 56.1 s and 48.8 s; three
#: other files: 45.3 s and 49.2 s against 48.5 s and 52.9 s; runs interleaved). The code LLVM
#: emits does the same floating-point operations either way. ``mhatheory verify`` runs with
#: XLA's defaults, so both code paths are exercised on every CI run. Name a flag in
#: ``XLA_FLAGS`` to test with another setting.
TEST_XLA_FLAGS = ("--xla_force_host_platform_device_count=4", "--xla_backend_optimization_level=0",
                  "--xla_cpu_use_fusion_emitters=false", "--xla_cpu_multi_thread_eigen=false",
                  "--xla_cpu_parallel_codegen_split_count=1")
_flags = os.environ.get("XLA_FLAGS", "")
os.environ["XLA_FLAGS"] = " ".join([_flags] + [f for f in TEST_XLA_FLAGS
                                               if f.split("=")[0] not in _flags]).strip()
# The notebooks (nbmake kernels inherit this environment, XLA flags included) run at a small
# size: each reads MHATHEORY_NOTEBOOK_SCALE (``full`` when unset, as in Jupyter) and shrinks only
# its sweep sizes; every cell still runs and every figure is drawn. Set it to ``full`` to run
# them at the size of their text under pytest. (Kept here, not in notebooks/conftest.py: two
# conftest.py modules clash under --doctest-modules.)
os.environ.setdefault("MHATHEORY_NOTEBOOK_SCALE", "small")
# No persistent compilation cache: every run compiles as a fresh machine would. A cache shared
# by the workers and the subprocesses saves nothing: they share few programs (two whole suites
# run side by side, one with a fresh shared cache, took 652 s each on 2 cores).
# tests/test_numerics.py turns it on in its own subprocesses; set MHATHEORY_COMPILATION_CACHE
# to a folder to run the suite with one.
os.environ.setdefault("MHATHEORY_COMPILATION_CACHE", "0")
# Bytecode is written even where PYTHONDONTWRITEBYTECODE is set (as on the CI machine): the
# suite starts dozens of Python processes (CLI runs, distributed workers, notebook kernels),
# each of which would otherwise compile every module of the package again (about 0.8 s each).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False

# Python's cyclic garbage collector, less often: a test worker holds thousands of compiled
# programs with their jaxprs, and each full collection walks all of them (on 2 cores,
# test_spectral + test_spectral_adaptive + test_symmetry: 12 full collections, 2.6 s of 60 s,
# against 2 and 0.7 s with these thresholds). Garbage is still collected, in larger batches.
gc.set_threshold(10_000, 50, 100)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from flax import nnx  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import mhatheory  # noqa: E402,F401  (enables float64)
from mhatheory import data, spectral  # noqa: E402
from mhatheory.models import deora  # noqa: E402
from mhatheory.spectral import _options, _recurrence  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@contextlib.contextmanager
def compilations(threads: bool = False):
    """The XLA programs compiled inside the ``with`` block, by name (JAX's public monitoring
    events; a program served from a cache fires none), on any thread; with ``threads``,
    ``(name, thread name)`` pairs."""
    seen = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            name = kwargs.get("fun_name", "?")
            seen.append((name, threading.current_thread().name) if threads else name)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield seen
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def with_spectrum(eigs, seed=0):
    """A dense symmetric matrix with eigenvalues ``eigs`` (a random orthogonal basis)."""
    Q, _ = jnp.linalg.qr(jax.random.normal(jax.random.key(seed), (len(eigs), len(eigs))))
    A = Q @ jnp.diag(jnp.asarray(eigs)) @ Q.T
    return 0.5 * (A + A.T)


#: ``m`` steps of the compiled Lanczos recurrence on a dense matrix, ``(Q, T, r, count)``
#: (``_recurrence.tridiag``). The matrix is an argument, so the matrices of one shape share one
#: program per (m, scheme), where a closure over each matrix would compile one per matrix.
dense_tridiag = jax.jit(
    lambda A, v, m, reortho="partial": _recurrence.tridiag(lambda x: A @ x, v, m, reortho,
                                                           key=jax.random.key(0)),
    static_argnums=(2, 3))


def compiled(module, static_argnames=()):
    """``module``'s ``__call__`` as one compiled program per input shape, with the module's
    current state: called eagerly, each of a model's few hundred operations compiles a program
    of its own, which costs a test more than running them."""
    graphdef, state = nnx.split(module)
    forward = jax.jit(lambda state, *args, **kwargs: nnx.merge(graphdef, state)(*args, **kwargs),
                      static_argnames=static_argnames)
    return functools.partial(forward, state)


settings.register_profile("mhatheory", deadline=None,
                          max_examples=int(os.environ.get("MHATHEORY_EXAMPLES", "25")),
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("mhatheory")


#: The weak-convexity run shared by the experiment smoke test, its resume test and the verify
#: rows test: three H (two of them ≥ fit_min_heads, so both slope fits exist), two seeds.
WEAK_CONVEXITY = dict(heads_grid=(1, 2, 4), seeds=2, d=4, T=3, n=8, num_irrelevant=2, steps=8,
                      num_probes=2, krylov=10, convergence_heads=2, convergence_steps=6,
                      num_test=16, fit_min_heads=2)


def shared_run(tmp_path_factory, name: str, compute):
    """``compute(out_dir)`` once per test session, even across pytest-xdist workers: the first
    worker to ask runs it under a file lock in the folder the workers share and pickles the
    value; the others wait for the lock and read it. Without ``fcntl`` (Windows) each worker
    runs it once."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent                      # pytest-of-user/pytest-N: shared by the workers
    try:
        import fcntl
    except ImportError:                         # pragma: no cover
        return compute(tmp_path_factory.mktemp(name))
    done, out = root / f"{name}.pickle", root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            out.mkdir()
            done.write_bytes(pickle.dumps(compute(out)))
        return pickle.loads(done.read_bytes())


@pytest.fixture(autouse=True)
def _reproducible_fresh_keys(request, monkeypatch):
    """``key=None`` is a fresh start drawn from the operating system's randomness
    (``spectral._options.resolve_key``); in the suite it is drawn from a generator seeded by the
    test's id, so each call still gets a new start and every run of a test sees the same ones: a
    test whose premise holds for most starts but not all fails every time or never, not one run
    in thirty."""
    rng = random.Random(zlib.crc32(request.node.nodeid.encode()))
    monkeypatch.setattr(_options, "secrets", types.SimpleNamespace(randbits=rng.getrandbits))


@pytest.fixture(scope="session")
def weak_convexity_run(tmp_path_factory):
    """``(config, summary, out_dir)`` of one tiny ``mhatheory run weak-convexity``; tests must
    not write into ``out_dir`` (copy it first)."""
    from mhatheory.experiments import weak_convexity as wc

    config = wc.Config(**WEAK_CONVEXITY)
    return shared_run(tmp_path_factory, "weak-convexity",
                      lambda out: (config, wc.run(config, out, progress=False), out))


#: The stability sweep shared by the experiment smoke test and the single-process reference of
#: the 2-process test (tests/test_distributed.py runs the same sweep from these flags): two n
#: (so the ε₁-vs-n slope exists), one H and K, two cells of a few compiled programs each.
STABILITY = dict(n_grid=(4, 8), heads_grid=(1,), steps_grid=(2,), seeds=2, subset=4, num_test=4,
                 d=4, T=4, num_irrelevant=2, influence_samples=1)


@pytest.fixture(scope="session")
def stability_config():
    """:data:`STABILITY` as a ``stability_sweep.Config``."""
    from mhatheory.experiments import stability_sweep

    return stability_sweep.Config(**STABILITY)


@pytest.fixture(scope="session")
def stability_run(stability_config, tmp_path_factory):
    """``(config, summary, out_dir)`` of one tiny stability sweep, run once per session in one
    pytest process (4 host devices, as ``mhatheory run stability`` in a fresh process would
    see; another pytest-xdist worker may have run it, see :func:`shared_run`); tests must not
    write into ``out_dir``."""
    from mhatheory.experiments import stability_sweep

    return shared_run(tmp_path_factory, "stability", lambda out: (
        stability_config, stability_sweep.run(stability_config, out, progress=False), out))


def pytest_collection_modifyitems(config, items):
    """Order the files for pytest-xdist (``--dist loadfile --no-loadscope-reorder``): the
    notebooks first, since each is one long item (a kernel start and a whole sweep, 6–21 s on
    2 cores) that would otherwise be handed out last and leave one worker idle at the end; then
    the test files by their number of tests, most first (xdist's own reordering). Tests keep
    their order within a file."""
    counts = Counter(item.nodeid.split("::")[0] for item in items)

    def key(item):
        path = item.nodeid.split("::")[0]
        return (not path.endswith(".ipynb"), -counts[path], path)

    items.sort(key=key)


def _robustness_line(config):
    """The robustness campaign's tally: tests/test_robustness.py sets ``config.robustness_summary``
    where it runs; a pytest-xdist worker sends it to the controller (``workeroutput``)."""
    return (getattr(config, "robustness_line", None)
            or getattr(config, "robustness_summary", lambda: None)())


def pytest_sessionfinish(session):
    """On a pytest-xdist worker: pass the campaign's tally to the controller."""
    line = _robustness_line(session.config)
    if line and hasattr(session.config, "workeroutput"):
        session.config.workeroutput["robustness_line"] = line


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """On the pytest-xdist controller: keep the tally a worker sent."""
    line = getattr(node, "workeroutput", {}).get("robustness_line")
    if line:
        node.config.robustness_line = line


def pytest_terminal_summary(terminalreporter, config):
    """The robustness campaign's tally, printed at the end of the session."""
    line = _robustness_line(config)
    if line:
        terminalreporter.write_sep("=", line)


#: The tiny Deora problem of the probes' dtype tests: P = H·(d² + d) = 24, every probe compiles
#: in well under a second.
TINY = dict(d=3, T=3, heads=2, n=8)


@pytest.fixture(scope="session", params=[(dt, s) for dt in ("float64", "float32") for s in (0, 1)],
                ids=lambda p: f"{p[0]}-seed{p[1]}")
def tiny_deora(request):
    """``(dtype, params, batch, H64)``: a tiny Deora problem with params and batch rounded to
    ``dtype``, and the dense float64 Hessian of exactly those rounded values (so the reference
    carries no float32 error)."""
    dtype, seed = jnp.dtype(request.param[0]).type, request.param[1]
    cfg = data.MixtureConfig(d=TINY["d"], T=TINY["T"], n=TINY["n"], num_irrelevant=1)
    batch = data.sample(cfg, jax.random.key(seed))
    params = deora.init_params(jax.random.key(seed + 10), TINY["d"], TINY["heads"],
                               init_scale=2.0)

    def cast(tree, dt):
        return jax.tree.map(lambda a: a.astype(dt), tree)

    params, batch = cast(params, dtype), data.Batch(*cast(tuple(batch), dtype))
    H64 = np.asarray(spectral.dense_hessian(deora.loss_fn, cast(params, jnp.float64),
                                            data.Batch(*cast(tuple(batch), jnp.float64))))
    return dtype, params, batch, H64
