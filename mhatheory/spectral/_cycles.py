"""One Lanczos run on an operator: its size and scheme, its cycles and restarts, the certified
intervals and the probabilistic ends of its result (:class:`~._result.EigResult`). The exact
route's result is :func:`~._exact.exact_eigs`.

**Cycle.** Up to ``krylov`` Lanczos steps (:mod:`._recurrence`), each one product of the
operator's compiled HVP and one step of the recurrence, driven from Python. The HVP is
compiled once per model whatever the probe, block or point; the recurrence runs on the
engine the probe's ``engine`` picks (:class:`~mhatheory.spectral.Engine`): in NumPy on the
host (the default on a CPU up to ``HOST_MAX_PARAMS`` coordinates), where it compiles nothing, so
a convenience's first call costs one compiled product (two for a linearised operator) and its
products; or as
compiled programs, once per Krylov size and P whatever the model (with
``MHATHEORY_BACKGROUND_COMPILE=1`` the conveniences compile them on a worker thread while they
linearise the model: :meth:`~._lanczos.Lanczos.compile_ahead`, :mod:`._compile`). The random
draws (the start, the rounding probe) come from NumPy generators seeded by the key's words, so
both engines start from the same vectors. Every
``check_every`` steps the Ritz estimates of the k wanted pairs are compared with tol·‖T‖ and
the cycle stops as soon as they meet it (the adaptive stop). The wanted Ritz vectors (and one
neighbour, for the gap) are formed from the stored basis, or, with ``store_basis=False``, by
replaying the recurrence (:func:`._restart.replay`, the same products again, O(P) memory).
Their true residuals ρ = ‖Hx − θx‖ are recomputed with k + 1 products; while one exceeds
tol·‖H‖ (‖H‖ estimated by the largest |Ritz value|) the run restarts, up to ``max_restarts``
times: a stored basis thick-restarts (Wu & Simon), keeping the Ritz vectors nearest the wanted
end and so what the cycle learned; a basis-free run restarts from the sum of the wanted Ritz
vectors. Whether the run converged, and so what it certifies, is decided by the recomputed
residual alone, exactly as with a fixed Krylov size.

**Certificate** (:mod:`._certificate`): from the final unit vectors and their own products,
with the HVP's rounding estimated from its linearity defect: λmin ∈ [θ̂ − τ − s, θ̂ + τ] with s the
Bauer–Fike ρ or the Kato–Temple ρ²/g (mirrored for λmax); an unconverged run claims only the
Rayleigh side (−∞, θ̂ + τ] and warns with a :class:`ConvergenceWarning`. Products that fail the
symmetry test (:func:`._certificate.asymmetry`: a fixed error the rounding estimate cannot see,
or an operator that is not symmetric) certify nothing: every interval is (−∞, ∞), with a
:class:`~mhatheory.precision.PrecisionWarning`. The probabilistic outer
end (``prob_interval``, :mod:`._probabilistic`) needs no assumption on the spectrum: it comes
from the first cycle's tridiagonal matrix, from the random start. The exact route's interval is
±(2‖Ĥ − Ĥᵀ‖_F + P·u·‖H‖): the asymmetry of the materialised columns estimates their rounding,
and P·u·‖H‖ covers ``eigh``'s backward error.

**Lower precision.** A float32 operator (under x64) is certified against the exact operator at
its float32 θ and data: its final vectors' products are compared with those of the operator
widened to float64 (:meth:`LinearOperator.widened`), which adds the rounding that is linear in
the vector (a fixed perturbation no linearity defect sees) to δ, at k + 1 more products in one
more compiled program; so is every product of the first cycle (one widened product per step),
whose errors F bound how far the operator the run saw is from the widened one on its Krylov
space, ‖Δ‖ ≤ 2‖F‖_F: the probabilistic end is moved out by 2‖Δ‖ (:mod:`._probabilistic`,
"Finite precision") and the certified interval's outer side by ‖Δ‖ (its Krylov assumption is
about the operator the run saw). The exact route decomposes the widened operator.

**Memory.** The stored basis costs ``krylov``·P numbers (and the thick-restart set up to 32
more); ``store_basis=None`` (the default) keeps it when it fits ``memory_budget_bytes`` (default
2 GiB) and otherwise runs basis-free, O(P) memory whatever ``krylov`` is
(:func:`~._options.lanczos_bytes`), and says so in :attr:`EigResult.store_basis`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from mhatheory import _validate, precision
from mhatheory.spectral import _compile, _restart
from mhatheory.spectral import _recurrence as rec
from mhatheory.spectral._certificate import asymmetry, certify, defect_vectors, intervals
from mhatheory.spectral._ends import prob_ends, resolved, warn_asymmetric, warn_unconverged
from mhatheory.spectral._operators import (
    LinearOperator,
)
from mhatheory.spectral._options import (
    DEFAULT_KRYLOV,
    DEFAULT_MAX_HVPS,
    SMALL_BLOCK,
    SMALL_OPERATOR,
    THICK_LAMBDA_MIN_MAX_PARAMS,
    Reortho,
    Which,
    host_rng,
    key_words,
    min_hvps,
    plan_memory,
    resolve_engine,
    start_vector,
)
from mhatheory.spectral._probabilistic import (
    DEFAULT_FAILURE_PROB,
    margin_factor,
    start_threshold,
)
from mhatheory.spectral._result import EigResult

#: The most Ritz pairs a thick restart keeps (their vectors are the selective set after it).
MAX_KEEP = 32

#: A lower-precision run compares its products with the widened operator's after this many
#: steps of its first cycle (and at its end), so that a fallback (``_widened_run``) spends
#: little of the budget on products it discards.
COMPARE_STEPS = 8


def check_size(k: int, size: int) -> None:
    """Lanczos needs one more coordinate than the pairs it is asked for (the gap's neighbour)."""
    if size <= 1:
        raise ValueError(f"the operator acts on {size} coordinate(s): Lanczos needs at least 2 "
                         "(the gap needs a neighbour pair); use method='exact'.")
    if k >= size:
        raise ValueError(f"k={k} must be smaller than the operator's size {size} for Lanczos "
                         "(its gap needs one more Ritz pair); method='exact' takes k up to the "
                         "size.")


def plan(probe, size: int, P: int, wdt, hvp_dtype, host: bool):
    """``(Recurrence, keep, budget)`` of ``probe``'s run (a :class:`~._lanczos.Lanczos`) on an
    operator of ``size`` coordinates among P
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
    # than the recurrence's, whose long cycle loses orthogonality at that precision's rate (a
    # float32 classifier's λmin and λmax take 1,300–2,000 HVPs unorthogonalised, 60–400 in full)
    low = jnp.finfo(hvp_dtype).eps > jnp.finfo(wdt).eps
    smallest = Which(probe.which) is Which.SMALLEST
    thick_single = (k == 1 and P <= THICK_LAMBDA_MIN_MAX_PARAMS
                  and ((smallest and not extend) or (low and extend)))
    # AUTO's FULL (its selective set none) where the budget keeps the basis, else as
    # plan_memory resolves AUTO
    small = P <= SMALL_OPERATOR
    full = (asked is Reortho.AUTO and probe.store_basis is not False
            and (small or size <= max(asked_krylov, SMALL_BLOCK) or thick_single))
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


def run(probe, op: LinearOperator, key, v0, target, quiet: bool = False
         ) -> list[EigResult]:
    """``probe`` (a :class:`~._lanczos.Lanczos`) on ``op`` (module docstring, "Cycle");
    ``quiet``: no ConvergenceWarning.

    The operator is scaled by a power of two, 2^−e ≈ 1/‖Hq₀‖, before the recurrence sees it
    (exactly, no rounding), and every number unscaled at the end: a Hessian of size 1e-170 (a
    logistic loss at margins of 400) or 1e+170 would otherwise underflow or overflow the sums of
    squares of the recurrence and the certificate."""
    k, which = probe.k, Which(probe.which)
    wdt = np.dtype(op.work_dtype)
    host = resolve_engine(probe.engine, op.P, op.platforms)
    cfg, keep, budget = plan(probe, op.size, op.P, wdt, op.hvp_dtype, host)
    xp = cfg.xp
    extend = probe.failure_prob is not None
    delta = DEFAULT_FAILURE_PROB if probe.failure_prob is None else probe.failure_prob
    mix = None if v0 is None else float(probe.warm_start_mix)
    c = start_threshold(op.size, delta, mix) if mix != 0 else 0.0
    factor = margin_factor(op.hvp_dtype)          # the ends' K (:mod:`._probabilistic`)
    c_end = (1 - 1 / factor) * c
    log_c = math.log(c_end) if c > 0 else math.inf
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
    # A lower-precision run compares its products with the widened ones after COMPARE_STEPS
    # steps and at the end of its first cycle, and falls back to the widened operator with the
    # rest of its budget (``_widened_run``), which the reserve keeps at least the shortest run
    # it can make; where the budget cannot hold a comparison too, the widened operator is
    # probed from the start.
    wide = op.widened()
    kk = min(k + 1, cfg.m)
    reserve = kk + 1 + min(2, kk)                        # residuals and the rounding estimate
    if wide is not op:
        reserve = max(reserve + kk, min_hvps(k, not cfg.store_basis))   # and widened products
        if budget - 2 - reserve < 2 * COMPARE_STEPS:
            return run(probe, wide, key, v0, target, quiet)
    w0 = vx.asarray(rec.on_engine(cfg, op.mv)(start))
    norm0 = float(_safe_norm(w0))
    if not math.isfinite(norm0):
        _check_finite(w0, "at the start vector")
    e = int(np.frexp(norm0)[1]) if norm0 > 0 else 0
    unit = 2.0 ** -e

    apply = rec.on_engine(cfg, lambda q: op.scaled_mv(q, unit))
    # a lower-precision operator is compared with its widened self at every vector of the first
    # cycle (the one its probabilistic end reads): ``errors[0]`` = Σ‖Ĥq − H̃q‖², so that
    # ‖F‖₂ ≤ ‖F‖_F = √errors for F = [Ĥq_j − H̃q_j]_j (module docstring, "Lower precision")
    errors = [0.0]
    first_apply = apply
    if wide is not op:
        wide_apply = rec.on_engine(cfg, lambda q: wide.scaled_mv(q, unit))

        def first_apply(q):
            w = apply(q)
            errors[0] += float(_safe_norm(vx.asarray(w) - vx.asarray(wide_apply(q)))) ** 2
            return w

        errors[0] = float(_safe_norm(w0 * unit - vx.asarray(wide_apply(start)))) ** 2

    def products(vecs):
        """H x for the rows x of ``vecs``, stacked."""
        return vx.stack([vx.asarray(apply(x)) for x in vecs])

    def defect_products(vecs):
        """The products the HVP's rounding estimate needs for the unit vectors ``vecs``."""
        return products(defect_vectors(vecs, z))

    lo_t, hi_t = (math.nan, math.nan) if target is None else (float(target[0]) * unit,
                                                              float(target[1]) * unit)
    state = rec.start(cfg, start, key=k_break, tol=0.5 * threshold,
                      prob=(log_c, lo_t, hi_t) if extend else None, hvp_dtype=op.hvp_dtype,
                      mask=op.mask)
    state = rec.advance(cfg, state, w0 * unit)
    hvps = 2 if wide is not op else 1
    steps = 1
    restarts = 0
    first = best = Hd = None
    cycle_start = start

    def widened_if_unresolved(state, spent):
        """The widened run (:func:`_widened_run`) if the lower-precision products differ from
        the widened ones by more than the acceptance threshold on the cycle so far (all of them
        when they vanish), after ``spent`` products; else None."""
        scale, perturbation = _scale(state), 2 * math.sqrt(errors[0])
        if perturbation <= threshold * scale:
            return None
        return _widened_run(probe, op, wide, key, v0, target, quiet, budget, spent,
                            perturbation, scale, threshold, t0)

    while True:
        j0 = int(state.j)
        room = budget - hvps - reserve
        # a basis-free replay costs the cycle's steps again, less its first
        limit = room if cfg.store_basis else (room - j0 + 1) // 2
        compare = first is None and wide is not op              # two products a step
        if compare:
            state = rec.run(cfg, first_apply, state, limit=min(COMPARE_STEPS, limit // 2))
            widened = widened_if_unresolved(state, hvps + 2 * (int(state.j) - j0))
            if widened is not None:
                return widened
            state = rec.run(cfg, first_apply, state,
                            limit=max(limit // 2 - (int(state.j) - j0), 0))
        else:
            state = rec.run(cfg, apply, state, limit=max(limit, 0))
        j = int(state.j)
        hvps += (j - j0) * (2 if compare else 1)
        steps += j - j0
        _check_finite(np.asarray(state.alpha)[:j], "along the run")
        if compare:
            widened = widened_if_unresolved(state, hvps)
            if widened is not None:
                return widened
        if first is None:
            first = (np.asarray(state.alpha), np.asarray(state.beta), j)
        vecs, extra = _restart.ritz_vectors(cfg, state, cycle_start, which, kk, apply, vx)
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
            state = _restart.thick_restart(cfg, state._replace(prob=_no_prob(xp, wdt)), keep,
                                           apply)
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
    reference = None
    if wide is not op:
        reference = vx.stack([vx.asarray(wide.scaled_mv(x, unit)) for x in vecs])
        hvps += len(vecs)
    theta, rho, tau, delta_hvp = (np.asarray(a) for a in certify(vecs, Hx, Hd, op.hvp_dtype,
                                                                    reference))
    seconds = time.perf_counter() - t0
    # ‖Δ‖ ≤ 2‖F‖_F: how far the operator the first cycle saw is from the widened one on its
    # Krylov space (module docstring, "Lower precision"); δ where that is larger
    perturbation = 2 * math.sqrt(errors[0])
    delta_run = max(float(delta_hvp), perturbation)
    big = 2.0 ** e                              # back to the operator's own units
    asym, allowed = (float(a) for a in asymmetry(vecs, Hx, z, Hd, delta_run))
    symmetric = asym <= allowed
    if not symmetric:
        warn_asymmetric(asym * big, allowed * big, delta_run * big, scale * big, op.hvp_dtype)
        delta_run = max(delta_run, asym / 2)
    low = float(probe.tol) < 100 * float(jnp.finfo(op.hvp_dtype).eps)
    converged = symmetric and bool(np.max(res[:k]) <= threshold * scale) and resolved(
        theta, np.asarray(vecs), k, threshold * scale, low)
    if symmetric and not converged and not quiet:
        warn_unconverged(res * big, k, threshold * scale * big, float(delta_hvp) * big,
                         restarts, cfg.m, hvps, op.hvp_dtype)
    iv = (intervals(which, theta, rho, tau, converged, perturbation) if symmetric
          else [((-math.inf, math.inf), 0.0)] * k)
    ends = prob_ends(which, first, c_end, delta_run if symmetric else math.inf, op.size, wdt,
                     op.hvp_dtype, iv, threshold * scale,
                     extend, target is not None and (lo_t, hi_t), budget, hvps, cfg.m)
    out = []
    for j in range(k):
        (lo, hi), gap = iv[j]
        (plo, phi), bound, stop, spread = ends[j]
        out.append(EigResult(
            float(theta[j]) * big, jax.device_put(vecs[j]), float(rho[j]) * big,
            (lo * big, hi * big),
            gap * big, hvps, restarts, converged, seconds, "lanczos", float(tau[j]) * big,
            delta_run * big, cfg.store_basis, cfg.reortho.value, steps,
            (plo * big, phi * big), delta if c > 0 else 1.0, bound, stop, spread * big, key))
    return out


def _widened_run(probe, op, wide, key, v0, target, quiet, budget, hvps, perturbation, scale,
                 threshold, t0) -> list[EigResult]:
    """``probe`` on ``wide``, the operator widened to the work dtype, after a first cycle on ``op``
    (``hvps`` products) whose products differ from the widened ones by ``perturbation`` on its
    Krylov space (the bound on ‖Δ‖, :mod:`._probabilistic`; ``scale``: ‖T‖, both in the run's
    units), more than the acceptance threshold: then no interval from ``op``'s products is
    narrower than ‖Δ‖, and where ‖Δ‖ exceeds the spectrum's own scale (a float32 operator whose
    products are exactly 0, or a fixed rounding E as large as H) its Krylov space can miss the
    widened operator's extreme eigenvalue altogether. The rest of the budget goes to the widened
    run; its results count every product."""
    if not quiet:
        low, wdt = np.dtype(op.hvp_dtype).name, np.dtype(op.work_dtype).name
        if scale > 0:
            by = f"by {perturbation / scale:.3g} of ‖H‖"
            fix = f"To probe with {low} products, pass tol above {perturbation / scale:.2g}."
        else:
            by, fix = "entirely (they are all 0)", f"No tol lets {low} products certify it."
        warnings.warn(
            f"the {low} products differ from the operator widened to {wdt} {by} on the first "
            f"Lanczos cycle, more than the acceptance threshold (tol + 100ε = {threshold:.3g}): "
            f"the probe ran on the widened operator instead ({wdt} products; the result "
            f"certifies the same weights and data in {wdt}). {fix}", precision.PrecisionWarning,
            stacklevel=_validate.user_stacklevel())
    if probe.max_hvps is not None or probe.failure_prob is not None:
        probe = dataclasses.replace(probe, max_hvps=budget - hvps)
    out = run(probe, wide, key, v0, target, quiet)
    seconds = time.perf_counter() - t0
    return [r._replace(num_hvps=r.num_hvps + hvps, seconds=seconds) for r in out]


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
