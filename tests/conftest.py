"""Shared test settings.

Tolerances (one table, by dtype; overrides are commented where used):
  float64 identities: 1e-12 absolute on O(1) quantities (a few hundred flops of rounding at
  ε = 2.2e-16); float32 at highest matmul precision: 1e-6 (ε = 1.2e-7 times small depth).
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import mhatheory  # noqa: E402,F401  (enables float64)

jax.config.update("jax_numpy_rank_promotion", "raise")

TOL = {"float64": 1e-12, "float32": 1e-6}

settings.register_profile("mhatheory", deadline=None,
                          max_examples=int(os.environ.get("MHATHEORY_EXAMPLES", "25")),
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("mhatheory")


def pytest_terminal_summary(terminalreporter, config):
    """The robustness campaign's tally (tests/test_robustness.py sets it when it runs)."""
    line = getattr(config, "robustness_summary", lambda: None)()
    if line:
        terminalreporter.write_sep("=", line)
