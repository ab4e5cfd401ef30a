"""Process-wide numerics: float64 and highest matmul precision.

The toolkit checks inequalities whose margins can be small, so it runs in float64 by default
(``jax_enable_x64``) and forces the highest matmul precision: on GPUs XLA otherwise uses TF32
for float32 matmuls (about 1e-3 relative error), which would fake violations.

Set ``MHATHEORY_X64=0`` in the environment before importing ``mhatheory`` to keep JAX's float32
default (for example, to benchmark float32 models); nothing else in JAX is changed.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp


def configure() -> None:
    """Enable float64 (unless ``MHATHEORY_X64=0``) and the highest matmul precision."""
    if os.environ.get("MHATHEORY_X64", "1") != "0":
        jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")


def map_chunks(f, xs, chunk: int):
    """``f`` applied to every row of ``xs`` (a pytree with a leading axis), ``chunk`` rows at a
    time under ``vmap``, sequentially over the chunks; the result has ``xs``'s leading length.

    Unlike ``jax.lax.map(f, xs, batch_size=chunk)`` this has no separate remainder computation:
    the rows are padded with copies of the first row up to a multiple of ``chunk`` and the padded
    results dropped. The remainder branch of ``lax.map`` is independent of its scan, so XLA's CPU
    runtime may run both at once; when ``f`` holds a batched LAPACK call (``eigvalsh``), each
    of the two waits in jaxlib's ``ParallelBatchMap`` for work queued on the intra-op pool that
    the two of them occupy, and on a 2-core machine that pool has 2 threads: a deadlock at 0 %
    CPU (observed with ``deora.block_norms`` on jax 0.10.2; stacks in the session note).
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
