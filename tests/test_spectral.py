import functools
import threading
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import compilations, dense_tridiag, with_spectrum
from hypothesis import example, given
from hypothesis import strategies as st

from mhatheory import data, precision, spectral, train
from mhatheory.models import deora
from mhatheory.spectral import _cycles, _options, _recurrence, _restart
from mhatheory.testing import tol

REL = tol(np.float64, "eig")  # Lanczos extremes against dense eigh, relative to ‖H‖


def quadratic(x, A):
    """½ xᵀAx: its Hessian is exactly A, so a matrix with a prescribed spectrum is a loss."""
    return 0.5 * x @ A @ x


SPECTRA = {
    "indefinite": np.linspace(-1.0, 2.0, 200),
    "clustered": np.concatenate([[-0.3], 0.5 + 1e-3 * np.arange(198), [3.0]]),
    "repeated_extremes": np.concatenate([[-2.0] * 3, np.linspace(-1, 1, 194), [4.0] * 3]),
    "tiny_gap": np.concatenate([[-1.0, -1.0 + 1e-3], np.linspace(0, 1, 198)]),
}


KEY = jax.random.key(0)  # the random directions that continue a Lanczos run after a breakdown
SEMI_ORTHOGONAL = np.sqrt(np.finfo(np.float64).eps)  # Simon's bound on |q_iᵀq_k|, i ≠ k


def orthogonality_loss(Q):
    """max_{i≠k} |q_iᵀ q_k| (and |‖q_i‖² − 1|) for a basis stored as the rows of Q."""
    return np.abs(np.asarray(Q @ Q.T) - np.eye(Q.shape[0])).max()


@pytest.mark.parametrize("name", list(SPECTRA))
def test_lanczos_extremes_match_known_spectra(name):
    eigs = SPECTRA[name]
    A = with_spectrum(eigs)
    x = jnp.ones(len(eigs))
    # tol=1e-12: a probe option (the residual Lanczos must reach), not a tolerance of the test
    lo = spectral.lambda_min(quadratic, x, A, krylov=60, tol=1e-12, max_restarts=50)
    hi = spectral.lambda_max(quadratic, x, A, krylov=60, tol=1e-12, max_restarts=50)
    assert abs(lo.value - eigs.min()) <= REL * abs(eigs.min())
    assert abs(hi.value - eigs.max()) <= REL * abs(eigs.max())
    for r, true in ((lo, eigs.min()), (hi, eigs.max())):
        # loose: converged already means a residual ≤ (1e-12 + 100ε)·‖A‖ ≈ 4e-12
        assert r.residual < 1e-8 and r.converged
        # the certified interval holds the true eigenvalue (up to float64 rounding of A)
        assert r.interval[0] - 1e-12 <= true <= r.interval[1] + 1e-12
        np.testing.assert_allclose(jnp.linalg.norm(r.vector), 1.0, atol=tol(np.float64))


@pytest.mark.parametrize("reortho", ["selective", "partial", "full", "none"])
def test_every_reorthogonalisation_finds_the_deora_extremes(deora_problem, reortho):
    params, batch, H = deora_problem
    ev = np.linalg.eigvalsh(H)
    for r, true in ((spectral.lambda_min(deora.loss_fn, params, batch, reortho=reortho), ev[0]),
                    (spectral.lambda_max(deora.loss_fn, params, batch, reortho=reortho), ev[-1])):
        assert abs(r.value - true) <= REL * abs(true) and r.converged
    with pytest.raises(ValueError, match="reortho"):
        spectral.lambda_min(deora.loss_fn, params, batch, reortho="gram-schmidt")


@pytest.mark.parametrize("name", list(SPECTRA) + ["few_distinct"])
def test_partial_reorthogonalisation_keeps_the_basis_semi_orthogonal(name):
    """Simon's bound |q_iᵀq_k| ≤ √ε must hold for the whole basis, including across breakdowns
    (a matrix with 4 distinct eigenvalues has a 4-dimensional Krylov space from any start), and T
    must carry the extreme eigenvalues to float64 precision."""
    eigs = SPECTRA.get(name, np.repeat([-1.0, 0.0, 1.0, 3.0], 50))
    A = with_spectrum(eigs)
    m = 120
    Q, T, _, count = dense_tridiag(A, jax.random.normal(jax.random.key(1), (len(eigs),)), m)
    loss = orthogonality_loss(Q)
    assert loss <= SEMI_ORTHOGONAL, (loss, int(count))
    theta = np.linalg.eigvalsh(np.asarray(T))
    scale = np.abs(eigs).max()
    # "float64 precision": ~4,500 ε·‖A‖ (the extremes converge within 120 steps; the "eig" row,
    # 1e-8, is for a restarted probe against a dense reference, and looser)
    assert abs(theta[0] - eigs.min()) <= 1e-12 * scale
    assert abs(theta[-1] - eigs.max()) <= 1e-12 * scale
    # …and the plain recurrence really does lose orthogonality here (the test can fail)
    Qn, *_ = dense_tridiag(A, jax.random.normal(jax.random.key(1), (len(eigs),)), m, "none")
    assert orthogonality_loss(Qn) > 1e-3  # clearly lost: ~1e5 × Simon's √ε
    with pytest.raises(ValueError, match="reortho"):
        _recurrence.tridiag(lambda x: A @ x, jnp.ones(len(eigs)), m, "gram-schmidt", key=KEY)


_PROPERTY_N, _PROPERTY_M = 96, 48


