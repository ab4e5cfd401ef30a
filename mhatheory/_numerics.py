"""Process-wide numerics: float64, highest matmul precision, a persistent compilation cache.

The toolkit checks inequalities whose margins can be small, so it runs in float64 by default
(``jax_enable_x64``) and forces the highest matmul precision: on GPUs XLA otherwise uses TF32
for float32 matmuls (about 1e-3 relative error), which would fake violations.

Set ``MHATHEORY_X64=0`` (or off, false, no) in the environment before importing ``mhatheory``
to keep JAX's float32 default (for example, to benchmark float32 models); another value warns.

**Persistent compilation cache.** A probe's first call is mostly compilation (the model's HVP,
the Lanczos step, a few small programs), and a CLI run or a notebook pays it again in every new
process. Importing ``mhatheory`` therefore points JAX's own persistent cache
(``jax_compilation_cache_dir``) at ``$XDG_CACHE_HOME/mhatheory/jax`` (``~/.cache/...`` by
default) and caches every program, however quick to compile (a cached tiny program loads in
milliseconds where compiling it takes tens to hundreds): a second process compiles nothing it
has seen. JAX keys each entry by the program, the JAX/XLA versions, the flags and the device,
so a stale entry is never used. ``MHATHEORY_COMPILATION_CACHE=0`` turns it off, a path there
moves it, and a cache directory the user set for JAX (``JAX_COMPILATION_CACHE_DIR``) is left as
it is; ``mhatheory --no-compilation-cache`` turns it off for one CLI run.

The folder is kept under :data:`CACHE_MAX_BYTES` by :func:`prune_compilation_cache`, run at
import at most once every :data:`PRUNE_EVERY_S` seconds, not by JAX's own size limit
(``jax_compilation_cache_max_size``): with a limit set, JAX lists the folder and reads every
entry's access stamp before every write, so each compile costs time proportional to the size
of the cache (on 2 CPU cores, a notebook that ran in 5.5 s took 21.6 s against a cache of
8,000 entries).
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp

#: The environment variable that turns the persistent compilation cache off ("0") or moves it
#: (a path).
CACHE_ENV = "MHATHEORY_COMPILATION_CACHE"

#: The most disk the persistent cache may take: past it, :func:`prune_compilation_cache`
#: deletes the least recently used entries.
CACHE_MAX_BYTES = 2 * 2**30
#: Seconds between two prunings of the persistent cache (one folder scan at import, at most
#: once a day).
PRUNE_EVERY_S = 24 * 3600
#: The file whose modification time records the last pruning of a cache folder.
PRUNE_STAMP = ".mhatheory-pruned"
#: The suffixes of JAX's cache files: an entry, and the access stamp JAX writes beside it when
#: its own size limit is on (a cache filled by an earlier version of this module has them).
_ENTRY, _STAMP = "-cache", "-atime"

#: Values of ``MHATHEORY_X64`` and ``MHATHEORY_COMPILATION_CACHE`` that turn them off, and that
#: keep them on (the cache in its default folder).
_OFF = {"0", "off", "false", "no"}
_ON = {"1", "on", "true", "yes"}


def configure() -> None:
    """Enable float64 (unless ``MHATHEORY_X64=0``), the highest matmul precision and the
    persistent compilation cache (unless ``MHATHEORY_COMPILATION_CACHE=0``)."""
    x64 = os.environ.get("MHATHEORY_X64", "").strip().lower() or "1"      # empty: unset
    if x64 not in _OFF | _ON:
        warnings.warn(f"MHATHEORY_X64={os.environ['MHATHEORY_X64']!r} is neither on (1, on, "
                      "true, yes) nor off (0, off, false, no): float64 stays on.", stacklevel=2)
    if x64 not in _OFF:
        jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")
    enable_compilation_cache()


def default_cache_dir() -> Path:
    """``$MHATHEORY_COMPILATION_CACHE`` when it names a folder, else the user's cache folder:
    ``$XDG_CACHE_HOME/mhatheory/jax`` (``~/.cache/mhatheory/jax``)."""
    env = os.environ.get(CACHE_ENV, "")
    if env and env.lower() not in _OFF | _ON:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mhatheory" / "jax"


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Point JAX's persistent compilation cache at ``path`` (default :func:`default_cache_dir`)
    and cache every program there; returns the folder, or None when it stays off: turned off
    by ``MHATHEORY_COMPILATION_CACHE=0`` (unless ``path`` is given), a folder that cannot be
    created (with a warning when ``path`` or the environment variable named it), or a cache
    the user already configured for JAX (then that one is kept and returned)."""
    current = jax.config.jax_compilation_cache_dir
    if current:
        return Path(current)
    if path is None and os.environ.get(CACHE_ENV, "").lower() in _OFF:
        return None
    chosen = path is not None or os.environ.get(CACHE_ENV, "").lower() not in _ON | {""}
    folder = Path(path).expanduser() if path is not None else default_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if chosen:              # a folder the user named: say why it is not used
            warnings.warn(f"the persistent compilation cache stays off: {folder} cannot be a "
                          f"folder ({err.strerror}). Point {CACHE_ENV} at a folder, or set it "
                          "to 0 to turn the cache off without this warning.", stacklevel=2)
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    stamp = folder / PRUNE_STAMP
    try:
        due = time.time() - stamp.stat().st_mtime > PRUNE_EVERY_S
    except OSError:
        due = True
    if due:
        with contextlib.suppress(OSError):
            stamp.touch()
            prune_compilation_cache(folder)
    return folder


