"""Adaptive Lanczos (the stop rule), the selective scheme, the basis-free run
(``store_basis=False``) and the probe built by a call (:class:`mhatheory.spectral.Lanczos`)."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import dense_tridiag, with_spectrum

from mhatheory import data, spectral
from mhatheory.models import deora
from mhatheory.spectral import _cycles, _recurrence

EPS = np.finfo(np.float64).eps
SEMI_ORTHOGONAL = np.sqrt(EPS)          # Simon's bound on |q_iᵀq_k|, i ≠ k
KEY = jax.random.key(0)

SPECTRA = {
    "indefinite": np.linspace(-1.0, 2.0, 200),
    "clustered": np.concatenate([[-0.3], 0.5 + 1e-3 * np.arange(198), [3.0]]),
    "repeated_extremes": np.concatenate([[-2.0] * 3, np.linspace(-1, 1, 194), [4.0] * 3]),
    "tiny_gap": np.concatenate([[-1.0, -1.0 + 1e-3], np.linspace(0, 1, 198)]),
    "tinier_gap": np.concatenate([[-1.0, -1.0 + 1e-6], np.linspace(0, 1, 197), [1.0 + 1e-7]]),
}


MATRICES = {name: with_spectrum(e) for name, e in SPECTRA.items()}


def quadratic(x, A):
    """½ xᵀAx: its Hessian is exactly A."""
    return 0.5 * x @ A @ x


def ritz_estimates(alpha, beta, j, which, k):
    """max over the k wanted Ritz pairs of T_j of β_j|s_{j−1}| and max|θ|, in numpy."""
    T = np.diag(alpha[:j]) + np.diag(beta[1:j], 1) + np.diag(beta[1:j], -1)
    theta, S = np.linalg.eigh(T)
    est = beta[j] * np.abs(S[j - 1])
    pick = slice(0, k) if which == "smallest" else slice(j - k, j)
    return est[pick].max(), np.abs(theta).max()


_adaptive = jax.jit(
    lambda A, v, tol, which: _recurrence.lanczos(lambda x: A @ x, v, 150, key=KEY,
                                                 reortho="selective", which=which, k=1,
                                                 tol=tol, every=1),
    static_argnames="which")


@pytest.mark.parametrize("name", list(SPECTRA))
@pytest.mark.parametrize("which", ["smallest", "largest"])
def test_the_adaptive_stop_comes_exactly_when_the_estimates_meet_the_tolerance(name, which):
    """Checked at every step, the recurrence stops at the first j whose Ritz estimate meets
    tol·max|θ|: never before (T_{j−1} misses it), and not later (T_j meets it); recomputed in
    numpy from the returned α, β."""
    tol = 1e-9
    kr = _adaptive(MATRICES[name], jax.random.normal(jax.random.key(1), (200,)), tol, which)
    j = int(kr.steps)
    alpha, beta = np.asarray(kr.alpha), np.asarray(kr.beta)
    assert 2 <= j < 150, j                       # it did stop early, and not before k + 1 steps
    est, scale = ritz_estimates(alpha, beta, j, which, 1)
    # the device's eigensolver and numpy's agree to ~1e-15 on T; the margin is 1e-3 relative
    assert est <= tol * scale * (1 + 1e-3)
    est_prev, scale_prev = ritz_estimates(alpha, beta, j - 1, which, 1)
    assert est_prev > tol * scale_prev * (1 - 1e-3)


_every5 = jax.jit(
    lambda A, v, tol, which: _recurrence.lanczos(lambda x: A @ x, v, 150, key=KEY,
                                                 reortho="selective", which=which, k=1,
                                                 tol=tol, every=5),
    static_argnames="which")


def test_near_the_tolerance_the_checks_come_every_step():
    """Checked every 5 steps, the recurrence checks every step from the first check whose Ritz
    estimate is within ``NEAR``·tol·max|θ|, so it stops at the first step after it that meets
    tol (recomputed in numpy from the returned α, β), not at the next multiple of 5."""
    tol, stops = 1e-9, []
    for name in SPECTRA:
        for which in ("smallest", "largest"):
            kr = _every5(MATRICES[name], jax.random.normal(jax.random.key(1), (200,)), tol,
                         which)
            j = int(kr.steps)
            alpha, beta = np.asarray(kr.alpha), np.asarray(kr.beta)

            def within(i, factor, alpha=alpha, beta=beta, which=which):
                est, scale = ritz_estimates(alpha, beta, i, which, 1)
                # numpy's eigensolver and the step's agree to ~1e-15 on T: a 1e-3 margin
                return est <= factor * tol * scale * (1 + 1e-3)

            first = next(c for c in range(5, j + 1, 5) if within(c, _recurrence.NEAR) or c == j)
            assert within(j, 1), (name, which)
            assert not any(within(i, 1 - 2e-3) for i in range(first, j)), (name, which, first, j)
            stops.append(j)
    # the rule changed something: some run stopped between two multiples of 5
    assert any(j % 5 for j in stops), stops


@pytest.mark.parametrize("name", list(SPECTRA))
def test_adaptive_probes_meet_the_tolerance_and_certify_the_truth(name):
    """The stop rule only decides when Ritz vectors are formed: a converged result has a true
    residual (recomputed here in numpy) within (tol + 100ε)·‖A‖, its interval holds the exact
    eigenvalue, and it takes fewer HVPs than the same run checked only at the full Krylov
    size."""
    eigs, A = SPECTRA[name], MATRICES[name]
    x0 = jnp.ones(len(eigs))
    tol = 1e-10
    for which, truth in (("smallest", eigs.min()), ("largest", eigs.max())):
        r = spectral.extreme_eigs(quadratic, x0, A, which=which, krylov=80, tol=tol,
                                  max_restarts=40)[0]
        fixed = spectral.extreme_eigs(quadratic, x0, A, which=which, krylov=80, tol=tol,
                                      max_restarts=40, check_every=80)[0]
        assert r.converged and fixed.converged
        v = np.asarray(r.vector)
        resid = np.linalg.norm(np.asarray(A) @ v - r.value * v)
        assert resid <= (tol + 100 * EPS) * np.abs(eigs).max()
        # the exact eigenvalue, up to the float64 rounding of A's entries (~1e-15 ‖A‖)
        assert r.interval[0] - 1e-13 <= truth <= r.interval[1] + 1e-13
        assert r.num_hvps < fixed.num_hvps, (r.num_hvps, fixed.num_hvps)


@pytest.mark.parametrize("name", list(SPECTRA) + ["few_distinct"])
def test_selective_orthogonalisation_keeps_the_basis_semi_orthogonal(name):
    """Simon's bound |q_iᵀq_k| ≤ √ε over the whole basis (breakdowns included: 4 distinct
    eigenvalues give a 4-dimensional Krylov space), T carries the extremes to float64
    precision, and it takes fewer Gram–Schmidt passes than partial reorthogonalisation."""
    eigs = SPECTRA.get(name, np.repeat([-1.0, 0.0, 1.0, 3.0], 50))
    A = MATRICES.get(name, with_spectrum(eigs))
    v = jax.random.normal(jax.random.key(1), (len(eigs),))
    Q, T, _, count = dense_tridiag(A, v, 120, "selective")
    Q = np.asarray(Q)
    assert np.abs(Q @ Q.T - np.eye(120)).max() <= SEMI_ORTHOGONAL
    theta = np.linalg.eigvalsh(np.asarray(T))
    scale = np.abs(eigs).max()
    # "float64 precision": ~4,500 ε·‖A‖, as in test_spectral.py (the "eig" row is looser)
    assert abs(theta[0] - eigs.min()) <= 1e-12 * scale
    assert abs(theta[-1] - eigs.max()) <= 1e-12 * scale
    if name != "few_distinct":          # there every pass is a breakdown, in both schemes
        assert int(count) < int(dense_tridiag(A, v, 120, "partial")[3])


def test_full_reorthogonalisation_keeps_the_basis_orthonormal_to_rounding():
    """FULL orthogonalises every new vector against the whole basis (a second pass only where
    the first removed more than 1 − 1/√2 of its norm): |q_iᵀq_k| stays at the rounding of a
    200-term dot product, a few ε (3–6 ε measured on these spectra), where partial or selective
    schemes allow √ε ≈ 1.5e-8; 32 ε leaves room for other BLAS summation orders."""
    for eigs in [*SPECTRA.values(), np.repeat([-1.0, 0.0, 1.0, 3.0], 50)]:
        v = jax.random.normal(jax.random.key(1), (len(eigs),))
        Q = np.asarray(dense_tridiag(with_spectrum(eigs), v, 120, "full")[0])
        assert np.abs(Q @ Q.T - np.eye(120)).max() <= 32 * EPS


@pytest.mark.parametrize("reortho", ["none", "partial", "selective", "full"])
def test_products_that_are_mostly_rounding_end_the_cycle_before_beta_grows(reortho):
    """Products Mv with M = A + N, N a random non-symmetric matrix as large as A (a float32
    operator whose products are mostly rounding, δ ≈ ‖H‖): β_{j+1} ≤ ‖Mq_j‖ holds for a
    symmetric operator whatever the basis's orthogonality, and once it fails every further
    step amplifies w (β reached 42–47 ≈ 30‖M‖ in 150 steps here, and overflowed on a float32
    classifier). Every scheme ends the cycle there, with β ≤ 2‖Mq‖ + its floor; FULL, whose
    Gram–Schmidt keeps the basis orthonormal, never meets it."""
    P = 200
    rng = np.random.default_rng(0)
    M = jnp.asarray(np.diag(np.linspace(-1, 1, P)) + 0.5 * rng.standard_normal((P, P)) / 14)
    kr = _recurrence.lanczos(lambda v: M @ v, jnp.asarray(rng.standard_normal(P)), 150,
                             key=jax.random.key(0), reortho=reortho, tol=1e-10)
    beta = np.asarray(kr.beta)[1:int(kr.steps) + 1]
    norm = np.linalg.norm(np.asarray(M), 2)
    assert np.all(np.isfinite(beta)) and beta.max() <= 2 * norm + 1e-12
    if reortho != "full":
        assert int(kr.steps) < 150


@pytest.fixture(scope="module")
def deora_problem():
    cfg = data.MixtureConfig(d=8, T=5, n=64, num_irrelevant=3)
    batch = data.sample(cfg, jax.random.key(0))
    params = deora.init_params(jax.random.key(1), 8, 4, init_scale=2.0)
    return params, batch


@pytest.mark.parametrize("which", ["smallest", "largest"])
def test_basis_free_lanczos_equals_the_stored_basis(deora_problem, which):
    """store_basis=False replays the recurrence instead of storing it: the same vectors, so the
    same value and interval as the stored plain recurrence to 1e-10 relative (the issue's
    bound; the replay repeats the same float64 operations, so in practice far closer), and
    the same value as the selective scheme, both converged."""
    params, batch = deora_problem
    free = spectral.extreme_eigs(deora.loss_fn, params, batch, which=which, key=KEY,
                                 store_basis=False)[0]
    stored = spectral.extreme_eigs(deora.loss_fn, params, batch, which=which, key=KEY,
                                   store_basis=True, reortho="none")[0]
    selective = spectral.extreme_eigs(deora.loss_fn, params, batch, which=which, key=KEY,
                                      store_basis=True, reortho="selective")[0]
    assert not free.store_basis and stored.store_basis and free.reortho == "none"
    assert free.converged and stored.converged and selective.converged
    for other in (stored, selective):
        assert abs(free.value - other.value) <= 1e-10 * abs(other.value)  # the docstring's
    for a, b in zip(free.interval, stored.interval, strict=True):
        assert abs(a - b) <= 1e-10 * abs(stored.value)  # ditto
    # twice the recurrence's HVPs, minus the last step, plus the same residual/rounding HVPs
    assert free.num_hvps == stored.num_hvps + free.lanczos_steps - 1 - free.restarts


def _temp_bytes(krylov, store_basis, P=4096):
    """XLA's temp memory of one compiled recurrence step with a Krylov size of ``krylov``."""
    reortho = _recurrence.Reortho.SELECTIVE if store_basis else _recurrence.Reortho.NONE
    cfg = _recurrence.Recurrence(krylov, P, "float64", reortho, store_basis,
                                 slots=4 if store_basis else 0)
    state = _recurrence.start(cfg, jnp.ones(P), key=KEY, tol=1e-10)  # a probe option
    compiled = jax.jit(_recurrence.step, static_argnums=0).lower(cfg, state,
                                                                 jnp.ones(P)).compile()
    return compiled.memory_analysis().temp_size_in_bytes + sum(
        x.nbytes for x in jax.tree.leaves(state))