def _probe_scale(A, v) -> float:
    """The power of two 2^−e ≈ 1/‖Av‖ (v normalised) by which a probe scales its operator
    before the recurrence sees it (``_cycles.run``): a spectrum at 1e-153 would otherwise
    have subnormal squares, which XLA flushes to zero."""
    A, v = np.asarray(A), np.asarray(v)
    norm = np.linalg.norm(A @ v / np.linalg.norm(v))
    return 2.0 ** -np.frexp(norm)[1] if norm > 0 else 1.0


_tridiag_jit = jax.jit(lambda A, v, scale: _recurrence.tridiag(
    lambda x: scale * (A @ x), v, _PROPERTY_M, key=KEY)[:2])


def _tridiag_compiled(A, v):
    """``(Q, T)`` of ``_PROPERTY_M`` steps of the compiled recurrence (partial
    reorthogonalisation) on A scaled as a probe scales it, with T scaled back (exactly)."""
    scale = _probe_scale(A, v)
    Q, T = _tridiag_jit(A, v, scale)
    return Q, np.asarray(T) / scale


def _tridiag_host(A, v):
    """As :func:`_tridiag_compiled`, on the host engine (NumPy)."""
    A, v, m = np.asarray(A), np.asarray(v), _PROPERTY_M
    scale = _probe_scale(A, v)
    cfg = _recurrence.Recurrence(m, A.shape[0], "float64", spectral.Reortho.PARTIAL,
                                 adaptive=False, host=True)
    state = _recurrence.start(cfg, v, key=np.array([7], np.uint64))
    state = _recurrence.run(cfg, lambda q: scale * (A @ q), state)
    j, a, b = int(state.j), state.alpha, state.beta
    T = np.diag(a[:j]) + np.diag(b[1:j], 1) + np.diag(b[1:j], -1)
    return state.Q[:j], T / scale


_TRIDIAG = {"compiled": _tridiag_compiled, "host": _tridiag_host}


@given(base=st.lists(st.floats(-1.0, 1.0), min_size=2, max_size=_PROPERTY_N),
       log_scale=st.floats(-6.0, 6.0), seed=st.integers(0, 10_000))
# found by Hypothesis (at LLVM level 0, the suite's): β₇ ≈ 1.7e-3 amplified a matvec rounding
# that the 2ε‖T‖ term underestimated, and |q₂ᵀq₈| reached 1.6e-8 > √ε
@example(base=[0.0, 0.5, 0.25, 0.0, 0.5625, 0.0, -0.8125, 0.75, 1e-06, 1.0, 1.0, 1.0, 1.0, 0.875],
         log_scale=1.0, seed=115)
# a spectrum at 1.9e-153: its squares are subnormal unless the operator is scaled as a probe does
@example(base=[0.0, 1.8760369014192318e-154], log_scale=1.0, seed=0)
@pytest.mark.parametrize("engine", ["compiled", "host"])
def test_partial_reorthogonalisation_property(engine, base, log_scale, seed):
    """Any spectrum (repeated values, clusters, breakdowns, scales 1e-6…1e6), on either engine:
    the basis stays semi-orthogonal and T's extreme Ritz values lie inside the spectrum (to
    rounding), which an orthonormal basis guarantees and a broken one does not."""
    eigs = 10.0**log_scale * np.resize(np.asarray(base), _PROPERTY_N)
    A = with_spectrum(eigs, seed)
    Q, T = _TRIDIAG[engine](A, jax.random.normal(jax.random.key(seed), (_PROPERTY_N,)))
    assert orthogonality_loss(Q) <= SEMI_ORTHOGONAL
    theta = np.linalg.eigvalsh(np.asarray(T))
    # relative rounding, plus XLA's flush-to-zero of subnormals (absolute, below `tiny`), which
    # Hypothesis reaches with eigenvalues of 2.2e-309
    slack = 1e-12 * np.abs(eigs).max() + 10 * np.finfo(np.float64).tiny
    assert eigs.min() - slack <= theta[0] and theta[-1] <= eigs.max() + slack


def test_partial_reorthogonalisation_restarting_from_a_converged_ritz_vector():
    """A restart begins at a nearly exact eigenvector, so β₁ ≈ 1e-12 and q₁ is mostly rounding
    noise that overlaps q₀ by ~ε‖H‖/β₁; the local ω_{j+1,j} must see this."""
    eigs = SPECTRA["indefinite"]
    A = with_spectrum(eigs)
    _, V = np.linalg.eigh(np.asarray(A))
    v = jnp.asarray(V[:, 0]) + 1e-13 * jax.random.normal(jax.random.key(3), (len(eigs),))
    m = 60
    Q, T, _, _ = dense_tridiag(A, v, m)
    assert orthogonality_loss(Q) <= SEMI_ORTHOGONAL
    # with an orthonormal basis no Ritz value can fall below λmin (up to ~4,500 ε·‖A‖ rounding)
    assert np.linalg.eigvalsh(np.asarray(T))[0] >= eigs.min() - 1e-12


def test_extreme_eigs_k_smallest():
    eigs = SPECTRA["indefinite"]
    rs = spectral.extreme_eigs(quadratic, jnp.ones(200), with_spectrum(eigs), k=3, krylov=60,
                               max_restarts=60, tol=1e-11)  # a probe option
    np.testing.assert_allclose([r.value for r in rs], eigs[:3], rtol=REL)


