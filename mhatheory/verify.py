"""``mhatheory verify``: every check of the toolkit at small size, as one table and a report.

Each check returns :class:`Check` rows. Kinds:

* ``theorem``: an inequality that must hold at every point probed; FAIL is a bug or a finding.
* ``identity``: two computations that must agree to a stated tolerance (float64 unless noted).
* ``sanity``: a guard that the setup is not trivial (e.g. negative curvature is present, so the
  weak-convexity check is not vacuous); gated like a theorem.
* ``tendency``: an empirical trend from a paper, measured and reported with its uncertainty; it
  is never gated (status REPORT; for these rows ``margin`` holds the standard error).

Gated rows carry a three-valued :class:`~mhatheory.verdicts.Verdict`: status PASS when certified
to hold, FAIL when certified to fail, INCONCLUSIVE when the check could not decide (after
spending more HVPs where that can help). The exit status (:func:`exit_status`) is 1 when any
row FAILs, 3 when none fails but some is INCONCLUSIVE, 0 when every gated row passes.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from mhatheory import attention as A
from mhatheory import data, report, results, spectral, symmetry, train
from mhatheory.experiments import heads, spectrum
from mhatheory.experiments import stability_sweep as st
from mhatheory.experiments import symmetry_sweep as sym_exp
from mhatheory.experiments import weak_convexity as wc
from mhatheory.experiments._common import error_metrics, make_problem
from mhatheory.models import DecoderTransformer, deora, reference
from mhatheory.tasks import addition as ad
from mhatheory.verdicts import Verdict, combine

_STATUS = {Verdict.HOLDS: "PASS", Verdict.VIOLATED: "FAIL",
           Verdict.INCONCLUSIVE: "INCONCLUSIVE"}


@dataclass(frozen=True)
class Check:
    """One row of the verification table.

    ``verdict`` is a :class:`~mhatheory.verdicts.Verdict` for gated rows (``None`` for a
    tendency). ``margin`` is signed so that ≥ 0 means the check holds (e.g. bound − measured for
    an upper bound, tolerance − error for an identity).
    """

    name: str
    kind: str
    verdict: Verdict | None
    measured: float
    reference: float
    margin: float
    detail: str = ""
    figures: tuple = field(default=())

    @property
    def status(self) -> str:
        if self.kind == "tendency":
            return "REPORT"
        return _STATUS[self.verdict]

    @property
    def passed(self) -> bool:
        return self.kind == "tendency" or self.verdict == Verdict.HOLDS


def _two_valued(ok: bool, *values) -> Verdict:
    """An exact comparison (a stated tolerance): HOLDS or VIOLATED; NaN is INCONCLUSIVE."""
    if any(v != v for v in values):
        return Verdict.INCONCLUSIVE
    return Verdict.HOLDS if ok else Verdict.VIOLATED


def upper(name, kind, measured, bound, detail="", figures=()) -> Check:
    """A check of ``measured ≤ bound`` (a stated tolerance or an exact bound)."""
    measured, bound = float(measured), float(bound)
    return Check(name, kind, _two_valued(measured <= bound, measured, bound), measured, bound,
                 bound - measured, detail, tuple(figures))


def lower(name, kind, measured, bound, detail="", figures=()) -> Check:
    """A check of ``measured ≥ bound``."""
    measured, bound = float(measured), float(bound)
    return Check(name, kind, _two_valued(measured >= bound, measured, bound), measured, bound,
                 measured - bound, detail, tuple(figures))


def tendency(name, measured, reference, se, detail="", figures=()) -> Check:
    """An empirical trend, reported with its standard error in the margin column."""
    nan = float("nan")
    return Check(name, "tendency", None, nan if measured is None else float(measured),
                 float(reference), nan if se is None else float(se), detail, tuple(figures))


# --------------------------------------------------------------------------------------------
# Foundation checks


def check_model(full: bool, out: Path, progress: bool = False) -> list[Check]:
    """DeoraMHA (JAX einsums) against the NumPy loop reference, float64, tolerance 1e-12."""
    cfg = data.MixtureConfig(d=8, T=6, n=32)
    batch = data.sample(cfg, jax.random.key(0))
    params = deora.init_params(jax.random.key(1), cfg.d, 4, init_scale=2.0)
    ours = np.asarray(deora.phi(params, batch.X))
    ref = reference.deora_phi_numpy(params["W"], params["U"], batch.X)
    err = float(np.max(np.abs(ours - ref)))
    return [upper("model: Φ vs NumPy reference", "identity", err, 1e-12,
                  "max |Φ_jax − Φ_numpy| over 32 samples, H=4, d=8 (float64)")]


def check_training(full: bool, out: Path, progress: bool = False) -> list[Check]:
    """GD with a small step decreases L̂ monotonically; test error against the Bayes floor."""
    mixture = data.MixtureConfig(n=128)
    prob = make_problem(mixture, heads=4, init_scale=1.0, seed=0, num_test=4000)
    traj = train.gd(deora.loss_fn, prob.params0, prob.train, steps=400, lr=0.5)
    # Summation rounding: each L̂ is a mean of n terms, so its float64 error is ≤ n·ε·L̂.
    tol = mixture.n * np.finfo(np.float64).eps * traj.loss[:-1]
    worst = float(np.max(np.diff(traj.loss) - tol))
    mets = error_metrics(traj.final_params, prob.train, prob.test)
    bayes, se = data.bayes_error(mixture, jax.random.key(99), num=40_000)
    test_err = float(mets["test_error"])
    return [
        upper("train: GD loss monotone (η=0.5, 400 steps)", "theorem", worst, 0.0,
              "max_k L̂(θ_{k+1}) − L̂(θ_k) − n·ε·L̂(θ_k); descent lemma with η below 1/λmax"),
        tendency("train: test error vs Bayes floor", test_err, bayes, se,
                 f"test error {test_err:.4f} on 4000 fresh samples; Bayes error "
                 f"{bayes:.4f} ± {se:.4f} (margin column: the floor's SE)"),
    ]


def check_spectral(full: bool, out: Path, progress: bool = False) -> list[Check]:
    """Lanczos, HVP, the G + N split and Hutchinson against the dense reference."""

    cfg = data.MixtureConfig(d=8, T=6, n=64, num_irrelevant=3)
    batch = data.sample(cfg, jax.random.key(0))
    params = deora.init_params(jax.random.key(1), 8, 4, init_scale=2.0)
    H = np.asarray(spectral.hessian(deora.loss_fn, params, batch))
    ev = np.linalg.eigvalsh(H)
    P_ = ev.size
    lo = spectral.lambda_min(deora.loss_fn, params, batch)
    hi = spectral.lambda_max(deora.loss_fn, params, batch)
    matvec, flat = spectral.hvp(deora.loss_fn, params, batch)
    cols = np.stack([np.asarray(matvec(np.eye(flat.size)[j])) for j in (0, 99, flat.size - 1)])
    G = np.asarray(spectral.dense(spectral.GaussNewton(deora.phi), params, batch.X, batch.y))
    N = np.asarray(spectral.dense(spectral.Curvature(deora.phi), params, batch.X, batch.y))
    tr = spectral.trace(deora.loss_fn, params, batch, key=jax.random.key(3), num_samples=200)
    P = flat.size
    _, asym = spectral.dense_with_asymmetry(spectral.Hessian(deora.loss_fn), params, batch)
    ref_err = 2 * asym + P_ * np.finfo(np.float64).eps * np.abs(ev).max()
    rows = [
        upper("spectral: certified λmin interval ∋ eigh value (± ref. error)", "identity",
              max(lo.interval[0] - ev[0], ev[0] - lo.interval[1], 0.0), ref_err,
              f"interval width {lo.interval[1] - lo.interval[0]:.2g}; eigh's own rounding "
              f"{ref_err:.2g} (2‖Ĥ − Ĥᵀ‖_F + P·ε·‖H‖)"),
        upper("spectral: certified λmax interval ∋ eigh value (± ref. error)", "identity",
              max(hi.interval[0] - ev[-1], ev[-1] - hi.interval[1], 0.0), ref_err,
              f"interval width {hi.interval[1] - hi.interval[0]:.2g}"),
        upper("spectral: Lanczos λmin vs eigh (relative)", "identity",
              abs(lo.value - ev[0]) / abs(ev[0]), 1e-8, f"P={P}, {lo.num_hvps} HVPs"),
        upper("spectral: Lanczos λmax vs eigh (relative)", "identity",
              abs(hi.value - ev[-1]) / abs(ev[-1]), 1e-8, f"P={P}, {hi.num_hvps} HVPs"),
        upper("spectral: HVP vs dense Hessian columns", "identity",
              np.max(np.abs(cols - H[:, [0, 99, P - 1]].T)), 1e-12, "forward-over-reverse"),
        upper("spectral: G + N = ∇²L̂", "identity", np.max(np.abs(G + N - H)), 1e-10,
              "Gauss-Newton + curvature split, max entry error"),
        upper("spectral: G is PSD (−λmin(G)/λmax(G))", "identity",
              -np.linalg.eigvalsh(G)[0] / np.linalg.eigvalsh(G)[-1], 1e-12, "rounding level"),
        upper("spectral: Hutchinson trace within 4 SE", "identity",
              abs(tr.value - ev.sum()), 4 * tr.se, f"200 Rademacher probes, SE {tr.se:.2g}"),
    ]
    res = spectrum.run(spectrum.Config(steps=300 if not full else 3000,
                                       **(spectrum.FULL if full else {})),
                       out / "spectrum", progress=False)
    trained = list(res["stages"].values())[-1]
    mass = trained["negative_mass_slq"]
    rows.append(upper("spectral: SLQ negative mass vs eigh (4 SE)", "identity",
                      abs(mass["value"] - trained["dense"]["negative_mass"]), 4 * mass["se"],
                      "after training; SLQ with 10 probes", ["spectrum/spectral_density.png"])
                if "dense" in trained else
                tendency("spectral: SLQ negative mass", mass["value"], 0.0, mass["se"],
                         "no dense reference at this size", ("spectrum/spectral_density.png",)))
    return rows


def check_weak_convexity(full: bool, out: Path, progress: bool = False) -> list[Check]:
    """The weak-convexity chain along GD for several H, slopes against H, convergence."""

    small = dict(heads_grid=(1, 2, 4, 8, 16), seeds=3, steps=300, num_probes=4, n=64,
                 convergence_steps=200)
    cfg = wc.Config(**(wc.FULL if full else small))
    folder = out / "weak-convexity"
    summary = wc.run(cfg, folder, progress=progress)
    res = json.loads((folder / "results.json").read_text())
    records = res["records"]
    worst = min(min(link["margin"] for link in r["links"]) for r in records)
    figs = {f: f"weak-convexity/{f}" for f in res["figures"]}
    counts = summary["chain_verdict_counts"]
    rows = [
        Check("weak convexity: chain holds at every probe", "theorem",
              Verdict(summary["chain_verdict"]), worst, 0.0, worst,
              f"{len(records)} probes over H={list(cfg.heads_grid)}, {cfg.seeds} seeds; "
              f"smallest certified link margin; verdicts {counts}; "
              f"{summary['unconverged_probes']} unconverged, {summary['escalations']} escalated",
              (figs["chain_vs_step.png"], figs["tightness.png"])),
        lower("weak convexity: negative curvature present (max −λmin)", "sanity",
              max(-r["lambda_min"] for r in records), 0.0, "the check is not vacuous"),
    ]
    desc = [r["descent"] for r in records if r["descent"]["applicable"]]
    dmargin = min(d["margin"] for d in desc) if desc else float("nan")
    rows.append(Check("convergence: descent lemma where η·λmax ≤ 1", "theorem",
                      Verdict(summary["descent_verdict"]) if desc else Verdict.INCONCLUSIVE,
                      dmargin, 0.0, dmargin,
                      f"{len(desc)} of {len(records)} probed steps applicable (η times the "
                      "certified upper end of λmax ≤ 1)"))
    conv = res["convergence"]
    ok = np.asarray(conv["descent_ok"], bool)
    gap = float(np.min(np.asarray(conv["bound"])[ok] - np.asarray(conv["loss"])[ok]))
    rows.append(upper("convergence: L̂(θ_K) ≤ finite-time bound, all K", "theorem",
                      -gap, 0.0, f"H={conv['heads']}; {int(ok.sum())} K with certified descent; "
                      f"NTK margin {conv['ntk_margin']:.3g} (separable: {conv['ntk_separable']});"
                      " measured: max_K L̂(θ_K) − bound", (figs["convergence.png"],)))
    # −λmin/L̂ ∝ H^(−1/2) is the law (κ constant); κ̂ = −λmin·√H/L̂ is then flat (slope 0)
    laws = {"neg_lambda_over_loss": ("−λmin/L̂", -0.5, "−1/2 (constant κ)"),
            "kappa_hat": ("κ̂", 0.0, "0 (constant κ)")}
    restricted = f"slopes_heads_ge_{cfg.fit_min_heads}"
    for q, (label, ref, ref_text) in laws.items():
        for stage in ("init", "late"):
            for fits, which in ((summary["slopes"], "all H"),
                                (summary.get(restricted, {}), f"H ≥ {cfg.fit_min_heads}")):
                if q not in fits:
                    continue
                fit = fits[q][stage]
                rows.append(tendency(
                    f"H-slope of {label} ({stage}, step {fit['step']}, {which})",
                    fit["slope_mean"], ref, fit["slope_se"],
                    f"log-log slope vs H, mean ± SE over seeds; reference {ref_text}",
                    (figs["kappa_vs_heads.png"],) if q == "kappa_hat" and stage == "init"
                    and which == "all H" else ()))
    return rows


def check_attention(full: bool, out: Path, progress: bool = False) -> list[Check]:
    """C1–C5 of notes/symmetry.md and equality with flax.nnx.MultiHeadAttention."""


    Q = jnp.array([[1.0, 2], [3, 4]], jnp.float32)
    K = jnp.array([[4.0, 5], [6, 7], [8, 9]], jnp.float32)
    V = jnp.array([[10.0, 11, 12], [13, 14, 15], [16, 17, 18]], jnp.float32)
    s = np.asarray(Q, np.float64) @ np.asarray(K, np.float64).T / np.sqrt(2)
    w = np.exp(s - s.max(1, keepdims=True))
    ref = (w / w.sum(1, keepdims=True)) @ np.asarray(V, np.float64)
    c1 = float(np.max(np.abs(np.asarray(A.scaled_dot_product_attention(Q, K, V)) - ref)))
    mha = A.MultiHeadAttention(16, 4, rngs=nnx.Rngs(0), param_dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(1), (7, 16))
    perm = np.asarray(jax.random.permutation(jax.random.key(2), 7))
    c3 = float(jnp.max(jnp.abs(mha(x[perm]) - mha(x)[perm])))
    mem = jax.random.normal(jax.random.key(3), (9, 16))
    pm = np.asarray(jax.random.permutation(jax.random.key(4), 9))
    c4 = float(jnp.max(jnp.abs(mha(x, mem[pm]) - mha(x, mem))))
    base = mha(x, mask=A.causal_mask(7))
    c5 = max(float(jnp.max(jnp.abs(mha(x.at[k + 1:].add(1.0), mask=A.causal_mask(7))[: k + 1]
                                   - base[: k + 1]))) for k in range(6))
    mask = jax.random.bernoulli(jax.random.key(5), 0.5, (7, 9))
    wts = np.asarray(A.attention_weights(x, mem, mask))
    c2 = float(max(np.max(np.abs(wts.sum(1)[np.asarray(mask).any(1)] - 1)),
                   np.max(np.abs(wts[~np.asarray(mask)]))))
    with jax.default_matmul_precision("highest"):
        ours = A.MultiHeadAttention(32, 4, rngs=nnx.Rngs(0))
        flax_mha = nnx.MultiHeadAttention(4, 32, rngs=nnx.Rngs(1), decode=False)
        for name in ("query", "key", "value", "out"):
            getattr(flax_mha, name).kernel[...] = getattr(ours, f"{name}_kernel")[...]
        x32 = jax.random.normal(jax.random.key(6), (2, 6, 32), jnp.float32)
        eq = float(jnp.max(jnp.abs(ours(x32) - flax_mha(x32))))
    return [
        upper("attention C1: tutorial worked example (float32)", "identity", c1, 1e-5,
              "vs float64 NumPy; QKᵀ row 2 is [32, 46, 60] (the tutorial prints 38, 56, 74)"),
        upper("attention C2: rows sum to 1, masked weights 0", "identity", c2, 1e-12, "float64"),
        upper("attention C3: self-attention equivariant", "identity", c3, 1e-12, "float64"),
        upper("attention C4: cross-attention invariant to memory order", "identity", c4, 1e-12,
              "float64"),
        upper("attention C5: causal outputs ignore later tokens", "identity", c5, 0.0, "exact"),
        upper("attention: equals flax.nnx.MultiHeadAttention", "identity", eq, 1e-6,
              "float32, highest matmul precision"),
    ]


def check_symmetry(full: bool, out: Path, progress: bool = False) -> list[Check]:
    """The Zuo–Guerzhoy theorem, its controls, and the enumerated addition ceiling."""


    tokens = jnp.asarray(ad.encode(123, 456)[0, :8])

    def fn(layers, causal=False, pe="none", residual=True):
        m = DecoderTransformer(ad.VOCAB, 32, 4, layers, positional=pe, causal=causal,
                               residual=residual, rngs=nnx.Rngs(layers), param_dtype=jnp.float64)
        return lambda t: m(t)

    theorem = max(symmetry.last_position_invariance(fn(L, residual=r), tokens).max_deviation
                  for L in (1, 2, 4) for r in (True, False))
    controls = {
        "moves the last position": symmetry.moving_last_deviation(fn(2), tokens).max_deviation,
        "learned PE": symmetry.last_position_invariance(fn(2, pe="learned"),
                                                        tokens).max_deviation,
        "sinusoidal PE": symmetry.last_position_invariance(fn(2, pe="sinusoidal"),
                                                           tokens).max_deviation,
        "causal, 2 layers": symmetry.last_position_invariance(fn(2, causal=True),
                                                              tokens).max_deviation,
    }
    one = fn(1, causal=True)
    rows = [upper("symmetry C6: non-causal no-PE invariant at n (L=1,2,4, ±res)", "theorem",
                  theorem, 1e-10, "max |Δ logits| over 50 random permutations, float64")]
    for name, dev in controls.items():
        rows.append(lower(f"symmetry C7 control breaks it: {name}", "sanity", dev, 1e-2,
                          "max |Δ logits| must exceed 1e-2"))
    rows.append(upper("symmetry C8: 1-layer causal invariant at n", "theorem",
                      symmetry.last_position_invariance(one, tokens).max_deviation, 1e-10, ""))
    early = symmetry.earlier_position_deviation(one, tokens).max_deviation
    rows.append(lower("symmetry C8: …but not at k < n", "sanity", early, 1e-2,
                      "max |Δ logits| at positions k < n"))
    # A short prefix-wise training run of a non-causal no-PE model: theorem after training
    # (C13) and the ceiling (C10) on its held-out exact match.
    cfg = sym_exp.Config(causal_grid=("noncausal",), positional_grid=("none",),
                         residual_grid=("all",), seeds=1, d_model=32, layers=2,
                         num_train=4000, num_test=1000, steps=150, warmup=10, eval_every=150,
                         checkpoint_every=1000)
    res = sym_exp.run(cfg, out / "symmetry", progress=progress)
    row = res["table"][0]
    ceil = res["ceilings"]
    noise = 2 * np.sqrt(ceil["exact_match"] * (1 - ceil["exact_match"]) / cfg.num_test)
    rows.append(upper("symmetry C13: theorem on a trained model", "theorem",
                      row["trained_invariance_max"], 1e-10, "float64 copy of the trained model"))
    rows.append(upper("symmetry C10: exact match ≤ enumerated ceiling (+2σ)", "theorem",
                      row["exact_match_mean"], ceil["exact_match"] + noise,
                      f"ceiling {ceil['exact_match']:.4f} by enumerating 10⁶ problems",
                      ["symmetry/learning_curves.png", "symmetry/correlations.png"]))
    small = ad.ceilings(0, 20, True)
    brute = _brute_ceiling(0, 20, True)
    rows.append(upper("symmetry: vectorised ceiling = brute force (0..20)", "identity",
                      abs(small["exact_match"] - brute), 1e-15, ""))
    return rows


def check_stability(full: bool, out: Path, progress: bool = False) -> list[Check]:
    """Replace-one stability, the Lei–Ying bounds against the gap, the ε₁ slope in n."""

    small = dict(n_grid=(32, 64, 128), steps_grid=(100,), seeds=3, subset=16)
    cfg = st.Config(**(st.FULL if full else small))
    summary = st.run(cfg, out / "stability", progress=progress)
    records = json.loads((out / "stability" / "results.json").read_text())["records"]
    rows = []
    for name, key in (("G·ε₁ (Lipschitz)", "bound_lipschitz"), ("smooth, best γ", "bound_smooth")):
        worst = min(r[f"{key}_margin"] for r in records)
        rows.append(Check(f"stability: gap + 3 SE ≤ {name} bound, every cell", "theorem",
                          combine(Verdict(r[f"{key}_verdict"]) for r in records), worst, 0.0,
                          worst, f"{len(records)} cells × {cfg.seeds} seeds; 10⁴ fresh test "
                          "samples; HOLDS needs the whole ±3 SE interval of the gap under the "
                          "bound", ("stability/gap_vs_bounds.png",)))
    rows.append(lower("stability: ε₁ > 0 (min over cells)", "sanity",
                      min(r["eps1"] for r in records), 1e-300, "retraining differs"))
    for sl in summary["eps1_slopes"]:
        rows.append(tendency(f"stability: slope of ε₁ vs n (H={sl['heads']}, K={sl['steps']})",
                             sl["slope_mean"], -1.0, sl["slope_se"],
                             "log-log fit per seed, mean ± SE; GD theory suggests about −1",
                             ("stability/eps1_vs_n.png",)))
    for name, v in summary["influence"].items():
        rows.append(tendency(f"stability: influence-function cosine ({name} damping)",
                             v["cosine_median"], 1.0, v["relative_error_median"],
                             "median cosine with exact retraining (1 = exact); margin column: "
                             "median relative error", ("stability/divergence.png",)
                             if name == "spectral" else ()))
    return rows


def check_heads(full: bool, out: Path, progress: bool = False) -> list[Check]:
    """The seed's claims about the number of heads, measured on a small H × η grid (tendency
    rows: each answered yes / no / undecided from its slope against H and that slope's SE)."""
    cfg = heads.Config(**(heads.FULL if full else heads.VERIFY))
    summary = heads.run(cfg, out / "heads", progress=progress)
    rows = []
    for c in summary["claims"]:
        rows.append(tendency(f"heads: {c['name']} → {c['answer']}", c["measured"],
                             c["reference"], c["se"], c["detail"],
                             ("heads/claims.png",) if not rows else ()))
    return rows


