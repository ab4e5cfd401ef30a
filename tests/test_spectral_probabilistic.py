"""The probabilistic outer end (``EigResult.prob_interval``): its theorem, its measured miss
frequency on spectra built to defeat the deterministic end, and the assertion that uses it."""

import functools
import importlib.util
import math
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import special

from mhatheory import precision, spectral, testing
from mhatheory.spectral import _cycles
from mhatheory.spectral import _probabilistic as prob
from mhatheory.spectral._recurrence import Reortho, lanczos

DATA = Path(__file__).parent / "data"


def quadratic(p, A, c):
    """½ xᵀAx + c: its Hessian is A, its value c at x = 0."""
    return 0.5 * p["x"] @ A @ p["x"] + c


# --- the theorem, piece by piece

@pytest.mark.parametrize("P", [2, 3, 50, 10_000])
@pytest.mark.parametrize("delta", [0.1, 1e-6])
def test_the_start_threshold_has_the_stated_probability(P, delta):
    """γ² of a uniform unit vector is Beta(½, (P − 1)/2): P(|γ| < c) = δ/2 for each end, and the
    warm-start threshold is smaller by w/(1 + w) than the linear bound it derives from."""
    c = spectral.start_threshold(P, delta)
    assert special.betainc(0.5, (P - 1) / 2, c * c) <= delta / 2
    # and not wastefully small: within 1e-6 relative of the exact quantile
    assert special.betainc(0.5, (P - 1) / 2, (c * (1 + 1e-6)) ** 2) > delta / 2 * (1 - 1e-6)
    warm = spectral.start_threshold(P, delta, mix=1e-2)
    # a closed form, both sides a few roundings: the "identity" row
    assert warm < c and math.isclose(warm / spectral.start_threshold(P, delta, mix=1.0),
                                     (1e-2 / 1.01) / 0.5, rel_tol=testing.tol(np.float64))


def test_the_posterior_end_solves_its_equation_and_numpy_agrees_with_jax():
    """|p_k(t)| = Πβ/c at the returned end (to the Newton iteration's resolution), whichever
    end, with numpy on many runs and jax.numpy on one."""
    rng = np.random.default_rng(0)
    alpha, beta = rng.normal(size=12), np.concatenate([[0.0], np.abs(rng.normal(size=12))])
    theta = np.linalg.eigvalsh(np.diag(alpha) + np.diag(beta[1:12], 1) + np.diag(beta[1:12], -1))
    log_beta, log_c = np.sum(np.log(beta[1:13])), math.log(1e-7)
    real = np.ones(12, bool)
    for which, sign, end in (("smallest", -1, theta[0]), ("largest", 1, theta[-1])):
        s = prob.posterior_gap(theta[None], real[None], np.array([log_beta]), log_c, which, np)
        s_jax = prob.posterior_gap(jnp.asarray(theta), jnp.asarray(real), log_beta, log_c, which)
        # one iteration in numpy and in jax.numpy: two computations of one quantity
        assert math.isclose(float(s[0]), float(s_jax), rel_tol=testing.tol(np.float64))
        t = end + sign * float(s[0])
        # the root to the iteration's resolution (a few roundings of the sum of 12 logs in u)
        # plus the rounding of that sum: ≪ 1e-12
        assert math.isclose(np.sum(np.log(np.abs(theta - t))), log_beta - log_c, rel_tol=1e-12)


