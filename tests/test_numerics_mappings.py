"""``relieve_code_mappings``: compiled programs are dropped, with their memory mappings, before a
long sweep reaches the kernel's per-process cap (``vm.max_map_count``).

The clearing test runs in its own Python process: :func:`jax.clear_caches` there would drop every
program the test worker has compiled so far (the suite's later tests on that worker would compile
them again, and freeing thousands of them takes seconds by itself)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mhatheory import _numerics

state = _numerics._mapping_count_and_limit()
linux = pytest.mark.skipif(state is None, reason="needs /proc/self/maps (Linux)")


@linux
def test_below_the_threshold_nothing_is_cleared():
    assert _numerics.relieve_code_mappings(threshold=1.0) is False


_CLEAR_DRIVER = """
import jax
import jax.numpy as jnp

import mhatheory  # noqa: F401  (the package's numerics settings)
from mhatheory import _numerics

compiled = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kw: compiled.append(kw.get("fun_name"))
    if event == "/jax/core/compile/backend_compile_duration" else None)
for i in range(20):
    jax.jit(lambda x, i=i: jnp.sin(x) * i + jnp.cos(x) ** 2)(jnp.ones(i + 1)).block_until_ready()
before, limit = _numerics._mapping_count_and_limit()
f = jax.jit(lambda x: x * 3.0 + 1.0)
f(jnp.ones(3))
del compiled[:]
f(jnp.ones(3))
assert compiled == [], compiled                        # served from the cache so far
assert _numerics.relieve_code_mappings(threshold=0.0) is True
after, _ = _numerics._mapping_count_and_limit()
assert after < before, (before, after)                 # 20 programs x ~3 mappings went
assert float(f(jnp.ones(3))[0]) == 4.0
assert "jit(<lambda>)" in compiled, compiled           # the cache went with them: compiled anew
print("OK")
"""


@linux
def test_past_the_threshold_the_compiled_programs_and_their_mappings_go():
    out = subprocess.run([sys.executable, "-c", _CLEAR_DRIVER], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "OK", out.stderr[-3000:]