def prune_compilation_cache(folder: str | os.PathLike, max_bytes: int = CACHE_MAX_BYTES) -> int:
    """Delete the least recently used entries of the cache ``folder`` until its entries take
    at most ``max_bytes``; returns how many were deleted. An entry's last use is the later of
    its access and modification times (file systems mounted ``relatime`` update the access
    time about once a day, which is fine enough for a cache pruned daily). Files deleted by a
    concurrent process are skipped; a process that meets a deleted entry compiles it again."""
    entries = []
    for path in Path(folder).glob(f"*{_ENTRY}"):
        with contextlib.suppress(OSError):
            st = path.stat()
            entries.append((max(st.st_atime, st.st_mtime), st.st_size, path))
    total = sum(size for _, size, _ in entries)
    deleted = 0
    for _, size, path in sorted(entries, key=lambda e: e[0]):
        if total <= max_bytes:
            break
        with contextlib.suppress(OSError):
            path.unlink()
            deleted += 1
        total -= size
    for path in Path(folder).glob(f"*{_STAMP}"):      # stamps whose entry is gone
        if not path.with_name(path.name.removesuffix(_STAMP) + _ENTRY).exists():
            with contextlib.suppress(OSError):
                path.unlink()
    return deleted


def disable_compilation_cache() -> None:
    """Turn the persistent compilation cache off for this process (before anything compiles:
    JAX decides once per process whether it uses it)."""
    jax.config.update("jax_enable_compilation_cache", False)


def map_chunks(f, xs, chunk: int):
    """``f`` applied to every row of ``xs`` (a pytree with a leading axis), ``chunk`` rows at a
    time under ``vmap``, sequentially over the chunks; the result has ``xs``'s leading length.

    Unlike ``jax.lax.map(f, xs, batch_size=chunk)`` this has no separate remainder computation:
    the rows are padded with copies of the first row up to a multiple of ``chunk`` and the padded
    results dropped. The remainder branch of ``lax.map`` is independent of its scan, so XLA's CPU
    runtime may run both at once; when ``f`` holds a batched LAPACK call (``eigvalsh``), each
    of the two waits in jaxlib's ``ParallelBatchMap`` for work queued on the intra-op pool that
    the two of them occupy, and on a 2-core machine that pool has 2 threads: a deadlock at 0 %
    CPU (observed with ``deora.block_norms`` on jax 0.10.2).
    """
    n = jax.tree.leaves(xs)[0].shape[0]
    chunk = max(1, min(chunk, n))
    pad = -n % chunk

    def padded(a):
        a = jnp.concatenate([a, jnp.repeat(a[:1], pad, axis=0)]) if pad else a
        return a.reshape((a.shape[0] // chunk, chunk) + a.shape[1:])

    out = jax.lax.map(jax.vmap(f), jax.tree.map(padded, xs))
    return jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:])[:n], out)


def ravel_stacked(tree):
    """``[R, P]``: every slice along the leading axis of a stacked pytree, flattened in
    ``jax.flatten_util.ravel_pytree`` order (the rows of a batch of parameter vectors)."""
    from jax.flatten_util import ravel_pytree

    return jax.vmap(lambda t: ravel_pytree(t)[0])(tree)


def lead(x, ndim: int):
    """``x`` with leading size-1 axes up to rank ``ndim`` (explicit broadcasting, so the code
    runs under ``jax_numpy_rank_promotion='raise'``)."""
    x = jnp.asarray(x)
    return x.reshape((1,) * (ndim - x.ndim) + x.shape)


def _mapping_count_and_limit() -> tuple[int, int] | None:
    """(memory mappings of this process, the kernel's per-process cap ``vm.max_map_count``), or
    ``None`` where ``/proc`` does not tell (not Linux)."""
    try:
        with open("/proc/self/maps", "rb") as f:
            count = sum(1 for _ in f)
        with open("/proc/sys/vm/max_map_count") as f:
            limit = int(f.read())
    except (OSError, ValueError):
        return None
    return count, limit


def relieve_code_mappings(threshold: float = 0.5) -> bool:
    """Drop JAX's compiled programs when this process's memory mappings near the kernel's cap.

    XLA's CPU backend maps the code of each compiled program in many small sections (about 300
    mappings for one restarted-Lanczos program of a toy loss, measured with ``/proc/self/maps``;
    more for a Transformer's HVP), and Linux caps a process at ``vm.max_map_count`` mappings
    (65,530 by default). Past the cap every compilation fails (``LLVM compilation error: Cannot
    allocate memory``, then ``LLVM ERROR: Unable to allocate section memory!`` and an abort)
    whatever memory is free: a sweep that compiles new shapes cell after cell dies after a
    fixed number of programs (``mhatheory run transformer-curvature`` did, after 24 of its 60
    cells, at 3.9 GB resident on a 24 GB machine).

    Called between the cells of a sweep: when the mappings exceed ``threshold`` × the cap,
    :func:`jax.clear_caches` frees every compiled program (their mappings go with them) and the
    next cell compiles what it needs again. Returns whether it cleared; where ``/proc`` does not
    tell, it does nothing.
    """
    state = _mapping_count_and_limit()
    if state is None or state[0] <= threshold * state[1]:
        return False
    jax.clear_caches()
    return True