def _brute_ceiling(lo, hi, reverse):


    groups = defaultdict(Counter)
    for a in range(lo, hi + 1):
        for b in range(lo, hi + 1):
            s = ad.encode(a, b, reverse)[0]
            groups[tuple(sorted(s[:8]))][a + b] += 1
    return sum(max(c.values()) for c in groups.values()) / (hi - lo + 1) ** 2


CHECKS: dict[str, tuple[str, Callable[..., list[Check]]]] = {
    "model": ("the Deora MHA formula", check_model),
    "train": ("gradient descent", check_training),
    "spectral": ("spectral probes against dense references", check_spectral),
    "weak-convexity": ("the weak-convexity chain, H-slopes, convergence", check_weak_convexity),
    "attention": ("attention identities C1–C5 and flax equality", check_attention),
    "symmetry": ("the permutation theorem, its controls, the addition ceiling", check_symmetry),
    "stability": ("stability bounds and the ε₁ slope", check_stability),
    "heads": ("do more heads help? the seed's claims as tendencies", check_heads),
}

#: The groups a plain ``mhatheory verify`` runs (all of them).
DEFAULT = tuple(CHECKS)


def run_checks(only=None, full: bool = False, out_dir="report", progress: bool = True):
    """Run the selected checks; returns ``(rows, seconds per group)``. With ``progress`` the
    outer bar advances per group and the long groups show their own inner bars."""

    names = list(DEFAULT) if not only else list(only)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; choose from {list(CHECKS)}.")
    out = Path(out_dir)
    rows, timing = [], {}
    bar = tqdm(names, desc="verify", unit="group", disable=not progress)
    for name in bar:
        bar.set_postfix_str(name)
        t0 = time.perf_counter()
        rows.extend(CHECKS[name][1](full, out, progress=progress))
        timing[name] = time.perf_counter() - t0
    return rows, timing


