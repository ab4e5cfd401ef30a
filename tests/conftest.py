"""Shared test settings.

Tolerances: one table by dtype, :data:`mhatheory.testing.TOL` (float64 1e-12, float32 1e-6 on
O(1) quantities), used through :func:`mhatheory.testing.assert_allclose` and
:func:`mhatheory.testing.tolerance`; a test that needs another tolerance passes it explicitly
with a comment saying why.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import mhatheory  # noqa: E402,F401  (enables float64)

jax.config.update("jax_numpy_rank_promotion", "raise")

settings.register_profile("mhatheory", deadline=None,
                          max_examples=int(os.environ.get("MHATHEORY_EXAMPLES", "25")),
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("mhatheory")


def pytest_terminal_summary(terminalreporter, config):
    """The robustness campaign's tally (tests/test_robustness.py sets it when it runs)."""
    line = getattr(config, "robustness_summary", lambda: None)()
    if line:
        terminalreporter.write_sep("=", line)