def test_the_default_krylov_takes_k_up_to_a_small_operators_size_and_refuses_beyond_it_early():
    """With krylov=None a small operator is spanned whole, so k = 45 > DEFAULT_KRYLOV pairs of a
    100-coordinate one are found; past SMALL_OPERATOR coordinates the cycle is DEFAULT_KRYLOV
    and the same k is refused once the operator's size is known, before its linearisation."""
    eigs = np.linspace(-1.0, 2.0, 100)
    rs = spectral.extreme_eigs(quadratic, jnp.ones(100), with_spectrum(eigs), k=45,
                               key=jax.random.key(0))
    np.testing.assert_allclose([r.value for r in rs], eigs[:45], atol=1e-9)
    big = _options.SMALL_OPERATOR + 1

    with pytest.raises(ValueError, match=f"k=45 needs more Lanczos vectors per cycle than the "
                                         f"default krylov={_options.DEFAULT_KRYLOV}"):
        spectral.extreme_eigs(lambda x: 0.5 * x @ x, jnp.ones(big), k=45)


@pytest.fixture(scope="module")
def deora_problem():
    cfg = data.MixtureConfig(d=8, T=5, n=64, num_irrelevant=3)
    batch = data.sample(cfg, jax.random.key(0))
    params = deora.init_params(jax.random.key(1), 8, 4, init_scale=2.0)
    return params, batch, np.asarray(spectral.dense_hessian(deora.loss_fn, params, batch))


def test_lanczos_matches_eigh_on_the_deora_loss(deora_problem):
    params, batch, H = deora_problem
    ev = np.linalg.eigvalsh(H)
    assert ev[0] < 0 < ev[-1]
    lo = spectral.lambda_min(deora.loss_fn, params, batch)
    hi = spectral.lambda_max(deora.loss_fn, params, batch)
    assert abs(lo.value - ev[0]) <= REL * abs(ev[0])
    assert abs(hi.value - ev[-1]) <= REL * abs(ev[-1])
    ex = spectral.lambda_min(deora.loss_fn, params, batch, method="exact")
    # the same dense matrix through two eigensolvers (jnp's and numpy's): the "identity" row
    assert abs(ex.value - ev[0]) <= tol(np.float64) and ex.num_hvps == H.shape[0]


@pytest.mark.parametrize("which", ["smallest", "largest"])
def test_lanczos_extremes_match_the_dense_eigenvalues(tiny_deora, which):
    dtype, params, batch, H64 = tiny_deora
    ev = np.linalg.eigvalsh(H64)
    norm = np.abs(ev).max()
    truth = ev[0] if which == "smallest" else ev[-1]
    probe = spectral.lambda_min if which == "smallest" else spectral.lambda_max
    r = probe(deora.loss_fn, params, batch, key=jax.random.key(3))
    assert r.converged
    assert abs(r.value - truth) <= tol(dtype, "eig") * norm, (r.value, truth)
    # the certified interval holds the reference, up to the reference's own rounding
    slack = tol(jnp.float64, "dense") * norm
    assert r.interval[0] - slack <= truth <= r.interval[1] + slack, (r.interval, truth)


def test_track_of_a_trajectory_without_stored_params_names_record_steps():
    traj = train.gd(lambda p, c: jnp.sum(c * p ** 2), jnp.ones(3), 1.0, steps=2, lr=0.1)
    with pytest.raises(ValueError, match="pass record_steps=.* to train.gd"):
        spectral.track(lambda p, c: jnp.sum(c * p ** 4), traj, 1.0, key=jax.random.key(0))


def test_track_names_the_stored_theta_that_is_not_finite():
    stacked = jnp.stack([jnp.ones(3), jnp.full(3, jnp.nan), 2 * jnp.ones(3), jnp.ones(3)])
    with pytest.raises(ValueError, match=r"at 1 of the 4 stored θ: indices 1 along the leading"):
        spectral.track(lambda x: jnp.sum(x ** 4), stacked, key=jax.random.key(0))


def test_memory_guard_raises_before_allocating():
    params = {"w": jnp.zeros(100_000)}  # 3·P²·8 B = 240 GB
    with pytest.raises(spectral.DenseTooLargeError, match="method='lanczos'"):
        spectral.dense_hessian(lambda p, a: jnp.sum(p["w"] ** 2), params, None)
    with pytest.raises(MemoryError):
        spectral.lambda_min(lambda p: jnp.sum(p["w"] ** 2), params, method="exact")
    assert spectral.dense_bytes(100_000, jnp.float64) == 4 * 8 * 10**10


def test_warm_starts_cut_hvps_along_a_trajectory():
    cfg = data.MixtureConfig(d=8, T=5, n=64, num_irrelevant=3)
    batch = data.sample(cfg, jax.random.key(0))
    params = deora.init_params(jax.random.key(1), 8, 4, init_scale=2.0)
    traj = train.gd(deora.loss_fn, params, batch, steps=12, lr=0.05, record_steps=range(0, 13, 2))
    kw = dict(which=("smallest",), krylov=12, tol=1e-9, max_restarts=200)  # probe options
    warm = spectral.track(deora.loss_fn, traj, batch, warm_start=True, **kw)
    cold = spectral.track(deora.loss_fn, traj.params_at, batch, warm_start=False, **kw)
    # a Trajectory's records carry its GD steps; stacked params alone, their index
    assert [r["step"] for r in warm] == list(range(0, 13, 2))
    assert [r["step"] for r in cold] == list(range(7))
    # both converged to a residual ≤ 1e-9·‖H‖ (the tol above) and ‖H‖ ≈ 2.4|λmin| here, so
    # they agree to ≲ 5e-9 relative: 1e-7 leaves 20× (Lanczos against Lanczos: no table kind)
    np.testing.assert_allclose([r["lambda_min"] for r in warm], [r["lambda_min"] for r in cold],
                               rtol=1e-7)
    assert sum(r["lambda_min_hvps"] for r in warm[1:]) < sum(r["lambda_min_hvps"] for r in cold[1:])


