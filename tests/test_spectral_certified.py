"""The certified Lanczos interval holds the true eigenvalue: against exactly known spectra (a
Hadamard-rotated diagonal, whose rounding is realistic but whose spectrum is exact), and against
dense float64 references of the Deora loss for float64 and float32 models."""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.linalg import hadamard

from mhatheory import data, precision, spectral, train
from mhatheory.models import deora
from mhatheory.spectral import _certificate


def _hadamard_loss(n):
    Hm = jnp.asarray(hadamard(n))

    def loss(p, lam):
        y = (Hm.astype(p["x"].dtype) @ p["x"]) / jnp.sqrt(jnp.asarray(n, p["x"].dtype))
        return 0.5 * jnp.sum(lam * y * y)       # Hessian HᵀΛH/n: spectrum exactly Λ

    return loss


def _spectrum(kind, n, rng):
    if kind == "gaussian":
        return rng.normal(size=n)
    if kind == "tiny_gap":
        return np.concatenate([[-1.0, -1.0 + 1e-6], rng.uniform(0, 5, n - 2), [5.0 + 1e-7]])[:n]
    # a small negative eigenvalue against a norm of 1e3 (unresolvable in float32)
    return np.concatenate([[-1e-3], rng.uniform(1e-4, 1e3, n - 1)])


LOSSES = {n: _hadamard_loss(n) for n in (64, 256)}


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@pytest.mark.parametrize("n", [64, 256])
@pytest.mark.parametrize("kind", ["gaussian", "tiny_gap", "small_negative"])
def test_interval_contains_the_exact_eigenvalue(dtype, n, kind):
    """Both intervals hold the exact eigenvalue. In float32, λmin = −1e-3 at ‖H‖ = 1e3 lies
    below the float32 acceptance threshold (100ε₃₂·‖H‖ ≈ 0.012, the HVP's rounding floor): the
    first cycle, on the widened (float64) products, resolves it where it converges (n = 64, in
    its 60 steps); at n = 256 the run restarts on float32 products, whose floor hides it, so it is
    not resolved and its deterministic interval stays open below (the probabilistic one does
    not)."""
    misses = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        lam = _spectrum(kind, n, rng).astype(np.dtype(dtype))
        exact = np.sort(lam.astype(np.float64))
        p = {"x": jax.random.normal(jax.random.key(seed), (n,), dtype)}
        for which, truth in (("smallest", exact[0]), ("largest", exact[-1])):
            unresolved = dtype == jnp.float32 and kind == "small_negative" \
                and which == "smallest" and n == 256
            with warnings.catch_warnings():
                warnings.simplefilter("ignore" if unresolved else "error",
                                      spectral.ConvergenceWarning)
                r = spectral.extreme_eigs(LOSSES[n], p, jnp.asarray(lam), which=which,
                                          key=jax.random.key(seed), krylov=min(60, n),
                                          max_restarts=40, tol=1e-12)[0]  # probe option
            assert r.converged != unresolved
            for name, iv in (("interval", r.interval), ("prob_interval", r.prob_interval)):
                if not iv[0] <= truth <= iv[1]:
                    misses.append((seed, which, name, truth, iv))
            assert np.isfinite(r.prob_interval).all()
    assert not misses, misses


def test_a_widened_run_ends_at_its_own_floor():
    """λmax = 5e-40 of a float32 quadratic (Hadamard-rotated diagonal scaled by 1e-40) whose
    top pair is 1e-4 or 1e-5 apart: float32 products of size 1e-40 are subnormal, so with
    krylov = 10 or 12 the restarts compare them at the Ritz vectors, find them far from the
    widened ones, say so and stay on the widened operator. Those restarts run to float64's
    floor (with krylov = 12 every run gets there): stopped at float32's acceptance threshold
    instead, with float64's rounding τ, the interval rested on Kato–Temple with the gap to a
    neighbouring Ritz value that had not yet resolved the pair, and missed λmax in 7 of these
    16 runs (by up to 1.8e-5 relative)."""
    n = 64
    misses = []
    for d in (1e-4, 1e-5):
        for seed in range(4):
            rng = np.random.default_rng(seed)
            lam = np.concatenate([rng.uniform(0, 4, n - 2), [5.0 - d, 5.0]]).astype(np.float32)
            p = {"x": jax.random.normal(jax.random.key(seed), (n,), jnp.float32)}
            for krylov in (10, 12):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", spectral.ConvergenceWarning)
                    with pytest.warns(precision.PrecisionWarning,
                                      match="widened operator instead"):
                        r = spectral.lambda_max(lambda q, lam: 1e-40 * LOSSES[n](q, lam), p,
                                                jnp.asarray(lam), key=jax.random.key(seed),
                                                krylov=krylov)
                assert r.converged or krylov == 10
                if r.converged and not r.interval[0] <= 5e-40 <= r.interval[1]:
                    misses.append((d, seed, krylov, r.interval))
    assert not misses, misses


