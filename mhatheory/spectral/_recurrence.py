"""The symmetric Lanczos recurrence: Krylov basis, tridiagonal T, four ways to keep the basis
orthogonal, and an adaptive stop (its restarts and second pass: :mod:`._restart`).

m steps from a unit q_0 give orthonormal(-ish) q_0 … q_{m−1} and T = tridiag(β, α, β) with

    H q_j = β_j q_{j−1} + α_j q_j + β_{j+1} q_{j+1},      H Qᵀ = Qᵀ T + β_m q_m e_mᵀ

(Q's rows are the q_j; exact in exact arithmetic, up to O(ε‖H‖) rounding otherwise). An
eigenpair (θ, s) of T gives the Ritz pair (θ, x = Qᵀ s) whose residual is
‖Hx − θx‖ = β_m |s_{m−1}| (the Ritz estimate: no HVP needed), which is what the adaptive stop
watches. Nothing in this module is certified: :mod:`._certificate` certifies the final vectors
from their own HVPs, whatever happened here.

**One step, two drivers, two engines.** :func:`step` is everything a Lanczos step does
*after* its HVP w = Hq_j: a pure function of a :class:`State` and w, written once against an
array namespace (``Recurrence.xp``). :func:`run` drives it from Python, calling the operator's
own compiled HVP between steps (the probes: one compiled HVP per model serves every probe, block
and restart), on one of two engines (:class:`~mhatheory.spectral.Engine`):

* **host** (``Recurrence.host``): the state is NumPy arrays and the step runs in NumPy,
  updating its own vectors in place (:mod:`._ops`), the tridiagonal eigenproblems in LAPACK
  (:mod:`._tridiagonal`); nothing is compiled but the HVP, and no compiled step is
  dispatched per HVP. On a CPU at small P this is what a probe's time is made of: a first
  λmin on Deora at P = 2,176 compiled 25 programs for 2.5 s around an HVP that compiles in
  0.35 s, and a warm call spent as long dispatching its steps as computing its HVPs
  (``experiments/bench/bench_cold.py``, ``bench_peers.py``);
* **compiled**: the step is compiled once per :class:`Recurrence` (the Krylov size, P, the
  dtype and the switches), whatever the operator, with the state donated so the basis is
  updated in place; the vectors stay on the device (an accelerator), and past about 2·10⁵
  coordinates on a CPU its fused vector work beats NumPy's passes (``HOST_MAX_PARAMS``).

Both draw the same random numbers from one key and run the same recurrence; their numbers
differ by rounding, which can tip a decision sitting at its threshold (a reorthogonalisation,
a stop) and so the step count. :func:`lanczos` drives the compiled step inside one program with
``lax.while_loop`` (vmapped runs over many starts, :mod:`._coverage`).

A third design was measured and not taken: a whole cycle in one program per model
(``lax.while_loop`` over the product and the step). Inside a loop the product costs about
77 µs at P = 2,176 (Deora, float64, CPU), against 150–190 µs called from Python and waited
for, which ARPACK pays too; but the adaptive checks cannot run in it cheaply (an XLA ``eigh`` of
T, dense or by bisection, 115–140 µs a check; a host callback 320 µs), and run in chunks
between host checks (5 steps, then 1 when near) the first cycle of a warm λmax took 4.8 ms
against the host engine's 6.1 ms, which would bring the whole call from 8.9 ms to about 7.6 ms:
ARPACK's time on the same products in that run (7.6 ms), for one more compiled program per
model (the product inside the loop) that a first call would pay or wait for.

**Adaptive stop.** Every ``every`` steps the recurrence computes the eigenpairs of T_j, and
stops once the Ritz estimates of the k wanted pairs are ≤ ``tol``·max|θ| (and at least k + 1
steps were taken, so the neighbour pair that bounds the gap exists). A check decomposes the
leading T_j on the host (:func:`~._tridiagonal.ritz`, LAPACK: about 1 ms at j = 200) and
needs no HVP. Once the wanted estimates are within :data:`NEAR` (10³) times the threshold, the
next check comes one step later: Lanczos' estimates for an extreme pair fall by a growing
factor a step, so the few steps from there each get a check, and the stop wastes no HVP
where a check every ``every`` steps would waste up to ``every − 1`` (on Deora at P = 2,176 and
8,448 it saves 1–4 HVPs of a λmax or λmin; a check costs about one tenth of an HVP there).
Past :data:`LONG_RUN` steps the checks thin out geometrically.

**Orthogonality** (:class:`~mhatheory.spectral.Reortho`). In floating point the q_j lose
orthogonality as soon as a Ritz pair converges (Paige 1971: y_iᵀ q_{j+1} =
γ_i/(β_{j+1}|s_{j,i}|) with |γ_i| = O(ε‖H‖), so the loss grows in the direction of each converged
Ritz vector y_i and in no other). Without a remedy, ghost copies of converged Ritz values appear
in T.

Restarts (thick, keeping Ritz pairs) and the basis-free second pass are :mod:`._restart`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mhatheory.spectral import _compile
from mhatheory.spectral import _ops as ops
from mhatheory.spectral._options import Reortho, Which, as_enum
from mhatheory.spectral._probabilistic import breakdown_floor, posterior_gap
from mhatheory.spectral._tridiagonal import ritz, tridiagonal, wanted

#: Ritz pairs with Ritz estimate ≤ this × √ε·‖T‖ join the selective set (see ``Reortho``), and
#: at most :data:`SELECTIVE_MAX` × ‖T‖: with float32 products √ε₃₂ = 3.5e-4, and the margin alone
#: would admit every Ritz pair, converged or not; projecting each new vector against unconverged
#: Ritz vectors breaks the three-term recurrence (β grows ×10 a step to overflow on a float32
#: classifier, its ends at 1e+134).
SELECTIVE_MARGIN = 1e4
SELECTIVE_MAX = 1e-2
#: Rows of the Krylov basis handled per block by Gram–Schmidt: only rows 0…j are filled, so
#: the work is on the smallest multiple of this that holds them.
BLOCK = 16
#: ``FULL`` orthogonalises a second time only when the first Gram–Schmidt pass left less than
#: this fraction of the vector's norm (the criterion of Daniel, Gragg, Kaufman & Stewart 1976,
#: ARPACK's 0.717 ≈ 1/√2): against an orthonormal basis, a pass that removes little leaves a
#: vector orthogonal to working precision, and one that removes much is repeated.
DGKS = 1 / math.sqrt(2)
#: Steps after which the adaptive checks thin out geometrically (:class:`Recurrence`'s
#: ``every``): a check decomposes T on the host, about 1 ms at 200 steps and 15 ms at 1,000.
LONG_RUN = 256
#: A check whose wanted Ritz estimates are within this factor of the stopping threshold
#: schedules the next check one step later, not ``every`` steps later (module docstring,
#: "Adaptive stop").
NEAR = 1e3


@dataclasses.dataclass(frozen=True)
class Recurrence:
    """The static shape of a run: one compiled :func:`step` per value.

    Attributes:
        m: the most steps (the Krylov size); size: P, the length of the vectors.
        dtype: the recurrence's dtype (float64 for a float32 model when x64 is on).
        reortho: a :class:`~mhatheory.spectral.Reortho` other than ``AUTO``.
        store_basis: keep Q (``[m + 1, P]``); False needs ``Reortho.NONE``.
        which: the end of the spectrum the adaptive stop watches.
        k: how many of the most extreme pairs at the ``which`` end must meet the tolerance.
        every: steps between two adaptive checks up to :data:`LONG_RUN` steps; past it a check
            comes every ``steps // 16`` steps (rounded to ``every``), so a long run spends
            O(log m) checks of O(steps²) each and stops at most 1/16 late.
        adaptive: stop on the Ritz estimates (``State.tol``); False runs all m steps.
        prob: stop also on the probabilistic outer end (``State.prob``, see :func:`start`).
        slots: the size of the selective set (SELECTIVE: k + 3, or its ``keep`` when it may
            thick restart; FULL needs none, since every step is orthogonalised against the
            whole basis, whose first rows after a thick restart span the kept Ritz vectors).
        host: run the recurrence on the host in NumPy (module docstring, "Two engines"): the
            state's arrays are NumPy arrays and nothing but the operator's HVP is compiled.
    """

    m: int
    size: int
    dtype: str
    reortho: Reortho = Reortho.NONE
    store_basis: bool = True
    which: Which = Which.SMALLEST
    k: int = 1
    every: int = 5
    adaptive: bool = True
    prob: bool = False
    slots: int = 0
    host: bool = False

    @property
    def xp(self):
        """The array namespace of the state: ``numpy`` on the host, else ``jax.numpy``."""
        return np if self.host else jnp

    def __post_init__(self):
        if not self.store_basis and self.reortho is not Reortho.NONE:
            raise ValueError(f"reortho={self.reortho.value!r} needs the Krylov basis; without "
                             "it (store_basis=False) only reortho='none' is possible.")


class State(NamedTuple):
    """A run between two steps (all arrays; the switches are in :class:`Recurrence`)."""

    j: jax.Array            # steps taken; q is q_j
    Q: jax.Array            # [m + 1, P] basis rows (or [0, P] basis-free)
    q: jax.Array
    q_prev: jax.Array
    alpha: jax.Array        # [m]
    beta: jax.Array         # [m + 1]
    om: jax.Array           # ω estimates of |q_{j}ᵀq_i| (PARTIAL, SELECTIVE)
    om_prev: jax.Array
    force: jax.Array        # reorthogonalise the next vector too
    anorm: jax.Array        # ‖T‖ estimate (Gershgorin)
    count: jax.Array        # Gram–Schmidt passes
    Y: jax.Array            # [slots, P] the selective set
    y_count: jax.Array
    y_est: jax.Array
    done: jax.Array
    next_check: jax.Array
    key: jax.Array          # draws the directions that continue after a breakdown
    tol: jax.Array          # the adaptive stop's tolerance
    prob: jax.Array         # [log c, lo, hi] of the probabilistic stop (Recurrence.prob)
    hvp_eps: jax.Array      # unit roundoff of the HVP's dtype (the stop rule's margin)
    support: jax.Array      # [P] 1 on the coordinates a block's operator acts on ([0]: all)


class Krylov(NamedTuple):
    """The outcome of a run.

    Attributes:
        basis: ``[m + 1, P]`` rows q_0 … q_m (rows > ``steps`` are zero; row ``steps`` is
            ``last``), or None when the basis was not stored.
        alpha: ``[m]`` diagonal of T (entries ≥ ``steps`` are zero).
        beta: ``[m + 1]``, β_0 = 0, β_j couples q_{j−1} and q_j; the residual of the recurrence
            is β_steps q_steps.
        last: q_steps, the next Lanczos vector.
        steps: steps (HVPs) taken, ≤ m: fewer when the adaptive stop or a breakdown ended it.
        reorthogonalisations: Gram–Schmidt passes against the whole basis.
    """

    basis: jax.Array | None
    alpha: jax.Array
    beta: jax.Array
    last: jax.Array
    steps: jax.Array
    reorthogonalisations: jax.Array


def krylov(cfg: Recurrence, state: State) -> Krylov:
    """The :class:`Krylov` of a finished run."""
    return Krylov(state.Q if cfg.store_basis else None, state.alpha, state.beta, state.q,
                  state.j, state.count)


def fold(cfg: Recurrence, key, i):
    """The key ``i`` of a family: ``fold_in`` of a JAX key, or on the host engine the seed
    words with ``i`` appended (a ``numpy`` ``SeedSequence``)."""
    return np.append(key, np.uint64(int(i))) if cfg.host else jax.random.fold_in(key, i)


def fresh_direction(cfg: Recurrence, key, i, support, P: int, dtype, project):
    """``(z, ‖z‖, spent)``: the direction a run goes on along after a breakdown, a standard
    normal draw (key ``i`` of ``key``'s family) on ``support`` (a block's coordinates; empty:
    all), projected off the basis by ``project``; ``spent`` when nothing is left of it (the
    basis spans the block or the space: the run ends, an invariant subspace)."""
    xp = cfg.xp
    z = _normal(cfg, key, i, P, dtype)
    if support.shape[0]:
        z = z * support
    drawn = xp.linalg.norm(z)
    z = project(z)
    nz = xp.linalg.norm(z)
    return z, nz, nz <= xp.sqrt(xp.finfo(dtype).eps) * drawn


def _normal(cfg: Recurrence, key, i, size: int, dtype):
    """A standard normal ``size``-vector from the key ``i`` of ``key``'s family."""
    if cfg.host:
        return np.random.default_rng(fold(cfg, key, i)).standard_normal(size).astype(dtype)
    return jax.random.normal(fold(cfg, key, i), (size,), dtype)


