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
symmetry test (:func:`._certificate.symmetry_test`: a fixed error the rounding estimate cannot see,
or an operator that is not symmetric) certify nothing: every interval is (−∞, ∞), with a
:class:`~mhatheory.precision.PrecisionWarning`. The probabilistic outer
end (``prob_interval``, :mod:`._probabilistic`) needs no assumption on the spectrum: it comes
from the first cycle's tridiagonal matrix, from the random start. The exact route's interval is
±(2‖Ĥ − Ĥᵀ‖_F + P·u·‖H‖): the asymmetry of the materialised columns estimates their rounding,
and P·u·‖H‖ covers ``eigh``'s backward error.

**Lower precision.** A float32 operator (under x64) is certified against the exact operator at
its float32 θ and data, through the operator widened to float64 (:meth:`LinearOperator.widened`,
one more compiled program). Its first cycle runs on the widened products: its probabilistic
ends are the widened operator's (its own rounding estimate and K, :mod:`._probabilistic`,
"Finite precision"), and a run that converges at their rounding floor (tol + 100ε₆₄) computes
no float32 product. A run that does not compares the float32 products with the widened ones
at the k + 1 Ritz vectors (and takes the widened operator's rounding estimate there, for the
ends). Where 2‖F‖_F, F their differences, is within the float32 acceptance threshold
(tol + 100ε₃₂)·‖T‖, the run goes on with the float32 products (0.40–0.86× the cost of a
float64 one on a CPU, at P = 133,120 … 2,176): it ends there if the Ritz vectors' float32
residuals are within that threshold, else it restarts on them, aiming at it; its final vectors'
products are compared with the widened operator's, which adds the rounding that is linear in
the vector (a fixed perturbation no linearity defect sees) to δ, and the certified interval's
outer side moves out by 2‖F‖_F (its Krylov assumption is about the operator the later cycles
saw, estimated at the vectors they start from). Otherwise the probe says so (a
PrecisionWarning) and restarts on the widened operator, to its floor: a run on float64
products stopped at float32's threshold would pair float64's τ with a residual 10⁵ times
larger and rest its outer side on a Kato–Temple gap to a neighbouring Ritz value that has not
yet resolved its pair (such intervals missed λmax of a float32 quadratic with a top pair
1e-5 apart in 12 of 16 runs). The exact route decomposes the widened operator.

