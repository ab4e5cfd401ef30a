"""Assertions for your own pytest suite: theory inequalities that fail with both sides, the
margin and the θ where they failed.

    from mhatheory.testing import assert_weakly_convex

    def test_my_model_is_weakly_convex():
        assert_weakly_convex(my_loss, params, batch, kappa=2.0, heads=8)

Every assertion is three-valued (:mod:`mhatheory.verdicts`): it passes only when the inequality
is *certified* to hold, and an eigenvalue's outer end is certified with a stated failure
probability over the random start, whatever the spectrum (:func:`assert_weakly_convex`). A
certified violation raises :class:`ViolatedError`; a check that could not be decided (an
interval that straddles the bound when the HVP budget is spent) raises
:class:`InconclusiveError`; both are :class:`InequalityError` (an ``AssertionError``), so neither
passes silently, and a test that expects a certified violation catches :class:`ViolatedError`
(``pytest.raises(InequalityError)`` would also accept an undecided check).

For identities (two computations of one quantity) :func:`assert_allclose` compares with the
tolerance of :data:`TOL` for the arrays' dtype. :data:`TOLERANCES` (read by :func:`tol`) is the
one tolerance table of the toolkit's own tests, by dtype and kind of comparison; a test that
needs another tolerance passes it explicitly with a comment saying why.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import jax
import numpy as np

from mhatheory import _validate, spectral
from mhatheory.verdicts import Interval, Verdict, compare


class InequalityError(AssertionError):
    """A checked inequality failed; the message holds both sides, the margin and θ."""


class InconclusiveError(InequalityError):
    """A checked inequality could not be decided numerically (never a pass)."""


class ViolatedError(InequalityError):
    """A checked inequality is certified to fail."""


#: Default absolute tolerance of an identity between O(1) quantities, by dtype: a few hundred
#: roundings at the dtype's ε (float64: ε = 2.2e-16 → 1e-12; float32 at the highest matmul
#: precision, which importing ``mhatheory`` sets: ε = 1.2e-7 → 1e-6). Relative tolerances are
#: the same numbers. The ``"identity"`` row of :data:`TOLERANCES`.
TOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}

#: The tolerance table of the toolkit's own tests, by dtype and kind of comparison (read it with
#: :func:`tol`). A test that needs another tolerance passes it explicitly, with a comment saying
#: why (a Monte-Carlo standard error, a solver's stopping rule, a bound stated by an issue).
#:
#: * ``"identity"``: two computations of one O(1) quantity (:data:`TOL`).
#: * ``"reordered"``: the same arithmetic in another order, fusion or vectorisation (jit's FMAs,
#:   vmapped against sequential, a gather fused into the matmul) on O(1) values: a few dozen ε
#:   (float64 1e-13 ≈ 450 ε; float32 1e-6 ≈ 8 ε).
#: * ``"dense"``: two automatic-differentiation routes to one matrix (HVPs against
#:   ``jax.hessian``, G + N against ∇²L̂), relative to the matrix's largest |entry| or
#:   eigenvalue: float64 1e-10 (chains of a few dozen operations, each rounding at ε, summed over
#:   P ≤ 10³); float32 1e-6 ≈ 8 ε₃₂ (a float32 HVP of the suite's probe problem is off by
#:   ≤ 1.5e-7·‖H‖ against the float64 Hessian of the same rounded inputs).
#: * ``"eig"``: a converged Lanczos extreme eigenvalue against the dense ``eigh`` of the same
#:   Hessian, relative to ‖∇²L̂‖₂: float64 1e-8 (the accuracy the probes promise:
#:   ``spectral.Lanczos`` accepts a Ritz pair at 1e-10 of the spread, leaving 100× for the dense
#:   reference's own rounding); float32 1e-6 (the float64 recurrence on float32 HVPs is
#:   as accurate as the HVPs: ≤ 1.5e-7·‖H‖ measured, as above).
TOLERANCES = {
    np.dtype(np.float64): {"identity": TOL[np.dtype(np.float64)], "reordered": 1e-13,
                           "dense": 1e-10, "eig": 1e-8},
    np.dtype(np.float32): {"identity": TOL[np.dtype(np.float32)], "reordered": 1e-6,
                           "dense": 1e-6, "eig": 1e-6},
}


def tol(dtype, kind: str = "identity") -> float:
    """The :data:`TOLERANCES` entry of ``dtype`` (a dtype, or an array whose dtype it is) and
    ``kind``.

    Example:
        >>> tol(np.float32, "eig"), tol(np.ones(2), "dense")
        (1e-06, 1e-10)
    """
    dtype = np.dtype(dtype if isinstance(dtype, (type, np.dtype, str)) else dtype.dtype)
    if dtype not in TOLERANCES:
        raise ValueError(f"no tolerances for dtype {dtype}; the table has "
                         f"{', '.join(str(d) for d in TOLERANCES)}.")
    row = TOLERANCES[dtype]
    if kind not in row:
        raise ValueError(f"kind must be one of {', '.join(map(repr, row))}, got {kind!r}.")
    return row[kind]


def tolerance(*arrays) -> float:
    """The :data:`TOL` entry of the least precise floating dtype among ``arrays`` (float64 when
    none is floating, e.g. for Python floats under x64).

    Example:
        >>> import numpy as np
        >>> tolerance(np.ones(3, np.float32), np.ones(3))
        1e-06
    """
    floats = [np.dtype(getattr(a, "dtype", None) or np.result_type(np.asarray(a)))
              for a in arrays]
    floats = [d for d in floats if np.issubdtype(d, np.floating)] or [np.dtype(np.float64)]
    return max(TOL.get(d, 1e-6) for d in floats)


def assert_allclose(actual, desired, *, atol: float | None = None, rtol: float = 0.0,
                    err_msg: str = "") -> None:
    """``|actual − desired| ≤ atol + rtol·|desired|`` elementwise, ``atol`` defaulting to the
    :data:`TOL` entry of the arrays' dtype (:func:`tolerance`); NaNs must match.

    Example:
        >>> assert_allclose(0.1 + 0.2, 0.3)
        >>> assert_allclose(1.0, 1.0 + 1e-9)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        AssertionError: ...
    """
    atol = tolerance(actual, desired) if atol is None else atol
    np.testing.assert_allclose(np.asarray(actual), np.asarray(desired), rtol=rtol, atol=atol,
                               err_msg=err_msg)


def fingerprint(params) -> str:
    """A short fingerprint of a parameter pytree: each leaf's path, shape and 2-norm."""
    parts = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        arr = np.asarray(leaf)
        parts.append(f"{jax.tree_util.keystr(path)}{list(arr.shape)} ‖·‖={np.linalg.norm(arr):.6g}")
    return "; ".join(parts)


