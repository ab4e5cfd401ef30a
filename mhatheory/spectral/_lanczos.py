"""Extreme eigenvalues with certified intervals: restarted, adaptive Lanczos, or dense eigh.

A probe is configured first and applied to an operator at a point with an explicit key::

    H = spectral.Hessian(loss_fn).linearise(params, batch)     # one linearisation
    lo = spectral.Lanczos(which="smallest", tol=1e-10)(H, key=jax.random.key(0))[0]

and :func:`extreme_eigs`, :func:`lambda_min`, :func:`lambda_max` are one-line conveniences on
top (they form the operator at the point and probe in one call, each product in one program up
to ``ONE_PROGRAM_MAX_PARAMS`` parameters: :mod:`._operators`; their ``key=None`` is a fresh
random draw, recorded in ``EigResult.key``).

**Cycle.** Up to ``krylov`` Lanczos steps (:mod:`._recurrence`), each one product of the
operator's compiled HVP and one step of the recurrence, driven from Python. The HVP is
compiled once per model whatever the probe, block or point; the recurrence runs on the
engine the probe's ``engine`` picks (:class:`~mhatheory.spectral.Engine`): in NumPy on the
host (the default on a CPU up to ``HOST_MAX_PARAMS`` coordinates), where it compiles nothing, so
a convenience's first call costs one compiled product (two for a linearised operator) and its
products; or as
compiled programs, once per Krylov size and P whatever the model (with
``MHATHEORY_BACKGROUND_COMPILE=1`` the conveniences compile them on a worker thread while they
linearise the model: :meth:`Lanczos.compile_ahead`, :mod:`._compile`). The random draws (the
start, the rounding probe) come from NumPy generators seeded by the key's words, so both
engines start from the same vectors. Every
``check_every`` steps the Ritz estimates of the k wanted pairs are compared with tol·‖T‖ and
the cycle stops as soon as they meet it (the adaptive stop). The wanted Ritz vectors (and one
neighbour, for the gap) are formed from the stored basis, or, with ``store_basis=False``, by
replaying the recurrence (:func:`._recurrence.replay`, the same products again, O(P) memory).
Their true residuals ρ = ‖Hx − θx‖ are recomputed with k + 1 products; while one exceeds
tol·‖H‖ (‖H‖ estimated by the largest |Ritz value|) the run restarts, up to ``max_restarts``
times: a stored basis thick-restarts (Wu & Simon), keeping the Ritz vectors nearest the wanted
end and so what the cycle learned; a basis-free run restarts from the sum of the wanted Ritz
vectors. Whether the run converged, and so what it certifies, is decided by the recomputed
residual alone, exactly as with a fixed Krylov size.

**Certificate** (:mod:`._certificate`): from the final unit vectors and their own products,
with the HVP's rounding estimated from its linearity defect: λmin ∈ [θ̂ − τ − s, θ̂ + τ] with s the
Bauer–Fike ρ or the Kato–Temple ρ²/g (mirrored for λmax); an unconverged run claims only the
Rayleigh side (−∞, θ̂ + τ] and warns with a :class:`ConvergenceWarning`. The probabilistic outer
end (``prob_interval``, :mod:`._probabilistic`) needs no assumption on the spectrum: it comes
from the first cycle's tridiagonal matrix, from the random start. The exact route's interval is
±(2‖Ĥ − Ĥᵀ‖_F + P·u·‖H‖): the asymmetry of the materialised columns estimates their rounding,
and P·u·‖H‖ covers ``eigh``'s backward error.

**Lower precision.** A float32 operator (under x64) is certified against the exact operator at
its float32 θ and data: its final vectors' products are compared with those of the operator
widened to float64 (:meth:`LinearOperator.widened`), which adds the rounding that is linear in
the vector (a fixed perturbation no linearity defect sees) to δ, at k + 1 more products in one
more compiled program; the exact route decomposes the widened operator.

**Memory.** The stored basis costs ``krylov``·P numbers (and the thick-restart set up to 32
more); ``store_basis=None`` (the default) keeps it when it fits ``memory_budget_bytes`` (default
2 GiB) and otherwise runs basis-free, O(P) memory whatever ``krylov`` is
(:func:`~._options.lanczos_bytes`), and says so in :attr:`EigResult.store_basis`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import time
import warnings
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from mhatheory import _validate
from mhatheory.spectral import _compile, _exact
from mhatheory.spectral import _recurrence as rec
from mhatheory.spectral._certificate import certify, defect_vectors, intervals
from mhatheory.spectral._operators import (
    Hessian,
    LinearOperator,
    _Point,
    as_operator,
    size_of,
)
from mhatheory.spectral._options import (
    DEFAULT_KRYLOV,
    DEFAULT_MAX_HVPS,
    ESCALATION,
    SMALL_BLOCK,
    SMALL_OPERATOR,
    THICK_LAMBDA_MIN_MAX_PARAMS,
    WARM_START_MIX,
    Engine,
    Method,
    Reortho,
    Which,
    as_enum,
    check_budget,
    check_lanczos,
    check_start,
    escalated,
    host_rng,
    key_words,
    lanczos_bytes,
    min_hvps,
    plan_memory,
    resolve_engine,
    resolve_key,
    start_vector,
    work_dtype,
)
from mhatheory.spectral._probabilistic import (
    DEFAULT_FAILURE_PROB,
    breakdown_floor,
    margin,
    outer_ends,
    start_threshold,
)

#: The most Ritz pairs a thick restart keeps (their vectors are the selective set after it).
MAX_KEEP = 32


class EigResult(NamedTuple):
    """An extreme eigenpair estimate.

    Attributes:
        value: the eigenvalue estimate (float).
        vector: the unit eigenvector estimate, flat ``[P]`` (θ order of ``ravel_pytree``; zero
            outside a block).
        residual: ‖H v − λ v‖₂, recomputed with a final product (or densely for ``exact``).
        interval: (lo, hi) enclosing the eigenvalue (see module docstring).
        gap: estimated distance to the next eigenvalue.
        num_hvps: products with the operator, all of them (its size for ``exact``).
        restarts: Lanczos restarts used.
        converged: residual ≤ tol·‖H‖ within the restart budget, and, where the HVP's rounding
            sets that threshold, the pair resolved from its neighbour and from 0.
        seconds: wall time of the probe on its operator, its compilation included on a first
            call (a convenience's input checks and linearisation before it are not).
        method: "lanczos" or "exact".
        rounding: τ, the bound on |value − xᵀHx| from rounding (module docstring).
        hvp_error: δ, the estimated rounding error ‖Ĥx − Hx‖ of one HVP (for ``exact``: the
            asymmetry ‖Ĥ − Ĥᵀ‖_F of the dense matrix).
        store_basis: whether the Krylov basis was kept (False: basis-free, O(P) memory, chosen
            or forced by the memory budget).
        reortho: the reorthogonalisation scheme used ("" for ``exact``).
        lanczos_steps: Lanczos steps over all cycles (products in the recurrence; the rest of
            ``num_hvps`` forms residuals, replays, restarts and the rounding estimate).
        prob_interval: (lo, hi) containing the eigenvalue with probability ≥ 1 − failure_prob
            over the random start, whatever the spectrum (:mod:`._probabilistic`): the outer
            end from the first cycle's Krylov space, moved out by the finite-precision margin,
            and the Rayleigh end of ``interval`` (for ``exact``: ``interval`` itself).
        failure_prob: δ of ``prob_interval`` (0 for ``exact``; 1 when the start was a warm
            start with no random part, whose outer end is then infinite).
        prob_bound: which bound gave the outer end: "a-posteriori", "a-priori", "exact", or
            "none" (no statement).
        prob_stop: why the first cycle stopped, as far as the probabilistic end is concerned:
            "tol" (its width met tol·‖H‖), "decided" (it lay wholly on one side of the value it
            was asked to decide), "budget" (``max_hvps``), "dimension" (the operator's size in
            steps, or an invariant subspace: the Krylov space cannot grow), "rounding" (the
            HVP's measured rounding alone makes the end wider than tol·‖H‖), "residual" (the run
            was sized by its residual alone, without ``failure_prob``), "refuted" (a later cycle
            found a Ritz value beyond the end: the event of probability δ happened, and the end
            is dropped), or "exact".
        ritz_spread: θ_max − θ_min of the first cycle's tridiagonal T, a lower bound on the
            spectral spread λmax − λmin (0 for a one-step run; for ``exact``: the full spread).
        key: the key the probe drew its start vector and rounding probe from (pass it back to
            reproduce the run).
    """

    value: float
    vector: jax.Array
    residual: float
    interval: tuple
    gap: float
    num_hvps: int
    restarts: int
    converged: bool
    seconds: float
    method: str
    rounding: float = 0.0
    hvp_error: float = 0.0
    store_basis: bool = True
    reortho: str = ""
    lanczos_steps: int = 0
    prob_interval: tuple = (-math.inf, math.inf)
    failure_prob: float = 1.0
    prob_bound: str = "none"
    prob_stop: str = ""
    ritz_spread: float = 0.0
    key: jax.Array | None = None


class ConvergenceWarning(UserWarning):
    """Lanczos stopped before the residual met the tolerance: the interval is not certified on
    its outer side (``-inf`` for λmin, ``+inf`` for λmax)."""


@dataclasses.dataclass(frozen=True)
class Lanczos:
    """A Lanczos probe of the k most extreme eigenpairs, configured first and applied later to
    a :class:`~mhatheory.spectral.LinearOperator` and a key; the result is a list of
    :class:`EigResult`, most extreme first.

    Attributes:
        k: how many eigenpairs.
        which: a :class:`~mhatheory.spectral.Which` (or its string): ``SMALLEST`` or
            ``LARGEST``.
        krylov: the most Lanczos vectors per cycle (the adaptive stop usually takes fewer);
            None (the default): the whole operator when it is orthogonalised in full on a
            model of at most ``SMALL_OPERATOR`` (256) parameters, so that one cycle spans it,
            else ``DEFAULT_KRYLOV`` (40). With ``failure_prob`` the first cycle may grow to the
            HVP budget (at most the operator's size).
        tol: the residual tolerance: a pair is converged, and its interval closed on both
            sides, once its true residual ρ ≤ (tol + 100ε)·‖H‖ (the 100ε covers the rounding
            of one HVP) and, where that rounding floor exceeds tol (a float32 model), the
            threshold is below the distance the pair must resolve: the gap to its neighbouring
            Ritz value, and |θ| (a Ritz value within the rounding floor of 0 is not told apart
            from it). Its certified interval is then at most 2τ + min(ρ, ρ²/g) wide. The
            default 1e-10 resolves λ to ~1e-10‖H‖ with Bauer–Fike and to ~1e-20‖H‖²/g with
            Kato–Temple. The recurrence stops as soon as the Ritz estimates meet it.
        max_restarts: how many times a cycle may restart.
        reortho: a :class:`~mhatheory.spectral.Reortho` (or its string); ``AUTO`` (the default):
            ``FULL`` on a model of at most 256 parameters, a block of at most ``krylov`` or 64
            coordinates, and for a single λmin on a model of at most
            ``THICK_LAMBDA_MIN_MAX_PARAMS`` parameters (thick restarts), else ``NONE`` for
            k = 1 and ``SELECTIVE`` for k > 1 (which needs the basis).
        check_every: steps between two adaptive checks (an eigh of a ≤ krylov-sized T each).
        store_basis: keep the Krylov basis (True), run basis-free (False: O(P) memory, the Ritz
            vectors recomputed by a second pass of the recurrence, twice the HVPs, k = 1, and
            restarts that keep only the Ritz vector), or decide by ``memory_budget_bytes``
            (None, the default).
        memory_budget_bytes: bytes the Lanczos vectors may take (default 2 GiB); a budget
            below the O(P) vectors themselves is an error.
        failure_prob: δ in (0, 1), or None. Every result carries ``prob_interval``, which holds
            the eigenvalue with probability ≥ 1 − δ over the random start for any spectrum
            (:mod:`._probabilistic`). With None it is stated at δ = 1e-6 for whatever the run
            saw; with δ given the first cycle runs on until that interval's outer end lies
            within tol·‖H‖ of the Ritz value, or the budget is spent (``EigResult.prob_stop``
            says which).
        max_hvps: the HVP budget of the whole probe (None: unlimited without ``failure_prob``,
            where ``max_restarts`` bounds the work, and 2,000 with it).
        warm_start_mix: the weight of the uniform random part added to a warm start ``v0``
            (default 1e-2); it enters the probabilistic end. 0 leaves a pure warm start, which
            carries no probabilistic statement (and cannot be combined with ``failure_prob``).
        engine: an :class:`~mhatheory.spectral.Engine` (or its string): where the recurrence
            runs, NumPy on the host or compiled programs (``AUTO``, the default: the host for
            an operator on a CPU with at most ``HOST_MAX_PARAMS`` coordinates). Both draw the
            same start from the key and compute the same numbers up to rounding (which can
            tip a discrete decision, and so the step count; see the Engine).

    Cost: per cycle, the steps taken (≤ krylov) + k + 1 products (the Ritz pairs' true
    residuals; the neighbour bounds the gap for Kato–Temple), twice the steps basis-free, one
    more per thick restart, plus 3 at the end (the HVP rounding estimate), and 3 more at a
    restart that failed to halve the residual (the same estimate: a residual within the HVP's
    rounding ends the run, since no restart can lower it).
    """

    k: int = 1
    which: Which | str = Which.SMALLEST
    krylov: int | None = None
    tol: float = 1e-10
    max_restarts: int = 20
    reortho: Reortho | str = Reortho.AUTO
    check_every: int = 5
    store_basis: bool | None = None
    memory_budget_bytes: int | None = None
    failure_prob: float | None = None
    max_hvps: int | None = None
    warm_start_mix: float = WARM_START_MIX
    engine: Engine | str = Engine.AUTO

    def __post_init__(self):
        for name, value in check_lanczos(**dataclasses.asdict(self)).items():
            object.__setattr__(self, name, value)

    def __call__(self, operator: LinearOperator, *, key, v0=None, target=None
                 ) -> list[EigResult]:
        """The k most extreme eigenpairs of ``operator``. ``key`` draws the start vector (with
        ``v0``, a warm start, its random part) and the rounding probe. ``target`` (an interval
        (lo, hi)) lets the first cycle stop as soon as the probabilistic interval lies wholly
        above or below it (a decision, as an assertion needs)."""
        if not isinstance(operator, LinearOperator):
            raise ValueError("a probe is applied to an operator at a point: "
                             "spectral.Hessian(loss_fn).linearise(params, *args) (or "
                             "spectral.linearise(loss_fn, params, *args)), got "
                             f"{type(operator).__name__}; lambda_min(loss_fn, params, *args) "
                             "does both.")
        key = resolve_key(key)
        self.check_start(v0, operator.P)
        self.check_fits(operator.size)
        _compile.wait(self.compile_ahead(operator.size, operator.P, operator.dtype))
        return _run(self, operator, key, v0, target)

    def compile_ahead(self, size: int, num_params: int, dtype):
        """Start compiling this probe's recurrence for an operator of ``size`` coordinates among
        ``num_params`` in ``dtype`` on a worker thread (:mod:`._compile`), once per
        configuration: the job's future, or None (the worker off, the default; a block, whose
        mask makes programs of its own; or a stand-in basis over ``COMPILE_AHEAD_BYTES``). The
        call is cheap; :meth:`__call__` waits for the job before its run."""
        if not _compile.enabled() or resolve_engine(self.engine, num_params):
            return None
        wdt = np.dtype(work_dtype(dtype))
        cfg, _, _ = _size(self, size, num_params, wdt, np.dtype(dtype), host=False)
        if size != num_params or lanczos_bytes(num_params, cfg.m, self.k, wdt, cfg.store_basis,
                                               cfg.slots) > COMPILE_AHEAD_BYTES:
            return None
        standin = dataclasses.replace(self, max_restarts=1, engine=Engine.COMPILED)
        return _compile.background(("lanczos", cfg, self.k, np.dtype(dtype)),
                                   lambda: _standin_run(standin, num_params, np.dtype(dtype)))

    def check_start(self, v0, num_params: int, name: str = "v0") -> None:
        """A warm start for this probe on P = ``num_params`` coordinates, checked before any
        work: a real, finite, non-zero P-vector (or None), with a random part whenever
        ``failure_prob`` is asked for."""
        check_start(v0, size=num_params, failure_prob=self.failure_prob,
                    warm_start_mix=self.warm_start_mix, name=name)

    def check_fits(self, size: int, dtype=None) -> None:
        """Refuse, before any work, an operator of ``size`` coordinates too small for k pairs
        and their gap's neighbour."""
        del dtype                               # the basis is sized later, by memory_budget
        _check_size(self.k, size)

    #: How many escalation levels :meth:`escalated` has.
    LEVELS: ClassVar[int] = len(ESCALATION)

    def escalated(self, level: int) -> Lanczos:
        """This probe with more work for an undecided verdict, ``level`` = 1 … :attr:`LEVELS`:
        the HVP budget ×2 then ×8, restarts ×3 then ×6, tol ×1e-2 then ×1e-4 (at least 1e-15)."""
        return dataclasses.replace(self, **escalated(dataclasses.asdict(self), level))

    def careful(self) -> Lanczos:
        """This probe for a second look after a missed eigenvalue: three pairs (a missed λ is
        usually the next one), a Krylov space doubled (at least 80), tol 1e-12, 50 restarts."""
        krylov = DEFAULT_KRYLOV if self.krylov is None else self.krylov
        return dataclasses.replace(self, k=max(self.k, 3), krylov=max(2 * krylov, 80),
                                   tol=1e-12, max_restarts=50)


@dataclasses.dataclass(frozen=True)
class Exact:
    """The k most extreme eigenpairs from the dense matrix (``eigh``), configured like
    :class:`Lanczos` and applied the same way; deterministic, so the key and a start are not
    used, and ``prob_interval`` is the certified interval (``failure_prob`` 0).

    Attributes:
        k: how many eigenpairs (up to the operator's size).
        which: a :class:`~mhatheory.spectral.Which` (or its string).
        memory_budget_bytes: bytes the dense matrix and its eigendecomposition may take
            (default :data:`~mhatheory.spectral.DEFAULT_DENSE_BUDGET`); a matrix that would not
            fit is refused before it is built.

    Cost: P products (the columns) and an O(P³) eigendecomposition, O(P²) memory.

    Example:
        >>> import jax.numpy as jnp
        >>> from mhatheory import spectral
        >>> H = spectral.linearise(lambda x: jnp.sum(jnp.arange(1.0, 4.0) * x**2), jnp.ones(3))
        >>> [round(r.value, 12) for r in Exact(k=2)(H)]
        [2.0, 4.0]
    """

    k: int = 1
    which: Which | str = Which.SMALLEST
    memory_budget_bytes: int | None = None

    def __post_init__(self):
        _validate.positive_int("k", self.k)
        object.__setattr__(self, "which", as_enum(Which, self.which, "which"))
        check_budget(self.memory_budget_bytes)

    def check_start(self, v0, num_params: int, name: str = "v0") -> None:
        """Nothing to check beyond a start's shape: the dense route uses none."""
        check_start(v0, size=num_params, name=name)

    def check_fits(self, size: int, dtype) -> None:
        """Refuse, before any work, k beyond the ``size`` coordinates or a matrix over budget."""
        _exact.check_dense_fits(size, dtype, self.memory_budget_bytes)
        if self.k > size:
            raise ValueError(f"k={self.k} is more eigenpairs than the {size} coordinates have.")

    def __call__(self, operator: LinearOperator, *, key=None, v0=None, target=None
                 ) -> list[EigResult]:
        del key, v0, target                     # deterministic: no start, no early stop
        if not isinstance(operator, LinearOperator):
            raise ValueError("a probe is applied to an operator at a point "
                             "(spectral.linearise(loss_fn, params, *args)), got "
                             f"{type(operator).__name__}.")
        self.check_fits(operator.size, operator.dtype)
        return exact_eigs(operator, self.k, self.which, self.memory_budget_bytes)


#: The most memory a stand-in run for :meth:`Lanczos.compile_ahead` may hold (its basis and
#: vectors, while the main thread linearises the model).
COMPILE_AHEAD_BYTES = 2**30


def _standin_loss(x, d):
    return 0.5 * jnp.sum(d * x * x)


def _standin_run(probe: Lanczos, num_params: int, dtype) -> None:
    """``probe`` on diag(−1, 1, …, 1) of ``num_params`` coordinates in ``dtype``: two eigenvalues,
    so the recurrence resolves them at once, compiling every program of a run's common path."""
    d = jnp.ones(num_params, dtype).at[0].set(-1)
    x = jnp.zeros(num_params, dtype)
    op = LinearOperator(_Point(Hessian(_standin_loss), x, (d,)))
    _run(probe, op, jax.random.key(0), None, None, quiet=True)


def _check_size(k: int, size: int) -> None:
    """Lanczos needs one more coordinate than the pairs it is asked for (the gap's neighbour)."""
    if size <= 1:
        raise ValueError(f"the operator acts on {size} coordinate(s): Lanczos needs at least 2 "
                         "(the gap needs a neighbour pair); use method='exact'.")
    if k >= size:
        raise ValueError(f"k={k} must be smaller than the operator's size {size} for Lanczos "
                         "(its gap needs one more Ritz pair); method='exact' takes k up to the "
                         "size.")


def _size(probe: Lanczos, size: int, P: int, wdt, hvp_dtype, host: bool):
    """``(Recurrence, keep, budget)`` of a run on an operator of ``size`` coordinates among P
    whose products are computed in ``hvp_dtype`` (its recurrence on the host when ``host``):
    with ``failure_prob`` the Krylov size grows to what the HVP budget allows (halved
    basis-free, where the Ritz vector costs a second pass). A run whose basis stays
    orthogonal to working precision (``SELECTIVE``, ``FULL``) thick-restarts keeping ``keep``
    Ritz pairs; the others restart from their Ritz vector, since Ritz vectors of a basis that
    lost orthogonality (``NONE``), or whose Gram–Schmidt corrections T does not record
    (``PARTIAL``, O(√ε)), do not satisfy the restarted Lanczos relation to the tolerance, and a
    thick restart from them stagnates."""
    k = probe.k
    extend = probe.failure_prob is not None
    budget = probe.max_hvps if probe.max_hvps is not None else (
        DEFAULT_MAX_HVPS if extend else 2**62)
    asked_krylov = DEFAULT_KRYLOV if probe.krylov is None else probe.krylov
    krylov = min(asked_krylov, size)
    if extend:
        spare = budget - min_hvps(k) + (k + 1)           # the steps the budget leaves
        krylov = min(size, max(krylov, spare))
    # a thick restart leaves room for at least one new step (keep + 1 rows of krylov)
    keep = max(0, min(MAX_KEEP, krylov - 2, k + max(k + 1, (krylov - k) // 2)))
    asked = Reortho(probe.reortho)
    # the Gram–Schmidt work of FULL is O(P·j) per step whatever the block's size; a run sized
    # for its probabilistic end keeps NONE unless its products are rounded in a lower precision
    # than the recurrence's, which loses orthogonality at that precision's rate
    low = jnp.finfo(hvp_dtype).eps > jnp.finfo(wdt).eps
    single_min = (k == 1 and Which(probe.which) is Which.SMALLEST and (low or not extend)
                  and P <= THICK_LAMBDA_MIN_MAX_PARAMS)
    # AUTO's FULL (its selective set none) where the budget keeps the basis, else as
    # plan_memory resolves AUTO
    small = P <= SMALL_OPERATOR
    full = (asked is Reortho.AUTO and probe.store_basis is not False
            and (small or size <= max(asked_krylov, SMALL_BLOCK) or single_min))
    if ((full or asked is Reortho.FULL) and probe.krylov is None and small
            and probe.store_basis is not False):
        krylov = size                       # one cycle spans the space: no restart to lose
    selective = not full and (asked is Reortho.SELECTIVE or (asked is Reortho.AUTO and k > 1))
    store_basis, reortho = plan_memory(P, krylov, k, wdt, probe.store_basis, asked,
                                       probe.memory_budget_bytes,
                                       max(keep, k + 3) if selective else 0)
    if full and store_basis:
        reortho = Reortho.FULL
    if extend and not store_basis:
        krylov = min(size, max(min(asked_krylov, size), (spare + 1) // 2))
    if not store_basis or reortho not in (Reortho.SELECTIVE, Reortho.FULL):
        keep = 0
    slots = max(keep, min(k + 3, krylov)) if reortho is Reortho.SELECTIVE else 0
    cfg = rec.Recurrence(krylov, P, str(np.dtype(wdt)), reortho, store_basis, Which(probe.which),
                         k, probe.check_every, True, extend, slots, host)
    return cfg, keep, budget


def _run(probe: Lanczos, op: LinearOperator, key, v0, target, quiet: bool = False
         ) -> list[EigResult]:
    """The probe on ``op`` (module docstring, "Cycle"); ``quiet``: no ConvergenceWarning.

    The operator is scaled by a power of two, 2^−e ≈ 1/‖Hq₀‖, before the recurrence sees it
    (exactly, no rounding), and every number unscaled at the end: a Hessian of size 1e-170 (a
    logistic loss at margins of 400) or 1e+170 would otherwise underflow or overflow the sums of
    squares of the recurrence and the certificate."""
    k, which = probe.k, Which(probe.which)
    wdt = np.dtype(op.work_dtype)
    host = resolve_engine(probe.engine, op.P, op.platforms)
    cfg, keep, budget = _size(probe, op.size, op.P, wdt, op.hvp_dtype, host)
    xp = cfg.xp
    extend = probe.failure_prob is not None
    delta = DEFAULT_FAILURE_PROB if probe.failure_prob is None else probe.failure_prob
    mix = None if v0 is None else float(probe.warm_start_mix)
    c = start_threshold(op.size, delta, mix) if mix != 0 else 0.0
    log_c = math.log(c) if c > 0 else math.inf
    threshold = float(probe.tol) + 100 * float(jnp.finfo(op.hvp_dtype).eps)
    t0 = time.perf_counter()
    words = key_words(key)
    start, z = _draws(words, v0, float(probe.warm_start_mix), op.mask, op.P, wdt)
    # the key of the directions that continue the recurrence after a breakdown (per cycle)
    k_break = rec.fold(cfg, words, 3) if host else key
    # The few vectors a cycle ends with (the Ritz vectors, their products and residuals, the
    # certificate's) are handled in NumPy whenever the operator lives on a CPU, as the host
    # engine handles everything: a handful of O(P) passes per cycle, which the compiled engine
    # would otherwise compile as a dozen programs of their own on a first call (about 0.6 s of
    # a first λmax at P = 133,120, whose HVP compiles in 0.3 s). On an accelerator they stay
    # on the device.
    vx = np if host or op.platforms == {"cpu"} else xp
    if not host:
        start = jnp.asarray(start)
    z = vx.asarray(z)
    w0 = vx.asarray(rec.on_engine(cfg, op.mv)(start))
    norm0 = float(_safe_norm(w0))
    if not math.isfinite(norm0):
        _check_finite(w0, "at the start vector")
    e = int(np.frexp(norm0)[1]) if norm0 > 0 else 0
    unit = 2.0 ** -e

    apply = rec.on_engine(cfg, lambda q: op.scaled_mv(q, unit))

    def products(vecs):
        """H x for the rows x of ``vecs``, stacked."""
        return vx.stack([vx.asarray(apply(x)) for x in vecs])

    def defect_products(vecs):
        """The products the HVP's rounding estimate needs for the unit vectors ``vecs``."""
        return products(defect_vectors(vecs, z))

    lo_t, hi_t = (math.nan, math.nan) if target is None else (float(target[0]) * unit,
                                                              float(target[1]) * unit)
    kk = min(k + 1, cfg.m)
    reserve = kk + 1 + min(2, kk)                        # residuals and the rounding estimate
    state = rec.start(cfg, start, key=k_break, tol=0.5 * threshold,
                      prob=(log_c, lo_t, hi_t) if extend else None, hvp_dtype=op.hvp_dtype,
                      mask=op.mask)
    state = rec.advance(cfg, state, w0 * unit)
    hvps = steps = 1
    restarts = 0
    first = best = Hd = None
    cycle_start = start
    while True:
        j0 = int(state.j)
        room = budget - hvps - reserve
        limit = room if cfg.store_basis else (room + 1) // 2    # a replay costs as much again
        state = rec.run(cfg, apply, state, limit=max(limit, 0))
        j = int(state.j)
        hvps += j - j0
        steps += j - j0
        _check_finite(np.asarray(state.alpha)[:j], "along the run")
        if first is None:
            first = (np.asarray(state.alpha), np.asarray(state.beta), j)
        vecs, extra = _ritz_vectors(cfg, state, cycle_start, which, kk, apply, vx)
        hvps += extra
        Hx = products(vecs)
        hvps += len(vecs)
        res = np.asarray(_residuals(vecs, Hx))
        scale = _scale(state)
        if (np.max(res[:k]) <= threshold * scale or restarts >= probe.max_restarts
                or hvps + reserve + 2 > budget):
            break
        # a restart that did not halve the residual: a thick one falls back to an explicit one,
        # and a residual within δ, the HVP's measured rounding, is the products' noise, which
        # no restart lowers (a Hessian that is a small difference of large terms): stop there
        stalled = best is not None and np.max(res[:k]) > 0.5 * best
        if stalled:
            Hd = defect_products(vecs)
            hvps += Hd.shape[0]
            if np.max(res[:k]) <= float(certify(vecs, Hx, Hd, op.hvp_dtype)[3]):
                break
            Hd = None
        restarts += 1
        best = np.max(res[:k]) if best is None else min(best, np.max(res[:k]))
        # later cycles are not from the random start: their stop ignores the probabilistic end
        if keep and not stalled:
            state = rec.thick_restart(cfg, state._replace(prob=_no_prob(xp, wdt)), keep, apply)
            hvps += 1
        else:
            cycle_start = xp.asarray(_sum_rows(vecs, k))
            state = rec.start(cfg, cycle_start, key=rec.fold(cfg, k_break, restarts),
                              tol=0.5 * threshold, prob=None, hvp_dtype=op.hvp_dtype,
                              mask=op.mask)
    if Hd is None:
        Hd = defect_products(vecs)
        hvps += Hd.shape[0]
    # a lower-precision operator's products against the widened operator's (``certify``)
    reference, wide = None, op.widened()
    if wide is not op:
        reference = vx.stack([vx.asarray(wide.scaled_mv(x, unit)) for x in vecs])
        hvps += len(vecs)
    theta, rho, tau, delta_hvp = (np.asarray(a) for a in certify(vecs, Hx, Hd, op.hvp_dtype,
                                                                    reference))
    seconds = time.perf_counter() - t0
    low = float(probe.tol) < 100 * float(jnp.finfo(op.hvp_dtype).eps)
    converged = bool(np.max(res[:k]) <= threshold * scale) and _resolved(
        theta, np.asarray(vecs), k, threshold * scale, low)
    big = 2.0 ** e                              # back to the operator's own units
    if not converged and not quiet:
        _warn(res * big, k, threshold * scale * big, float(delta_hvp) * big, restarts, cfg.m,
              hvps, op.hvp_dtype)
    iv = intervals(which, theta, rho, tau, converged)
    ends = _prob_ends(which, first, c, float(delta_hvp), op.size, wdt, op.hvp_dtype, iv,
                      threshold * scale,
                      extend, target is not None and (lo_t, hi_t), budget, hvps, cfg.m)
    out = []
    for j in range(k):
        (lo, hi), gap = iv[j]
        (plo, phi), bound, stop, spread = ends[j]
        out.append(EigResult(
            float(theta[j]) * big, jax.device_put(vecs[j]), float(rho[j]) * big,
            (lo * big, hi * big),
            gap * big, hvps, restarts, converged, seconds, "lanczos", float(tau[j]) * big,
            float(delta_hvp) * big, cfg.store_basis, cfg.reortho.value, steps,
            (plo * big, phi * big), delta if c > 0 else 1.0, bound, stop, spread * big, key))
    return out


def _draws(words, v0, mix, mask, P: int, dtype):
    """A run's random draws, on the host from the key's words (:func:`key_words`), so every
    engine starts from the same vectors: the unit start vector (:func:`start_vector`) and a
    unit random vector z for the rounding estimate (on the block when ``mask``)."""
    start = start_vector(P, host_rng(words, 1), v0, dtype, mix, mask)
    if not np.any(start):
        raise ValueError("v0 is zero on the coordinates of this block (and warm_start_mix=0 "
                         "adds no random part): pass a v0 that overlaps the block, "
                         "warm_start_mix > 0, or v0=None.")
    z = host_rng(words, 2).standard_normal(P).astype(dtype)
    if mask is not None:
        z = z * mask
    return start / np.linalg.norm(start), z / np.linalg.norm(z)


@_compile.probe_program
def _residuals(xp, vecs, Hx):
    """‖Hx − (xᵀHx) x‖ of unit vectors x, per row."""
    theta = xp.sum(vecs * Hx, axis=1)
    return xp.linalg.norm(Hx - theta[:, None] * vecs, axis=1)


@functools.partial(_compile.probe_program, static_argnums=1)
def _sum_rows(xp, vecs, k: int):
    return xp.sum(vecs[:k], axis=0)


@_compile.probe_program
def _safe_norm(xp, v):
    """‖v‖ without under- or overflow in the squares: max|v|·‖v/max|v|‖."""
    s = xp.max(xp.abs(v))
    return xp.where(s > 0, s * xp.linalg.norm(v / xp.where(s > 0, s, 1.0)), 0.0)


def _check_finite(values, where: str) -> None:
    if not np.all(np.isfinite(np.asarray(values))):
        raise FloatingPointError(
            f"the operator's product is NaN/Inf {where}: the Hessian (or curvature operator) is "
            "not finite at these params and data (a loss that is not twice differentiable "
            "there, e.g. sqrt or abs at 0, or an overflow); check the loss and params.")


def _no_prob(xp, dtype):
    return xp.asarray([np.inf, np.nan, np.nan], dtype)


def _scale(state) -> float:
    """‖H‖ estimated by the largest |Ritz value| of the current T."""
    j = int(state.j)
    a, b = np.asarray(state.alpha)[:j], np.asarray(state.beta)[1:j]
    return float(np.max(np.abs(scipy.linalg.eigvalsh_tridiagonal(a, b)))) if j > 1 \
        else float(abs(a[0]))


def _ritz_vectors(cfg, state, start, which, kk: int, apply, xp):
    """The ``kk`` wanted Ritz vectors (the k wanted pairs and a neighbour), normalised, as
    arrays of ``xp`` (NumPy or jax.numpy), and the products spent on them (a basis-free run
    replays the recurrence from ``start``)."""
    j = int(state.j)
    alpha, beta = np.asarray(state.alpha)[:j], np.asarray(state.beta)[1:j]
    _, S = scipy.linalg.eigh_tridiagonal(alpha, beta) if j > 1 else (alpha, np.ones((1, 1)))
    S = S[:, :kk] if which == Which.SMALLEST else S[:, ::-1][:, :kk]
    coef = np.zeros((cfg.m + 1, kk))
    coef[:j, :S.shape[1]] = S
    coef = cfg.xp.asarray(coef, state.q.dtype)
    if cfg.store_basis:
        vecs, extra = rec.combine(state.Q, coef), 0
    else:
        vecs = rec.replay(cfg, apply, start, state.alpha, state.beta, j, coef)
        extra = max(j - 1, 0)
    return _unit_rows(xp.asarray(vecs)), extra


@_compile.probe_program
def _unit_rows(xp, vecs):
    """Rows normalised; a pair beyond a tiny invariant subspace (steps < k + 1) has no vector
    and reuses the first, whose zero gap then keeps Kato–Temple off."""
    nrm = xp.linalg.norm(vecs, axis=1, keepdims=True)
    return xp.where(nrm > 0, vecs / xp.where(nrm > 0, nrm, 1.0), vecs[:1] / nrm[:1])


def _warn(res, k, threshold, hvp_error, restarts, krylov, hvps, hvp_dtype):
    small = bool(np.max(res[:k]) <= threshold)
    if small:
        dtype = np.dtype(hvp_dtype)
        fix = (f"the products run in {dtype.name}: compute the loss in a wider dtype to resolve "
               "it" if jnp.finfo(dtype).bits < 64 else
               "the products are float64 already, so no probe resolves it")
        why = (f"the HVP's rounding floor (tol·‖H‖ = {threshold:.3g}) exceeds the distance from "
               f"the Ritz value to its neighbour or to 0, so the pair is not resolved; {fix}")
    elif hvp_error > threshold:
        why = (f"residual {np.max(res[:k]):.3g} > tol·‖H‖ = {threshold:.3g}, but the HVP's own "
               f"rounding is {hvp_error:.3g}, so no restart can reach it: raise tol above "
               "that rounding (relative to ‖H‖), or compute the loss in higher precision")
    else:
        why = (f"residual {np.max(res[:k]):.3g} > tol·‖H‖ = {threshold:.3g} after {restarts} "
               f"restarts of up to {krylov} vectors ({hvps} HVPs); raise krylov, max_restarts "
               "or max_hvps")
    warnings.warn(f"Lanczos did not converge: {why}. The interval is open on its outer side; "
                  "prob_interval still holds with its stated probability.", ConvergenceWarning,
                  stacklevel=_validate.user_stacklevel())


def _resolved(theta, vecs, k: int, threshold: float, low_precision: bool) -> bool:
    """In low precision (the HVP's rounding floor 100ε, not ``tol``, sets the acceptance
    threshold), whether that threshold is below the distance each wanted pair must resolve: the
    gap to its neighbouring Ritz value, and |θ|. A pair inside a cluster narrower than the
    threshold (a dense bulk near 0 in float32) satisfies Bauer–Fike for *some* eigenvalue of the
    cluster, not for the extreme one, so its outer end must stay open; the user cannot ask for a
    tighter threshold there. (In float64 the threshold is ``tol``, which the user chooses; an
    unresolved cluster narrower than it is the stated assumption of ``interval``, and
    ``prob_interval`` covers it.) A neighbour whose vector is nearly parallel (|x_jᵀx_i| > ½) is
    a ghost copy of the same pair (lost orthogonality, no reorthogonalisation), not a second
    eigenvalue, and does not count. A threshold of 0 (every Ritz value 0: the operator vanishes
    on the Krylov space, its products exact) leaves nothing to resolve."""
    if not low_precision or threshold <= 0:
        return True
    for j in range(k):
        nbs = [i for i in (j - 1, j + 1) if 0 <= i < len(theta)
               and abs(float(vecs[i] @ vecs[j])) <= 0.5]
        if nbs and min(abs(theta[i] - theta[j]) for i in nbs) <= threshold:
            return False
        if abs(theta[j]) <= threshold:
            return False
    return True


def _prob_ends(which, first, c, hvp_error, size, wdt, hvp_dtype, iv, width_tol, extend, target,
               budget, hvps, krylov):
    """Per wanted pair: ``(prob_interval, prob_bound, prob_stop, ritz_spread)`` from the first
    cycle's (α, β, steps) (:func:`._probabilistic.outer_ends`), moved out by the margin η."""
    alpha, beta, steps = first
    inner = [(lo if which == Which.LARGEST else hi) for (lo, hi), _ in iv]
    if c <= 0 or steps == 0:
        return [((-math.inf, h) if which == Which.SMALLEST else (h, math.inf), "none",
                 "residual", 0.0) for h in inner]
    tnorm = float(np.max(np.abs(alpha[:steps]) + beta[:steps] + beta[1:steps + 1]))
    # β's floor: the recurrence's breakdown threshold, which a float32 HVP raises to ε₃₂‖T‖
    psi = float(breakdown_floor(size, wdt, float(jnp.finfo(hvp_dtype).eps) / 2))
    ends = outer_ends(alpha, beta, steps, c, psi * tnorm)
    eta = float(margin(hvp_error, size, ends.steps, tnorm, wdt))
    if which == Which.SMALLEST:
        outer, bound, end = ends.lo - eta, ends.lo_bound, ends.theta_min
    else:
        outer, bound, end = ends.hi + eta, ends.hi_bound, ends.theta_max
    sign = 1.0 if which == Which.SMALLEST else -1.0
    if not extend:
        stop = "residual"
    elif target and (min(outer, inner[0]) > target[1] or max(outer, inner[0]) < target[0]):
        stop = "decided"
    elif sign * (end - outer) <= width_tol:
        stop = "tol"
    elif steps >= size or beta[steps] <= psi * tnorm:
        stop = "dimension"
    elif hvps >= budget or steps >= krylov:
        stop = "budget"
    else:
        # the run stopped on its in-run width, which cannot know the HVP's measured rounding
        stop = "rounding"
    # a Rayleigh end beyond the outer end refutes the statement (its δ-event happened)
    if sign * (inner[0] - outer) < 0:
        outer, stop = -sign * math.inf, "refuted"
    spread = ends.theta_max - ends.theta_min
    return [((outer, h) if which == Which.SMALLEST else (h, outer), bound, stop, spread)
            for h in inner]


def exact_eigs(operator: LinearOperator, k: int, which: Which, memory_budget_bytes=None
               ) -> list[EigResult]:
    """The k most extreme eigenpairs of ``operator``'s dense matrix (:class:`~._exact.Dense`),
    with the exact route's interval (module docstring); deterministic."""
    t0 = time.perf_counter()
    H, asym = _exact.Dense(memory_budget_bytes).matrix(operator.widened())
    evals, evecs = _exact.eigh_extremes(H)
    # the residuals and the vectors are assembled on the host: done with jax.numpy outside a
    # program, each operation would compile one of its own for every size
    H, evals, evecs = np.asarray(H), np.asarray(evals), np.asarray(evecs)
    n = evals.size
    u = float(jnp.finfo(H.dtype).eps) / 2
    # Weyl: |λ(Ĥ_sym) − λ(H)| ≤ ‖E_sym‖₂ ≤ ‖Ĥ − Ĥᵀ‖_F/√2 · 2 (columns' errors, estimated by
    # the asymmetry, ×2 margin), plus eigh's backward error ≤ n·u·‖H‖₂ (LAPACK, generous)
    tau = 2.0 * float(asym) + n * u * float(np.max(np.abs(evals)))
    idx = list(range(k + 1)) if which == Which.SMALLEST else list(range(n - 1, n - 2 - k, -1))
    idx = [i for i in idx if 0 <= i < n]
    theta = evals[idx]
    rho = np.array([_exact.residual_norm(H, float(evals[i]), evecs[:, i]) for i in idx]) + tau
    taus = np.full(len(idx), tau)
    if len(idx) == k:   # k = n: no neighbour pair; the next eigenvalue is infinitely far away
        theta = np.append(theta, np.inf if which == Which.SMALLEST else -np.inf)
        rho, taus = np.append(rho, 0.0), np.append(taus, tau)
    iv = intervals(which, theta, rho, taus, True)
    seconds = time.perf_counter() - t0
    coords = np.arange(operator.P) if operator.mask is None else np.flatnonzero(operator.mask)

    def full(vec):
        out = np.zeros(operator.P, vec.dtype)
        out[coords] = vec
        return jnp.asarray(out)

    return [EigResult(float(theta[j]), full(evecs[:, idx[j]]), float(rho[j]), iv[j][0],
                      iv[j][1], n, 0, True, seconds, "exact", tau, float(asym), False, "", 0,
                      iv[j][0], 0.0, "exact", "exact", float(evals[-1] - evals[0]))
            for j in range(k)]


def extreme_eigs(loss_fn, params, *args, k: int = 1, which: Which | str = Which.SMALLEST,
                 method: Method | str = Method.LANCZOS, key=None, v0=None,
                 **options) -> list[EigResult]:
    """The k smallest or largest eigenpairs of ∇²_θ ``loss_fn(params, *args)`` (or of a
    curvature operator: :class:`~mhatheory.spectral.GaussNewton`,
    :class:`~mhatheory.spectral.Curvature`, :class:`~mhatheory.spectral.Block`): the operator
    at ``params`` (each product in one program up to ``ONE_PROGRAM_MAX_PARAMS`` parameters,
    linearised above: :mod:`~mhatheory.spectral._operators`) probed by
    :class:`Lanczos` (``options``: its fields) or, with ``method="exact"``, densely
    (``options``: ``memory_budget_bytes``).

    ``key=None`` is a fresh random draw for every call (recorded in ``EigResult.key``); pass a
    key to reproduce a run. ``v0``: a warm start, e.g. a previous probe's ``.vector``, mixed with
    a random unit vector of weight ``warm_start_mix`` (so that a v0 with no component along the
    wanted eigenvector cannot make Lanczos certify another eigenvalue).

    For k > 1 the j-th pair's ``interval`` assumes, as every ``interval`` does, a resolved
    spectrum: here, that the run found every eigenvalue beyond it with its multiplicity. One
    start vector sees one copy of a repeated eigenvalue (others only through rounding), so on a
    large operator a copy can be skipped and the j-th interval then lies on a further
    eigenvalue. Its inner end (Cauchy interlacing: λ_j ≤ θ_j for the smallest) and
    ``prob_interval`` (whose outer end bounds the most extreme eigenvalue) hold regardless;
    ``method="exact"`` counts multiplicities.

    Every option, the key and the start vector are checked first, then the inputs (floating,
    finite parameters; finite data; a scalar loss; the loss's own ``check_args``) and a precision
    warning for operations below the parameters' precision; only then does anything compile.
    An unconverged run raises a :class:`ConvergenceWarning` and its ``interval`` is open on the
    outer side (``prob_interval`` is not).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> rs = extreme_eigs(lambda x: jnp.sum(jnp.arange(1.0, 6.0) * x**2), jnp.ones(5), k=2,
        ...                   which="largest", key=jax.random.key(0))
        >>> [round(r.value, 9) for r in rs]
        [10.0, 8.0]
    """
    probe = eig_probe(method, k=k, which=which, **options)
    key = resolve_key(key, allow_none=True)
    _validate.float_params(params)
    probe.check_start(v0, _validate.num_params(params)[0])
    op = as_operator(loss_fn)
    op.check_inputs(params, args)
    size, (P, dtype) = size_of(op, params), _validate.num_params(params)
    probe.check_fits(size, dtype)
    if isinstance(probe, Lanczos):
        probe.compile_ahead(size, P, dtype)       # on a worker, while this thread linearises
    # the dense route reads its columns from a linearisation; Lanczos goes by size
    linearised = True if isinstance(probe, Exact) else None
    return probe(op.at(params, *args, linearised=linearised), key=key, v0=v0)


def eig_probe(method: Method | str = Method.LANCZOS, **options) -> Lanczos | Exact:
    """The configured eigenvalue probe of ``method``: :class:`Lanczos` (``options``: its
    fields) or :class:`Exact` (``k``, ``which``, ``memory_budget_bytes``), every option
    checked.

    Example:
        >>> eig_probe("exact", which="largest")
        Exact(k=1, which=<Which.LARGEST: 'largest'>, memory_budget_bytes=None)
    """
    method = as_enum(Method, method, "method")
    probe = Exact if method is Method.EXACT else Lanczos
    known = sorted(f.name for f in dataclasses.fields(probe) if f.init)
    unknown = sorted(set(options) - set(known))
    if unknown:
        hints = [f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name)
                 for name in unknown for close in [difflib.get_close_matches(name, known, n=1)]]
        raise TypeError(f"unknown option {', '.join(hints)} for method='{method.value}'; it "
                        f"takes {', '.join(known)}.")
    return probe(**options)


def lambda_min(loss_fn, params, *args, method: Method | str = Method.LANCZOS, key=None,
               **options) -> EigResult:
    """λmin(∇²_θ loss_fn(params, *args)) with ``.value``, ``.residual`` and more (see
    :class:`EigResult`; options as :func:`extreme_eigs`).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> r = lambda_min(lambda x, d: 0.5 * jnp.sum(d * x**2), jnp.ones(3),
        ...                jnp.array([-1.0, 2.0, 3.0]), key=jax.random.key(0))
        >>> round(r.value, 12), r.converged
        (-1.0, True)
    """
    _one_end("lambda_min", options)
    return extreme_eigs(loss_fn, params, *args, which=Which.SMALLEST, method=method, key=key,
                        **options)[0]


def lambda_max(loss_fn, params, *args, method: Method | str = Method.LANCZOS, key=None,
               **options) -> EigResult:
    """λmax(∇²_θ loss_fn(params, *args)); see :func:`lambda_min`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> r = lambda_max(lambda x, d: 0.5 * jnp.sum(d * x**2), jnp.ones(3),
        ...                jnp.array([-1.0, 2.0, 3.0]), key=jax.random.key(0))
        >>> round(r.value, 12)
        3.0
    """
    _one_end("lambda_max", options)
    return extreme_eigs(loss_fn, params, *args, which=Which.LARGEST, method=method, key=key,
                        **options)[0]


def _one_end(name: str, options: dict) -> None:
    """``lambda_min`` and ``lambda_max`` are one eigenvalue at a fixed end: refuse ``k`` and
    ``which`` (``k=2`` would compute two pairs and return one)."""
    fixed = sorted(set(options) & {"k", "which"})
    if fixed:
        raise TypeError(f"{name} returns one eigenvalue at its end and takes no "
                        f"{' or '.join(fixed)}; use extreme_eigs(..., k=, which=) for more.")


__all__ = ["ConvergenceWarning", "EigResult", "Exact", "Lanczos", "eig_probe", "extreme_eigs",
           "lambda_max", "lambda_min"]