def test_basis_free_memory_does_not_grow_with_the_krylov_size():
    """The memory of a recurrence step (its state and XLA's temp) for 20 and 200 Lanczos
    vectors at P = 4096: the stored basis grows by ≥ 180 P-vectors (the test can fail), the
    basis-free run by less than 10 (what grows is T and its eigenvectors, 200² numbers ≈ 10
    P-vectors at this P)."""
    per = 4096 * 8
    grow_stored = _temp_bytes(200, True) - _temp_bytes(20, True)
    grow_free = _temp_bytes(200, False) - _temp_bytes(20, False)
    assert grow_stored >= 180 * per, grow_stored / per
    assert grow_free < 10 * per, grow_free / per


def test_the_memory_budget_chooses_the_basis_free_run(deora_problem, monkeypatch):
    params, batch = deora_problem
    # cycles of krylov = 40: the model (P = 288) counts as large, as past SMALL_OPERATOR
    monkeypatch.setattr(_cycles, "SMALL_OPERATOR", 64)
    P = deora.parameter_count(8, 4)
    need_free = spectral.lanczos_bytes(P, 40, 1, jnp.float64, store_basis=False)
    need_stored = spectral.lanczos_bytes(P, 40, 1, jnp.float64, store_basis=True)
    auto = spectral.lambda_min(deora.loss_fn, params, batch, memory_budget_bytes=need_stored,
                               key=KEY)
    tight = spectral.lambda_min(deora.loss_fn, params, batch, memory_budget_bytes=need_free,
                                key=KEY)
    assert auto.store_basis and not tight.store_basis
    # stored against basis-free: the bound of test_basis_free_lanczos_equals_the_stored_basis
    assert abs(auto.value - tight.value) <= 1e-10 * abs(auto.value)
    with pytest.raises(ValueError, match="memory_budget_bytes"):
        spectral.lambda_min(deora.loss_fn, params, batch, memory_budget_bytes=need_free - 1)
    with pytest.raises(ValueError, match="memory_budget_bytes"):   # k > 1 needs the basis
        spectral.extreme_eigs(deora.loss_fn, params, batch, k=2, memory_budget_bytes=need_free)
    with pytest.raises(ValueError, match="store_basis"):
        spectral.extreme_eigs(deora.loss_fn, params, batch, k=2, store_basis=False)
    with pytest.raises(ValueError, match="needs the Krylov basis"):
        spectral.lambda_min(deora.loss_fn, params, batch, store_basis=False, reortho="partial")


