"""Certified intervals for Ritz pairs: what a Lanczos run may claim about an eigenvalue.

Everything here acts on *final* unit vectors x_j (the k wanted Ritz vectors and one neighbour)
and their HVPs Ĥx_j = Hx_j + e_j, whatever the Krylov recurrence that produced them
(:mod:`._recurrence`): orthogonality of the basis, its storage, and when it stopped do not
enter the certificate, so every reorthogonalisation scheme, adaptive stopping and
``store_basis=False`` are certified by the same code.

**Rounding.** With u the unit roundoff of the recurrence's dtype (float64 under x64, also for a
float32 model), m = ⌈log₂ P⌉ + 2 and γ = m·u/(1 − m·u):

* every dot product and norm is a *pairwise* sum (:func:`pairwise_sum`), so its rounding is at
  most γ·Σ|terms| (Higham, Accuracy and Stability, §4.2), whatever order XLA picks;
* the HVP's own error is estimated, not bounded a priori (an HVP is an arbitrary program): for a
  random unit z, Ĥ(x+z) − Ĥz − Ĥx is zero in exact arithmetic (linearity), so its norm measures
  the rounding of three HVPs; δ = 4·max_j ‖that defect‖ + u_h‖Ĥx‖ (u_h of the HVP's dtype). A
  float32 softmax inside a float64 loss shows up here as a δ of ≈1e-7·‖H‖;
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

**Symmetry** (:func:`asymmetry`). The estimate δ sees rounding that is not linear in the vector;
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

import jax.numpy as jnp
import numpy as np

from mhatheory.spectral import _compile

#: Kato–Temple's ρ²/gap replaces the Bauer–Fike ρ only when the gap lower bound exceeds this
#: many residuals: an eigenvalue hidden inside an unresolved cluster (closer than the HVP's
#: rounding can separate) makes the measured gap meaningless, and then ρ is the safe spread.
KATO_TEMPLE_RATIO = 1e3


def pairwise_sum(v):
    """Σ over the last axis by pairwise (tree) summation, ``⌈log₂ P⌉`` levels, so the rounding
    of the sum is at most γ_{⌈log₂P⌉}·Σ|v_i| (Higham, *Accuracy and Stability*, §4.2) whatever
    order XLA or NumPy would otherwise pick."""
    n = v.shape[-1]
    levels = max(1, math.ceil(math.log2(max(n, 2))))
    xp = _compile.array_namespace(v)
    if xp is np:                        # zero padding to 2^levels (np.pad is slow on the host)
        padded = np.zeros(v.shape[:-1] + (2**levels,), v.dtype)
        padded[..., :n] = v
        v = padded
    else:
        v = xp.pad(v, [(0, 0)] * (v.ndim - 1) + [(0, 2**levels - n)])
    for _ in range(levels):
        v = v[..., 0::2] + v[..., 1::2]
    return v[..., 0]


def gamma(n_ops: int, u):
    """γ_n = n·u/(1 − n·u), Higham's bound on the relative rounding of n operations."""
    return n_ops * u / (1 - n_ops * u)


def pairwise_gamma(P: int, dtype):
    """γ_m with m = ⌈log₂ P⌉ + 2 and u of ``dtype``: the relative rounding of a pairwise sum of P
    terms and the operation around it (module docstring, "Rounding")."""
    return gamma(math.ceil(math.log2(max(P, 2))) + 2, np.finfo(dtype).eps / 2)


def defect_vectors(vecs, z):
    """The vectors whose products the rounding estimate needs besides ``Hx``: z and x + z for the
    first min(2, len(vecs)) unit vectors x (``[1 + min(2, k), P]``)."""
    nd = min(2, vecs.shape[0])
    return _compile.array_namespace(vecs).concatenate([z[None], vecs[:nd] + z[None]])


def hvp_error(vecs, Hx, Hd, hvp_dtype):
    """δ, the HVP's own rounding (module docstring, "Rounding"): its linearity defect
    Ĥ(x+z) − Ĥz − Ĥx (zero in exact arithmetic) for the first min(2, len(vecs)) unit vectors x
    and a random unit z, ×4, plus one rounding of the output ‖Ĥx‖. ``Hx``: the vectors'
    products; ``Hd``: the products of :func:`defect_vectors`."""
    xp = _compile.array_namespace(vecs)
    u_h = xp.asarray(float(jnp.finfo(hvp_dtype).eps) / 2, vecs.dtype)
    nd = Hd.shape[0] - 1
    defect = xp.sqrt(pairwise_sum((Hd[1:] - Hd[:1] - Hx[:nd]) ** 2))
    return 4 * xp.max(defect) + u_h * xp.max(xp.sqrt(pairwise_sum(Hx * Hx)))