def start(cfg: Recurrence, v, *, key, tol=None, prob=None, hvp_dtype=None, mask=None,
          basis=None) -> State:
    """The state before the first step from ``v`` (normalised here). ``key``: a JAX key, or on
    the host the seed words of one (:func:`~._options.key_words`); ``tol``: the adaptive
    stop's tolerance (ignored unless ``cfg.adaptive``); ``prob``: ``(log c, lo, hi)`` of the
    probabilistic stop (``cfg.prob``): besides the Ritz estimates, the stop then needs that end
    within ``tol``·max|θ| of the extreme Ritz value (``log c = +inf`` switches this off), or the
    probabilistic interval wholly above ``hi`` or below ``lo`` (a decision; NaN never decides);
    ``hvp_dtype``: the dtype the HVP computes in (default v's), for that rule's margin;
    ``mask``: the 0/1 coordinates of a block's operator (None: all), on which the directions
    that continue the run after a breakdown are drawn, so that it never leaves the block;
    ``basis``: ``(Q, rows)``, a finished compiled run's basis of this Krylov size, P and dtype
    and how many of its rows it wrote, which this run takes over (the buffer is donated) instead of
    allocating its own (:func:`reusable`)."""
    xp = cfg.xp
    dtype = np.dtype(cfg.dtype)
    hvp_eps = float(jnp.finfo(dtype if hvp_dtype is None else hvp_dtype).eps) / 2
    support = xp.zeros(0, dtype) if mask is None else xp.asarray(mask, dtype)
    Q, rows = basis if reusable(cfg, basis) else (None, None)
    return _initial(cfg, xp.asarray(v), key, xp.asarray(np.inf if tol is None else tol, dtype),
                    xp.asarray([np.inf, np.nan, np.nan] if prob is None else prob, dtype),
                    xp.asarray(hvp_eps, dtype), support, Q,
                    None if Q is None else xp.asarray(rows, xp.int32))