def test_a_probe_is_built_by_a_call_and_applied_later(deora_problem):
    """The configured form: options checked when the probe is made, an operator at a point and
    an explicit key when it is applied; the convenience is the same computation."""
    params, batch = deora_problem
    probe = spectral.Lanczos(which="largest", krylov=30, tol=1e-11)  # tol: a probe option
    key = jax.random.key(3)
    H = spectral.linearise(deora.loss_fn, params, batch)
    r = probe(H, key=key)[0]
    same = spectral.lambda_max(deora.loss_fn, params, batch, key=key, krylov=30,
                               tol=1e-11)  # the same probe option
    assert r.value == same.value and r.num_hvps == same.num_hvps
    raw = probe(H, key=jax.random.PRNGKey(3))[0]               # a raw uint32 key works too
    assert raw.converged
    with pytest.raises(ValueError, match="key"):
        probe(H, key=None)
    with pytest.raises(ValueError, match="operator at a point"):
        probe(deora.loss_fn, key=key)
    with pytest.raises(ValueError, match="reortho"):
        spectral.Lanczos(reortho="sideways")
    with pytest.raises(ValueError, match="check_every"):
        spectral.Lanczos(check_every=0)
    assert spectral.Reortho.SELECTIVE == "selective" and spectral.Which.LARGEST == "largest"


