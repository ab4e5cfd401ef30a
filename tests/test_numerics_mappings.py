"""``relieve_code_mappings``: compiled programs are dropped, with their memory mappings, before a
long sweep reaches the kernel's per-process cap (``vm.max_map_count``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from conftest import compilations

from mhatheory import _numerics

state = _numerics._mapping_count_and_limit()
linux = pytest.mark.skipif(state is None, reason="needs /proc/self/maps (Linux)")


def _compile_some(n: int) -> None:
    for i in range(n):
        f = jax.jit(lambda x, i=i: jnp.sin(x) * i + jnp.cos(x) ** 2)
        f(jnp.ones(i + 1)).block_until_ready()


@linux
def test_below_the_threshold_nothing_is_cleared():
    assert _numerics.relieve_code_mappings(threshold=1.0) is False


@linux
def test_past_the_threshold_the_compiled_programs_and_their_mappings_go():
    _compile_some(20)
    before, limit = _numerics._mapping_count_and_limit()
    f = jax.jit(lambda x: x * 3.0 + 1.0)
    f(jnp.ones(3))
    with compilations() as cached:
        f(jnp.ones(3))
    assert cached == []                               # served from the cache so far
    assert _numerics.relieve_code_mappings(threshold=0.0) is True
    after, _ = _numerics._mapping_count_and_limit()
    assert after < before, (before, after)            # 20 programs × ~3 mappings went
    with compilations() as again:
        assert float(f(jnp.ones(3))[0]) == 4.0
    assert "jit(<lambda>)" in again                   # the cache went with them: compiled anew