**Memory.** The stored basis costs ``krylov``·P numbers (and the thick-restart set up to 32
more); ``store_basis=None`` (the default) keeps it when it fits ``memory_budget_bytes`` (default
2 GiB) and otherwise runs basis-free, O(P) memory whatever ``krylov`` is
(:func:`~._options.lanczos_bytes`), and says so in :attr:`EigResult.store_basis`. A compiled
run takes over the basis an earlier compiled run of its Krylov size at the same point left
(:meth:`LinearOperator.swap_basis`, kept with the operator until it is freed: the last two
sizes, so that a λmin's 81 rows and a λmax's 41 alternate), and each explicit
restart its cycle's: on a CPU a fresh XLA buffer's pages are mapped on first touch, 140 ms of
a 0.6 s λmax at P = 1,056,768 for its 41 rows (:func:`._recurrence.reusable`).
"""

from __future__ import annotations

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
from mhatheory.spectral._certificate import (
    PARALLEL,
    certify,
    intervals,
    shifted_vectors,
    symmetry_test,
)
from mhatheory.spectral._ends import prob_ends, resolved, warn_asymmetric, warn_unconverged
from mhatheory.spectral._operators import LinearOperator, check_finite
from mhatheory.spectral._options import (
    DEFAULT_KRYLOV,
    DEFAULT_MAX_HVPS,
    RESTART_KRYLOV,
    SMALL_BLOCK,
    SMALL_COMPILED_OPERATOR,
    SMALL_OPERATOR,
    THICK_LAMBDA_MIN_MAX_PARAMS,
    Reortho,
    Which,
    basis_budget,
    host_rng,
    key_words,
    krylov_error,
    lanczos_bytes,
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


def check_size(k: int, size: int, krylov: int | None = None, extend: bool = False) -> None:
    """Lanczos needs one more coordinate than the pairs it is asked for (the gap's neighbour),
    and, with the default Krylov size (``krylov=None``), more vectors per cycle than k: the
    whole operator where :func:`plan` spans it (at most ``SMALL_OPERATOR`` coordinates), else
    ``DEFAULT_KRYLOV`` unless ``extend`` (a run sized for its probabilistic end grows its cycle
    to the HVP budget); :func:`run` checks its plan's size."""
    if size <= 1:
        raise ValueError(f"the operator acts on {size} coordinate(s): Lanczos needs at least 2 "
                         "(the gap needs a neighbour pair); use method='exact'.")
    if k >= size:
        raise ValueError(f"k={k} must be smaller than the operator's size {size} for Lanczos "
                         "(its gap needs one more Ritz pair); method='exact' takes k up to the "
                         "size.")
    if krylov is None and not extend and size > SMALL_OPERATOR and k >= DEFAULT_KRYLOV:
        raise krylov_error(k, f"the default krylov={DEFAULT_KRYLOV} (for an operator of more "
                              f"than {SMALL_OPERATOR:,} coordinates)")


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
    thick restart from them stagnates. A single λmin restarting so gets cycles of
    ``RESTART_KRYLOV`` where its basis fits the memory budget."""
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
    # than the recurrence's, whose long cycles on them (restarts; every cycle of a model that
    # computes in float32 whatever its parameters) lose orthogonality at that precision's rate
    # (a float32 classifier's λmin and λmax took 1,300–2,000 HVPs unorthogonalised, 60–400 in
    # full, when its first cycle ran on float32 products)
    low = jnp.finfo(hvp_dtype).eps > jnp.finfo(wdt).eps
    smallest = Which(probe.which) is Which.SMALLEST
    thick_single = (k == 1 and P <= THICK_LAMBDA_MIN_MAX_PARAMS
                  and ((smallest and not extend) or (low and extend)))
    # AUTO's FULL (its selective set none) where the budget keeps the basis, else as
    # plan_memory resolves AUTO
    small = P <= (SMALL_OPERATOR if host else SMALL_COMPILED_OPERATOR)
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
    if (smallest and k == 1 and keep == 0 and store_basis and asked is Reortho.AUTO
            and probe.krylov is None and not extend and krylov < RESTART_KRYLOV <= size
            and lanczos_bytes(P, RESTART_KRYLOV, k, wdt, True)
            <= basis_budget(probe.memory_budget_bytes)):
        krylov = RESTART_KRYLOV                 # fewer restarts from the Ritz vector
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
    if cfg.m <= k:
        raise krylov_error(k, f"the default krylov={cfg.m} for this operator")
    xp = cfg.xp
    extend = probe.failure_prob is not None
    delta = DEFAULT_FAILURE_PROB if probe.failure_prob is None else probe.failure_prob
    mix = None if v0 is None else float(probe.warm_start_mix)
    c = start_threshold(op.size, delta, mix) if mix != 0 else 0.0
    # the ends' K (:mod:`._probabilistic`), of the first cycle's (widened) products
    factor = margin_factor(op.widened().hvp_dtype)
    c_end = (1 - 1 / factor) * c
    log_c = math.log(c_end) if c > 0 else math.inf
    threshold = float(probe.tol) + 100 * float(jnp.finfo(op.hvp_dtype).eps)
    t0 = time.perf_counter()
    words = key_words(key)
    start = _start(words, v0, float(probe.warm_start_mix), op.mask, op.P, wdt)
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
    # A lower-precision operator's first cycle runs on its widened self, and its restarts on
    # its own products where those agree with the widened ones at the first cycle's Ritz
    # vectors (module docstring, "Lower precision"); ``cur``: the operator of the products.
    wide = op.widened()
    cur = wide
    kk = min(k + 1, cfg.m)
    nd = 1 + min(2, kk)                         # the rounding estimate's products, at most
    reserve = kk + nd                           # residuals and the rounding estimate
    w0 = vx.asarray(rec.on_engine(cfg, wide.mv)(start))
    norm0 = float(_safe_norm(w0))
    if not math.isfinite(norm0):
        check_finite(w0, "at the start vector", op)
    e = int(np.frexp(norm0)[1]) if norm0 > 0 else 0
    unit = 2.0 ** -e

    def scaled(o):
        """``o``'s products scaled by ``unit``, on the run's engine."""
        return rec.on_engine(cfg, lambda q: o.scaled_mv(q, unit))

    apply = wide_apply = scaled(wide)
    start_x = vx.asarray(start)

    def products(vecs, apply):
        """H x for the rows x of ``vecs`` by ``apply``, stacked."""
        return vx.stack([vx.asarray(apply(x)) for x in vecs])

    def defect_products(vecs, apply):
        """``(z, products, HVPs)`` of the HVP's rounding estimate at the unit vectors ``vecs``
        (:func:`~._certificate.defect_vectors`): z is the run's start, whose widened product
        the first step made, unless the first vector is nearly parallel to it
        (:data:`~._certificate.PARALLEL`), where it is the independent draw. On the
        lower-precision products of a switched run, Ĥ(x+z) − H̃z − Ĥx = e(x+z) − e(x) − ẽ(z)
        holds the perturbation's linear part at z too, E(x+z) − Ex = Ez, besides the
        rounding: an estimate at least as large as on its own products."""
        parallel = abs(float(vecs[0] @ start_x)) > PARALLEL
        zz = vx.asarray(_independent_z(words, op.mask, op.P, wdt)) if parallel else start_x
        shifted = shifted_vectors(vecs, zz)                 # defect_vectors less z itself
        if parallel:
            return zz, products([zz, *shifted], apply), 1 + len(shifted)
        return zz, vx.concatenate([w0[None] * unit, products(shifted, apply)]), len(shifted)

    lo_t, hi_t = (math.nan, math.nan) if target is None else (float(target[0]) * unit,
                                                              float(target[1]) * unit)
    # the run aims at, and accepts at, the rounding floor of the products it runs on: the
    # widened operator's, after a switch the operator's own (``threshold``)
    aim = aim0 = float(probe.tol) + 100 * float(jnp.finfo(wide.hvp_dtype).eps)
    state = rec.start(cfg, start, key=k_break, tol=0.5 * aim,
                      prob=(log_c, lo_t, hi_t) if extend else None, hvp_dtype=wide.hvp_dtype,
                      mask=op.mask, basis=(op.swap_basis(shape=rec.basis_shape(cfg))
                                           if rec.takes_basis(cfg) else None))
    state = rec.advance(cfg, state, w0 * unit)
    hvps = steps = 1
    restarts = 0
    first = best = Hd = None
    # a switched run's 2‖F‖_F at the switch, and the widened operator's rounding estimate there
    perturbation, delta_first = 0.0, None
    compared, reference = False, None
    cycle_start = start
    # a lower-precision run keeps its comparison at the Ritz vectors (and the widened rounding
    # estimate there) out of the first cycle's steps, so that a budget-bound run can end on the
    # lower-precision products within their threshold, where that leaves the cycle at least as
    # many steps as the comparison takes
    switch = kk + nd if wide is not op else 0
    if budget - hvps - reserve < 2 * switch:
        switch = 0

    def held():
        """The products the rest of the run keeps back from its cycles."""
        return reserve + (0 if compared or cur is not wide else switch)

    while True:
        j0 = int(state.j)
        room = budget - hvps - held()
        # a basis-free replay costs the cycle's steps again, less its first
        limit = room if cfg.store_basis else (room - j0 + 1) // 2
        state = rec.run(cfg, apply, state, limit=max(limit, 0))
        j = int(state.j)
        hvps += j - j0
        steps += j - j0
        check_finite(np.asarray(state.alpha)[:j], "along the run", op)
        if first is None:
            first = (np.asarray(state.alpha), np.asarray(state.beta), j)
            cut = not bool(state.done)
        vecs, extra = _restart.ritz_vectors(cfg, state, cycle_start, which, kk, apply, vx)
        hvps += extra
        Hx = products(vecs, apply)
        hvps += len(vecs)
        res = np.asarray(_residuals(vecs, Hx))
        scale = _scale(state)
        done = bool(np.max(res[:k]) <= aim * scale)
        if not done and cur is wide and wide is not op and not compared:
            # the lower-precision products at the Ritz vectors: within the threshold, the run
            # ends on them (its residuals there within it) or restarts on them, and the widened
            # operator's rounding estimate there serves the first cycle's ends
            within = bool(np.max(res[:k]) <= threshold * scale)
            # ending here: the comparison and both rounding estimates; restarting: the
            # comparison, the widened estimate, the next cycle's end and its widened products
            cost = kk + 2 * nd if within else kk + nd + reserve + kk + 2
            if (within or restarts < probe.max_restarts) and hvps + cost <= budget:
                compared = True
                low_apply = scaled(op)
                low = products(vecs, low_apply)
                hvps += len(vecs)
                F = 2 * float(_safe_norm(low - Hx))                          # 2‖F‖_F
                low_res = np.asarray(_residuals(vecs, low))
                done = bool(np.max(low_res[:k]) <= threshold * scale)
                if F <= threshold * scale and (done or hvps + nd + reserve + kk + 2 <= budget):
                    _, Hd, n = defect_products(vecs, apply)
                    hvps += n
                    delta_first = float(certify(vecs, Hx, Hd, wide.hvp_dtype)[3])
                    Hd = None
                    cur, apply, aim, perturbation = op, low_apply, threshold, F
                    if done:
                        reference, Hx, res = Hx, low, low_res
                    else:
                        reserve += kk                # the final vectors' widened products
                        state = state._replace(
                            hvp_eps=xp.asarray(float(jnp.finfo(op.hvp_dtype).eps) / 2, wdt),
                            tol=xp.asarray(0.5 * aim, wdt))
                else:
                    done = False
                    if F > threshold * scale and not quiet:
                        _warn_widened(op, F, scale, threshold)
        if done or restarts >= probe.max_restarts or hvps + held() + 2 > budget:
            break
        # a restart that did not halve the residual: a thick one falls back to an explicit one,
        # and a residual within δ, the HVP's measured rounding, is the products' noise, which
        # no restart lowers (a Hessian that is a small difference of large terms): stop there,
        # as where the estimate leaves no room for a restart
        stalled = best is not None and np.max(res[:k]) > 0.5 * best
        if stalled:
            zz, Hd, n = defect_products(vecs, apply)
            hvps += n
            if (np.max(res[:k]) <= float(certify(vecs, Hx, Hd, cur.hvp_dtype)[3])
                    or hvps + held() + 2 > budget):
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
                              tol=0.5 * aim, prob=None, hvp_dtype=cur.hvp_dtype,
                              mask=op.mask, basis=_basis(cfg, state))
    if rec.takes_basis(cfg):              # a host run leaves the operator's basis alone
        op.swap_basis(_basis(cfg, state))
    if Hd is None:
        zz, Hd, n = defect_products(vecs, apply)
        hvps += n
    # a switched run's final vectors against the widened operator's products (``certify``)
    if cur is not wide and reference is None:
        reference = products(vecs, wide_apply)
        hvps += len(vecs)
    *bounds, sym = certify(vecs, Hx, Hd, cur.hvp_dtype, reference, zz)
    theta, rho, tau, delta_hvp = (np.asarray(a) for a in bounds)
    seconds = time.perf_counter() - t0
    delta_run = max(float(delta_hvp), perturbation)
    big = 2.0 ** e                              # back to the operator's own units
    asym, allowed = (float(a) for a in symmetry_test(sym, delta_run))
    symmetric = asym <= allowed
    if not symmetric:
        warn_asymmetric(asym * big, allowed * big, delta_run * big, scale * big, cur.hvp_dtype)
        delta_run = max(delta_run, asym / 2)
    # accepted at the rounding floor of the products the run ended on
    low = float(probe.tol) < 100 * float(jnp.finfo(cur.hvp_dtype).eps)
    converged = symmetric and bool(np.max(res[:k]) <= aim * scale) and resolved(
        theta, np.asarray(vecs), k, aim * scale, low)
    if symmetric and not converged and not quiet:
        warn_unconverged(res * big, k, aim * scale * big, float(delta_hvp) * big,
                         restarts, cfg.m, hvps, cur.hvp_dtype)
    iv = (intervals(which, theta, rho, tau, converged, perturbation) if symmetric
          else [((-math.inf, math.inf), 0.0)] * k)
    # the ends are the first cycle's, on the widened operator: its own rounding estimate
    delta_ends = delta_run if delta_first is None else delta_first
    ends = prob_ends(which, first, c_end, delta_ends if symmetric else math.inf, op.size, wdt,
                     wide.hvp_dtype, iv, aim0 * scale,
                     extend, target is not None and (lo_t, hi_t), cut, cfg.m)
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


def _warn_widened(op, perturbation: float, scale: float, threshold: float) -> None:
    """The PrecisionWarning of a lower-precision run whose products differ from the widened
    operator's at its first cycle's Ritz vectors by ``perturbation`` (2‖F‖_F, in the run's
    units, ``scale``: ‖T‖) more than the acceptance threshold, so that its restarts stay on the
    widened operator: no interval from its own products would be narrower than ‖Δ‖, and where
    ‖Δ‖ exceeds the spectrum's own scale (a float32 operator whose products are exactly 0, or
    a fixed rounding E as large as H) its Krylov space can miss the widened operator's extreme
    eigenvalue altogether."""
    low, wdt = np.dtype(op.hvp_dtype).name, np.dtype(op.work_dtype).name
    if scale > 0:
        by = f"by {perturbation / scale:.3g} of ‖H‖"
        fix = f"To restart with {low} products, pass tol above {perturbation / scale:.2g}."
    else:
        by, fix = "entirely (they are all 0)", f"No tol lets {low} products certify it."
    warnings.warn(
        f"the {low} products differ from the operator widened to {wdt} {by} at the first "
        f"Lanczos cycle's Ritz vectors, more than the acceptance threshold (tol + 100ε = "
        f"{threshold:.3g}): the probe's restarts ran on the widened operator instead of {low} "
        f"products, as its first cycle did ({wdt} products; the result certifies the same "
        f"weights and data in {wdt}). {fix}", precision.PrecisionWarning,
        stacklevel=_validate.user_stacklevel())


def _start(words, v0, mix, mask, P: int, dtype):
    """The run's unit start vector (:func:`start_vector`), drawn on the host from the key's words
    (:func:`key_words`), so every engine starts from the same vector."""
    start = start_vector(P, host_rng(words, 1), v0, dtype, mix, mask)
    if not np.any(start):
        raise ValueError("v0 is zero on the coordinates of this block (and warm_start_mix=0 "
                         "adds no random part): pass a v0 that overlaps the block, "
                         "warm_start_mix > 0, or v0=None.")
    return start / np.linalg.norm(start)


def _independent_z(words, mask, P: int, dtype):
    """The rounding estimate's own unit random vector z (on the block when ``mask``), drawn from
    the key's words only where the start cannot serve (``defect_products``)."""
    z = host_rng(words, 2).standard_normal(P).astype(dtype)
    if mask is not None:
        z = z * mask
    return z / np.linalg.norm(z)


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
    """‖v‖ without under- or overflow in the squares: max|v|·‖v/max|v|‖ (0 for v = 0, NaN where
    v holds a NaN)."""
    s = xp.max(xp.abs(v))
    return xp.where(s > 0, s * xp.linalg.norm(v / xp.where(s > 0, s, 1.0)), s)


def _basis(cfg, state):
    """``(Q, rows)`` of a finished cycle, for the next cycle or run to take over
    (:func:`._recurrence.start`); None where nothing is to be taken
    (:func:`~._recurrence.reusable`). Rows past j are zero in every state (a thick restart
    zeroes what it drops)."""
    basis = (state.Q, int(state.j) + 1)
    return basis if rec.reusable(cfg, basis) else None


def _no_prob(xp, dtype):
    return xp.asarray([np.inf, np.nan, np.nan], dtype)


def _scale(state) -> float:
    """‖H‖ estimated by the largest |Ritz value| of the current T."""
    j = int(state.j)
    a, b = np.asarray(state.alpha)[:j], np.asarray(state.beta)[1:j]
    return float(np.max(np.abs(scipy.linalg.eigvalsh_tridiagonal(a, b)))) if j > 1 \
        else float(abs(a[0]))
