"""Options of a Lanczos probe, checked on the host before any work, and its memory plan.

:func:`check_options` names the offending option in each error (entry points that compute
something before probing call it first with their ``**lanczos``); :func:`plan_memory` decides
whether the Krylov basis is kept (:func:`lanczos_bytes` against the budget) and which
reorthogonalisation runs; :func:`work_dtype` is the dtype of the recurrence (float64 for a
float32 model when x64 is on: mixed precision).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mhatheory import _validate
from mhatheory.spectral import _exact
from mhatheory.spectral._probabilistic import check_failure_prob
from mhatheory.spectral._recurrence import Reortho, as_reortho

#: Default memory budget for the Krylov basis (bytes); past it the probe runs basis-free.
DEFAULT_BASIS_BUDGET = _exact.DEFAULT_DENSE_BUDGET


def work_dtype(dtype):
    """The dtype of the Lanczos recurrence for an HVP in ``dtype``: float64 when JAX has x64
    enabled (mixed precision: a float32 model's HVP runs in float32, while the recurrence,
    Rayleigh quotients, tridiagonal and certificate run in float64), else ``dtype``."""
    if jax.config.jax_enable_x64 and jnp.finfo(dtype).bits < 64:
        return jnp.dtype(jnp.float64)
    return jnp.dtype(dtype)


def in_work_dtype(matvec, model_dtype, wdt):
    """``matvec`` (an HVP in ``model_dtype``) as a map of ``wdt`` vectors: mixed precision, the
    HVP stays in the model's dtype while the recurrence around it runs in ``wdt``."""
    if jnp.dtype(wdt) == jnp.dtype(model_dtype):
        return matvec

    def cast(v):
        return matvec(v.astype(model_dtype)).astype(wdt)

    return cast


def lanczos_bytes(num_params: int, krylov: int, k: int, dtype, store_basis: bool) -> int:
    """Bytes of Lanczos vectors a probe holds (the HVP's own workspace comes on top): the basis
    (``krylov``·P, if stored) plus 10 + 3(k+1) P-vectors (start, q_{j−1}, q_j, w, the next q,
    the rounding probe z and its three HVPs; per wanted pair and neighbour: the Ritz vector, its
    HVP and a restart/replay accumulator)."""
    per = np.dtype(dtype).itemsize * num_params
    return per * ((krylov if store_basis else 0) + 10 + 3 * (k + 1))


#: A warm start ``v0`` gets a random unit vector of this weight added to its unit direction
#: (:func:`start_vector`), unless the probe's ``warm_start_mix`` says otherwise. Lanczos only
#: sees the eigenvectors its start vector has a component along: started exactly on (or near)
#: an eigenvector of another eigenvalue, e.g. the previous step's λmin vector after the minimum
#: moved to another direction, it converges there and certifies the wrong eigenvalue. With the
#: random part, every direction is present at ~1e-2/√P and the first residuals (≥ ~1e-2·gap)
#: are far above tol, so the recurrence runs until the extreme Ritz value has absorbed it, as
#: from a random start; the warm part still saves steps. The weight also enters the
#: probabilistic end (:func:`~._probabilistic.start_threshold`).
WARM_START_MIX = 1e-2

#: The HVP budget of a run sized for its probabilistic end (``failure_prob`` given) when
#: ``max_hvps`` is not.
DEFAULT_MAX_HVPS = 2000


def start_vector(flat, key, v0, dtype, mix: float = WARM_START_MIX):
    """The start of a run: a Gaussian vector (uniform on the sphere once normalised), or the unit
    direction of ``v0`` plus ``mix`` times an independent uniform unit vector."""
    if v0 is None:
        return jax.random.normal(key, flat.shape, dtype)
    v0 = jnp.asarray(v0).reshape(-1).astype(dtype)
    if v0.shape != flat.shape:
        raise ValueError(f"v0 must have P={flat.size} entries, got {v0.size}.")
    r = jax.random.normal(key, flat.shape, dtype)
    n0 = jnp.linalg.norm(v0)
    unit = jnp.where(n0 > 0, v0 / jnp.where(n0 > 0, n0, 1.0), 0.0)
    return unit + mix * r / jnp.linalg.norm(r)