def takes_basis(cfg: Recurrence) -> bool:
    """Whether a run of ``cfg`` keeps its basis in one compiled buffer, which it can take over
    from an earlier run and leave to a later one (:func:`reusable`)."""
    return cfg.store_basis and not cfg.host


def basis_shape(cfg: Recurrence) -> tuple[int, int]:
    """The shape of a compiled run's basis: m + 1 rows of P."""
    return (cfg.m + 1, cfg.size)


def reusable(cfg: Recurrence, basis) -> bool:
    """Whether ``basis`` (``(Q, rows)`` or None) can serve a new compiled run of ``cfg``.

    A compiled run's basis is one XLA buffer of (m + 1)·P numbers, and a fresh one costs more
    than its zeros: on a CPU its pages are mapped on first touch (140 ms of a 0.6 s λmax at
    P = 1,056,768, where the 41 rows hold 346 MB). A finished run's buffer, donated to the next
    run of the same Krylov size, P and dtype, costs the zeroing of the rows it wrote (8 ms). The
    host engine's ``numpy.zeros`` maps only the rows a run writes, and takes none."""
    if basis is None or not takes_basis(cfg):
        return False
    Q = basis[0]
    return (isinstance(Q, jax.Array) and not Q.is_deleted()
            and Q.shape == basis_shape(cfg) and Q.dtype == np.dtype(cfg.dtype))