@pytest.mark.parametrize("reortho", ["none", "full"])
def test_a_warm_start_on_another_eigenvector_still_finds_the_extreme(reortho):
    """Started exactly on the eigenvector of λ = 2 (no component along λmin = −1's), a pure
    Krylov run would stop there at once and certify λmin = 2; the warm start's random part
    (WARM_START_MIX) makes every direction reachable, as from a random start."""
    d = jnp.asarray(np.concatenate([[-1.0, 2.0], np.linspace(0.5, 3.0, 28)]))

    def loss(p, d):
        return 0.5 * jnp.sum(d * p["x"] ** 2)

    v0 = np.zeros(30)
    v0[1] = 1.0
    r = spectral.lambda_min(loss, {"x": jnp.zeros(30)}, d, v0=v0, reortho=reortho)
    assert r.converged and r.interval[0] <= -1.0 <= r.interval[1]


#: A spectrum whose λmin probe restarts with krylov=20: four eigenvalues within 1e-2 at the
#: bottom, the rest spread over [0, 2].
RESTARTING = np.concatenate([np.linspace(-1.0, -0.99, 4), np.linspace(0.0, 2.0, 116)])


def test_auto_thick_restarts_a_single_lambda_min(monkeypatch):
    """Reortho.AUTO orthogonalises a single λmin in full on a model of up to
    THICK_LAMBDA_MIN_MAX_PARAMS parameters, so its restarts keep the Ritz pairs nearest the
    bottom: on a spectrum whose λmin needs restarts it takes fewer HVPs than restarting from
    the Ritz vector alone (``NONE``, the choice past the threshold, for λmax and for a
    failure_prob run), and both certify the same eigenvalue. The rule reads the model's
    parameter count P, not a block's size. The operator of 120 coordinates counts as large
    here (below SMALL_OPERATOR every AUTO run is FULL)."""
    monkeypatch.setattr(_cycles, "SMALL_OPERATOR", 64)
    A, x0 = with_spectrum(RESTARTING, seed=1), jnp.zeros(120)
    auto, plain = (spectral.lambda_min(quadratic, x0, A, key=KEY, krylov=20, reortho=r)
                   for r in ("auto", "none"))
    assert (auto.reortho, plain.reortho) == ("full", "none") and auto.restarts > 0
    assert auto.num_hvps < plain.num_hvps
    for r in (auto, plain):
        assert r.converged and r.interval[0] <= -1.0 <= r.interval[1]
    others = [spectral.lambda_max(quadratic, x0, A, key=KEY, krylov=20),
              spectral.lambda_min(quadratic, x0, A, key=KEY, krylov=20, failure_prob=1e-3)]
    monkeypatch.setattr(_cycles, "THICK_LAMBDA_MIN_MAX_PARAMS", 119)
    others.append(spectral.lambda_min(quadratic, x0, A, key=KEY, krylov=20))
    # a block of 100 coordinates keeps NONE too: its vectors have all P = 120 entries, and
    # Gram–Schmidt works on them
    split = {"a": jnp.zeros(100), "b": jnp.zeros(20)}
    op = spectral.linearise(lambda p, A: quadratic(jnp.concatenate([p["a"], p["b"]]), A),
                            split, A)
    others.append(spectral.Lanczos(krylov=20)(op.restrict("a"), key=KEY)[0])
    assert [r.reortho for r in others] == ["none"] * 4


@pytest.mark.parametrize("options", [
    {}, {"reortho": "none"}, {"k": 3}, {"reortho": "partial"},
    {"reortho": "full", "which": "largest", "k": 2}, {"store_basis": False},
    {"failure_prob": 1e-3}, {"v0": np.ones(120)},
    {"k": 2, "spectrum": np.repeat([-1.0, 0.5, 2.0], 40)},
], ids=["auto-thick", "none", "selective-thick", "partial", "full-largest", "basis-free", "prob",
        "warm", "breakdown"])
def test_both_engines_run_the_same_probe(options):
    """The host engine (NumPy) and the compiled one draw the same start from the key and run
    the same recurrence; their numbers differ by rounding (a few ε‖H‖, from sums taken in
    another order), which on these spectra tips no discrete decision (a reorthogonalisation, a
    stop, a restart): the same steps, restarts and products, and both certified intervals hold
    the eigenvalues. Three distinct eigenvalues span a Krylov space of three dimensions: the
    recurrence breaks down and continues along random directions drawn from the key."""
    options = dict(options)
    spectrum = options.pop("spectrum", RESTARTING)
    A = with_spectrum(spectrum, seed=1)
    runs = {engine: spectral.extreme_eigs(quadratic, jnp.zeros(120), A, key=KEY, krylov=20,
                                          engine=engine, **options)
            for engine in ("host", "compiled")}
    exact = np.sort(spectrum)
    if options.get("which") == "largest":
        exact = exact[::-1]
    for j, (h, c) in enumerate(zip(runs["host"], runs["compiled"], strict=True)):
        assert (h.num_hvps, h.restarts, h.converged) == (c.num_hvps, c.restarts, c.converged)
        assert abs(h.value - c.value) <= REL * 2.0
        for r in (h, c):
            assert r.interval[0] <= exact[j] <= r.interval[1]
            assert r.prob_interval[0] <= exact[j] <= r.prob_interval[1]
    # the restart paths are exercised
    assert runs["host"][0].restarts > 0 or set(options) & {"failure_prob", "k"}


@pytest.mark.parametrize("one_program_max, programs", [
    (None, ["jit(_direct)"]), (10, ["jit(_apply)", "jit(_linearise)"])])