def check_options(*, k: int = 1, which: str = "smallest", method: str = "lanczos", key=None,
                  v0=None, krylov: int = 40, tol: float = 1e-10, max_restarts: int = 20,
                  reortho=None, memory_budget_bytes: int | None = None,
                  store_basis: bool | None = None, check_every: int = 5,
                  failure_prob: float | None = None, max_hvps: int | None = None,
                  warm_start_mix: float = WARM_START_MIX,
                  num_params: int | None = None, v0_name: str = "v0") -> None:
    """Check the options of :func:`extreme_eigs` on the host, before any work; each error names
    the option. Entry points that compute something before probing (``bounds.chain``,
    ``testing.assert_weakly_convex``, ``track``) call it first with their ``**lanczos``; an
    unknown option raises ``TypeError`` naming it. With ``num_params`` the start vector's size
    and the memory budget are checked too."""
    if reortho is not None:
        reortho = as_reortho(reortho)
    if which not in ("smallest", "largest"):
        raise ValueError(f"which must be 'smallest' or 'largest', got {which!r}.")
    if method not in ("lanczos", "exact"):
        raise ValueError(f"method must be 'lanczos' or 'exact', got {method!r}.")
    k = _validate.positive_int("k", k)
    if store_basis not in (None, True, False):
        raise ValueError(f"store_basis must be True, False or None (keep the basis when it "
                         f"fits memory_budget_bytes), got {store_basis!r}.")
    if reortho is Reortho.NONE and k > 1:
        raise ValueError(f"reortho='none' cannot tell the {k} most extreme eigenvalues from ghost "
                         "copies of the first; use reortho='selective' (the default) for k > 1.")
    if store_basis is False and k > 1:
        raise ValueError(f"store_basis=False runs the plain recurrence, which cannot tell the {k} "
                         "most extreme eigenvalues from ghost copies of the first; use k=1 or "
                         "store_basis=True.")
    if store_basis is False and reortho not in (None, Reortho.NONE):
        raise ValueError(f"reortho={reortho.value!r} needs the Krylov basis; with "
                         "store_basis=False leave reortho unset (or 'none').")
    krylov = _validate.positive_int("krylov", krylov)
    if krylov <= k:
        raise ValueError(f"krylov={krylov} must exceed k={k}.")
    _validate.positive_float("tol", tol)
    _validate.positive_int("max_restarts", max_restarts, minimum=0)
    _validate.positive_int("check_every", check_every)
    if key is not None:
        _validate.prng_key("key", key)
    _exact.check_budget(memory_budget_bytes)
    if failure_prob is not None:
        check_failure_prob(failure_prob)
    mix = _validate.non_negative_float("warm_start_mix", warm_start_mix)
    if failure_prob is not None and v0 is not None and mix == 0:
        raise ValueError(f"failure_prob={failure_prob!r} needs a random start: a warm start v0 "
                         "with warm_start_mix=0 has no probability behind it. Mix in a uniform "
                         "part (warm_start_mix > 0, e.g. the default 1e-2) or drop v0.")
    if max_hvps is not None:
        max_hvps = _validate.positive_int("max_hvps", max_hvps)
        least = min_hvps(k, store_basis is False)
        if max_hvps < least:
            raise ValueError(f"max_hvps={max_hvps} is below the {least} HVPs of the shortest run "
                             f"that can certify k={k} pair(s) (k + 1 Lanczos steps, the Ritz "
                             "pairs' residuals and the rounding estimate); raise max_hvps.")
    if num_params is not None and method == "exact" and k > num_params:
        raise ValueError(f"k={k} is more eigenpairs than the P={num_params} parameters have.")
    if num_params is not None and method == "lanczos" and k >= num_params:
        raise ValueError(f"k={k} must be smaller than the number of parameters P={num_params} "
                         "for Lanczos (its gap needs one more Ritz pair); method='exact' takes "
                         "k ≤ P.")
    if v0 is not None:
        if not _validate.is_concrete(v0):
            return
        arr = np.asarray(v0)
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise ValueError(f"{v0_name} must be a real vector (a warm start), got dtype "
                             f"{arr.dtype}.")
        if num_params is not None and arr.size != num_params:
            raise ValueError(f"{v0_name} must have P={num_params} entries (one per parameter), "
                             f"got {arr.size} (shape {list(arr.shape)}).")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{v0_name} contains NaN/Inf; pass a finite start vector (e.g. the "
                             "previous probe's .vector) or None for a random start.")
        if not np.any(arr):
            raise ValueError(f"{v0_name} is the zero vector, which spans no Krylov space; pass "
                             "a non-zero start vector or None for a random start.")


