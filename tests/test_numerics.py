import os
import re

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest

from mhatheory import _numerics, data, deora
from mhatheory._numerics import map_chunks


def _count(jaxpr, name):
    """Occurrences of primitive ``name`` in a closed jaxpr, sub-jaxprs included."""
    n = 0
    for eqn in jaxpr.eqns:
        n += eqn.primitive.name == name
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            n += _count(sub, name)
    return n


@pytest.mark.parametrize("n, chunk", [(1, 4), (7, 3), (8, 4), (5, 64)])
def test_map_chunks_equals_vmap(n, chunk):
    xs = {"a": jnp.arange(n * 2.0).reshape(n, 2), "b": jnp.arange(n * 1.0)}
    f = lambda x: jnp.sin(x["a"]).sum() * x["b"]          # noqa: E731
    np.testing.assert_array_equal(map_chunks(f, xs, chunk), jax.vmap(f)(xs))


def test_block_norms_has_one_eigh_whatever_the_sample_count():
    # lax.map(batch_size=) with a remainder puts a second, independent batched eigh beside the
    # scan; XLA CPU may run the two at once and jaxlib's ParallelBatchMap then deadlocks on a
    # 2-thread pool (the hang in the heads sweep). n = 70 is not a multiple of the chunk (64).
    cfg = data.MixtureConfig(d=4, T=3, n=70, num_irrelevant=2)
    batch = data.sample(cfg, jax.random.key(0))
    params = deora.init_params(jax.random.key(1), 4, 2)
    jaxpr = jax.make_jaxpr(deora.block_norms)(params, batch.X)
    assert _count(jaxpr.jaxpr, "eigh") == 1


_CACHE_DRIVER = """
import sys
import os
import re

import jax
from collections import Counter
events = Counter()
jax.monitoring.register_event_listener(lambda name, **kw: events.update([name]))
import mhatheory  # noqa: F401  (configures the cache on import)
from mhatheory import cli
if "--flag" in sys.argv:
    import contextlib, io
    with contextlib.redirect_stdout(io.StringIO()):
        cli.main(["--no-compilation-cache", "info"])
import jax.numpy as jnp
jax.jit(lambda x: jnp.sin(x) @ x.T + 1.0)(jnp.ones((3, 3))).block_until_ready()
print(jax.config.jax_compilation_cache_dir,
      events["/jax/compilation_cache/cache_hits"], events["/jax/compilation_cache/cache_misses"],
      jax.config.jax_compilation_cache_max_size)
"""


def _cache_run(tmp_path, value, *flags):
    import subprocess
    import sys
    env = {**os.environ, "MHATHEORY_COMPILATION_CACHE": str(value)}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    out = subprocess.run([sys.executable, "-c", _CACHE_DRIVER, *flags], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, check=True)
    assert "compilation cache" not in out.stderr.lower(), out.stderr
    folder, hits, misses, max_size = out.stdout.split()
    # JAX's own size limit stays off: with one, every cache write scans the whole folder
    assert max_size == "-1"
    return folder, int(hits), int(misses)


def test_a_second_process_loads_its_programs_from_the_persistent_cache(tmp_path):
    """…and the import prunes the folder when its last pruning is older than a day (the first
    run: never pruned), not otherwise (the second), as an orphaned access stamp shows."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "old-atime").write_bytes(b"stamp")
    folder, hits, misses = _cache_run(tmp_path, cache)
    assert folder == str(cache) and hits == 0 and misses >= 1
    assert any(cache.glob("*-cache")) and not (cache / "old-atime").exists()
    (cache / "new-atime").write_bytes(b"stamp")
    _, hits, misses = _cache_run(tmp_path, cache)
    assert hits >= 1 and misses == 0
    assert (cache / "new-atime").exists()


def test_pruning_deletes_the_least_recently_used_entries_down_to_the_limit(tmp_path):
    """Entries of 100 bytes last used at t = 1 … 5 (the later of access and modification),
    pruned to 250 bytes: the three oldest go, with their access stamps; the rest stay."""
    for i, (atime, mtime) in enumerate([(5, 1), (1, 2), (3, 1), (1, 4), (2, 1)]):
        entry = tmp_path / f"e{i}-cache"
        entry.write_bytes(b"x" * 100)
        (tmp_path / f"e{i}-atime").write_bytes(b"stamp")
        os.utime(entry, (atime, mtime))
    assert _numerics.prune_compilation_cache(tmp_path, max_bytes=250) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e0-atime", "e0-cache", "e3-atime",
                                                          "e3-cache"]
    assert _numerics.prune_compilation_cache(tmp_path, max_bytes=250) == 0


@pytest.mark.parametrize("how", ["environment", "flag"])
def test_the_persistent_cache_can_be_turned_off(tmp_path, how):
    cache = tmp_path / "cache"
    if how == "environment":
        folder, hits, misses = _cache_run(tmp_path, 0)
        assert folder == "None"
    else:
        folder, hits, misses = _cache_run(tmp_path, cache, "--flag")
        assert not any(cache.glob("*-cache"))           # no program written (a prune stamp may be)
    assert hits == 0 and misses == 0


def test_a_cache_path_that_cannot_be_a_folder_is_named(tmp_path):
    """A path the user chose that is a file (or lies under one) leaves the cache off with a
    warning naming it; nothing is configured."""
    taken = tmp_path / "a-file"
    taken.write_text("")
    for path in (taken, taken / "cache"):
        with pytest.warns(UserWarning, match=rf"{re.escape(str(path))} cannot be a folder"):
            assert _numerics.enable_compilation_cache(path) is None
    assert not jax.config.jax_compilation_cache_dir


@pytest.mark.parametrize("value, x64, warns", [("false", False, False), ("maybe", True, True)])
def test_mhatheory_x64_takes_the_words_of_an_off_switch_and_warns_on_others(value, x64, warns):
    import subprocess
    import sys
    code = ("import warnings; warnings.simplefilter('always')\n"
            "import mhatheory, jax; print(jax.config.jax_enable_x64)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "MHATHEORY_X64": value}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == str(x64)
    assert ("is neither on" in out.stderr) == warns, out.stderr