def test_a_first_host_run_compiles_the_model_alone(one_program_max, programs, monkeypatch):
    """On the host engine a convenience's first call compiles the model's product and nothing
    else: one program below ONE_PROGRAM_MAX_PARAMS parameters, the linearisation and its product
    above; the recurrence (its step, start, Ritz vectors, certificate) runs in NumPy, and the
    draws and the operator's mask are made on the host. Both forms find the same eigenvalue."""
    P = 57 if one_program_max is None else 59           # sizes no other test compiles
    if one_program_max is not None:
        monkeypatch.setattr(_options, "ONE_PROGRAM_MAX_PARAMS", one_program_max)
    A, x0 = with_spectrum(np.linspace(-1.0, 2.0, P), seed=P), jnp.zeros(P)
    with compilations() as seen:
        r = spectral.lambda_min(quadratic, x0, A, key=KEY, engine="host")
    assert r.converged and abs(r.value + 1.0) <= REL * 2.0
    assert sorted(seen) == programs, seen


@pytest.mark.parametrize("impl", ["threefry2x32", "rbg"])
def test_derived_keys_are_independent_reproducible_and_compile_nothing(impl):
    """per_block's keys per block and extreme come from the parent key on the host: distinct
    paths give distinct keys of the parent's implementation, a path gives the same key every
    time, and deriving compiles no program."""
    key = jax.random.key(5, impl=impl)
    with compilations() as seen:
        keys = [_options.derive_key(key, i, j) for i in range(3) for j in range(2)]
        again = _options.derive_key(key, 2, 1)
    assert not seen, seen
    assert len({tuple(np.asarray(jax.random.key_data(k)).ravel()) for k in keys}) == 6
    assert np.array_equal(jax.random.key_data(again), jax.random.key_data(keys[-1]))
    assert all(jax.random.key_impl(k) == jax.random.key_impl(key) for k in keys)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@pytest.mark.parametrize("engine", ["host", "compiled"])
def test_a_vanishing_hessian_is_certified_exactly(dtype, engine):
    """A zero Hessian: every product is exactly 0, so λmin = 0 is certified with a zero-width
    interval in float32 as in float64 (a rounding floor of 0 has nothing to resolve)."""
    r = spectral.lambda_min(lambda w: 0.0 * jnp.sum(w**2), jnp.ones(10, dtype), key=KEY,
                            engine=engine)
    assert r.converged and r.value == 0.0 and r.interval == (0.0, 0.0)


@pytest.mark.parametrize("probe, truth", [(spectral.lambda_max, 2e-45),
                                          (spectral.lambda_min, 2e-46)])
def test_float32_products_that_underflow_are_never_used(probe, truth):
    """A loss scaled by 1e-46: every float32 product underflows to exactly 0 while the float64
    Hessian is 2e-46·diag(1, …, 10). The first cycle runs on the widened operator: where it
    converges (one cycle spans the space) no float32 product is used; with krylov = 5 the run
    restarts, compares the float32 products at its Ritz vectors, finds them all 0, says so and
    restarts on the widened operator. Either way the eigenvalue, not the float32 operator's 0."""
    def loss(w):
        return 1e-46 * jnp.sum(jnp.arange(1, 11) * w**2)

    with warnings.catch_warnings():
        warnings.simplefilter("error", precision.PrecisionWarning)
        r = probe(loss, jnp.ones(10, jnp.float32), key=KEY)
    assert r.converged and r.interval[0] <= truth <= r.interval[1]
    assert r.value == pytest.approx(truth, rel=1e-12)
    with pytest.warns(precision.PrecisionWarning, match="widened operator instead"):
        r = probe(loss, jnp.ones(10, jnp.float32), key=KEY, krylov=5)
    assert r.converged and r.interval[0] <= truth <= r.interval[1] and r.restarts > 0


@pytest.mark.parametrize("scale", [1.0, 1e-46])
@pytest.mark.parametrize("budget, store_basis", [(7, None), (8, False), (9, False), (12, None),
                                                 (20, None), (60, None), (41, False)])
def test_a_float32_run_keeps_its_budget_through_its_switch(budget, store_basis, scale):
    """A float32 run with krylov = 3 restarts: its first restart costs the float32 products at
    the Ritz vectors and the widened operator's rounding estimate, and a run that switches to
    float32 products (scale 1) reserves its final vectors' widened products; one whose products
    all underflow (scale 1e-46) stays widened. ``max_hvps`` bounds every product (a basis-free
    run's replay costs its cycle's steps less the one taken before it: 9 took 10), and the
    probabilistic end holds."""
    def loss(w):
        return scale * jnp.sum(jnp.arange(1, 11) * w**2)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = spectral.lambda_max(loss, jnp.ones(10, jnp.float32), key=KEY, max_hvps=budget,
                                store_basis=store_basis, krylov=3)
    assert r.num_hvps <= budget
    assert r.prob_interval[1] >= 20 * scale and r.interval[0] <= 20 * scale <= r.interval[1]


def test_repeated_calls_compile_nothing_new(deora_problem):
    """Another point and other data of the same shapes: the linearisation, the HVP and the
    recurrence are all compiled programs already."""
    params, batch, _ = deora_problem
    spectral.lambda_min(deora.loss_fn, params, batch, key=jax.random.key(0))
    other = data.sample(data.MixtureConfig(d=8, T=5, n=64, num_irrelevant=3), jax.random.key(9))
    moved, key = jax.tree.map(lambda a: 1.1 * a, params), jax.random.key(1)
    with compilations() as seen:
        spectral.lambda_min(deora.loss_fn, moved, other, key=key)
    assert not seen, seen