def _deora(seed, trained):
    cfg = data.MixtureConfig(d=8, T=6, n=64, num_irrelevant=3)
    batch = data.sample(cfg, jax.random.key(seed))
    params = deora.init_params(jax.random.key(seed + 100), 8, 4, init_scale=2.0)
    if trained:
        params = train.gd(deora.loss_fn, params, batch, steps=200, lr=1.0).final_params
    return params, batch


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_interval_contains_the_dense_reference_on_the_deora_loss(dtype, trained):
    """On main 0 of 8 such intervals contained the dense value (zero width in float64; misses up
    to 72 ε·λmax in float32). A float32 model's reference is the dense Hessian of the same
    rounded weights and data, computed in float64; a float64 reference carries its own rounding,
    estimated by the asymmetry of its columns (×2) plus eigh's P·u·‖H‖."""
    for seed in range(2):
        params, batch = _deora(seed, trained)
        p = jax.tree.map(lambda a: a.astype(dtype), params)
        b = data.Batch(batch.X.astype(dtype), batch.y.astype(dtype))
        p64 = jax.tree.map(lambda a: a.astype(jnp.float64), p)
        b64 = data.Batch(b.X.astype(jnp.float64), b.y.astype(jnp.float64))
        H, asym = spectral.Dense().matrix(spectral.linearise(deora.loss_fn, p64, b64))
        ev = np.linalg.eigvalsh(np.asarray(H))
        ref_err = 2 * asym + ev.size * np.finfo(np.float64).eps * np.abs(ev).max()
        for which, truth in (("smallest", ev[0]), ("largest", ev[-1])):
            r = spectral.extreme_eigs(deora.loss_fn, p, b, which=which,
                                      key=jax.random.key(seed))[0]
            assert r.converged
            assert r.interval[0] - ref_err <= truth <= r.interval[1] + ref_err, (which, truth,
                                                                                  r.interval)
            if dtype == jnp.float32:
                # mixed precision: float64 recurrence, so λ is as accurate as the float32 HVP
                # allows, a few ε32·‖H‖, not the float32 sum over P entries
                assert abs(r.value - truth) <= 4 * np.finfo(np.float32).eps * np.abs(ev).max()


