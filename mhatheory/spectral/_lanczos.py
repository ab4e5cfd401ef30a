"""Extreme eigenvalues with certified intervals: restarted, adaptive Lanczos, or dense eigh.

A probe is configured first and applied to an operator at a point with an explicit key::

    H = spectral.Hessian(loss_fn).linearise(params, batch)     # one linearisation
    lo = spectral.Lanczos(which="smallest", tol=1e-10)(H, key=jax.random.key(0))[0]

and :func:`extreme_eigs`, :func:`lambda_min`, :func:`lambda_max` are one-line conveniences on
top (they form the operator at the point and probe in one call, each product in one program up
to ``ONE_PROGRAM_MAX_PARAMS`` parameters: :mod:`._operators`; their ``key=None`` is a fresh
random draw, recorded in ``EigResult.key``).

A Lanczos run, from its sizing to its certificate, is :mod:`._cycles`; the exact route is
:func:`._exact.exact_eigs`; both return :class:`~._result.EigResult`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from mhatheory import _validate
from mhatheory.spectral import _compile, _exact
from mhatheory.spectral._cycles import check_size, plan, run
from mhatheory.spectral._operators import (
    Hessian,
    LinearOperator,
    _Point,
    as_operator,
    size_of,
)
from mhatheory.spectral._options import (
    DEFAULT_KRYLOV,
    ESCALATION,
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
    lanczos_bytes,
    resolve_engine,
    resolve_key,
    work_dtype,
)
from mhatheory.spectral._result import ConvergenceWarning, EigResult


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
            model of at most ``SMALL_OPERATOR`` (2,048; 256 on a compiled recurrence)
            parameters, so that one cycle spans it,
            else ``DEFAULT_KRYLOV`` (40), or ``RESTART_KRYLOV`` (80) for a single λmin that
            restarts from its Ritz vector (past ``THICK_LAMBDA_MIN_MAX_PARAMS``) where its
            basis fits ``memory_budget_bytes``. With ``failure_prob`` the first cycle may grow
            to the HVP budget (at most the operator's size).
        tol: the residual tolerance: a pair is converged, and its interval closed on both
            sides, once its true residual ρ ≤ (tol + 100ε)·‖H‖ (the 100ε covers the rounding
            of one HVP; a float32 model's first cycle computes in float64 and aims at
            float64's floor, its float32 restarts at float32's: :mod:`._cycles`) and, where
            that rounding floor exceeds tol (a float32 model's float32 products), the
            threshold is below the distance the pair must resolve: the gap to its neighbouring
            Ritz value, and |θ| (a Ritz value within the rounding floor of 0 is not told apart
            from it). Its certified interval is then at most 2τ + min(ρ, ρ²/g) wide. The
            default 1e-10 resolves λ to ~1e-10‖H‖ with Bauer–Fike and to ~1e-20‖H‖²/g with
            Kato–Temple. The recurrence stops as soon as the Ritz estimates meet it.
        max_restarts: how many times a cycle may restart.
        reortho: a :class:`~mhatheory.spectral.Reortho` (or its string); ``AUTO`` (the default):
            ``FULL`` on a model of at most 2,048 parameters (256 compiled), a block of at most
            ``krylov`` or 64 coordinates, and for a single λmin on a model of at most
            ``THICK_LAMBDA_MIN_MAX_PARAMS`` parameters (thick restarts), else ``NONE`` for
            k = 1 and ``SELECTIVE`` for k > 1 (which needs the basis).
        check_every: steps between two adaptive checks (an eigh of a ≤ krylov-sized T each);
            once the wanted Ritz estimates are within 10³ times tol, a check every step.
        store_basis: keep the Krylov basis (True), run basis-free (False: O(P) memory, the Ritz
            vectors recomputed by a second pass of the recurrence, twice the HVPs, k = 1, and
            restarts that keep only the Ritz vector), or decide by ``memory_budget_bytes``
            (None, the default).
        memory_budget_bytes: bytes the Lanczos vectors may take (default 2 GiB); a budget
            below the O(P) vectors themselves is an error. A compiled run's stored basis stays
            with the operator after the call, for the next run at its point to take over
            (``LinearOperator.swap_basis``: the bases of the last two Krylov sizes).
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
    more per thick restart, plus 2 at the end (the HVP rounding estimate, whose third product is
    the start's; 3 where the first Ritz vector is nearly parallel to the start, as from a warm
    start, or where a float32 model's run ends on its own products), and as many more at a
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
        return run(self, operator, key, v0, target)

    def compile_ahead(self, size: int, num_params: int, dtype):
        """Start compiling this probe's recurrence for an operator of ``size`` coordinates among
        ``num_params`` in ``dtype`` on a worker thread (:mod:`._compile`), once per
        configuration: the job's future, or None (the worker off, the default; a block, whose
        mask makes programs of its own; or a stand-in basis over ``COMPILE_AHEAD_BYTES``). The
        call is cheap; :meth:`__call__` waits for the job before its run."""
        if not _compile.enabled() or resolve_engine(self.engine, num_params):
            return None
        wdt = np.dtype(work_dtype(dtype))
        cfg, _, _ = plan(self, size, num_params, wdt, np.dtype(dtype), host=False)
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
        check_size(self.k, size, self.krylov, self.failure_prob is not None)

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
        return _exact.exact_eigs(operator, self.k, self.which, self.memory_budget_bytes)


#: The most memory a stand-in run for :meth:`Lanczos.compile_ahead` may hold (its basis and


COMPILE_AHEAD_BYTES = 2**30


def _standin_loss(x, d):
    return 0.5 * jnp.sum(d * x * x)


def _standin_run(probe: Lanczos, num_params: int, dtype) -> None:
    """``probe`` on diag(−1, 1, …, 1) of ``num_params`` coordinates in ``dtype``: two eigenvalues,
    so the recurrence resolves them at once, compiling every program of a run's common path."""
    d = jnp.ones(num_params, dtype).at[0].set(-1)
    x = jnp.zeros(num_params, dtype)
    op = LinearOperator(_Point(Hessian(_standin_loss), x, (d,)))
    run(probe, op, jax.random.key(0), None, None, quiet=True)



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
        raise TypeError(f"unknown option {_validate.unknown_names(unknown, known)} for "
                        f"method='{method.value}'; it takes {', '.join(known)}.")
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
