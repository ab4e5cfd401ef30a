"""Input checks shared by the public entry points.

Each raises ``ValueError`` naming the argument, what was expected and what was given, before any
tracing or compilation starts. They run on concrete (host) values only; under ``jit`` tracing the
value checks are skipped and only static shape checks apply.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def positive_int(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int ≥ ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def positive_float(name: str, value) -> float:
    """``value`` as a finite float > 0."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}.") from None
    if not np.isfinite(f) or f <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    return f


def probability(name: str, value) -> float:
    f = float(value)
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}.")
    return f


def finite(name: str, x) -> None:
    """Raise if a concrete array holds NaN or Inf."""
    if _concrete(x) and not bool(np.all(np.isfinite(np.asarray(x)))):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(np.asarray(x))))
        raise ValueError(
            f"{name} contains {bad} NaN/Inf value(s); clean the data (or check the sampler "
            "config) before training or probing."
        )


def labels_pm1(name: str, y) -> None:
    """Raise unless every label is −1 or +1."""
    if _concrete(y):
        arr = np.asarray(y)
        ok = (arr == 1) | (arr == -1)
        if not bool(np.all(ok)):
            bad = np.unique(arr[~ok])[:5]
            raise ValueError(
                f"{name} must hold labels in {{-1, +1}}, found {bad.tolist()}; map {{0, 1}} "
                "labels with y = 2*y - 1."
            )


def shape(name: str, x, expected: Sequence, leading: bool = False) -> None:
    """Check the trailing (``leading=True``: any leading batch axes allowed) shape of ``x``.

    ``expected`` holds ints or ``None`` (any size).
    """
    got = tuple(np.shape(x))
    exp = tuple(expected)
    if leading:
        ok = len(got) >= len(exp) and all(
            e is None or g == e for g, e in zip(got[len(got) - len(exp):], exp, strict=True)
        )
        what = f"[..., {', '.join('*' if e is None else str(e) for e in exp)}]"
    else:
        ok = len(got) == len(exp) and all(
            e is None or g == e for g, e in zip(got, exp, strict=True))
        what = f"[{', '.join('*' if e is None else str(e) for e in exp)}]"
    if not ok:
        raise ValueError(f"{name} must have shape {what}, got {list(got)}.")