def _as_interval(x, name: str = "value") -> Interval:
    """A number or a ``(lo, hi)`` pair as an :class:`Interval`; ``name`` (``lhs``/``rhs``) is
    named in the error for anything else, a NaN or a reversed pair."""
    def number(v):                              # a size-1 array (NumPy or JAX) of any shape
        v = np.asarray(v).reshape(()).item() if getattr(v, "size", None) == 1 else v
        if isinstance(v, (bool, np.bool_)):
            raise TypeError("a bool is not a number here")
        return float(v)

    try:
        lo, hi = ((number(v) for v in x) if isinstance(x, (tuple, list)) else (number(x),) * 2)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or a (lo, hi) interval as a tuple or list "
                         f"(an array is read as one number), got {x!r}.") from None
    if math.isnan(lo) or math.isnan(hi) or not lo <= hi:
        raise ValueError(f"{name} must be a number or a (lo, hi) interval with lo <= hi (no NaN), "
                         f"got {x!r}.")
    return Interval(lo, hi)


def _raise(verdict: Verdict, msg: str, where: str | None):
    if where:
        msg += f"\n  at θ: {where}"
    raise (InconclusiveError if verdict == Verdict.INCONCLUSIVE else ViolatedError)(msg)


def assert_inequality(lhs, rhs, *, relation: str = ">=", name: str = "inequality",
                      slack: float = 0.0, where: str | None = None) -> float:
    """Assert ``lhs >= rhs`` (or ``<=``), certified.

    ``lhs`` and ``rhs`` are numbers (a size-1 array counts as one) or ``(lo, hi)`` intervals
    known to contain them, as tuples or lists; ``slack``
    is the stated numerical uncertainty of ``lhs − rhs`` (it widens the comparison, it is never
    granted as leniency). Returns the certified margin (≥ 0). Raises :class:`InequalityError`
    when the inequality is certified to fail and :class:`InconclusiveError` when the intervals
    overlap the boundary.
    """
    slack = _validate.non_negative_float("slack", slack)
    if relation not in (">=", "<="):
        raise ValueError(f"relation must be '>=' or '<=', got {relation!r}.")
    a, b = _as_interval(lhs, "lhs"), _as_interval(rhs, "rhs")
    a = Interval(a.lo - slack, a.hi + slack)
    verdict, margin = compare(a, b, relation)
    if verdict != Verdict.HOLDS:
        word = "failed" if verdict == Verdict.VIOLATED else "is INCONCLUSIVE (not certified)"
        lhs, rhs = _fmt_pair(a, b)
        _raise(verdict, f"{name} {word}: lhs = {lhs} {relation} rhs = {rhs} "
               f"(worst-case margin {margin:.3g}, uncertainty {slack:.3g})", where)
    return margin