@functools.partial(_compile.probe_program, static_argnames="hvp_dtype")
def certify(xp, vecs, Hx, Hd, hvp_dtype, reference=None):
    """Rayleigh quotients, residual bounds and rounding bounds of unit vectors (module docstring,
    "Rounding"): returns ``(θ, ρ*, τ, δ)`` per vector, from their products ``Hx`` and the
    products ``Hd`` of :func:`defect_vectors` (1 + min(2, len(vecs)) HVPs). O(P) memory per
    vector.

    ``reference``: the same vectors' products computed in the work dtype from a widened point
    (``LinearOperator.widened``), for an operator evaluated in lower precision. Then
    δ also holds max_j ‖Ĥx_j − H̃x_j‖: Ĥx − Hx = (Ĥx − H̃x) + (H̃x − Hx), whose second term
    (H̃'s own rounding, in the work dtype) is far below the lower-precision defect already in
    δ, while the first is measured at exactly the vectors the bounds use, the part of the
    rounding that is linear in x included (a fixed perturbation of the operator, which no
    linearity defect sees)."""
    wdt = vecs.dtype
    P = vecs.shape[-1]
    u = np.finfo(wdt).eps / 2
    g = pairwise_gamma(P, wdt)
    nx2 = pairwise_sum(vecs * vecs)
    nx = xp.sqrt(nx2)
    theta = pairwise_sum(vecs * Hx) / nx2
    nHx = xp.sqrt(pairwise_sum(Hx * Hx))
    delta = hvp_error(vecs, Hx, Hd, hvp_dtype)
    if reference is not None:
        delta = delta + xp.max(xp.sqrt(pairwise_sum((Hx - reference) ** 2)))
    # τ: |θ̂ − xᵀHx/xᵀx| from δ, the two pairwise dot products and the division
    tau = (delta * nx + g * pairwise_sum(xp.abs(vecs * Hx)) + g * xp.abs(theta) * nx2) / nx2 \
        + u * xp.abs(theta)
    r = Hx - theta[:, None] * vecs
    rho_hat = xp.sqrt(pairwise_sum(r * r))
    rho = (rho_hat * (1 + g) + 2 * u * (nHx + xp.abs(theta) * nx) + delta * nx) / nx + tau
    return theta, rho, tau, delta


@_compile.probe_program
def asymmetry(xp, vecs, Hx, z, Hd, delta):
    """``(a, allowed)`` for the pair of unit vectors among z and the first min(2, len(vecs)) rows
    of ``vecs`` whose computed |aᵀĤb − bᵀĤa| exceeds most the bound it obeys when the operator
    is symmetric and its products err by at most ``delta`` (module docstring, "Symmetry"):
    a > allowed refutes that premise. ``Hx``, ``Hd``: as in :func:`certify` (``Hd[0]`` = Ĥz)."""
    nd = Hd.shape[0] - 1
    units = xp.concatenate([z[None], vecs[:nd]])
    prods = xp.concatenate([Hd[:1], Hx[:nd]])
    P = vecs.shape[-1]
    g = pairwise_gamma(P, vecs.dtype)
    i, j = np.triu_indices(nd + 1, 1)
    terms = xp.concatenate([units[i] * prods[j], units[j] * prods[i]])
    # one pairwise summation for every dot product, |·| sum and norm
    sums = pairwise_sum(xp.concatenate([terms, xp.abs(terms), units * units]))
    n = len(i)
    dots, mags, norms = sums[:2 * n], sums[2 * n:4 * n], xp.sqrt(sums[4 * n:])
    a = xp.abs(dots[:n] - dots[n:])
    bound = (1 + 4 * g) * ((norms[i] + norms[j]) * delta + g * (mags[:n] + mags[n:]))
    worst = xp.argmax(a - bound)
    return a[worst], bound[worst]


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