@pytest.mark.parametrize("P", [47, 49])
def test_a_first_lambda_min_compiles_its_recurrence_on_a_worker(P, monkeypatch):
    """With the worker on (MHATHEORY_BACKGROUND_COMPILE=1), lambda_min starts the recurrence's
    compilation (a stand-in run of the same probe and size) on a worker thread before it
    linearises the model: the real run then compiles none of the recurrence's programs itself,
    each is compiled once, and the result is bit for bit the one of a run with the worker off
    (the default; P = 49 compiles everything on the main thread). On a CPU the certificate
    and the Ritz vectors' products are handled in NumPy, so nothing compiles them."""
    A = with_spectrum(np.linspace(-1.0, 2.0, P), seed=P)
    kw = dict(key=jax.random.key(0), krylov=20, engine="compiled")
    monkeypatch.setenv("MHATHEORY_BACKGROUND_COMPILE", "0" if P == 49 else "1")
    with compilations(threads=True) as seen:
        r = spectral.lambda_min(quadratic, jnp.zeros(P), A, **kw)
    main = threading.main_thread().name
    for program in ("jit(_initial)", "jit(_compiled_step)"):
        where = [t for name, t in seen if name == program]
        assert len(where) == 1, (program, seen)
        assert (where[0] == main) == (P == 49), (program, seen)
    assert not {"jit(certify)", "jit(_residuals)", "jit(stack)"} & {name for name, _ in seen}
    monkeypatch.setenv("MHATHEORY_BACKGROUND_COMPILE", "0")
    again = spectral.lambda_min(quadratic, jnp.zeros(P), A, **kw)
    assert r.value == again.value and r.interval == again.interval and r.converged


@pytest.mark.parametrize("kwargs, match", [
    ({"which": "middle"}, "which must be"),
    ({"method": "power"}, "method must be"),
    ({"v0": jnp.ones(3)}, "v0 must have"),
    ({"k": 0}, "k must be"),
    ({"k": 2, "reortho": "none"}, "ghost"),
    ({"engine": "gpu"}, "engine must be one of"),
])
def test_bad_arguments(deora_problem, kwargs, match):
    params, batch, _ = deora_problem
    with pytest.raises(ValueError, match=match):
        spectral.extreme_eigs(deora.loss_fn, params, batch, **kwargs)


def _nan_curvature(p, d):
    """NaN at p = 1 (sqrt(p − 2) on two coordinates), and so is its Hessian."""
    return jnp.sum(jnp.sqrt(p["w"][:2] - 2.0)) + jnp.sum(d * p["w"] ** 2)


def _kinked(p, d):
    """Finite at p = 1 (|p − 1| on two coordinates, as sqrt((p − 1)²)), its Hessian is not."""
    return jnp.sum(jnp.sqrt((p["w"][:2] - 1.0) ** 2)) + jnp.sum(d * p["w"] ** 2)


@pytest.mark.parametrize("loss, cause", [
    (_nan_curvature, "and the loss itself is nan at these params"),
    (_kinked, "the Hessian .* is not finite at these params and data .*not twice differentiable"),
], ids=["nan-loss", "kink"])
@pytest.mark.parametrize("probe, where", [
    (functools.partial(spectral.lambda_min, method="exact"), "in its dense matrix"),
    (functools.partial(spectral.lambda_max, method="exact"), "in its dense matrix"),
    (spectral.lambda_min, "at the start vector"),
    (spectral.trace, "at a Rademacher probe"),
    (spectral.spectral_density, "along an SLQ run"),
])
def test_a_hessian_that_is_not_finite_is_an_error_naming_it(probe, where, loss, cause):
    """Finite params and data whose Hessian is NaN on two coordinates: every probe refuses with
    the same FloatingPointError, never a converged result or a NaN estimate, and names the
    cause: a loss that is itself NaN there, else a loss that is not twice differentiable."""
    p, d = {"w": jnp.ones(30)}, jnp.linspace(-1.0, 2.0, 30)
    with pytest.raises(FloatingPointError, match=f"product is NaN/Inf {where}.*{cause}"):
        probe(loss, p, d, key=jax.random.key(0))


@pytest.mark.parametrize("method, option, match", [
    ("lanczos", "krylow", r"unknown option 'krylow' \(did you mean 'krylov'\?\) for "
                          r"method='lanczos'; it takes check_every, engine, "),
    ("exact", "krylov", r"unknown option 'krylov' for method='exact'; it takes k, "
                        r"memory_budget_bytes, which\."),
])
def test_an_unknown_option_is_named_with_the_options_there_are(method, option, match):
    for probe in (spectral.lambda_min, spectral.lambda_max):
        with pytest.raises(TypeError, match=match):
            probe(quadratic, jnp.zeros(3), jnp.eye(3), method=method, **{option: 5})
        for fixed in ({"k": 2}, {"which": "largest"}):
            with pytest.raises(TypeError, match=f"takes no {next(iter(fixed))}; use "
                                                r"extreme_eigs\(\.\.\., k=, which=\)"):
                probe(quadratic, jnp.zeros(3), jnp.eye(3), method=method, **fixed)


@pytest.mark.parametrize("which", ["smallest", "largest"])
def test_the_exact_route_takes_every_eigenpair_and_a_one_parameter_model(which):
    """k = P (no neighbour pair) and P = 1 were refused with 'k must be smaller than P', which
    only Lanczos needs."""
    one = spectral.extreme_eigs(lambda p, c: (p["w"][0] ** 2 - c) ** 2, {"w": jnp.asarray([0.3])},
                                jnp.asarray(1.0), method="exact", which=which)[0]
    assert one.interval[0] <= 12 * 0.09 - 4.0 <= one.interval[1]       # d²/dw² (w² − 1)²
    every = spectral.extreme_eigs(lambda p: jnp.sum(jnp.arange(1.0, 4.0) * p ** 2), jnp.ones(3),
                                  k=3, method="exact", which=which)
    for res, want in zip(every, [2.0, 4.0, 6.0][::1 if which == "smallest" else -1], strict=True):
        assert res.interval[0] <= want <= res.interval[1]
    with pytest.raises(ValueError, match="method='exact' takes k up to the size"):
        spectral.extreme_eigs(lambda p: jnp.sum(p ** 2), jnp.ones(3), k=3)