def _fmt(iv: Interval, digits: int = 12) -> str:
    lo, hi = iv.lo + 0.0, iv.hi + 0.0               # + 0.0: a bound −0.0 (κ = 0) prints as 0
    return f"{lo:.{digits}g}" if lo == hi else f"[{lo:.{digits}g}, {hi:.{digits}g}]"


def _fmt_pair(a: Interval, b: Interval) -> tuple[str, str]:
    """Both sides at 12 significant digits, or at 17 (every float64 apart) where 12 would print
    two different sides alike."""
    short = _fmt(a), _fmt(b)
    return short if short[0] != short[1] or a == b else (_fmt(a, 17), _fmt(b, 17))


def assert_weakly_convex(loss_fn, params, *args, kappa: float, heads: int,
                         method: str = "lanczos", key=None, v0=None,
                         failure_prob: float = spectral.DEFAULT_FAILURE_PROB,
                         **lanczos) -> float:
    """Assert λmin(∇²L̂(θ)) ≥ −κ/√H · L̂(θ) for ``L̂ = loss_fn(params, *args)``; returns the
    certified margin.

    With Lanczos (the default) λmin's lower end is the probabilistic one
    (:attr:`~mhatheory.spectral.EigResult.prob_interval`): the assertion passes only when the
    bound lies below an end that holds with probability ≥ 1 − ``failure_prob`` over the random
    start, whatever the spectrum (a pair closer than Lanczos resolves, a cluster, a dense bulk
    near 0); its upper end is the rigorous Rayleigh quotient. The run is sized by the margin it
    needs: its first cycle stops as soon as that interval lies wholly above or below the bound
    (−κ/√H·L̂ ± the rounding of L̂, :func:`loss_rounding`), or when ``max_hvps`` (default 2,000)
    is spent, and then the answer is :class:`InconclusiveError`, naming the HVPs the a-priori
    bound says a decision needs and the dense route where P fits, or, where λmin's estimate
    lies inside the bound's own rounding, that no eigenvalue method decides it (the loss's
    precision does: float32 params give L̂ about 5e-4 relative). So an assertion costs the
    HVPs its margin requires: many when the bound sits just below λmin, e.g. late in training
    where L̂ → 0 puts it inside the bulk of eigenvalues near 0. ``method="exact"`` (dense eigh,
    P² memory) is deterministic. ``lanczos`` options are the fields of
    :class:`~mhatheory.spectral.Lanczos`; ``key=None`` is a fresh random draw; ``v0`` a warm
    start (its random part carries the probability, see ``warm_start_mix``).
    """
    kappa = _validate.non_negative_float("kappa", kappa)
    heads = _validate.positive_int("heads", heads)
    probe = spectral.eig_probe(method, **lanczos)
    exact = isinstance(probe, spectral.Exact)
    failure_prob = spectral.Lanczos(failure_prob=failure_prob).failure_prob     # checked
    if failure_prob is None and not exact:
        raise ValueError("failure_prob=None turns off the probabilistic lower end this "
                         "assertion decides with; give a probability in (0, 1) (default "
                         f"{spectral.DEFAULT_FAILURE_PROB:g}), or method='exact' for a "
                         "deterministic answer.")
    if not exact:
        probe = dataclasses.replace(probe, failure_prob=failure_prob)
    key = spectral.resolve_key(key, allow_none=True)
    _validate.float_params(params)
    size, dtype = _validate.num_params(params)
    probe.check_start(v0, size)
    op = spectral.Hessian(loss_fn)
    op.check_inputs(params, args)                           # every input checked, once
    if exact:
        probe.check_fits(size, dtype)
    loss = float(loss_fn(params, *args))
    if not math.isfinite(loss):
        raise ValueError(f"the loss is {loss} at these params, so −κ/√H·L̂ is undefined: check "
                         "the loss function, its data and params.")
    dtype = jax.numpy.result_type(*jax.tree.leaves(params))
    floor = loss_rounding(1.0, dtype)         # the rounding of a loss of O(1) terms near 0
    if loss < -floor:
        # the bound rests on a self-bounded loss ℓ ≥ 0 (|ℓ''| ≤ c·ℓ): a loss shifted below 0
        # has the same Hessian and a bound of the other sign
        raise ValueError(f"the loss is {loss:.6g} < 0 at these params: λmin ≥ −κ/√H·L̂ is a "
                         "bound for a nonnegative loss (logistic, cross-entropy, squared "
                         "error); pass the loss without its constant shift.")
    # one probe: by size, as the conveniences (the dense route reads a linearisation)
    H = op.at(params, *args, linearised=True if exact else None)
    rhs = -kappa / math.sqrt(heads) * loss
    rhs_iv = Interval.around(rhs, loss_rounding(rhs, dtype))
    if loss < 0:
        # below 0 by rounding: the true L̂ ≥ 0 lies in [0, floor], the bound in [−κ/√H·floor, 0]
        rhs_iv = Interval(-kappa / math.sqrt(heads) * floor, 0.0)
    if exact:
        lo = probe(H)[0]
        iv, which = Interval(*lo.interval), "dense eigh, deterministic"
    else:
        with warnings.catch_warnings():
            # the deterministic interval's convergence does not enter the verdict
            warnings.simplefilter("ignore", spectral.ConvergenceWarning)
            lo = probe(H, key=key, v0=v0, target=rhs_iv)[0]
        iv = Interval(*lo.prob_interval)
        which = (f"probabilistic lower end, failure probability {failure_prob:g} over the "
                 f"random start ({lo.prob_bound}; first cycle stopped: {lo.prob_stop})")
    verdict, margin = compare(iv, rhs_iv)
    name = f"λmin(∇²L̂) ≥ −κ/√H·L̂ (κ={kappa:g}, H={heads}, L̂={loss:.6g})"
    if verdict != Verdict.HOLDS:
        word = "failed" if verdict == Verdict.VIOLATED else "is INCONCLUSIVE (not certified)"
        why = "" if verdict == Verdict.VIOLATED else _undecided_advice(lo, rhs_iv, H.size,
                                                                       dtype, failure_prob,
                                                                       exact)
        lam, bound = _fmt_pair(iv, rhs_iv)
        _raise(verdict, f"{name} {word}: λmin ∈ {lam} ({which}; Ritz value "
               f"{lo.value:.12g}, {lo.num_hvps} HVPs) against the bound {bound}; "
               f"worst-case margin {margin:.3g}{why}", fingerprint(params))
    return margin