@pytest.mark.parametrize("kw", [dict(k=2, reortho="full"), dict(k=1, reortho="partial")],
                         ids=["thick", "explicit"])
def test_a_compiled_run_takes_over_the_basis_the_last_run_at_its_point_left(kw):
    """A compiled run allocates no basis where a finished run at the same point left one of its
    size (``LinearOperator.swap_basis``): it takes the buffer over (donated) and zeroes the rows
    that run wrote, as each restart does with its cycle's, and its numbers are bit for bit those
    of a run on a fresh operator (restarts, thick or explicit, included). Rows left unzeroed
    change them: the compiled Gram–Schmidt reads whole blocks of rows."""
    A = MATRICES["tinier_gap"]

    def operator():
        return spectral.linearise(quadratic, jnp.zeros(200), A)

    probe = spectral.Lanczos(which="smallest", krylov=24, engine="compiled", max_restarts=30,
                             tol=1e-12, **kw)
    H = operator()
    with pytest.warns(spectral.ConvergenceWarning):     # one cycle: all 25 rows written
        spectral.Lanczos(which="largest", krylov=24, reortho="full", max_restarts=0,
                         engine="compiled")(H, key=KEY)
    left = H.swap_basis(shape=(25, 200))
    assert left[0].shape == (25, 200) and left[1] == 25
    H.swap_basis(left)
    got = probe(H, key=jax.random.key(3))
    assert left[0].is_deleted()
    want = probe(operator(), key=jax.random.key(3))
    assert got[0].restarts >= 1 and got[0].num_hvps == want[0].num_hvps
    for g, w in zip(got, want, strict=True):
        assert (g.value, g.interval, g.residual) == (w.value, w.interval, w.residual)