@functools.partial(_compile.probe_program, static_argnums=0, donate_argnums=7)
def _initial(xp, cfg: Recurrence, v, key, tol, prob, hvp_eps, support, basis=None, rows=None
             ) -> State:
    """:func:`start` in the namespace ``xp`` (one compiled program for ``jax.numpy``, inlined
    when traced inside another); ``basis``: a buffer to reuse (compiled only), of which the
    first ``rows`` rows may be nonzero."""
    m, dtype = cfg.m, np.dtype(cfg.dtype)
    q0 = (v / xp.linalg.norm(v)).astype(dtype)
    P = q0.shape[0]
    idx = xp.arange(m + 1)
    if cfg.store_basis and basis is not None:
        Q = refilled(basis, rows, q0[None])
    elif cfg.store_basis:
        Q = xp.zeros((m + 1, P), dtype)
        Q = ops.set_row(xp, Q, 0, q0)
    else:
        Q = xp.zeros((0, P), dtype)
    scalar = functools.partial(xp.asarray, dtype=dtype)
    return State(
        xp.asarray(0, xp.int32), Q, q0, xp.zeros_like(q0),
        xp.zeros(m, dtype), xp.zeros(m + 1, dtype), (idx == 0).astype(dtype),
        xp.zeros(m + 1, dtype), xp.asarray(False), scalar(0.0),
        xp.asarray(0, xp.int32), xp.zeros((cfg.slots, P), dtype), xp.asarray(0, xp.int32),
        scalar(np.inf), xp.asarray(False), xp.asarray(cfg.every, xp.int32),
        fold(cfg, key, 0),      # its own buffer: a compiled step donates the state
        tol, prob, hvp_eps, support)


def refilled(Q, rows, B):
    """A compiled basis ``Q`` whose first ``rows`` rows may be nonzero, with the rows of ``B`` at
    its top and zeros after them: every row past a run's last vector must be zero, since a
    compiled step's Gram–Schmidt reads whole blocks of rows. Writes only those ``rows``."""
    zero = jnp.zeros((1, Q.shape[1]), Q.dtype)
    Q = jax.lax.fori_loop(B.shape[0], jnp.maximum(rows, B.shape[0]),
                          lambda i, Q: jax.lax.dynamic_update_slice_in_dim(Q, zero, i, axis=0),
                          Q)
    return jax.lax.dynamic_update_slice_in_dim(Q, B.astype(Q.dtype), 0, axis=0)


#: :func:`refilled` on a donated basis, in place (a thick restart's)
refill = _compile.probe_jit(refilled, donate_argnums=0)


def _constants(xp, m: int, P: int, dtype, hvp_eps):
    """What a step needs besides its state: ε (the products' precision, not only the
    recurrence's: a float32 HVP perturbs every step by ~ε₃₂‖H‖, so orthogonality is lost at
    that rate and can be kept to √ε₃₂, not √ε₆₄), η = √ε, ψ = ε√P, the row indices 0…m and the
    breakdown floor's unit (:func:`~._probabilistic.breakdown_floor`)."""
    eps = xp.maximum(xp.finfo(dtype).eps, 2 * hvp_eps)
    return (eps, xp.sqrt(eps), eps * xp.sqrt(xp.asarray(P, dtype)), xp.arange(m + 1),
            breakdown_floor(P, dtype, hvp_eps, xp))