def test_the_posterior_end_is_outer_and_tight_at_every_scale():
    """Against a 200-step bisection on log s (written here): over 2,000 runs with Ritz values
    spread across 15 orders of magnitude, targets from −800 to 50 and c from 1e-12 to 0.1, the
    Newton end meets the equation as computed (Σ log(r_j + s) ≥ target: the end lies at or
    beyond the root) and agrees with the bisection to 1e-10 in log s, where a rounding of the
    sum of up to 80 logs of size ≤ 800 is ≈ 1e-11 (where s is a normal double)."""
    rng = np.random.default_rng(3)
    for _ in range(40):
        n, runs = int(rng.integers(1, 80)), 50
        theta = np.sort(rng.standard_normal((runs, n)) * 10.0 ** rng.uniform(-12, 3, (runs, 1))
                        * 10.0 ** rng.uniform(-8, 0, (runs, n)), axis=-1)
        real = np.ones((runs, n), bool)
        real[:, -1] = (rng.random(runs) < 0.5) | (n == 1)
        log_beta, log_c = rng.uniform(-800, 50, runs), math.log(10.0 ** rng.uniform(-12, -1))
        s = prob.posterior_gap(theta, real, log_beta, log_c, "smallest", np)
        rel = np.where(real, theta - theta[:, :1], 0.0)
        target = log_beta - log_c
        lo, hi = np.full(runs, -745.0), np.maximum(target, 0) / real.sum(-1) + 1
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            above = np.sum(np.where(real, np.log(rel + np.exp(mid)[:, None]), 0), -1) >= target
            lo, hi = np.where(above, lo, mid), np.where(above, mid, hi)
        assert np.all(np.sum(np.where(real, np.log(rel + s[:, None]), 0), -1) >= target)
        normal = hi > -700                     # below, s is 0 or a subnormal for both
        np.testing.assert_allclose(np.log(s[normal]), hi[normal], rtol=0, atol=1e-10)


def _vmapped_runs(H, starts, steps):
    run = jax.vmap(lambda v: lanczos(lambda x: H @ x, v, steps, key=jax.random.key(0),
                                     reortho=Reortho.NONE, store_basis=False))
    kr = run(starts)
    return np.asarray(kr.alpha), np.asarray(kr.beta), np.asarray(kr.steps)


def test_a_miss_happens_only_when_the_start_barely_touches_the_eigenvector():
    """The proof's event: λmin < t_lo implies |γ_min| < c. Over 3,000 starts on an isolated
    λmin under a tiny gap (where misses are frequent at δ = 0.5), every run whose a-posteriori
    end misses has |x₁ᵀv₀| below c, checked after 10, 20 and 30 steps."""
    P = 200
    lam = np.concatenate([[-1.0], np.linspace(-1 + 1e-4, 1.0, P - 1)])
    Q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(P, P)))
    H = jnp.asarray((Q * lam) @ Q.T)
    starts = jax.random.normal(jax.random.key(2), (3000, P))
    gamma = np.abs(np.asarray(starts) @ Q[:, 0]) / np.linalg.norm(np.asarray(starts), axis=1)
    alpha, beta, done = _vmapped_runs(H, starts, 30)
    c = spectral.start_threshold(P, 0.5)
    total = 0
    for k in (10, 20, 30):
        e = prob.outer_ends_batch(prob.ritz_batch(alpha[:, :k], beta[:, :k + 1],
                                                  np.minimum(done, k), np.zeros(3000)), c)
        missed = (e.lo > -1.0) & (e.lo_bound == "a-posteriori")
        total += missed.sum()
        # 1e-6 relative slack on c, as in the quantile check above: γ and the ends are
        # computed in float64, not exact, and a miss can sit at the event's boundary
        assert np.all(gamma[missed] < c * (1 + 1e-6)), gamma[missed].max() / c
    assert total > 0                      # the check saw misses, so it is not vacuous


def test_the_prior_bound_sizes_a_run_like_kuczynski_wozniakowski():
    """ε*(k, c) falls with k; steps_needed is the least k meeting a margin, within a factor 2 of
    the Kuczyński–Woźniakowski size ln(1.648√P/δ)/(2√ε) (the same Chebyshev argument)."""
    P, delta = 10_000, 1e-6
    c = spectral.start_threshold(P, delta)
    errs = [prob.prior_error(k, c) for k in (10, 50, 200, 1000)]
    # 1,000 steps are over 3× the Kuczyński–Woźniakowski size for a margin of 1e-3 (≈ 300)
    assert errs == sorted(errs, reverse=True) and errs[-1] < 1e-3
    for rel in (1e-2, 1e-4):
        k = spectral.steps_needed(rel, c, 10**6)
        assert prob.prior_error(k, c) <= rel < prob.prior_error(k - 1, c)
        kw = math.log(1.648 * math.sqrt(P) / delta) / (2 * math.sqrt(rel))
        assert 0.5 < k / kw < 2


# --- measured miss frequencies