def format_table(rows: list[Check]) -> str:
    """The terminal table; the check column is as wide as the longest name (never cut)."""
    width = max([len("check")] + [len(r.name) for r in rows])
    head = (f"{'status':<12} {'kind':<9} {'check':<{width}} {'measured':>11} {'reference':>11} "
            f"{'margin':>11}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.status:<12} {r.kind:<9} {r.name:<{width}} {r.measured:>11.3g} "
                     f"{r.reference:>11.3g} {r.margin:>11.3g}")
    return "\n".join(lines)


def write_report(rows: list[Check], timing: dict, out_dir, full: bool) -> Path:
    """``report/results.json``, ``report/index.md`` and ``report/index.html``."""

    out = Path(out_dir)
    results.write_json_atomic(out / "results.json", {
        "experiment": "verify", **results.provenance({"full": full, "checks": list(timing)}, 0),
        "checks": [dict(r.__dict__, verdict=None if r.verdict is None else str(r.verdict),
                        status=r.status) for r in rows],
        "seconds": timing, "all_pass": all_pass(rows), "exit_status": exit_status(rows)})
    return report.write(rows, timing, out)


def all_pass(rows: list[Check]) -> bool:
    """Every gated row certified to hold (INCONCLUSIVE is not a pass)."""
    return all(r.passed for r in rows)


def exit_status(rows: list[Check]) -> int:
    """0: every gated row PASS; 1: some row FAILs; 3: none fails but some is INCONCLUSIVE."""
    statuses = {r.status for r in rows}
    return 1 if "FAIL" in statuses else (3 if "INCONCLUSIVE" in statuses else 0)


def summary_line(rows: list[Check]) -> str:
    """One line: how many rows PASS / FAIL / INCONCLUSIVE / REPORT."""
    counts = Counter(r.status for r in rows)
    verdict = {0: "ALL CHECKS PASS", 1: "SOME CHECKS FAIL",
               3: "SOME CHECKS INCONCLUSIVE (none fails)"}[exit_status(rows)]
    return verdict + " (" + ", ".join(f"{counts[s]} {s}" for s in
                                      ("PASS", "FAIL", "INCONCLUSIVE", "REPORT")) + ")"