@functools.lru_cache(maxsize=64)
def _host_constants(m: int, P: int, dtype: np.dtype, hvp_eps: float):
    """:func:`_constants` in NumPy, once per run shape (the host step is otherwise dominated by
    such small computations at small P)."""
    eps, eta, psi, idx, floor_unit = _constants(np, m, P, dtype,
                                                np.asarray(hvp_eps, dtype))
    idx.flags.writeable = False
    return eps, eta, psi, idx, floor_unit


def _sizes(m: int) -> list[int]:
    """The row counts a compiled step's Gram–Schmidt branches read: multiples of BLOCK up to m."""
    return [min(b + BLOCK, m) for b in range(0, m, BLOCK)]


def step(cfg: Recurrence, state: State, w) -> State:
    """One Lanczos step after its HVP: ``w = H q_j`` (in the recurrence's dtype) → the state
    with q_{j+1}, α_j, β_{j+1}, the orthogonality bookkeeping and, at a check, ``done``.

    ``PARTIAL``: Simon's recurrence for ω_{j+1,k} = q_{j+1}ᵀ q_k, from the Lanczos relation and
    the symmetry of H,

        β_{j+1} ω_{j+1,k} = β_{k+1} ω_{j,k+1} + (α_k − α_j) ω_{j,k} + β_k ω_{j,k−1} − β_j ω_{j−1,k}

    plus a rounding term ±ψ‖T‖, ψ = ε√P (added in the direction that increases |ω|, so the
    estimate is pessimistic), and ω_{j+1,j} = ψ‖T‖/β_{j+1} for the rounding left by the local
    step (large when β_{j+1} is small, e.g. when restarting from a nearly converged Ritz
    vector). ψ‖T‖ bounds the rounding error of one step, e = fl(Hq_j − …) − (Hq_j − …), whose
    norm is ~ε√P‖H‖, and so |q_kᵀe| for every k (the projection of a random e, 2ε‖T‖, is not
    enough: after β₇ ≈ 1.7e-3 one basis reached |q₂ᵀq₈| = 1.6e-8 > √ε; it costs ≤ 2 extra
    Gram–Schmidt steps in 120 on the test spectra). When some |ω_{j+1,k}| exceeds √ε, q_{j+1}
    and then q_{j+2} are orthogonalised against all earlier vectors (two passes of classical
    Gram–Schmidt, since the earlier vectors are themselves only semi-orthogonal) and their ω
    reset to ψ = ε√P. Semi-orthogonality is enough for T to be the projection of H onto span(Q)
    up to O(ε‖H‖) (Simon 1984).

    ``SELECTIVE``: at each check the Ritz vectors y_i = Qᵀ s_i of the pairs with
    β_{j+1}|s_{j,i}| ≤ 1e4·√ε‖T‖ are formed (Paige: q_{j+1}'s overlap with y_i is
    ≈ ε‖H‖/(β_{j+1}|s_{j,i}|), so these are the only directions where it can approach √ε before
    the next check), and each new w is projected against them, w ← w − Yᵀ(Y w).
    """
    m, reortho, which, k, xp = cfg.m, cfg.reortho, Which(cfg.which), cfg.k, cfg.xp
    (j, Q, q, q_prev, alpha, beta, om, om_prev, force, anorm, count, Y, y_count, y_est,
     done, next_check, key, tol, prob, hvp_eps, support) = state
    P, dtype = q.shape[0], q.dtype
    if cfg.host:
        eps, eta, psi, idx, floor_unit = _host_constants(m, P, dtype, float(hvp_eps))
    else:
        eps, eta, psi, idx, floor_unit = _constants(xp, m, P, dtype, hvp_eps)
    norm = ops.norm if cfg.host else xp.linalg.norm
    selective = reortho is Reortho.SELECTIVE
    kk = min(k + 1, m)

    def passes(rows, Q, w):             # on the host in place on w, a vector the step owns
        Qf = Q[:rows]
        before = norm(w) if reortho is Reortho.FULL else None
        once = ops.minus_projection(xp, w, Qf)
        if reortho is not Reortho.FULL:  # two passes: Q is itself only semi-orthogonal
            return ops.minus_projection(xp, once, Qf)
        # Q orthonormal to rounding: a second pass only where the first removed much (DGKS)
        return ops.cond(xp, norm(once) < DGKS * before,
                     lambda v: ops.minus_projection(xp, v, Qf), lambda v: v, once)

    def dots(rows, Q, V):               # [m + 1, c]: q_iᵀ v for the filled rows, zero past them
        D = Q[:rows] @ V.T
        return xp.concatenate([D, xp.zeros((m + 1 - rows, V.shape[0]), dtype)])

    # rows 0…j hold q_0…q_j: the host reads exactly those, a compiled step the smallest
    # multiple of BLOCK that holds them (one branch per multiple)
    def gram_schmidt(Q, w, j):
        if cfg.host:
            return passes(int(j) + 1, Q, w)
        return jax.lax.switch(j // BLOCK, [functools.partial(passes, s) for s in _sizes(m)], Q, w)

    def overlaps(Q, V, j):              # one pass over rows 0…j of Q
        if cfg.host:
            return dots(int(j) + 1, Q, V)
        return jax.lax.switch(j // BLOCK, [functools.partial(dots, s) for s in _sizes(m)], Q, V)

    def restart(Q, j):
        z, nz, spent = fresh_direction(cfg, key, j, support, P, dtype,
                                        lambda z: gram_schmidt(Q, z, j))
        return z, xp.zeros((), dtype), xp.where(spent, 1.0, nz), spent, ~spent

    def omega(a, b):
        # entries k < j only (the rest is replaced below): shifted products, not rolls
        zero = xp.zeros(1, dtype)
        up = xp.concatenate([om[1:] * beta[1:], zero])           # β_{k+1} ω_{j,k+1}
        down = xp.concatenate([zero, om[:-1] * beta[1:]])        # β_k ω_{j,k−1}
        alpha_k = xp.concatenate([alpha, zero])
        new = up + (alpha_k - a) * om + down - beta[j] * om_prev
        b_safe = xp.maximum(b, psi * anorm)
        new = (new + xp.where(new < 0, -1.0, 1.0) * psi * anorm) / b_safe
        local = psi * anorm / b_safe                               # ω_{j+1,j}: rounding of α_j
        return xp.where(idx < j, new, xp.where(idx == j, local, (idx == j + 1).astype(dtype)))

    if cfg.host:
        w = np.array(w, dtype, copy=True)   # the step's own buffer, updated in place below
    hq = norm(w)
    w = ops.minus_scaled(xp, w, beta[j], q_prev)
    a = q @ w
    w = ops.minus_scaled(xp, w, a, q)
    if cfg.slots:
        w = ops.cond(xp, y_count > 0, lambda w: ops.minus_projection(xp, w, Y), lambda w: w, w)
    b = norm(w)
    anorm = xp.maximum(anorm, xp.abs(a) + b + beta[j])
    floor = floor_unit * anorm
    breakdown = b <= floor
    done = fresh = xp.asarray(False)
    if reortho is Reortho.NONE:
        done = breakdown                 # an invariant subspace: T's values are exact
        nw = ops.select(xp, breakdown, 1.0, b)
    else:
        if reortho in (Reortho.PARTIAL, Reortho.SELECTIVE):
            new = omega(a, b)
            need = force | (xp.max(xp.where(idx <= j, xp.abs(new), 0.0)) > eta)
            need = need | breakdown
            seed_prev = om
            if selective:
                # the estimate says "maybe lost": measure before paying for Gram–Schmidt
                def measure(_):
                    D = overlaps(Q, xp.stack([q, w / xp.maximum(b, psi * anorm)]), j)
                    push = xp.where(D < 0, -psi, psi)     # keep the estimate pessimistic
                    prev = xp.where(idx < j, D[:, 0] + push[:, 0], (idx == j).astype(dtype))
                    nxt = xp.where(idx <= j, D[:, 1] + push[:, 1],
                                   (idx == j + 1).astype(dtype))
                    lost = xp.max(xp.where(idx <= j, xp.abs(D[:, 1]), 0.0)) > eta
                    return force | breakdown | lost, nxt, prev

                need, new, seed_prev = ops.cond(xp, need, measure, lambda _: (need, new, om),
                                             None)
        else:
            need = xp.asarray(True)

        def reorthogonalise(w):
            w = gram_schmidt(Q, w, j)
            nw = norm(w)
            return ops.cond(xp, nw <= floor, lambda: restart(Q, j),
                         lambda: (w, nw, nw, xp.asarray(False), xp.asarray(False)))

        w, b, nw, done, fresh = ops.cond(
            xp, need, reorthogonalise,
            lambda w: (w, b, b, xp.asarray(False), xp.asarray(False)), w)
        if reortho in (Reortho.PARTIAL, Reortho.SELECTIVE):
            om, om_prev = xp.where(need & (idx <= j), psi, new), xp.where(need, om, seed_prev)
            force = need & ~force
        count = count + need
    # β_{j+1}² = ‖Hq_j‖² − α_j² − β_j² up to the products' asymmetry (local orthogonality holds
    # in finite precision whatever the global one), so β_{j+1} ≤ ‖Hq_j‖: a larger β means the
    # products are mostly rounding (δ ≈ ‖H‖, no longer a symmetric operator's) or Gram–Schmidt
    # ran against a basis that lost its orthogonality, and each further step amplifies w (β
    # grows ×10 a step to overflow on a float32 classifier at ‖H‖ ≈ 1e-8): the cycle ends here
    done = done | (~fresh & (b > 2 * hq + floor))
    q_next = ops.divided(xp, w, nw)
    if cfg.store_basis:
        Q = ops.set_row(xp, Q, j + 1, q_next)
    alpha, beta = ops.set_entry(xp, alpha, j, a), ops.set_entry(xp, beta, j + 1, b)
    j = j + 1

    def check(Y, y_count, y_est):
        """The adaptive check (and, for SELECTIVE, the set of converged Ritz vectors)."""
        theta, est, real, _ = ritz(alpha, beta, j, m, which, anorm, xp=xp)
        scale = xp.max(xp.where(real, xp.abs(theta), 0.0))
        stop = soon = xp.asarray(False)
        if cfg.adaptive:
            worst = xp.max(est[wanted(m, min(k, m), which, xp)])
            stop = (worst <= tol * scale) & (j >= kk)
            soon = worst <= NEAR * tol * scale
        if cfg.prob:
            stop = stop & _prob_stop(theta, real, beta, j, anorm, scale, P, which, tol, prob,
                                     hvp_eps, xp)
        if selective:
            good = real & (est <= xp.minimum(SELECTIVE_MARGIN * eta, SELECTIVE_MAX) * anorm)
            count_ = xp.minimum(xp.sum(good), cfg.slots).astype(xp.int32)
            best = xp.min(xp.where(good, est, xp.inf)).astype(est.dtype)
            rebuild = (count_ > y_count) | (best < 1e-2 * y_est)

            def build():
                # the `slots` best-converged good pairs; empty slots get zero coefficients
                order = xp.argsort(xp.where(good, est, xp.inf))[:cfg.slots]
                S = ritz(alpha, beta, j, m, which, anorm, order, xp=xp)[3]
                coef = xp.where(good[order][None, :], S, 0.0)               # (m, slots)
                Yn = coef.T @ Q[:m]                                          # one pass over Q
                # orthonormal rows: w − Yᵀ(Yw) projects only then. Ritz vectors of a basis that
                # is semi-orthogonal at √ε of the products (1e-4 for float32 ones) can be
                # near-copies, and projecting against two copies of y doubles w's part along y
                # at every step (β grows ×10 a step to overflow on a float32 classifier); a row
                # that adds less than half a new direction is dropped
                Qy, R = xp.linalg.qr(Yn.T)
                new_part = xp.abs(xp.diagonal(R))[:, None]
                return xp.where(new_part > 0.5, Qy.T, 0.0), count_, best

            Y, y_count, y_est = ops.cond(xp, rebuild, build, lambda: (Y, y_count, y_est))
        return stop, soon, Y, y_count, y_est

    if cfg.adaptive or cfg.prob or selective:
        # after a breakdown, or a β_{j+1} ≤ √ε‖T‖ (an invariant subspace up to rounding), a run
        # for k > 1 goes on to the end of its cycle: the Krylov space of one start holds one
        # vector of each eigenspace, so its exact Ritz pairs skip the other copies of a repeated
        # eigenvalue, which only the directions after it can reach (a small operator, whose
        # cycle is its size, is then spanned whole)
        if k > 1 and reortho is not Reortho.NONE:
            next_check = xp.where(fresh | (b <= eta * anorm), m, next_check)
        at_check = (j >= next_check) | (j == m) | done
        spacing = xp.where(j < LONG_RUN, cfg.every,
                           xp.maximum(cfg.every, (j // 16) // cfg.every * cfg.every))
        stop, soon, Y, y_count, y_est = ops.cond(
            xp, at_check, check,
            lambda Y, c, e: (xp.asarray(False), xp.asarray(False), Y, c, e), Y, y_count, y_est)
        next_check = xp.where(at_check, j + xp.where(soon, 1, spacing), next_check)
        done = done | stop
    return State(j, Q, q_next, q, alpha, beta, om, om_prev, force, anorm, count, Y, y_count,
                 y_est, done | (j >= m), next_check, key, tol, prob, hvp_eps, support)


def _prob_stop(theta, real, beta, steps, anorm, scale, P, which, tol, prob, hvp_eps, xp=jnp):
    """The probabilistic part of the stop rule (:func:`start`'s ``prob``)."""
    dtype = theta.dtype
    eps = xp.finfo(dtype).eps
    # β's floor: the breakdown threshold of :func:`step`, as at the run's end
    psi = breakdown_floor(P, dtype, hvp_eps, xp)
    idx = xp.arange(beta.shape[0])
    log_c, lo, hi = prob[0], prob[1], prob[2]
    b = xp.maximum(beta, psi * anorm)
    log_beta = xp.sum(xp.where((idx >= 1) & (idx <= steps), xp.log(b), 0.0))
    s = posterior_gap(theta, real, log_beta, log_c, which, xp)
    # the margin η without the HVP's measured rounding (not known yet): ~8 u_h‖T‖ for it
    eta = 2 * (xp.sqrt(xp.asarray(P, dtype)) + steps) * eps / 2 * anorm + 8 * hvp_eps * anorm
    end = xp.min(xp.where(real, theta, xp.inf)) if which == Which.SMALLEST else \
        xp.max(xp.where(real, theta, -xp.inf))
    sign = 1.0 if which == Which.SMALLEST else -1.0
    outer, inner = end - sign * (s + eta), end + sign * eta
    decided = (xp.minimum(outer, inner) > hi) | (xp.maximum(outer, inner) < lo)
    # the end's width s + η cannot fall below the rounding margin η, which grows with the steps:
    # where η exceeds tol·‖T‖ (float32 products and recurrence, or P ≳ 10⁴ at the float32 floor)
    # the width tol asks for is out of reach, and the run stops once s ≤ η, within twice the
    # narrowest width its rounding allows (``prob_stop`` "rounding"), not at the HVP budget
    return (s + eta <= xp.maximum(tol * scale, 2 * eta)) | decided


@functools.partial(_compile.probe_jit, static_argnums=0, donate_argnums=1)
def _compiled_step(cfg: Recurrence, state: State, w) -> State:
    return step(cfg, state, w)


def on_engine(cfg: Recurrence, matvec: Callable) -> Callable:
    """``matvec`` (the operator's compiled product) returning vectors of the engine's state:
    NumPy arrays on the host, the product's own arrays otherwise."""
    if cfg.host:
        return lambda q: np.asarray(matvec(q))
    return matvec


def advance(cfg: Recurrence, state: State, w) -> State:
    """One :func:`step` with the product ``w = H q_j`` given: on the host in NumPy, or compiled
    with the state donated."""
    if cfg.host:
        # as in XLA, a 0/0 (a zero operator: β = ‖T‖ = 0) is a NaN that the step's comparisons
        # ignore, not a warning
        with np.errstate(divide="ignore", invalid="ignore"):
            return step(cfg, state, np.asarray(w))
    return _compiled_step(cfg, state, w)


def run(cfg: Recurrence, apply: Callable, state: State, limit: int | None = None) -> State:
    """Drive :func:`step` from Python until ``done``, or ``limit`` steps: ``w = apply(state.q)``
    (the operator's own compiled HVP, in the recurrence's dtype), then one step (:func:`advance`).
    Returns the final state."""
    n = 0
    while not bool(state.done) and (limit is None or n < limit):
        state = advance(cfg, state, apply(state.q))
        n += 1
    return state


def lanczos(matvec, v, m: int, *, key, reortho=Reortho.PARTIAL, store_basis: bool = True,
            which=Which.SMALLEST, k: int = 1, tol=None, every: int = 5, prob=None,
            hvp_dtype=None) -> Krylov:
    """Up to m Lanczos steps from v inside one traced program (``lax.while_loop`` over
    :func:`step`; for use under ``jit``/``vmap``); options as :class:`Recurrence` and
    :func:`start` (``tol=None``: no adaptive stop)."""
    reortho = as_enum(Reortho, reortho, "reortho")
    cfg = Recurrence(m, v.shape[0], str(jnp.dtype(v.dtype)), reortho, store_basis,
                     Which(which), k, every, tol is not None, prob is not None,
                     min(k + 3, m) if reortho is Reortho.SELECTIVE else 0)
    state = start(cfg, v, key=key, tol=tol, prob=prob, hvp_dtype=hvp_dtype)
    state = jax.lax.while_loop(lambda s: ~s.done, lambda s: step(cfg, s, matvec(s.q)), state)
    return krylov(cfg, state)


def tridiag(matvec, v, m: int, reortho="partial", *, key):
    """m Lanczos steps from v, one HVP each: ``(Q [m, P], T [m, m], r [P], reorthogonalisations)``
    with H Qᵀ = Qᵀ T + r e_mᵀ up to rounding (the contract of matfree's ``tridiag_sym``); no
    adaptive stop. ``key`` draws the directions that continue after a breakdown."""
    kr = lanczos(matvec, v, m, key=key, reortho=reortho, store_basis=True)
    T = tridiagonal(kr.alpha, kr.beta, kr.steps, m, 0.0)
    return kr.basis[:m], T, kr.beta[kr.steps] * kr.last, kr.reorthogonalisations