def test_a_float32_operators_fixed_rounding_is_inside_its_certificate():
    """The curvature term N of a float32 two-layer tanh classifier trained to a loss of 1e-3,
    its cross-entropy a callable differentiated by autodiff (the built-in ``"cross_entropy"``
    forms 1 − p without cancellation): its residuals softmax − onehot are ~1e-3, computed once
    at θ in float32 as p_t − 1, so the float32
    operator is N + E with E a fixed perturbation (3e-8 = 1e-5·‖N‖ here), linear in the
    vector and so invisible to the linearity defect (measured 6e-10); with float32 products
    alone both certified intervals miss, by 3e-8 and 1e-9, with intervals 1e-9 and 3e-9 wide.
    The first cycle runs on the widened operator (``LinearOperator.widened``): where it
    converges (the default: one cycle spans P = 42) no float32 product is used. With krylov = 8
    the runs restart: a restart whose float32 products agree with the widened ones at the Ritz
    vectors (within the acceptance threshold, 1.2e-5·‖N‖) runs on them, and its final vectors'
    widened products put E into δ; one whose products differ by more says so and stays on the
    widened operator. Every interval holds the eigenvalues of N at the same float32 weights,
    computed in float64 (dense eigh), and both paths are taken."""
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(k1, (32, 4))
    y = jnp.argmax(x[:, :3], axis=-1)

    def f(p, x):
        return jnp.tanh(x @ p["w1"]) @ p["w2"]

    N = spectral.Curvature(f, loss=lambda z, t: jax.nn.logsumexp(z) - z[t], output_ndim=1)
    p = {"w1": jax.random.normal(k2, (4, 6)), "w2": jax.random.normal(k3, (6, 3))}
    opt = optax.adam(0.05)

    @jax.jit
    def step(p, state):
        updates, state = opt.update(jax.grad(N.value)(p, x, y), state, p)
        return optax.apply_updates(p, updates), state

    state = opt.init(p)
    for _ in range(400):
        p, state = step(p, state)
    p32, x32 = jax.tree.map(lambda a: a.astype(jnp.float32), (p, x))
    p64, x64 = jax.tree.map(lambda a: a.astype(jnp.float64), (p32, x32))
    ev = np.linalg.eigvalsh(np.asarray(spectral.dense(N, p64, x64, y)))
    assert float(N.value(p64, x64, y)) < 2e-3              # the premise: near convergence
    eps32 = float(np.finfo(np.float32).eps)
    paths = set()
    for krylov in (None, 8):
        for seed in range(4):
            for probe, truth in ((spectral.lambda_min, ev[0]), (spectral.lambda_max, ev[-1])):
                with warnings.catch_warnings(record=True) as seen:
                    warnings.simplefilter("always", precision.PrecisionWarning)
                    r = probe(N, p32, x32, y, key=jax.random.key(seed), krylov=krylov)
                warned = any("widened operator instead" in str(w.message) for w in seen)
                # float32 restarts leave float32's rounding (≥ ε₃₂·|λ|) in δ
                switched = r.rounding >= eps32 * abs(truth)
                assert not (warned and switched)
                paths.add((krylov, warned, switched))
                assert r.converged and r.interval[0] <= truth <= r.interval[1], (truth, r)
                assert r.prob_interval[0] <= truth <= r.prob_interval[1]
    assert {(None, False, False), (8, True, False), (8, False, True)} <= paths, paths
    for probe, truth in ((spectral.lambda_min, ev[0]), (spectral.lambda_max, ev[-1])):
        # the exact route decomposes the widened operator (it missed by 3e-8 and 2e-9 before)
        r = probe(N, p32, x32, y, method="exact")
        assert r.interval[0] <= truth <= r.interval[1], (truth, r.interval)


def test_an_unconverged_interval_is_open_on_its_outer_side_and_warns():
    params, batch = _deora(0, False)
    with pytest.warns(spectral.ConvergenceWarning, match="did not converge"):
        lo = spectral.lambda_min(deora.loss_fn, params, batch, krylov=3, max_restarts=0)
    assert not lo.converged and lo.interval[0] == -np.inf and np.isfinite(lo.interval[1])
    with pytest.warns(spectral.ConvergenceWarning):
        hi = spectral.lambda_max(deora.loss_fn, params, batch, krylov=3, max_restarts=0)
    assert hi.interval[1] == np.inf and np.isfinite(hi.interval[0])