@pytest.mark.parametrize("k", [1, 3])
def test_thick_restarts_keep_the_certificate(k):
    """A Krylov space of 16 on a spectrum whose two lowest eigenvalues are 1e-3 apart needs
    several cycles; with selective reorthogonalisation each restart keeps the wanted Ritz
    vectors and their neighbours (thick restart). The k pairs still converge, each certified
    interval holds its eigenvalue (up to float64 rounding of A, 1e-12), and the probabilistic
    end still holds the smallest."""
    eigs = SPECTRA["tiny_gap"]
    A = with_spectrum(eigs)
    rs = spectral.extreme_eigs(quadratic, jnp.ones(len(eigs)), A, k=k, krylov=16,
                               max_restarts=200, reortho="selective", key=jax.random.key(4))
    assert rs[0].restarts > 0 and all(r.converged for r in rs)
    for r, true in zip(rs, eigs[:k], strict=True):
        assert r.interval[0] - 1e-12 <= true <= r.interval[1] + 1e-12, (r.interval, true)
    assert rs[0].prob_interval[0] - 1e-12 <= eigs[0]


def test_a_small_operator_is_orthogonalised_in_full_and_spans_its_space_in_one_cycle():
    """On 20 coordinates whose smallest ten eigenvalues lie within 1e-8 of each other, the
    default (``Reortho.AUTO``) runs with full reorthogonalisation: one cycle reaches the
    invariant subspace, so λmin comes within the certificate after at most P steps, plus k + 1
    residual products and 3 for the rounding estimate. Without reorthogonalisation the run
    restarts from its Ritz vector and spends several times that."""
    eigs = np.concatenate([-1 + 1e-9 * np.arange(10), np.linspace(0, 1, 10)])
    op = spectral.linearise(quadratic, jnp.zeros(20), with_spectrum(eigs))
    auto, plain = (spectral.Lanczos(tol=1e-12, reortho=r)(op, key=jax.random.key(1))[0]
                   for r in ("auto", "none"))
    assert auto.reortho == "full" and auto.converged
    assert auto.num_hvps <= 20 + 2 + 3, auto.num_hvps
    assert auto.interval[0] <= eigs[0] <= auto.interval[1]
    assert plain.num_hvps > 2 * auto.num_hvps, (plain.num_hvps, auto.num_hvps)


@pytest.mark.parametrize("engine", ["host", "compiled"])
@pytest.mark.parametrize("eigs, k", [
    ([-1.0, -1.0, -1.0, -0.3, -0.1, 0.5, 2.0, 2.0], 2),
    ([-2.0] * 15 + [5.0] * 15, 3)])
def test_k_pairs_count_the_copies_of_a_repeated_eigenvalue(eigs, k, engine):
    """The Krylov space of one start holds one vector of each eigenspace: it becomes invariant
    (β ≈ 1e-13) with every wanted Ritz pair exact, but the copies of a repeated λmin are not
    among them. A run for k > 1 goes on past that point, so the k pairs are the k smallest
    eigenvalues counted with multiplicity, each inside its certified interval."""
    eigs = np.asarray(eigs)
    op = spectral.linearise(quadratic, jnp.zeros(len(eigs)), with_spectrum(eigs))
    for seed in range(3):
        rs = spectral.Lanczos(k=k, engine=engine)(op, key=jax.random.key(seed))
        for r, true in zip(rs, eigs[:k], strict=True):
            assert r.converged and r.interval[0] <= true <= r.interval[1], (seed, r, true)


def test_the_convergence_warning_speaks_in_the_operators_units():
    """A run scales the operator by 2^−e inside; its warning quotes the residual and tol·‖H‖
    in the user's units: for a loss scaled by 1e-6, the residual the result reports."""
    A = 1e-6 * with_spectrum(np.linspace(-1.0, 1.0, 200))
    op = spectral.linearise(quadratic, jnp.zeros(200), A)
    with pytest.warns(spectral.ConvergenceWarning) as caught:
        r = spectral.Lanczos(krylov=5, max_restarts=0)(op, key=jax.random.key(0))[0]
    quoted = float(str(caught[0].message).split("residual ")[1].split(" ")[0])
    assert quoted == pytest.approx(r.residual, rel=0.01)       # printed to 3 digits


def test_a_warm_start_that_misses_the_block_is_named():
    """A warm start that is zero on a block's coordinates, with no random part, has nothing to
    start from: a clear error about v0, before any product."""
    p = {"a": jnp.ones(3), "b": jnp.ones(4)}
    block = spectral.linearise(lambda p: jnp.sum(p["a"] ** 2) + jnp.sum(p["b"] ** 4), p
                               ).restrict("a")
    with pytest.raises(ValueError, match="v0 is zero on the coordinates of this block"):
        spectral.Lanczos(warm_start_mix=0.0)(block, key=jax.random.key(0),
                                             v0=jnp.array([0.0, 0, 0, 1, 1, 1, 1]))