#: How an inconclusive eigenvalue check spends more HVPs: each level multiplies the HVP budget of
#: a run sized for its probabilistic end (``max_hvps``, default :data:`DEFAULT_MAX_HVPS`) and its
#: restarts, and tightens the tolerance, applied to the options of the first try.
ESCALATION = ({"max_hvps": 2, "max_restarts": 3, "tol": 1e-2},
              {"max_hvps": 8, "max_restarts": 6, "tol": 1e-4})


def escalated(options: dict, level: int, num_params: int) -> dict:
    """The Lanczos options of escalation ``level`` (1, 2, …) from the first try's ``options``
    (``num_params`` caps the Krylov size)."""
    step = ESCALATION[level - 1]
    out = dict(options)
    out["max_hvps"] = int(options.get("max_hvps") or DEFAULT_MAX_HVPS) * step["max_hvps"]
    out["krylov"] = min(int(options.get("krylov", 40)), num_params)
    out["max_restarts"] = max(int(options.get("max_restarts", 20) * step["max_restarts"]), 1)
    out["tol"] = max(float(options.get("tol", 1e-10)) * step["tol"], 1e-15)
    return out


def min_hvps(k: int, basis_free: bool = False) -> int:
    """HVPs of the shortest certified run: k + 1 steps (the wanted pairs and a neighbour), their
    k + 1 residuals, the 1 + min(2, k + 1) HVPs of the rounding estimate, and k replayed steps
    when basis-free."""
    return (k + 1) + (k + 1) + 1 + min(2, k + 1) + (k if basis_free else 0)


def plan_memory(num_params: int, krylov: int, k: int, dtype, store_basis, reortho,
                memory_budget_bytes) -> tuple[bool, Reortho]:
    """``(store_basis, reortho)`` for a run: the basis is kept when asked, or (``None``) when
    :func:`lanczos_bytes` with it fits the budget; without it the recurrence is the plain one.
    Raises a ``ValueError`` naming ``memory_budget_bytes`` when not even the O(P) vectors fit,
    or when k > 1 needs a basis the budget cannot hold."""
    budget = DEFAULT_BASIS_BUDGET if memory_budget_bytes is None else memory_budget_bytes
    free = lanczos_bytes(num_params, krylov, k, dtype, False)
    if free > budget:
        raise ValueError(
            f"memory_budget_bytes={budget:,} is too small even for the O(P) Lanczos vectors: "
            f"P={num_params:,} {np.dtype(dtype).name} needs {free:,} bytes without the basis "
            f"({10 + 3 * (k + 1)} vectors). Raise memory_budget_bytes to at least {free:,}.")
    stored = lanczos_bytes(num_params, krylov, k, dtype, True)
    if store_basis is None:
        store_basis = stored <= budget
        if not store_basis and k > 1:
            raise ValueError(
                f"k={k} needs the Krylov basis ({stored:,} bytes for krylov={krylov}, "
                f"P={num_params:,}), over memory_budget_bytes={budget:,}; raise "
                "memory_budget_bytes, lower krylov, or ask for k=1 (basis-free).")
    elif store_basis and memory_budget_bytes is not None and stored > budget:
        raise ValueError(
            f"store_basis=True needs {stored:,} bytes (krylov={krylov}, P={num_params:,}), over "
            f"memory_budget_bytes={budget:,}; use store_basis=None (basis-free when it does not "
            "fit), lower krylov, or raise memory_budget_bytes.")
    if reortho is None:
        reortho = Reortho.SELECTIVE if store_basis and k > 1 else Reortho.NONE
    return bool(store_basis), as_reortho(reortho)