def test_the_upper_end_of_an_unconverged_lambda_min_is_still_rigorous():
    """λmin ≤ xᵀHx/xᵀx for any x: the Rayleigh side holds even without convergence."""
    params, batch = _deora(1, True)
    ev = np.linalg.eigvalsh(np.asarray(spectral.dense_hessian(deora.loss_fn, params, batch)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", spectral.ConvergenceWarning)
        for m in (2, 3, 5):
            lo = spectral.lambda_min(deora.loss_fn, params, batch, krylov=m, max_restarts=0)
            assert ev[0] <= lo.interval[1]


def test_track_records_show_convergence():
    params, batch = _deora(0, False)
    stacked = jax.tree.map(lambda a: a[None], params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", spectral.ConvergenceWarning)
        rec = spectral.track(deora.loss_fn, stacked, batch, krylov=3, max_restarts=0)[0]
    assert rec["lambda_min_converged"] is False and rec["lambda_min_interval"][0] == -np.inf
    assert "lambda_max_converged" in rec


def test_a_skipped_copy_of_a_repeated_eigenvalue_leaves_the_inner_ends_and_prob_interval():
    """Four smallest eigenvalues −1, −1, −1, −1 + 1e-9 of a 120 × 120 matrix: one start sees one
    copy of the repeated eigenvalue, so k = 4 can return further eigenvalues as converged pairs
    (the documented assumption of ``interval``). What holds regardless: each pair's inner end
    (λ_j ≤ θ_j + the orthogonality term, by Cauchy interlacing) and each ``prob_interval``."""
    P = 120
    lam = np.concatenate([[-1.0, -1.0, -1.0, -1.0 + 1e-9], np.linspace(0.1, 5.0, P - 4)])
    A = spectral.rotated(lam, jax.random.key(0))
    ev = np.sort(lam)
    skipped = 0
    for seed in range(3):
        for options in ({}, {"reortho": "full"}):
            rs = spectral.extreme_eigs(lambda p, A: 0.5 * p @ A @ p, jnp.zeros(P), A, k=4,
                                       key=jax.random.key(seed), **options)
            for r, e in zip(rs, ev, strict=False):
                assert e <= r.interval[1] + 1e-12 and r.prob_interval[0] <= e <= r.prob_interval[1]
                skipped += not r.interval[0] <= e
    assert skipped > 0      # the case the docstring describes occurs (key 1: two copies)


def _saturated_classifier(scale):
    """A linear softmax classifier on 16 well-separated points (P = 16), its weights ``scale``
    times a near-identity: the smallest logit margin is about 0.64·scale. Returns the loss,
    the weights, the data and the eigenvalues of its Hessian formed with 1 − p computed stably
    (as Σ of the other classes' p), which float64 autodiff rounds to 0 past margins of ~37."""
    y = jnp.arange(16) % 4
    x = jax.nn.one_hot(y, 4) + 0.1 * jax.random.normal(jax.random.key(0), (16, 4))
    W = scale * (jnp.eye(4) + 0.05 * jax.random.normal(jax.random.key(1), (4, 4)))

    def loss(W, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(x @ W, y).mean()

    X, Z = np.asarray(x), np.asarray(x @ W)
    H = np.zeros((16, 16))
    for xi, z in zip(X, Z, strict=True):
        t = np.argmax(z)
        e = np.exp(z - z[t])
        e[t] = 0.0
        p = e / (1 + e.sum())
        p[t] = 1 / (1 + e.sum())
        A = -np.outer(p, p)
        A[np.diag_indices(4)] = p * (1 - p)
        A[t, t] = p[t] * e.sum() / (1 + e.sum())          # p_t(1 − p_t), 1 − p_t not rounded
        H += np.kron(np.outer(xi, xi), A) / len(X)
    return loss, W, (x, y), np.linalg.eigvalsh(H)


@pytest.mark.parametrize("scale", [30.0, 100.0, 150.0])
def test_a_softmax_saturated_beyond_float64_is_certified_truly_or_not_at_all(scale):
    """Past float64's resolution (margins ≳ 37) autodiff's products carry a fixed error as large
    as the curvature (the top class's 1 − p rounds to 0), which the linearity check cannot see:
    without the symmetry test λmin's intervals miss the stably computed eigenvalue at scale
    100 and 150 for every key, and λmax certifies a converged interval that misses at 150. With
    it every interval holds, and where the products fail the symmetry test (λmin at 100, every
    probe at 150, margins ≈ 97) the probe says so and certifies nothing."""
    loss, W, args, ev = _saturated_classifier(scale)
    for which, truth in (("smallest", ev[0]), ("largest", ev[-1])):
        for k in (0, 1):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                r = spectral.extreme_eigs(loss, W, *args, which=which, key=jax.random.key(k),
                                          failure_prob=1e-6)[0]
            assert r.interval[0] <= truth <= r.interval[1], (which, k, r.interval, truth)
            assert r.prob_interval[0] <= truth <= r.prob_interval[1], (which, k, truth)
            asymmetric = [w for w in caught if issubclass(w.category, precision.PrecisionWarning)
                          and "not symmetric" in str(w.message)]
            if asymmetric:
                assert r.interval == r.prob_interval == (-np.inf, np.inf) and not r.converged
            # resolved at 30 (margins ≈ 19), beyond float64 for every probe at 150
            assert bool(asymmetric) == (scale == 150.0) or scale == 100.0, (which, k)


class _Matrix(spectral.Operator):
    """The operator v ↦ M v of a fixed matrix M, whatever θ (hashable by identity)."""

    def __init__(self, M):
        self.M = jnp.asarray(M)

    def check(self, params, args):
        pass

    def matvec_at(self, params, args):
        flat = jax.flatten_util.ravel_pytree(params)[0]
        return jax.tree_util.Partial(jnp.matmul, self.M), flat

    def scalar(self, params, *args):
        return 0.5 * jnp.sum(params * (self.M @ params))


def test_a_non_symmetric_operator_is_certified_nothing():
    """Lanczos assumes a symmetric operator; one that is not (here M = A + K, K antisymmetric at
    1e-6·‖A‖, far below what its Ritz values would show) fails the symmetry test, warns, and
    leaves every interval open, where its symmetric part alone is certified."""
    rng = np.random.default_rng(0)
    A = np.diag(np.linspace(-1.0, 1.0, 40))
    K = rng.standard_normal((40, 40))
    K = 1e-6 * (K - K.T) / np.linalg.norm(K - K.T, 2)
    theta = jnp.zeros(40)
    r = spectral.lambda_min(_Matrix(A), theta, key=jax.random.key(0))
    assert r.converged and r.interval[0] <= -1.0 <= r.interval[1]
    with pytest.warns(precision.PrecisionWarning, match="not symmetric"):
        r = spectral.lambda_min(_Matrix(A + K), theta, key=jax.random.key(0))
    assert r.interval == r.prob_interval == (-np.inf, np.inf) and not r.converged


@given(P=st.integers(2, 64), exponent=st.integers(-300, 300), seed=st.integers(0, 2**31))
def test_the_symmetry_test_passes_every_symmetric_operator_within_its_bound(P, exponent, seed):
    """A theorem of ``_certificate.symmetry_test``: for a symmetric A whose products err by at most
    δ (here NumPy's float64 matmul, |fl(Ax) − Ax| ≤ γ_P·|A||x| entrywise), the computed
    asymmetry never exceeds its bound, at any scale; an antisymmetric part of 1e-6·‖A‖, far
    above δ, exceeds it."""
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((P, P)) * 2.0 ** exponent
    A = (B + B.T) / 2
    unit = rng.standard_normal((3, P))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    z, vecs = unit[0], unit[1:]
    g = _certificate.gamma(P, np.finfo(np.float64).eps / 2)

    def products(M):
        rows = np.concatenate([z[None], vecs + z[None]])
        return vecs @ M.T, rows @ M.T

    delta = max(np.linalg.norm(g * (np.abs(A) @ np.abs(v))) for v in (z, *vecs))
    def test(Hx, Hd):
        sym = _certificate.certify(vecs, Hx, Hd, np.float64, z=z)[4]
        return _certificate.symmetry_test(sym, delta)

    a, allowed = test(*products(A))
    assert a <= allowed
    K = rng.standard_normal((P, P))
    K = 1e-6 * np.linalg.norm(A, 2) * (K - K.T) / np.linalg.norm(K - K.T, 2)
    Hx, Hd = products(A + K)
    a, allowed = test(Hx, Hd)
    assert a > allowed


@pytest.mark.parametrize("P, chunk, k, reference", [(37, 8, 1, False), (37, 8, 2, True),
                                                     (40, 8, 3, False), (20, 2**13, 2, True)])
def test_the_certificate_pass_takes_the_symmetry_tests_sums(P, chunk, k, reference):
    """``certify(..., z=z)`` takes the symmetry test's sums in its first pass, with and without a
    reference, on one block and on several with a zero-padded last one: each pair's
    |aᵀĤb − bᵀĤa|, ‖a‖ + ‖b‖ and Σ|a_i(Ĥb)_i| + Σ|b_i(Ĥa)_i| as NumPy computes them, to the
    sums' rounding (≤ 40 terms of size ≤ 30: ≤ 1e-12 relative for the norms and |·| sums, and
    ≤ 2e-13 absolute against an asymmetry of ~1e-6, so 1e-6 relative for it), and its θ, ρ, τ,
    δ are bit for bit those of a call without z."""
    from unittest import mock

    rng = np.random.default_rng(P + k)
    A = rng.standard_normal((P, P))
    A = A + A.T + 1e-6 * rng.standard_normal((P, P))          # an asymmetry to measure
    unit = rng.standard_normal((k + 1, P))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    z, vecs = unit[0], unit[1:]
    Hx = vecs @ A.T
    Hd = _certificate.defect_vectors(vecs, z) @ A.T
    ref = (Hx * (1 + 1e-12),) if reference else ()
    with mock.patch.object(_certificate, "CHUNK", chunk):
        *bounds, sym = _certificate.certify(vecs, Hx, Hd, np.float64, *ref, z=z)
        *alone, none = _certificate.certify(vecs, Hx, Hd, np.float64, *ref)
    assert none is None
    for a, b in zip(bounds, alone, strict=True):
        np.testing.assert_array_equal(a, b)
    units = np.concatenate([z[None], vecs[:2]])
    prods = np.concatenate([Hd[:1], Hx[:2]])
    i, j = np.triu_indices(len(units), 1)
    want = (np.abs(np.sum(units[i] * prods[j] - units[j] * prods[i], axis=1)),
            np.linalg.norm(units[i], axis=1) + np.linalg.norm(units[j], axis=1),
            np.sum(np.abs(units[i] * prods[j]) + np.abs(units[j] * prods[i]), axis=1))
    for got, w in zip((sym.a, sym.norms, sym.mags), want, strict=True):
        np.testing.assert_allclose(got, w, rtol=1e-6 if got is sym.a else 1e-12)
    assert np.all(sym.a > 0)


def _sum(v):
    """Each row of ``v`` summed by ``_certificate.row_sums``'s pairwise tree."""
    return _certificate.row_sums(lambda xp, v: v, (v,))


@given(n=st.integers(0, 70), rows=st.integers(1, 3), chunk=st.sampled_from([4, 8, 2**13]),
       spread=st.integers(0, 200), seed=st.integers(0, 2**31))
def test_pairwise_sums_obey_their_rounding_bound(n, rows, chunk, spread, seed):
    """A theorem of ``_certificate.row_sums``: every sum of n terms is within
    γ_{⌈log₂n⌉}·Σ|terms| of the exact sum (``math.fsum``), the block tree included (a small
    ``CHUNK`` puts these short rows through it), on terms whose magnitudes span 2^±spread; and a
    row builder applied per block gives the sums of the rows it builds on the whole array."""
    import math
    from unittest import mock

    rng = np.random.default_rng(seed)
    v = rng.standard_normal((rows, n)) * 2.0 ** rng.integers(-spread, spread + 1, (rows, n))
    w = rng.standard_normal((rows, n))
    with mock.patch.object(_certificate, "CHUNK", chunk):
        host = _sum(v)
        built = _certificate.row_sums(lambda xp, a, b, c: xp.concatenate([a * b, c * a]),
                                      (v, w), 3.0)
        whole = _sum(np.concatenate([v * w, 3.0 * v]))
    levels = math.ceil(math.log2(max(n, 2)))
    bound = _certificate.gamma(levels, np.finfo(np.float64).eps / 2) * np.abs(v).sum(-1)
    exact = np.array([math.fsum(r) for r in v])
    assert np.all(np.abs(host - exact) <= bound)
    np.testing.assert_array_equal(built, whole)


@pytest.mark.parametrize("n, chunk", [(0, 8), (1, 8), (7, 8), (8, 8), (33, 8), (70, 4),
                                      (2176, 2**13), (9001, 2**13)])
def test_pairwise_sums_agree_bitwise_on_host_and_xla(n, chunk):
    """The host's block-by-block pairwise sums and XLA's whole-array ones take the same tree
    (``_certificate.row_sums``), so they are the same numbers, on rows shorter than a block,
    exactly one block, and several with a zero-padded last one."""
    from unittest import mock

    v = np.random.default_rng(n).standard_normal((3, n)) * 1e3

    @functools.partial(jax.jit, static_argnums=1)
    def xla(v, chunk):             # chunk keys the trace, which reads the patched CHUNK
        return _sum(v)

    with mock.patch.object(_certificate, "CHUNK", chunk):
        np.testing.assert_array_equal(_sum(v),
                                      np.asarray(xla(jnp.asarray(v), chunk)))


@pytest.mark.parametrize("k", [1, 2])
def test_the_rounding_estimate_takes_the_products_the_run_has_made(k):
    """A converged one-cycle run from a random start pays its steps (the start's product among
    them), k + 1 residual products and 2 for the rounding estimate, whose z is the start (its
    product is the first step's). From a warm start at the converged vector, the
    first Ritz vector is nearly the start (x + z ≈ 2x, whose product is 2Ĥx up to exact
    scaling), so z is an independent draw at one more product; both estimates see the same
    HVP's rounding, to within the factor 4 that δ carries."""
    n = 64
    lam = jnp.asarray(_spectrum("gaussian", n, np.random.default_rng(0)))
    theta = {"x": jnp.zeros(n)}
    r = spectral.extreme_eigs(LOSSES[n], theta, lam, k=k, which="largest",
                              key=jax.random.key(0))
    assert all(e.converged for e in r) and r[0].restarts == 0
    assert r[0].num_hvps == r[0].lanczos_steps + (k + 1) + 2
    w = spectral.extreme_eigs(LOSSES[n], theta, lam, k=k, which="largest",
                              key=jax.random.key(1), v0=r[0].vector)
    assert w[0].converged and w[0].restarts == 0
    assert w[0].num_hvps == w[0].lanczos_steps + (k + 1) + 3
    assert 0.25 <= w[0].rounding / r[0].rounding <= 4
    top = np.sort(np.asarray(lam))[::-1]
    for res in (r, w):
        for i, e in enumerate(res):
            assert e.interval[0] <= top[i] <= e.interval[1]