@pytest.mark.parametrize("name", ["pair", "cluster", "bulk", "isolated"])
def test_the_miss_frequency_is_within_the_stated_probability(name):
    """1,000 vmapped random starts per spectrum, the end read every 10 steps up to 60: the
    frequency of runs missing at any step is consistent with δ (its Clopper–Pearson interval
    reaches δ) at δ = 0.5, 0.1 and 0.01. experiments/certificate_coverage.py runs 10,000."""
    lam = spectral.named_spectra(200)[name]
    H = spectral.rotated(lam, jax.random.key(1))
    cov = spectral.coverage(H, failure_probs=(0.5, 0.1, 0.01), key=jax.random.key(2),
                            num_starts=1000, steps=60, every=10, exact=float(np.min(lam)))
    for c in cov:
        assert c.within, c
    if name in ("pair", "isolated"):
        assert cov[0].misses > 0            # at δ = 0.5 misses are observable: not vacuous


def test_a_float32_hessian_keeps_its_stated_probability():
    """float32 products under the float64 recurrence (a float32 model): the margin η carries the
    HVP's rounding, and the bulk spectrum's misses stay within δ."""
    lam = spectral.named_spectra(200)["bulk"]
    H = spectral.rotated(lam, jax.random.key(1), jnp.float32)
    for c in spectral.coverage(H, failure_probs=(0.1, 0.01), key=jax.random.key(3),
                               num_starts=500, steps=60, every=20, exact=float(np.min(lam))):
        assert c.within, c


# --- where the deterministic end misses and the probabilistic one holds

def _twin_network():
    """Two near-copies of one 6 → 16 → 1 tanh network (P = 258), each on its own squared loss:
    the Hessian is block-diagonal with two near-equal blocks, so every eigenvalue comes in a
    pair; the lowest pair is 3.1e-11 apart (‖H‖ ≈ 6.4)."""
    kx, kw, kp, kq = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(kx, (32, 6))
    y = jnp.sin(x @ jax.random.normal(kw, (6,)))
    k1, k2 = jax.random.split(kp)
    a = {"w1": jax.random.normal(k1, (6, 16)) / 2, "b1": jnp.zeros(16),
         "w2": jax.random.normal(k2, (16,)) / 4, "b2": jnp.zeros(())}
    b = jax.tree.map(lambda v, k: v + 2e-11 * jax.random.normal(k, v.shape), a,
                     dict(zip(a, jax.random.split(kq, 4), strict=True)))

    def sub(p, x, y):
        return jnp.mean((jnp.tanh(x @ p["w1"] + p["b1"][None]) @ p["w2"] + p["b2"] - y) ** 2)

    def loss(p, x, y):
        return sub(p["a"], x, y) + sub(p["b"], x, y)

    return loss, {"a": a, "b": b}, x, y


def test_twin_network_deterministic_intervals_miss_where_probabilistic_ones_hold():
    """Lanczos mixes the unresolved lowest pair: each converged interval, ~1e-14 wide, excludes
    the dense λmin (by up to the pair's width), while prob_interval holds it for every key, on
    the default run and on the run sized by failure_prob."""
    loss, params, x, y = _twin_network()
    ev = np.linalg.eigvalsh(np.asarray(spectral.dense_hessian(loss, params, x, y)))
    assert 1e-11 < ev[1] - ev[0] < 1e-10  # the fixture's pair: 3.1e-11 apart (its docstring)
    det_misses = 0
    for seed in range(6):
        r = spectral.lambda_min(loss, params, x, y, key=jax.random.key(seed))
        assert r.converged and r.interval[1] - r.interval[0] < 1e-13  # ~1e-14 (docstring)
        det_misses += not r.interval[0] <= ev[0] <= r.interval[1]
        assert r.prob_interval[0] <= ev[0] <= r.prob_interval[1], (seed, r.prob_interval)
        sized = spectral.lambda_min(loss, params, x, y, key=jax.random.key(seed),
                                    failure_prob=1e-6)
        assert sized.prob_interval[0] <= ev[0] <= sized.prob_interval[1]
        # stop "tol": the outer end within (tol + 100ε)·‖H‖ of the Ritz value at the default tol
        # 1e-10; ×10 for ‖H‖'s Ritz estimate and the Rayleigh end's distance to the Ritz value
        assert sized.prob_stop == "tol" and sized.prob_interval[1] - sized.prob_interval[0] \
            <= 1e-10 * 10 * ev[-1]
    assert det_misses >= 4