def _undecided_advice(lo, rhs_iv: Interval, num_params: int, dtype, failure_prob,
                      exact) -> str:
    """What an undecided assertion would need: nothing an eigenvalue method can give where the
    estimate of λmin lies inside the bound's own rounding (:func:`loss_rounding` of L̂ in the
    params' dtype); else the a-priori HVP count for its margin and the dense route where P
    fits memory."""
    if rhs_iv.lo <= lo.value <= rhs_iv.hi:
        bits = np.finfo(np.dtype(dtype)).bits
        fix = ("pass the params as float64 (the same weights exactly; L̂ is then computed in "
               "float64) to narrow it" if bits < 64 else
               "κ sits at the threshold to float64's precision")
        other = "this one" if exact else "method='exact'"
        return (f"; λmin's estimate {lo.value:.12g} lies inside the bound's own rounding "
                f"(±{rhs_iv.width / 2:.3g}, from L̂ in {np.dtype(dtype).name}): no eigenvalue "
                f"method decides it, {other} included; {fix}")
    if exact:
        return ("; the bound is within the dense eigenvalue's rounding of λmin: no amount of "
                "arithmetic at this precision decides it")
    gap = lo.value - (rhs_iv.lo + rhs_iv.hi) / 2
    need = spectral.steps_needed(gap / lo.ritz_spread, spectral.start_threshold(
        num_params, failure_prob), 10 * num_params) if gap > 0 and lo.ritz_spread > 0 else None
    dense_ok = spectral.dense_bytes(num_params, dtype) <= spectral.DEFAULT_DENSE_BUDGET
    route = (f"method='exact' (P = {num_params:,} fits in memory)" if dense_ok else
             "a larger max_hvps")
    size = "" if need is None else (
        f"; the a-priori bound needs about {need:,} Lanczos steps to decide a margin of "
        f"{gap:.3g}" + (f", more than P = {num_params:,}" if need > num_params else ""))
    return f"; the run stopped on '{lo.prob_stop}'{size}; use {route}"


def loss_rounding(value: float, dtype) -> float:
    """A bound on the rounding of a loss-derived value: 4,500·ε·|value| (1e-12 relative in
    float64, as :data:`mhatheory.deora.ROUNDING`: a mean over n ≤ 10⁴ terms of depth-O(10)
    expressions, pairwise-summed, stays well inside it; about 5e-4 relative in float32)."""
    eps = float(np.finfo(np.dtype(dtype)).eps)
    return 4500 * eps * abs(float(value))
