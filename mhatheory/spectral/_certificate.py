"""Certified intervals for Ritz pairs: what a Lanczos run may claim about an eigenvalue.

Everything here acts on *final* unit vectors x_j (the k wanted Ritz vectors and one neighbour)
and their HVPs Ĥx_j = Hx_j + e_j, whatever the Krylov recurrence that produced them
(:mod:`._recurrence`): orthogonality of the basis, its storage, and when it stopped do not
enter the certificate, so every reorthogonalisation scheme, adaptive stopping and
``store_basis=False`` are certified by the same code.

**Rounding.** With u the unit roundoff of the recurrence's dtype (float64 under x64, also for a
float32 model), m = ⌈log₂ P⌉ + 2 and γ = m·u/(1 − m·u):

* every dot product and norm is a *pairwise* sum (:func:`row_sums`), so its rounding is at
  most γ·Σ|terms| (Higham, Accuracy and Stability, §4.2), whatever order XLA picks;
* the HVP's own error is estimated, not bounded a priori (an HVP is an arbitrary program): for a
  unit z, Ĥ(x+z) − Ĥz − Ĥx is zero in exact arithmetic (linearity), so its norm measures
  the rounding of three HVPs; δ = 4·max_j ‖that defect‖ + u_h‖Ĥx‖ (u_h of the HVP's dtype),
  over the first two vectors x_j (a product's rounding grows with its size: on a Transformer
  the neighbour of λmin, at a curvature 170 times larger, had a defect 10–25 times larger).
  z is the run's random start, whose product its first step made (:mod:`._cycles`), or,
  where the first vector is nearly parallel to it (|x_1ᵀz| > :data:`PARALLEL`, as from a
  warm start), an independent random unit vector: with x = z the defect Ĥ(2x) − 2Ĥx is
  exactly zero (scaling by 2 is exact), however large the rounding. A float32 softmax inside
  a float64 loss shows up here as a δ of ≈1e-7·‖H‖;
* the computed quotient θ̂ = fl(xᵀĤx)/fl(xᵀx) then satisfies |θ̂ − xᵀHx/xᵀx| ≤ τ with
  τ = (δ‖x‖ + γΣ|x_i(Ĥx)_i| + γ|θ̂|‖x‖²)/‖x‖² + u|θ̂|: the numerator's error is
  |xᵀe| ≤ δ‖x‖ (Cauchy–Schwarz) plus the pairwise-sum rounding γΣ|x_i(Ĥx)_i|, the
  denominator's relative error is ≤ γ (it multiplies θ̂, hence γ|θ̂|‖x‖²/‖x‖²), and the
  division adds u|θ̂|;
* the true residual of x/‖x‖ satisfies
  ρ ≤ (ρ̂(1 + γ) + 2u(‖Ĥx‖ + |θ̂|‖x‖) + δ‖x‖)/‖x‖ + τ: the computed ‖fl(Ĥx − θ̂x)‖ is within
  γ of its exact value and the subtraction rounds each entry by ≤ u(|Ĥx|_i + |θ̂x_i|) (norm
  ≤ u(‖Ĥx‖ + |θ̂|‖x‖), ×2 for the product θ̂x); replacing Ĥx by Hx moves it by ≤ δ‖x‖, and θ̂
  by the exact quotient by ≤ τ‖x‖ (triangle inequality; then divide by ‖x‖).

**Certificate.** For λmin, λmin ≤ xᵀHx/xᵀx ≤ θ̂ + τ always (Rayleigh quotient): the upper end
is rigorous up to the estimate δ. For the lower end, Bauer–Fike puts an eigenvalue within ρ of
the exact quotient, and Kato–Temple sharpens it: if no other eigenvalue lies within g of it,
λ ≥ θ − ρ²/g. The gap lower bound is g = |θ̂_nb − θ̂| − τ_nb − τ − ρ_nb from the neighbouring
Ritz pair (Bauer–Fike puts an eigenvalue within ρ_nb of the neighbour's exact quotient, which
lies within τ_nb of θ̂_nb), and Kato–Temple is used only when g > 1000·ρ
(:data:`KATO_TEMPLE_RATIO`): an eigenvalue hidden in a cluster the HVP's rounding cannot
resolve makes a measured gap meaningless (a test found it: a float32 problem with eigenvalues
−1e-3 and 1.5e-3 at ‖H‖ = 1e3). So the interval is [θ̂ − τ − s, θ̂ + τ] with s = ρ or ρ²/g
(mirrored for λmax). It assumes, as every deterministic Krylov certificate must, that Lanczos
has not missed a more extreme eigenvalue (no residual can exclude it), nor left one unresolved
next to the Ritz value: for a pair λ₁ < λ₂ closer than the recurrence resolves, x ≈ a·e₁ + b·e₂
gives θ = λ₁ + b²(λ₂ − λ₁) and ρ = |ab|(λ₂ − λ₁), so θ − λ₁ = |b/a|·ρ: beyond Bauer–Fike's ρ
whenever |b| > |a| (half the random starts), and far beyond Kato–Temple's ρ²/g, whose gap then
comes from the next, resolved eigenvalue (λ₂ − λ₁ = 1e-11 gives an interval 4e-15 wide, 6e-13
off). The outer end that needs no such assumption is probabilistic
(:mod:`._probabilistic`, ``EigResult.prob_interval``), and the toolkit's verdicts use it.
An **unconverged** run (ρ̂ > tol·‖H‖ after the restart budget)
reports (−∞, θ̂ + τ] for λmin ([θ̂ − τ, +∞) for λmax): only the Rayleigh side is claimed.

**Symmetry** (:func:`symmetry_test`). The estimate δ sees rounding that is not linear in the vector;
a fixed error of the products (Ĥ = H + E with E linear) passes the linearity check whatever its
size. A softmax saturated beyond the work dtype's resolution computes one: the top class's
p rounds to 1, so p(1 − p) and the top row of diag(p) − ppᵀ round to 0 (or to a linear
expression in the tangent) while the other rows keep their O(1 − p) entries, an error as
large as the curvature itself, and not symmetric. The products already made test for it at no
cost: for unit a, b among z and the first two Ritz vectors, if H is symmetric and
‖Ĥa − Ha‖, ‖Ĥb − Hb‖ ≤ δ, then aᵀĤb − bᵀĤa = aᵀe_b − bᵀe_a, so
|aᵀĤb − bᵀĤa| ≤ (‖a‖ + ‖b‖)δ; the two pairwise dot products add at most γ(Σ|a_i(Ĥb)_i| +
Σ|b_i(Ĥa)_i|), and the norms, the sums of |·| and the subtraction at most a factor (1 + 4γ). A
computed asymmetry above that refutes the premise (H symmetric with every product within δ):
the run then certifies nothing (:mod:`._cycles`). The test is one-sided: a symmetric E, or an
asymmetric one that the three vectors do not see, passes it.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from mhatheory.spectral import _compile

#: Kato–Temple's ρ²/gap replaces the Bauer–Fike ρ only when the gap lower bound exceeds this
#: many residuals: an eigenvalue hidden inside an unresolved cluster (closer than the HVP's
#: rounding can separate) makes the measured gap meaningless, and then ρ is the safe spread.
KATO_TEMPLE_RATIO = 1e3

#: The rounding estimate's z is the run's start unless the first vector is this close to
#: parallel to it (|x_1ᵀz|, both unit): module docstring, "Rounding".
PARALLEL = 0.9


#: Columns summed as one block by :func:`row_sums` (a power of 2): a block of the certificate's
#: dozen rows stays in a core's cache (1 MiB here) while the terms are formed and summed.
CHUNK = 2**13


def row_sums(rows, arrays, *params):
    """Pairwise sums over the last axis of the rows ``rows(xp, *arrays, *params)`` builds
    (``[r, P]`` → ``[r]``): the ``arrays`` share that last axis of length P, and ``rows`` acts
    on each column alone, so on the host it runs on one block of :data:`CHUNK` columns at a
    time and its terms are formed and summed in a core's cache; the ``params`` are passed whole.

    **The tree** (the same on the host and in XLA, so both give the same bits). A length n ≤
    CHUNK is summed by halving: each level adds the last ⌊n/2⌋ terms onto the first ⌊n/2⌋ (the
    middle term of an odd n passes through), n → ⌈n/2⌉, so every term takes part in at most one
    addition a level, ⌈log₂ n⌉ levels. A longer row is cut into nb = ⌈P/CHUNK⌉ blocks, the last
    padded with exact zeros, each block halved (log₂ CHUNK levels) and the nb block sums halved
    in turn: with P ≤ 2^L, nb ≤ 2^(L − log₂ CHUNK), so again at most ⌈log₂ P⌉ levels. Either
    way the rounding of each sum is at most γ_{⌈log₂P⌉}·Σ|terms| (Higham, *Accuracy and
    Stability*, §4.2), whatever order XLA or NumPy would otherwise pick."""
    xp = _compile.array_namespace(*arrays)
    P = arrays[0].shape[-1]
    if xp is not np:
        return _halve_xp(_block_sums_xp(rows(xp, *arrays, *params)))
    if P <= CHUNK:
        return _halve_host(_scratch(rows(np, *arrays, *params), arrays))
    nb = -(-P // CHUNK)
    sums = None
    for c in range(nb):
        part = rows(np, *(a[..., c * CHUNK:(c + 1) * CHUNK] for a in arrays), *params)
        if part.shape[-1] == CHUNK:
            block = _scratch(part, arrays)
        else:
            block = np.zeros(part.shape[:-1] + (CHUNK,), part.dtype)
            block[..., :part.shape[-1]] = part
        if sums is None:
            sums = np.empty(part.shape[:-1] + (nb,), part.dtype)
        sums[..., c] = _halve_host(block)
    return _halve_host(sums)


def _scratch(part, arrays):
    """``part`` itself where it is a buffer of its own, apart from the caller's ``arrays`` (a row
    builder's fresh result, which :func:`_halve_host` may overwrite), else a copy (one of the
    arrays, or a view of one)."""
    f = part.flags
    own = f.owndata and f.writeable and f.c_contiguous
    if own and not any(np.may_share_memory(part, a) for a in arrays):
        return part
    return np.array(part, copy=True)


def _halve_host(v):
    """The halving sum of :func:`row_sums` over the last axis of ``v``, in place (``v`` is
    overwritten)."""
    n = v.shape[-1]
    if n == 0:
        return np.zeros(v.shape[:-1], v.dtype)
    while n > 1:
        h = (n + 1) // 2
        v[..., :n - h] += v[..., h:n]
        n = h
    return v[..., 0]


def _halve_xp(v):
    """:func:`_halve_host` in XLA."""
    n = v.shape[-1]
    if n == 0:
        return jnp.zeros(v.shape[:-1], v.dtype)
    while n > 1:
        h = (n + 1) // 2
        v = jnp.concatenate([v[..., :n - h] + v[..., h:n], v[..., n - h:h]], axis=-1)
        n = h
    return v[..., 0]


def _block_sums_xp(v):
    """In XLA, the rows of ``v`` as :func:`row_sums` sums them before its last halving: the
    rows themselves up to :data:`CHUNK` columns, else their zero-padded blocks' sums."""
    P = v.shape[-1]
    if P <= CHUNK:
        return v
    nb = -(-P // CHUNK)
    v = jnp.pad(v, [(0, 0)] * (v.ndim - 1) + [(0, nb * CHUNK - P)])
    v = v.reshape(v.shape[:-1] + (nb, CHUNK))
    n = CHUNK
    while n > 1:
        n //= 2
        v = v[..., :n] + v[..., n:]
    return v[..., 0]


def gamma(n_ops: int, u):
    """γ_n = n·u/(1 − n·u), Higham's bound on the relative rounding of n operations."""
    return n_ops * u / (1 - n_ops * u)


def pairwise_gamma(P: int, dtype):
    """γ_m with m = ⌈log₂ P⌉ + 2 and u of ``dtype``: the relative rounding of a pairwise sum of P
    terms and the operation around it (module docstring, "Rounding")."""
    return gamma(math.ceil(math.log2(max(P, 2))) + 2, np.finfo(dtype).eps / 2)


def shifted_vectors(vecs, z):
    """x + z for the first min(2, len(vecs)) unit vectors x (``[min(2, k), P]``)."""
    return vecs[:min(2, vecs.shape[0])] + z[None]


def defect_vectors(vecs, z):
    """The vectors whose products the rounding estimate needs besides ``Hx``: z and
    :func:`shifted_vectors` (``[1 + min(2, k), P]``)."""
    return _compile.array_namespace(vecs).concatenate([z[None], shifted_vectors(vecs, z)])


def hvp_error(vecs, Hx, Hd, hvp_dtype):
    """δ, the HVP's own rounding (module docstring, "Rounding"): its linearity defect
    Ĥ(x+z) − Ĥz − Ĥx (zero in exact arithmetic) for the first min(2, len(vecs)) unit vectors x
    and a unit z (module docstring), ×4, plus one rounding of the output ‖Ĥx‖. ``Hx``: the
    vectors' products; ``Hd``: the products of :func:`defect_vectors`."""
    k, nd = Hx.shape[0], Hd.shape[0] - 1
    sums = row_sums(lambda xp, Hx, Hd: xp.concatenate([Hx * Hx, _defect(Hx, Hd) ** 2]), (Hx, Hd))
    return _delta(_compile.array_namespace(vecs), sums[:k], sums[k:k + nd], hvp_dtype)


def _defect(Hx, Hd):
    """The linearity defects Ĥ(x+z) − Ĥz − Ĥx of :func:`hvp_error`, one row per x."""
    return Hd[1:] - Hd[:1] - Hx[:Hd.shape[0] - 1]


def _delta(xp, Hx2, defect2, hvp_dtype):
    """:func:`hvp_error` from the squared norms of the products and of the defects."""
    u_h = xp.asarray(float(jnp.finfo(hvp_dtype).eps) / 2, Hx2.dtype)
    return 4 * xp.max(xp.sqrt(defect2)) + u_h * xp.max(xp.sqrt(Hx2))


def _certify_rows(xp, vecs, Hx, Hd, *more, reference: bool, symmetry: bool):
    """The rows whose sums :func:`certify` needs before θ: xᵀx, xᵀĤx, Σ|x_i(Ĥx)_i|, ‖Ĥx‖²,
    the defects' squared norms, then ‖Ĥx − H̃x‖² with a ``reference`` (``more[0]``), then
    with ``symmetry`` the rows of :func:`_symmetry_rows` at z = ``more[-1]``."""
    vh = vecs * Hx
    rows = [vecs * vecs, vh, xp.abs(vh), Hx * Hx, _defect(Hx, Hd) ** 2]
    if reference:
        rows.append((Hx - more[0]) ** 2)
    if symmetry:
        rows.append(_symmetry_rows(xp, vecs, Hx, more[-1], Hd))
    return xp.concatenate(rows)


def _residual_rows(xp, vecs, Hx, theta):
    """‖Ĥx − θ̂x‖² per vector, as rows to sum."""
    r = Hx - theta[:, None] * vecs
    return r * r


@functools.partial(_compile.probe_program, static_argnames="hvp_dtype")
def certify(xp, vecs, Hx, Hd, hvp_dtype, reference=None, z=None):
    """Rayleigh quotients, residual bounds and rounding bounds of unit vectors (module docstring,
    "Rounding"): returns ``(θ, ρ*, τ, δ, symmetry)`` per vector, from their products ``Hx`` and
    the products ``Hd`` of :func:`defect_vectors` (1 + min(2, len(vecs)) HVPs, the first of
    them the start's product where z is the start). O(P) memory per vector; two passes over
    the vectors (:func:`row_sums`), one before θ̂ and one after. With the rounding estimate's
    unit ``z`` (``Hd[0]`` = Ĥz), ``symmetry`` is the symmetry test's :class:`Symmetry`, its sums
    taken in the first pass (else None): :func:`symmetry_test` reads it once δ is final.

    ``reference``: the same vectors' products computed in the work dtype from a widened point
    (``LinearOperator.widened``), for an operator evaluated in lower precision. Then
    δ also holds max_j ‖Ĥx_j − H̃x_j‖: Ĥx − Hx = (Ĥx − H̃x) + (H̃x − Hx), whose second term
    (H̃'s own rounding, in the work dtype) is far below the lower-precision defect already in
    δ, while the first is measured at exactly the vectors the bounds use, the part of the
    rounding that is linear in x included (a fixed perturbation of the operator, which no
    linearity defect sees)."""
    wdt = vecs.dtype
    k, nd, P = vecs.shape[0], Hd.shape[0] - 1, vecs.shape[-1]
    u = np.finfo(wdt).eps / 2
    g = pairwise_gamma(P, wdt)
    ref, sym = reference is not None, z is not None
    arrays = (vecs, Hx, Hd) + ((reference,) if ref else ()) + ((z,) if sym else ())
    sums = row_sums(functools.partial(_certify_rows, reference=ref, symmetry=sym), arrays)
    nx2, vHx, mag, Hx2 = (sums[i * k:(i + 1) * k] for i in range(4))
    nx = xp.sqrt(nx2)
    theta = vHx / nx2
    nHx = xp.sqrt(Hx2)
    delta = _delta(xp, Hx2, sums[4 * k:4 * k + nd], hvp_dtype)
    end = 4 * k + nd + (k if ref else 0)
    if ref:
        delta = delta + xp.max(xp.sqrt(sums[4 * k + nd:end]))
    symmetry = _symmetry(xp, sums[end:], nx2[:nd], P, wdt) if sym else None
    # τ: |θ̂ − xᵀHx/xᵀx| from δ, the two pairwise dot products and the division
    tau = (delta * nx + g * mag + g * xp.abs(theta) * nx2) / nx2 + u * xp.abs(theta)
    rho_hat = xp.sqrt(row_sums(_residual_rows, (vecs, Hx), theta))
    rho = (rho_hat * (1 + g) + 2 * u * (nHx + xp.abs(theta) * nx) + delta * nx) / nx + tau
    return theta, rho, tau, delta, symmetry


@functools.cache
def _pairs(nd: int):
    """The index pairs (i < j) among z and the first ``nd`` vectors."""
    return np.triu_indices(nd + 1, 1)


class Symmetry(NamedTuple):
    """The symmetry test's sums (module docstring, "Symmetry"), one entry per pair of unit
    vectors a, b among z and the first min(2, k) vectors: ``a`` = |aᵀĤb − bᵀĤa|, ``norms`` =
    ‖a‖ + ‖b‖, ``mags`` = Σ|a_i(Ĥb)_i| + Σ|b_i(Ĥa)_i|; ``g``: γ of the pairwise sums."""
    a: Any
    norms: Any
    mags: Any
    g: Any


def _symmetry_rows(xp, vecs, Hx, z, Hd):
    """The rows of the symmetry test besides the first vectors' squared norms: aᵀĤb and bᵀĤa
    for each pair, their |·| sums, and zᵀz."""
    nd = Hd.shape[0] - 1
    units = xp.concatenate([z[None], vecs[:nd]])
    prods = xp.concatenate([Hd[:1], Hx[:nd]])
    i, j = _pairs(nd)
    terms = xp.concatenate([units[i] * prods[j], units[j] * prods[i]])
    return xp.concatenate([terms, xp.abs(terms), z[None] * z[None]])


def _symmetry(xp, sums, nx2, P: int, dtype) -> Symmetry:
    """:class:`Symmetry` from the sums of :func:`_symmetry_rows` and the first vectors' xᵀx."""
    i, j = _pairs(nx2.shape[0])
    n = len(i)
    dots, mags = sums[:2 * n], sums[2 * n:4 * n]
    norms = xp.sqrt(xp.concatenate([sums[4 * n:], nx2]))
    return Symmetry(xp.abs(dots[:n] - dots[n:]), norms[i] + norms[j], mags[:n] + mags[n:],
                    xp.asarray(pairwise_gamma(P, dtype), dtype))


def symmetry_test(sym: Symmetry, delta):
    """``(a, allowed)`` for the pair whose computed |aᵀĤb − bᵀĤa| exceeds most the bound it
    obeys when the operator is symmetric and its products err by at most ``delta`` (module
    docstring, "Symmetry"): a > allowed refutes that premise."""
    xp = np if isinstance(sym.a, np.ndarray) else jnp
    bound = (1 + 4 * sym.g) * (sym.norms * delta + sym.g * sym.mags)
    worst = xp.argmax(sym.a - bound)
    return sym.a[worst], bound[worst]


def intervals(which: str, theta, rho, tau, converged: bool, widen: float = 0.0):
    """Certified intervals and gap lower bounds for the k most extreme of ``len(theta)`` Ritz
    pairs (the last one is only a neighbour): see the module docstring, "Certificate".
    ``widen`` moves every side that rests on the Krylov assumption outward: a bound on ‖Δ‖ for a
    run on a lower-precision operator that differs from the widened one by Δ on its Krylov
    space (the assumption is then about the operator the run saw)."""
    theta, rho, tau = (np.asarray(a, float) for a in (theta, rho, tau))
    sign = 1.0 if which == "smallest" else -1.0
    out = []
    for j in range(len(theta) - 1 if len(theta) > 1 else 1):
        nbs = [i for i in (j - 1, j + 1) if 0 <= i < len(theta)]
        # the nearest other eigenvalue is at least this far away (under the Krylov assumption)
        gap = min((abs(theta[i] - theta[j]) - tau[i] - tau[j] - rho[i] for i in nbs),
                  default=0.0)
        # Kato–Temple only where the gap is resolved by a wide margin (see "Certificate")
        spread = rho[j] ** 2 / gap if gap > KATO_TEMPLE_RATIO * rho[j] else rho[j]
        inner, outer = theta[j] + sign * tau[j], theta[j] - sign * (tau[j] + spread + widen)
        if j > 0:
            inner = theta[j] + sign * (tau[j] + spread + widen)
        if not converged:
            outer = -sign * math.inf
            if j > 0:
                inner = sign * math.inf
        lo, hi = (outer, inner) if which == "smallest" else (inner, outer)
        out.append(((float(lo), float(hi)), max(float(gap), 0.0)))
    return out
