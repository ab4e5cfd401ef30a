"""Hutchinson and stochastic Lanczos quadrature (``spectral._density``): the trace estimate
and its standard error against dense references, the density's quadrature identities, mixed
precision and :class:`~mhatheory.spectral.Density`'s read-outs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from mhatheory import spectral
from mhatheory.models import deora
from mhatheory.testing import tol


def quadratic(x, A):
    """½ xᵀAx: its Hessian is exactly A."""
    return 0.5 * x @ A @ x


def with_spectrum(eigs, seed=0):
    return spectral.rotated(np.asarray(eigs), jax.random.key(seed))


def test_hutchinson_trace_and_its_standard_error(tiny_deora):
    """With Rademacher probes zᵀHz has mean tr H and variance 2·Σ_{i≠j} H_ij²: the estimate lies
    within 4 SE of tr H (a 4σ bound) and the reported SE within 40 % of the exact
    √(variance/num_samples) (the sample standard deviation of 400 draws is within ±10 % at
    1σ for these near-Gaussian sums)."""
    dtype, params, batch, H64 = tiny_deora
    num = 400
    est = spectral.trace(deora.loss_fn, params, batch, key=jax.random.key(5), num_samples=num)
    exact_se = np.sqrt(2 * (np.sum(H64**2) - np.sum(np.diag(H64) ** 2)) / num)
    assert abs(est.value - np.trace(H64)) <= 4 * exact_se
    assert abs(est.se / exact_se - 1) <= 0.4, (est.se, exact_se)
    assert est.num_hvps >= num


def test_density_is_a_probability_measure_and_matches_eigh():
    eigs = np.concatenate([np.linspace(-1, 0, 60), np.linspace(0.2, 3, 240)])
    A = with_spectrum(eigs, seed=3)
    dens = spectral.spectral_density(quadratic, jnp.ones(300), A, key=jax.random.key(1),
                                     num_probes=20, krylov=60)
    np.testing.assert_allclose(dens.weights.sum(axis=1), 1.0, atol=tol(np.float64))
    grid = np.linspace(-2, 4, 3001)
    # loose: the trapezoid rule at h = σ/25 and the tails beyond [-2, 4] (≥ 20σ from every node,
    # all in [-1, 3]) each miss far less than 1e-3 of the Gaussian mixture's unit mass
    np.testing.assert_allclose(np.trapezoid(dens.pdf(grid, sigma=0.05), grid), 1.0, atol=1e-3)
    # CDF against the eigh histogram: Gauss quadrature resolves a CDF to ~ spread/krylov; the
    # Monte-Carlo error over 20 probes of a CDF value is ≤ 0.5/√(20·P)·… ≈ 0.01 → 0.05 total.
    xs = np.linspace(-0.9, 2.9, 20)
    ks = np.max(np.abs(dens.cdf(xs) - np.searchsorted(np.sort(eigs), xs) / eigs.size))
    assert ks < 0.05
    count = dens.negative_count(threshold=0.0)
    assert abs(count.value - 60) < 4 * count.se + 0.05 * 300  # + the CDF resolution bound above
    assert count.samples.shape == (20,)
    # the samples are the per-probe counts dim·(weight below 0) and the value is their mean:
    # against the CDF's read-out, another route to the same sums (no node is exactly 0)
    per_probe = [dens.dim * spectral.Density(n[None], w[None], dens.dim).cdf(0.0)
                 for n, w in zip(dens.nodes, dens.weights, strict=True)]
    np.testing.assert_allclose(count.samples, per_probe, rtol=tol(np.float64, "reordered"))
    assert count.value == pytest.approx(dens.dim * dens.cdf(0.0),
                                        rel=tol(np.float64, "reordered"))
    mass = dens.negative_mass()
    # 4σ (Monte Carlo over the probes); the 1e-9 is only a floor should se round to 0
    assert abs(mass.value - np.abs(eigs[eigs < 0]).sum()) < 4 * mass.se + 1e-9


def test_a_negative_count_the_quadrature_cannot_resolve_says_so_in_its_bracket():
    """30 eigenvalues in [−1e-6, 0) and 20 in (0, 1e-6] beside 250 in [0.5, 3]: 20 Lanczos steps
    put one node for the whole cluster, on one side of 0 or the other (each probe reads 0 or
    about 50); the Chebyshev–Markov–Stieltjes bracket holds the probes' own exact counts
    (qᵀ1(H < 0)q, from the eigendecomposition) and spans the cluster it could not split."""
    eigs = np.concatenate([np.linspace(-1e-6, -1e-8, 30), np.linspace(1e-8, 1e-6, 20),
                           np.linspace(0.5, 3.0, 250)])
    A = with_spectrum(eigs, seed=4)
    key = jax.random.key(2)
    dens = spectral.spectral_density(quadratic, jnp.ones(300), A, key=key, num_probes=8,
                                     krylov=20, reortho="full")
    count = dens.negative_count()
    lam, V = np.linalg.eigh(A)
    q = slq_probes(key, 8, 300)
    exact = 300 * np.mean(np.sum((q @ V[:, lam < 0]) ** 2, axis=1))   # the probes' own counts
    lo, hi = count.bracket
    assert lo <= exact <= hi, (lo, exact, hi)
    assert lo < 5 and hi > 40                     # about the cluster's 50, unplaced
    # a resolved count: its bracket is narrow around the truth (the last node below −0.1 and
    # the first above it carry little weight: no eigenvalue within the spacing of −0.1)
    narrow = dens.negative_count(threshold=0.1)
    assert narrow.bracket[0] <= 300 * np.mean(np.sum((q @ V[:, lam < -0.1]) ** 2, axis=1)) \
        <= narrow.bracket[1]
    # the negative mass Σ|λ<0| = ∫_floor^0 #{λ < x} dx between the same bounds, from any floor
    # below λmin; the probes' own masses inside it
    mass = 300 * np.mean(np.sum((q @ V[:, lam < 0]) ** 2 * -lam[lam < 0], axis=1))
    for floor in (lam[0], 2 * lam[0]):
        lo, hi = dens.negative_mass(floor=floor).bracket
        assert lo <= mass <= hi, (floor, lo, mass, hi)
    assert dens.negative_mass().bracket is None
    with pytest.raises(ValueError, match="no lower bound on λmin"):   # above the nodes
        dens.negative_mass(floor=0.5)


def test_a_threshold_on_an_exact_null_space_keeps_its_bracket():
    """30 exact zero eigenvalues (eigenvectors the columns of a Hadamard matrix, exact in
    binary) and the default threshold 0: with krylov = P the quadrature holds the zero
    eigenvalue's weight on one node and near-zero-weight copies of it within rounding on
    either side, which used up the bounds' one node of slack (a zero-width bracket missed the
    probes' own count for 8 of 8 keys); read at ∓ the nodes' rounding, it holds them."""
    P = 128
    hd = scipy.linalg.hadamard(P) / np.sqrt(P)
    lam = np.concatenate([np.zeros(30), np.linspace(-1, -0.1, 40), np.linspace(0.2, 2, P - 70)])
    A = jnp.asarray((hd * lam) @ hd.T)
    for seed in range(4):
        key = jax.random.key(seed)
        dens = spectral.spectral_density(quadratic, jnp.ones(P), A, key=key, num_probes=4,
                                         krylov=P, reortho="full")
        q = slq_probes(key, 4, P)
        exact = P * np.mean(np.sum((q @ hd[:, lam < 0]) ** 2, axis=1))
        lo, hi = dens.negative_count().bracket
        assert lo <= exact <= hi, (seed, lo, exact, hi)
        # the zero eigenvalue's weight is inside the bracket, unplaced
        assert hi - lo >= P * np.mean(np.sum((q @ hd[:, lam == 0]) ** 2, axis=1)) - 1e-9


def slq_probes(key, num_probes, P):
    """The unit start vectors ``spectral_density`` draws from ``key``: Rademacher signs from
    NumPy's generator seeded by the key's words and stream 0."""
    words = np.asarray(jax.random.key_data(key), np.uint64).ravel()
    rng = np.random.default_rng(np.append(words, np.uint64(0)))
    z = 2.0 * rng.integers(0, 2, (num_probes, P)) - 1.0
    return z / np.linalg.norm(z, axis=1, keepdims=True)


@pytest.mark.parametrize("reortho", ["none", "selective"])
def test_slq_moments_hold_without_reorthogonalisation(reortho):
    """Gauss quadrature: Σ_j τ_j θ_jᵖ = qᵀAᵖq for p < 2m. Without reorthogonalisation the
    outliers 6 and 9 converge early and come back as ghost nodes, yet every moment up to p = 39
    holds to float64 rounding (Greenbaum 1989; Knizhnerman 1996): ghosts split a weight, they
    do not add one. Tolerance: p products with ‖A/9‖ = 1 each round at ~ε, so 100ε."""
    eigs = np.concatenate([np.linspace(-1, 0, 60), np.linspace(0.2, 3, 238), [6.0, 9.0]])
    A = with_spectrum(eigs, seed=3)
    key = jax.random.key(1)
    dens = spectral.spectral_density(quadratic, jnp.ones(300), A, key=key, num_probes=4,
                                     krylov=60, reortho=reortho)
    q, An = slq_probes(key, 4, 300), np.asarray(A) / 9.0
    Ap = np.eye(300)
    for p in range(1, 40):
        Ap = Ap @ An
        exact = np.einsum("ni,ij,nj->n", q, Ap, q)
        np.testing.assert_allclose(np.sum(dens.weights * (dens.nodes / 9.0) ** p, axis=1),
                                   exact, rtol=0, atol=100 * np.finfo(np.float64).eps)
    # a node converged onto the outlier 9: 1e-8 is far wider than a converged node's error
    # (~ε‖A‖) and far narrower than the gap to the next eigenvalue, 6
    copies = np.sum(np.abs(dens.nodes - 9.0) < 1e-8, axis=1)
    assert (copies > 1).all() if reortho == "none" else (copies == 1).all()


@pytest.mark.parametrize("reortho", ["none", "selective"])
def test_slq_is_the_same_on_both_engines(reortho):
    """The host engine and the compiled one run SLQ from the same probes. With the basis kept
    semi-orthogonal (``selective``) the nodes and weights agree to rounding (1e-12 relative:
    Ritz values of runs whose products agree to ~ε‖A‖). Without reorthogonalisation the two
    runs' rounding is amplified once a Ritz value converges (ghost nodes appear at different
    steps), so only what rounding cannot move is compared: the quadrature's moments
    Σ_j τ_j θ_jᵖ = qᵀAᵖq for p < 2m (to 100ε, as in the moments test)."""
    A = with_spectrum(np.linspace(-1.0, 2.0, 150), seed=5)
    key = jax.random.key(4)
    op = spectral.linearise(quadratic, jnp.ones(150), A)
    host, comp = (spectral.SLQ(3, 25, reortho, engine=e)(op, key=key)
                  for e in ("host", "compiled"))
    if reortho == "selective":
        np.testing.assert_allclose(host.nodes, comp.nodes, rtol=0, atol=1e-12 * 2.0)
        np.testing.assert_allclose(host.weights, comp.weights, rtol=0, atol=1e-12)
    for p in range(1, 2 * 25):
        np.testing.assert_allclose(np.sum(host.weights * (host.nodes / 2.0) ** p, axis=1),
                                   np.sum(comp.weights * (comp.nodes / 2.0) ** p, axis=1),
                                   rtol=0, atol=100 * np.finfo(np.float64).eps)


def test_slq_of_a_float32_model_runs_its_recurrence_in_float64():
    """Mixed precision: a float32 loss gets float64 nodes and weights whose moments match the
    float64 model's to the float32 HVP's error (~ε₃₂·‖A‖ per product: tol 1e-5 relative)."""
    eigs = np.linspace(-1.0, 2.0, 200)
    A = with_spectrum(eigs, seed=4)
    key = jax.random.key(2)
    d64 = spectral.spectral_density(quadratic, jnp.ones(200), A, key=key, num_probes=3, krylov=30)
    d32 = spectral.spectral_density(quadratic, jnp.ones(200, jnp.float32), A.astype(jnp.float32),
                                    key=key, num_probes=3, krylov=30)
    assert d32.nodes.dtype == np.float64 and d32.weights.dtype == np.float64
    np.testing.assert_allclose(d32.weights.sum(axis=1), 1.0, atol=tol(jnp.float64, "identity"))
    for p in (1, 2, 5):
        np.testing.assert_allclose(np.sum(d32.weights * d32.nodes**p, axis=1),
                                   np.sum(d64.weights * d64.nodes**p, axis=1),
                                   rtol=0, atol=1e-5 * 2.0**p)  # the docstring's, × ‖A‖ᵖ


def test_density_cdf_accepts_scalars_and_arrays():
    nodes = np.array([[-1.0, 0.5, 2.0], [-0.5, 1.0, 3.0]])
    weights = np.array([[0.2, 0.3, 0.5], [0.4, 0.4, 0.2]])
    dens = spectral.Density(nodes, weights, dim=10)
    at0 = dens.cdf(0.0)
    assert isinstance(at0, float) and at0 == pytest.approx((0.2 + 0.4) / 2)
    assert dens.cdf(10) == pytest.approx(1.0) and dens.cdf(-10.0) == 0.0
    grid = np.array([[-2.0, 0.0], [0.75, 5.0]])
    np.testing.assert_allclose(dens.cdf(grid), [[0.0, 0.3], [0.45, 1.0]])
    np.testing.assert_allclose(dens.cdf([0.0, 0.75]), [0.3, 0.45])


def test_trace_standard_error_is_unbiased_and_any_key_works():
    """For H = A (dense, P = 40), Var(zᵀAz) = 2(‖A‖_F² − Σ A_ii²) for Rademacher z. With
    N = 2 probes the unbiased (ddof = 1) N·se² has mean exactly that variance; ddof = 0 would
    give half of it. Over 300 independent keys the Monte-Carlo error of the mean of N·se² is
    ≈ √(2/300)·Var·(kurtosis factor ≲ 2) ≈ 0.16·Var, so 0.75…1.3 separates the two by > 3σ."""
    A = with_spectrum(np.linspace(-1.0, 2.0, 40), seed=2)
    x = jnp.ones(40)
    var = 2 * (float(jnp.sum(A**2)) - float(jnp.sum(jnp.diag(A) ** 2)))
    se2 = [2 * spectral.trace(quadratic, x, A, key=k, num_samples=2).se ** 2
           for k in jax.random.split(jax.random.key(5), 300)]
    assert 0.75 <= np.mean(se2) / var <= 1.3, np.mean(se2) / var
    # the configured probe and the convenience are one computation; a raw uint32 key (still the
    # most common kind) gives the same probes as its typed form
    H = spectral.linearise(quadratic, x, A)
    one = spectral.Hutchinson(num_samples=10)(H, key=jax.random.key(0))
    conv = spectral.trace(quadratic, x, A, key=jax.random.key(0), num_samples=10)
    raw = spectral.trace(quadratic, x, A, key=jax.random.PRNGKey(0), num_samples=10)
    typed = spectral.trace(quadratic, x, A, key=jax.random.wrap_key_data(jax.random.PRNGKey(0)),
                           num_samples=10)
    assert one[:3] == conv[:3] and one.num_hvps == 10
    np.testing.assert_array_equal(one.samples, conv.samples)
    assert raw[:3] == typed[:3]
    np.testing.assert_array_equal(raw.samples, typed.samples)