def test_an_operator_keeps_the_bases_of_the_last_two_krylov_sizes():
    """Runs of two Krylov sizes alternating at one point (a λmin of 80-vector cycles, a λmax of
    40) each take over the basis of their own size; a third size drops the oldest."""
    H = spectral.linearise(quadratic, jnp.zeros(200), MATRICES["tinier_gap"])

    def run(krylov):                            # one cycle each, converged or not
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", spectral.ConvergenceWarning)
            spectral.Lanczos(which="largest", krylov=krylov, engine="compiled", max_restarts=0,
                             tol=1e-3)(H, key=KEY)

    run(20)
    run(30)
    kept = [H.swap_basis(shape=(m + 1, 200)) for m in (20, 30)]
    assert [b[0].shape for b in kept] == [(21, 200), (31, 200)]
    for b in kept:
        H.swap_basis(b)
    run(20)                                     # takes the 21-row basis over (donated)
    assert kept[0][0].is_deleted() and not kept[1][0].is_deleted()
    run(40)                                     # a third size: the oldest (31 rows) goes
    assert H.swap_basis(shape=(31, 200)) is None
    assert H.swap_basis(shape=(21, 200)) is not None and H.swap_basis(shape=(41, 200))


def test_a_lambda_min_that_restarts_from_its_ritz_vector_gets_longer_cycles_where_they_fit():
    """Past THICK_LAMBDA_MIN_MAX_PARAMS a single λmin restarts from its Ritz vector: its cycles
    hold RESTART_KRYLOV vectors where that basis fits the memory budget, and DEFAULT_KRYLOV
    otherwise, as every other run without a krylov of its own does."""
    from mhatheory.spectral import _options

    P = spectral.THICK_LAMBDA_MIN_MAX_PARAMS + 1_000
    f64 = np.dtype(np.float64)

    def plan(**kw):
        cfg, keep, _ = _cycles.plan(spectral.Lanczos(**kw), P, P, f64, f64, True)
        return cfg.m, keep

    assert plan(which="smallest") == (_options.RESTART_KRYLOV, 0)
    fits_40 = _options.lanczos_bytes(P, _options.DEFAULT_KRYLOV, 1, f64, True)
    for kw in [dict(which="largest"), dict(which="smallest", krylov=30),
               dict(which="smallest", failure_prob=1e-3, max_hvps=45),
               dict(which="smallest", reortho="partial"),
               dict(which="smallest", memory_budget_bytes=fits_40)]:
        assert plan(**kw)[0] == kw.get("krylov", _options.DEFAULT_KRYLOV), kw
    m, keep = plan(which="smallest", k=2)
    assert m == _options.DEFAULT_KRYLOV and keep > 0        # thick restarts keep theirs