def _trained_float32_mlp(dtype=jnp.float32, name: str = "mlp_float32"):
    """The fixture ``tests/data/{name}.npz`` (written by ``make_{name}.py``) in ``dtype``:
    (loss, params, x, y)."""
    spec = importlib.util.spec_from_file_location(f"make_{name}", DATA / f"make_{name}.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    stored = np.load(DATA / f"{name}.npz")
    graphdef, params = nnx.split(gen.MLP(nnx.Rngs(0), dtype), nnx.Param)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    params = jax.tree_util.tree_unflatten(
        treedef, [jnp.asarray(stored[jax.tree_util.keystr(k)], dtype) for k, _ in leaves])

    def loss(p, x, y):
        return jnp.mean((nnx.merge(graphdef, p)(x) - y) ** 2)

    return loss, params, jnp.asarray(stored["x"], dtype), jnp.asarray(stored["y"], dtype)


@functools.cache
def _float32_mlp_eigenvalues(name: str = "mlp_float32") -> tuple[float, float]:
    """(λmin, λmax) of the float64 dense Hessian at a float32 fixture's weights and data."""
    ref = _trained_float32_mlp(jnp.float64, name)
    ev = np.linalg.eigvalsh(np.asarray(spectral.dense_hessian(ref[0], *ref[1:])))
    return float(ev[0]), float(ev[-1])


def _float32_mlp_lambda_min() -> float:
    return _float32_mlp_eigenvalues()[0]


def test_a_float32_run_at_its_rounding_floor_keeps_its_probabilistic_end():
    """The float32 MLP (P = 1,377, a bulk of ~1,300 eigenvalues within 1e-4 of 0 at ‖H‖ = 10)
    with a loss that computes in float32 whatever its parameters' dtype, so that its widened
    operator rounds in float32 too and the first cycle runs on float32 products (a flax module
    built with dtype=float32 does the same). A fully orthogonalised run reaches residuals β
    near their rounding within ~80 steps. The recurrence takes a β ≤ ε₃₂‖T‖ for a breakdown,
    and the probabilistic end must take it at that threshold: at float64's ε√P‖T‖ instead, the
    product β_1⋯β_k shrinks by ~1e8 and the end (−4.01e-5, …) misses λmin = −4.096e-5 for
    every key."""
    loss, params, x, y = _trained_float32_mlp()
    lam = _float32_mlp_lambda_min()

    def loss32(p, x, y):
        return loss(*jax.tree.map(lambda a: a.astype(jnp.float32), (p, x, y)))

    for seed in range(3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", spectral.ConvergenceWarning)
            # the widened operator is flagged as still computing in float32
            warnings.simplefilter("ignore", precision.PrecisionWarning)
            r = spectral.lambda_min(loss32, params, x, y, key=jax.random.key(seed),
                                    reortho="full", failure_prob=1e-6)
        assert r.reortho == "full"
        assert r.prob_interval[0] <= lam <= r.prob_interval[1] + r.rounding, r.prob_interval


def test_auto_orthogonalises_a_float32_run_sized_for_its_probabilistic_end(monkeypatch):
    """With ``failure_prob``, AUTO keeps a float64 model's single λmin unorthogonalised (one long
    cycle, whose extreme pair ghosts do not disturb) but orthogonalises a float32 model's:
    products rounded at ε₃₂ lose orthogonality at that rate, and an unorthogonalised run on a
    float32 Transformer ends 2,000 HVPs later at +2.4e-3 where λmin = −5.8e-5. The MLP counts
    as large here, as past SMALL_OPERATOR (below it every AUTO run is FULL)."""
    monkeypatch.setattr(_cycles, "SMALL_OPERATOR", 64)
    loss, params, x, y = _trained_float32_mlp()
    lam = _float32_mlp_lambda_min()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", spectral.ConvergenceWarning)
        r32 = spectral.lambda_min(loss, params, x, y, key=jax.random.key(0), failure_prob=1e-6)
        r64 = spectral.lambda_min(*_trained_float32_mlp(jnp.float64), key=jax.random.key(0),
                                  failure_prob=1e-6, max_hvps=60)
    assert (r32.reortho, r64.reortho) == ("full", "none")
    assert r32.prob_interval[0] <= lam <= r32.value + r32.rounding


def test_a_float32_run_keeps_its_hvp_budget_with_its_widened_products():
    """A float32 run's products include its widened ones (the first cycle's, the restart's
    comparison, one per final vector after a switch to float32 products): ``max_hvps`` bounds
    them all, the final vectors' widened products reserved with the residuals."""
    loss, params, x, y = _trained_float32_mlp()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", spectral.ConvergenceWarning)
        for budget in (60, 200):
            r = spectral.lambda_min(loss, params, x, y, key=jax.random.key(0),
                                    failure_prob=1e-6, max_hvps=budget, reortho="none")
            assert r.num_hvps <= budget


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_a_stall_that_spends_the_budget_ends_the_run(dtype):
    """A restart that stalls spends 1 + min(2, k + 1) products on the rounding estimate; where
    they leave no room for a restart's first step the run ends there with what it has (λmin of
    the MLP fixture with krylov 3 and 4 and these budgets restarted into an empty cycle and
    raised an IndexError, float64 and float32 alike)."""
    loss, params, x, y = _trained_float32_mlp(dtype)
    H = spectral.linearise(loss, params, x, y)
    lam = _float32_mlp_lambda_min()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", spectral.ConvergenceWarning)
        for krylov, budgets in ((3, (16, 17, 24, 25, 32)), (4, (17, 18, 26, 27, 35))):
            for budget in budgets:
                r = spectral.Lanczos(which="smallest", krylov=krylov, max_hvps=budget)(
                    H, key=jax.random.key(0))[0]
                assert r.num_hvps <= budget
                if dtype == jnp.float32:        # the reference is at the float32 weights
                    assert lam <= r.interval[1]


@pytest.mark.parametrize("reortho", ["full", "none"])
def test_float32_products_far_from_float64_ones_are_not_in_the_first_cycle(reortho):
    """The float32 MLP at targets 30000 + O(1) (``make_mlp_offset.py``): its float32 loss is
    exactly 0, so its products carry no curvature term, while float64 has λmin = −5.2e-4; the
    fixed perturbation E is invisible to linearity defects and small at the final vectors
    (δ ≈ 2e-4), and an end from a cycle on the float32 products, moved out by 2δ, misses λmin
    for every key (by up to 5e-5). The first cycle runs on the widened operator, so its ends
    and intervals are float64's (narrower than float32's ε₃₂·λmax), and hold."""
    loss, params, x, y = _trained_float32_mlp(name="mlp_offset")
    assert float(loss(params, x, y)) == 0.0
    lam_min, lam_max = _float32_mlp_eigenvalues("mlp_offset")
    eps32 = float(np.finfo(np.float32).eps)
    for seed in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", spectral.ConvergenceWarning)
            lo = spectral.lambda_min(loss, params, x, y, key=jax.random.key(seed),
                                     failure_prob=1e-2, reortho=reortho)
            hi = spectral.lambda_max(loss, params, x, y, key=jax.random.key(seed),
                                     failure_prob=1e-2, reortho=reortho)
        assert lo.prob_interval[0] <= lam_min <= lo.value + lo.rounding
        assert lo.interval[0] <= lam_min <= lo.interval[1]
        assert hi.prob_interval[1] >= lam_max and hi.interval[0] <= lam_max <= hi.interval[1]
        for r in (lo, hi):
            assert r.interval[1] - r.interval[0] < eps32 * lam_max


@pytest.mark.parametrize("one_cycle", [True, False])
def test_a_float32_model_near_convergence_gets_no_false_pass(one_cycle, monkeypatch):
    """A float32 MLP at L̂ ≈ 2e-10 (P = 1,377): λmin ≈ −4.1e-5 inside the bulk near 0, below
    float32's acceptance threshold (≈ 1e-4·‖H‖/10). A Ritz value in the bulk with a
    'converged' interval would miss λmin (for 4 of 12 keys without the low-precision acceptance
    rule) and let the assertion pass a bound at 0.99·λmin. In one cycle as long as the model
    (the default below SMALL_OPERATOR) the pair is resolved on the widened products and its
    interval holds λmin; in cycles of 40 (as past SMALL_OPERATOR) it is not resolved (not
    converged, open below). Either way the probabilistic end holds λmin and the assertion never
    passes the bound: it is false (λmin lies 1 % below it), so the assertion is either
    undecided or, where the Rayleigh end θ̂ + τ already lies below it, right to call it
    violated. Reference: the float64 dense Hessian of the same float32 weights and data."""
    if not one_cycle:
        monkeypatch.setattr(_cycles, "SMALL_OPERATOR", 64)
    loss, params, x, y = _trained_float32_mlp()
    lam = _float32_mlp_lambda_min()
    L = float(loss(params, x, y))
    kappa = -0.99 * lam / L
    for seed in range(6 if one_cycle else 4):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", spectral.ConvergenceWarning)
            r = spectral.lambda_min(loss, params, x, y, key=jax.random.key(seed))
        if one_cycle:
            assert r.converged and r.interval[0] <= lam <= r.interval[1]
        else:
            assert not r.converged and r.interval[0] == -np.inf
        assert r.prob_interval[0] <= lam
        with pytest.raises(testing.InequalityError, match="probabilistic lower end"):
            testing.assert_weakly_convex(loss, params, x, y, kappa=kappa, heads=1,
                                         key=jax.random.key(seed))


def test_a_bound_inside_a_cluster_never_passes():
    """50 eigenvalues within 1e-9 of λmin = −0.01 (‖H‖ = 1); a bound placed in the middle of
    the cluster is false by 5e-10. For 10 keys the assertion raises (INCONCLUSIVE: Lanczos cannot
    resolve the cluster), never passes; a bound below the cluster passes, using few HVPs."""
    P = 120
    lam = np.concatenate([-0.01 + np.linspace(0.0, 1e-9, 50), np.linspace(0.0, 1.0, P - 50)])
    A = spectral.rotated(lam, jax.random.key(0))
    params = {"x": jnp.zeros(P)}
    inside = jnp.asarray(0.01 - 5e-10)                  # the bound −c sits inside the cluster
    for seed in range(10):
        with pytest.raises(testing.InequalityError):
            testing.assert_weakly_convex(quadratic, params, A, inside, kappa=1.0, heads=1,
                                         key=jax.random.key(seed), max_hvps=400)
    below = jnp.asarray(0.0101)
    margin = testing.assert_weakly_convex(quadratic, params, A, below, kappa=1.0, heads=1,
                                          key=jax.random.key(0))
    assert 0 < margin <= 1e-4  # at most λmin − (−0.0101) = 1e-4: the bound's distance below


def test_the_assertion_names_its_certificate_and_the_dense_route():
    loss, params, x, y = _twin_network()
    ev = np.linalg.eigvalsh(np.asarray(spectral.dense_hessian(loss, params, x, y)))
    L = float(loss(params, x, y))
    with pytest.raises(testing.InconclusiveError) as exc:
        testing.assert_weakly_convex(loss, params, x, y, kappa=-(ev[0] + 1e-14) / L, heads=1,
                                     key=jax.random.key(0), max_hvps=300)
    msg = str(exc.value)
    assert "failure probability 1e-06" in msg and "method='exact'" in msg


# --- the run and its options

def test_prob_stop_says_why_the_first_cycle_stopped():
    lam = np.concatenate([[-1.0], np.linspace(-0.5, 1.0, 99)])
    A = spectral.rotated(lam, jax.random.key(0))
    p, c = {"x": jnp.zeros(100)}, jnp.asarray(0.0)
    key = jax.random.key(1)
    assert spectral.lambda_min(quadratic, p, A, c, key=key).prob_stop == "residual"
    assert spectral.lambda_min(quadratic, p, A, c, key=key,
                               failure_prob=1e-6).prob_stop == "tol"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", spectral.ConvergenceWarning)
        short = spectral.lambda_min(quadratic, p, A, c, key=key, failure_prob=1e-6,
                                    max_hvps=20)
    assert short.prob_stop == "budget" and short.num_hvps <= 20 + 40
    assert short.prob_interval[0] <= -1.0 <= short.prob_interval[1]


def test_warm_starts_carry_the_statement_through_their_random_part():
    lam = np.concatenate([[-1.0], np.linspace(-0.5, 1.0, 99)])
    A = spectral.rotated(lam, jax.random.key(0))
    p, c = {"x": jnp.zeros(100)}, jnp.asarray(0.0)
    cold = spectral.lambda_min(quadratic, p, A, c, key=jax.random.key(1), failure_prob=1e-3)
    warm = spectral.lambda_min(quadratic, p, A, c, key=jax.random.key(2), failure_prob=1e-3,
                               v0=cold.vector)
    assert warm.failure_prob == 1e-3 and warm.prob_interval[0] <= -1.0
    pure = spectral.lambda_min(quadratic, p, A, c, key=jax.random.key(2), v0=cold.vector,
                               warm_start_mix=0.0)
    assert pure.failure_prob == 1.0 and pure.prob_interval[0] == -np.inf
    assert pure.prob_bound == "none"


def test_exact_results_are_deterministic():
    lam = np.linspace(-1.0, 1.0, 30)
    A = spectral.rotated(lam, jax.random.key(0))
    r = spectral.lambda_min(quadratic, {"x": jnp.zeros(30)}, A, jnp.asarray(0.0),
                            method="exact")
    assert r.failure_prob == 0.0 and r.prob_interval == r.interval and r.prob_bound == "exact"


@pytest.mark.parametrize("kwargs, match", [
    ({"failure_prob": 0.0}, "failure_prob must lie strictly between 0 and 1"),
    ({"failure_prob": 1.0}, "failure_prob must lie strictly between 0 and 1"),
    ({"failure_prob": "often"}, "failure_prob must be a probability"),
    ({"failure_prob": 1e-6, "v0": np.ones(10), "warm_start_mix": 0.0},
     "warm start v0 with warm_start_mix=0 has no probability"),
    ({"max_hvps": 3}, "max_hvps=3 is below the 7 HVPs"),
    ({"warm_start_mix": -1.0}, "warm_start_mix must be"),
])
def test_bad_options_are_refused_before_any_work(kwargs, match):
    def loss(p, A):
        raise AssertionError("the loss must not be evaluated")

    with pytest.raises(ValueError, match=match):
        spectral.lambda_min(loss, {"x": jnp.zeros(10)}, jnp.eye(10), **kwargs)


def test_the_probabilistic_end_in_float32_overflows_nothing():
    """With x64 off the outer end's Newton steps run in float32: their step cap is a finite
    float32 (a 1e300 cap overflowed in the cast, a RuntimeWarning that fails a run under
    -W error), and the end still holds the dense eigenvalue."""
    with jax.enable_x64(False), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        A = np.diag(np.linspace(-1.0, 2.0, 40)).astype(np.float32)
        r = spectral.lambda_min(lambda x, A: 0.5 * x @ A @ x, jnp.zeros(40, jnp.float32), A,
                                key=jax.random.key(0), failure_prob=1e-3)
    assert r.prob_interval[0] <= -1.0 <= r.prob_interval[1]


def test_a_float32_run_whose_rounding_exceeds_tol_stops_within_twice_it():
    """In float32 (MHATHEORY_X64=0) at P = 20,000 the end's rounding margin η ≥ 2√P·u·‖T‖
    exceeds the default tol + 100ε₃₂ from the first step, so a stop on width ≤ tol·‖T‖ could
    never come: a probabilistic run spent its whole budget (1,308 products at P = 667 in a
    user's float32 run). It stops once the posterior gap is within η instead."""
    P, m = 20_000, 300
    eps32 = float(jnp.finfo(jnp.float32).eps)
    tol = 0.5 * (1e-10 + 100 * eps32)                  # the run's in-cycle tolerance
    assert 2 * math.sqrt(P) * eps32 / 2 > tol           # η > tol·‖T‖ before any step
    d = jnp.asarray(np.r_[-0.5, np.linspace(0.0, 1.0, P - 1)], jnp.float32)
    v = jax.random.normal(jax.random.key(0), (P,), jnp.float32)
    c = prob.start_threshold(P, 1e-6, None)
    kr = jax.jit(lambda v: lanczos(lambda q: d * q, v, m, key=jax.random.key(1),
                                   reortho="none", store_basis=False, tol=tol,
                                   prob=jnp.asarray([math.log(c), jnp.nan, jnp.nan],
                                                    jnp.float32)))(v)
    assert int(kr.steps) < m // 2