def test_restarts_stop_at_the_rounding_floor_of_the_product():
    """½xᵀ(A + B)x − ½xᵀBx with ‖B‖ = 1e8 has Hessian A (‖A‖ = 1), but each product carries a
    rounding of ≈ ε·‖B‖ ≈ 1e-8, far above tol = 1e-12: no restart can bring the computed
    residual below that noise. The run stops at the first restart that fails to halve the
    residual once the residual lies within the measured rounding δ, instead of spending its
    200 restarts, and says why; its Rayleigh end still holds λmin."""
    eigs = np.linspace(-1.0, 1.0, 200)
    A = with_spectrum(eigs)
    B = 1e8 * with_spectrum(np.linspace(1.0, 2.0, 200), seed=1)

    def noisy(x):
        return quadratic(x, A + B) - quadratic(x, B)

    op = spectral.linearise(noisy, jnp.zeros(200))
    probe = spectral.Lanczos(tol=1e-12, max_restarts=200)
    with pytest.warns(spectral.ConvergenceWarning, match="no restart can reach it"):
        r = probe(op, key=jax.random.key(2))[0]
    assert not r.converged and r.hvp_error > 1e-12
    assert r.restarts <= 5, r.restarts
    assert eigs[0] <= r.interval[1]


@pytest.mark.parametrize("which", ["smallest", "largest"])
def test_a_thick_restart_continues_a_valid_lanczos_relation(which):
    """After a cycle of 16 steps, ``thick_restart`` keeps 4 Ritz pairs: the restarted rows B
    (the rotated Ritz vectors and the old q_m) and the next vector q stay semi-orthogonal, H Bᵀ
    = Bᵀ T + ‖r‖ q e_lastᵀ holds (the relation the recurrence continues from), and T, the
    Rayleigh quotient on a span that contains the kept Ritz vectors, has an extreme eigenvalue
    at least as extreme as the best of the cycle (min–max): nothing learned is lost. Tolerance:
    √ε, Simon's semi-orthogonality of the basis the Ritz vectors are formed from (‖A‖ = 1)."""
    eigs = SPECTRA["tiny_gap"]
    A = with_spectrum(eigs)
    w = spectral.Which(which)
    cfg = _recurrence.Recurrence(m=16, size=len(eigs), dtype="float64",
                                 reortho=spectral.Reortho.SELECTIVE, which=w, k=1, slots=4,
                                 adaptive=False)

    def apply(q):
        return A @ q

    def extreme(state):
        T = _recurrence.tridiagonal(state.alpha, state.beta, state.j, 16, np.nan)
        ev = np.linalg.eigvalsh(np.asarray(T)[:int(state.j), :int(state.j)])
        return ev[0] if which == "smallest" else ev[-1]

    state = _recurrence.run(cfg, apply, _recurrence.start(cfg, jnp.ones(len(eigs)), key=KEY))
    new = _restart.thick_restart(cfg, state, 4, apply)
    n = int(new.j)
    B = np.asarray(new.Q[:n])
    T = np.diag(np.asarray(new.alpha[:n])) + np.diag(np.asarray(new.beta[1:n]), 1) \
        + np.diag(np.asarray(new.beta[1:n]), -1)
    assert n == 5
    assert orthogonality_loss(np.vstack([B, np.asarray(new.q)[None]])) <= SEMI_ORTHOGONAL
    E = np.asarray(A) @ B.T - B.T @ T
    E[:, -1] -= float(new.beta[n]) * np.asarray(new.q)
    assert np.abs(E).max() <= SEMI_ORTHOGONAL
    ev = np.linalg.eigvalsh(T)
    sign = 1 if which == "smallest" else -1
    restarted = ev[0] if which == "smallest" else ev[-1]
    assert sign * (restarted - extreme(state)) <= SEMI_ORTHOGONAL
    # and the run it continues gets closer to the true extreme than the first cycle did
    final = _recurrence.run(cfg, apply, new)
    true = eigs.min() if which == "smallest" else eigs.max()
    assert abs(extreme(final) - true) < abs(extreme(state) - true)


def test_a_small_operator_is_spanned_in_one_cycle_by_default():
    """krylov=None on an operator of at most SMALL_OPERATOR coordinates: FULL in one cycle as
    long as the operator. The Gauss–Newton term of a 6-8-3 MLP on 64 samples (P = 83, a zero
    eigenspace) took 290 HVPs in 8 thick restarts of 40 for λmin (478 with failure_prob); in
    one cycle it takes at most P + a few, for an explicit reortho='full' too; an explicit
    krylov is kept."""
    from flax import nnx

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(6, 8, rngs=rngs, param_dtype=jnp.float64)
            self.l2 = nnx.Linear(8, 3, rngs=rngs, param_dtype=jnp.float64)

        def __call__(self, x):
            return self.l2(jnp.tanh(self.l1(x)))

    graphdef, params = nnx.split(MLP(nnx.Rngs(0)), nnx.Param)
    G = spectral.GaussNewton(lambda p, x: nnx.merge(graphdef, p)(x), loss="cross_entropy")
    k1, k2 = jax.random.split(jax.random.key(0))
    x = jax.random.normal(k1, (64, 6))
    y = jnp.argmax(x @ jax.random.normal(k2, (6, 3)), -1)
    for options in ({}, {"failure_prob": 1e-6}, {"reortho": "full"}):
        r = spectral.lambda_min(G, params, x, y, key=jax.random.key(0), **options)
        assert r.converged and r.restarts == 0 and r.num_hvps <= 83 + 5, (options, r.num_hvps)
        assert r.interval[0] <= 0.0 <= r.interval[1] and r.prob_interval[0] <= 0.0
    with pytest.warns(spectral.ConvergenceWarning):
        short = spectral.lambda_min(G, params, x, y, key=KEY, krylov=10, max_restarts=0)
    assert short.num_hvps <= 10 + 5
