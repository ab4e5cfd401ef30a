"""Render ``experiments/RESULTS.md`` from the JSON results under ``experiments/`` (benchmarks
and experiment runs), so the tables in the docs are computed, never typed.

    python experiments/tables.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return "" if v is None else str(v)


def table(rows, cols) -> list[str]:
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return out


def device_line(res) -> str:
    d, v = res["device"], res["versions"]
    return (f"Device: {d['backend']} ({d['device_kind']}, {d['count']} device(s)), "
            f"x64={d['x64']}; jax {v['jax']}; {res['created_utc']}.")


def bench_sections() -> list[str]:
    lines = []
    specs = {
        "train": ("GD: lax.scan vs Python loop (Deora H=8, d=16, T=8, n=256)",
                  ["route", "steps", "seconds", "steps_per_s", "speedup_vs_loop"]),
        "spectral": ("Spectral probes on the Deora loss (n=64, T=8, float64)",
                     ["P", "H", "d", "grad_ms", "hvp_ms", "hvp_over_grad", "dense_s",
                      "lanczos_s", "dense_over_lanczos", "lanczos_hvps", "lambda_min_rel_err",
                      "certified_rel_width", "probe_over_hvps", "selective_probe_over_hvps",
                      "full_probe_over_hvps", "none_probe_over_hvps",
                      "selective_lambda_min_rel_err", "full_lambda_min_rel_err",
                      "none_lambda_min_rel_err", "lanczos_mem_MB", "power100_rel_err",
                      "lanczos100_rel_err", "reference"]),
        "stability": ("Leave-one-out retraining, n=256", ["route", "seconds", "speedup"]),
        "scale": ("Past one process: the stability sweep over processes, data-parallel λmin "
                  "(see `experiments/bench/results/scale.md`)",
                  ["part", "route", "seconds", "speedup", "cells", "hvps"]),
        "bounded_memory": ("Lanczos in bounded memory: λmin basis-free vs the stored Krylov basis, "
                           "Deora d=384 up to P≈10⁷ (see "
                           "`experiments/bench/results/bounded_memory.md`)",
                           ["P", "krylov", "store_basis", "lambda_min", "converged", "hvps",
                            "seconds", "first_call_s", "peak_rss_gb", "probe_gb", "basis_gb"]),
        "track": ("`spectral.track` (λmin and λmax every k GD steps) against the training "
                  "it watches", ["P", "steps", "every", "probes", "warm_start", "train_s",
                                 "track_s", "track_over_train", "hvps_per_probe",
                                 "all_converged", "first_s"]),
        "cold": ("First calls, compilation included: each probe and each peer in a fresh "
                 "process (`cold_s`: no persistent cache; `cached_s`: a second process with "
                 "the first one's cache; ratios against cold ARPACK on our jitted HVP)",
                 ["model", "P", "quantity", "tool", "cold_s", "cached_s", "vs_arpack",
                  "cached_vs_arpack", "vs_lambda_min", "hvps", "value", "error"]),
        "cold_lambda": ("First λmin and λmax calls, compilation included, each in a fresh "
                        "process, median of 5 processes a row (`cold_s_all`), against cold "
                        "ARPACK on our jitted HVP measured the same way",
                        ["model", "P", "quantity", "tool", "cold_s", "cached_s", "vs_arpack",
                         "cached_vs_arpack", "vs_lambda_min", "hvps", "cold_s_all"]),
        "cold_133k": ("First calls at P = 133,120 (the host engine, `HOST_MAX_PARAMS` = 163,840): "
                      "median of 3 fresh processes a row, against cold ARPACK on our jitted HVP "
                      "measured the same way",
                      ["model", "P", "quantity", "tool", "cold_s", "cached_s", "vs_arpack",
                       "cached_vs_arpack", "vs_lambda_min", "hvps", "cold_s_all"]),
        "cold_1m": ("First calls at P = 1,056,768 against ARPACK (on our jitted HVP and on "
                    "torch's) and PyHessian: median of 3 fresh processes a row",
                    ["model", "P", "quantity", "tool", "cold_s", "cached_s", "vs_arpack",
                     "cached_vs_arpack", "vs_lambda_min", "hvps", "value", "cold_s_all"]),
        "cold_floor": ("First calls against the PyTorch peers (P ≤ 8,448, median of 3 fresh "
                       "processes a row), with the floor of any `jax.jit` first call: the bare "
                       "HVP traced (`trace_s`), lowered and compiled (cached: loaded), never run",
                       ["model", "P", "quantity", "tool", "cold_s", "cached_s", "vs_arpack",
                        "cached_vs_arpack", "vs_lambda_min", "trace_s", "hvps", "value",
                        "cold_s_all"]),
        "emitters": ("XLA's classic CPU emitters against its default fusion emitters for the "
                     "model's two programs (the linearisation and the product), each emitter "
                     "set up before timing (`classic/default` < 1: classic is cheaper; the "
                     "first compilation in a new process is in the JSON's `fresh_s_*`)",
                     ["model", "P", "compile_s_default", "compile_s_classic",
                      "compile_s classic/default", "linearise_ms classic/default",
                      "hvp_ms_default", "hvp_ms_classic", "hvp_ms classic/default",
                      "hvp_rel_difference"]),
        "engine": ("The Lanczos recurrence in NumPy on the host against its compiled step, "
                   "warm (Deora, n = 64, float64, same key, median of interleaved calls; "
                   "`host/compiled` < 1: the host is faster)",
                   ["P", "probe", "hvps", "hvps_compiled", "host_s", "compiled_s",
                    "host/compiled", "ms_per_hvp_host", "ms_per_hvp_compiled",
                    "value_difference"]),
        "curvature_compile": ("Compile seconds of one transformer-curvature cell (one model "
                              "structure), fresh process, no persistent cache, per commit",
                              ["commit", "wall_s", "compile_s", "programs", "top"]),
        "spectral_torch": ("Our HVP and λmax vs PyTorch double backward + 100-step power "
                           "iteration (PyHessian's route)",
                           ["P", "H", "d", "hvp_agreement", "ours_hvp_ms", "torch_hvp_ms",
                            "torch_over_ours", "power100_rel_err", "lanczos100_rel_err"]),
    }
    for path in sorted((HERE / "bench" / "results").glob("*.json")):
        res = json.loads(path.read_text())
        if res["benchmark"] in CUSTOM:
            lines += CUSTOM[res["benchmark"]](res, path)
            continue
        title, cols = specs[res["benchmark"]]
        lines += [f"### {title} — `{path.name}`", "", device_line(res), ""]
        if res.get("note"):
            lines += [f"Note: {res['note']}.", ""]
        lines += table(res["rows"], cols) + [""]
        for key, (sub_title, sub_cols) in EXTRA_TABLES.get(res["benchmark"], {}).items():
            if key in res:
                lines += [f"#### {sub_title}", ""] + table(res[key], sub_cols) + [""]
    return lines


# further tables a benchmark writes next to its rows
EXTRA_TABLES = {
    "bounded_memory": {"agreement": (
        "Basis-free against stored at the same P and Krylov size (time and HVPs as ratios)",
        ["P", "krylov", "rel_diff", "intervals_overlap", "time_ratio", "hvp_ratio",
         "peak_saved_gb"])},
    "spectral": {"overhead": (
        "A probe's cost beyond its HVPs as the HVP gets dearer (P fixed, n samples; λmin, one "
        "Lanczos cycle; `*_extra_ms_per_step` = (probe − HVPs × HVP time) / krylov; a negative "
        "value means the HVPs ran faster inside the probe than in the separately timed batch, "
        "i.e. the extra work is below the timing noise)",
        ["P", "n", "krylov", "hvp_ms", "partial_probe_over_hvps", "selective_probe_over_hvps",
         "full_probe_over_hvps", "none_probe_over_hvps", "partial_extra_ms_per_step",
         "selective_extra_ms_per_step", "full_extra_ms_per_step", "none_extra_ms_per_step"])},
}


def peers_section(res, path) -> list[str]:
    """``bench_peers.py``: one table per quantity, every cell's tools side by side."""
    c, peers = res["config"], res["peers"]
    lines = [f"### Probes against PyHessian, curvlinops and ARPACK on the same Deora model — "
             f"`{path.name}`", "", device_line(res), "",
             f"Peers: torch {peers['torch']} ({peers['torch_threads']} threads), PyHessian "
             f"{peers['pyhessian']}, curvlinops {peers['curvlinops']}, scipy {peers['scipy']}"
             + ("; PyHessian's density ran with an eigh-based `torch.eig` (removed in torch 2)"
                if peers.get("pyhessian_torch_eig_shim") else "") + ". "
             f"n = {c['n']}, T = {c['T']}; trained = {c['train_steps']} GD steps at lr "
             f"{c['lr']}; trace {c['trace_probes']} probes; SLQ {c['slq'][0]} probes × "
             f"{c['slq'][1]} nodes; median of {c['rounds']} interleaved rounds (`median_s`), "
             "the first call (compilation for ours) apart (`first_s`); `vs_ours` = median_s / "
             "ours' median_s (> 1: ours faster). `rel_err`: λmax relative; λmin relative to "
             "|λmax|; trace relative (Monte-Carlo: compare with `ref_se_rel`); density: "
             "Wasserstein-1 to the reference measure over λmax − λmin. Reference per row."
             + (f" Quantities measured: {', '.join(c['quantities'])}."
                if set(c.get("quantities", ())) not in (set(), {"lambda_max", "lambda_min",
                                                               "trace", "density"}) else ""),
             ""]
    cols = ["P", "dtype", "point", "tool", "value", "rel_err", "hvps", "median_s", "first_s",
            "vs_ours"]
    for q in ("lambda_max", "lambda_min", "trace", "density"):
        rows = [r for r in res["rows"] if r["quantity"] == q]
        if rows:
            extra = ["ref_se_rel"] if q == "trace" else []
            lines += [f"#### {q}", ""] + table(rows, cols + extra + ["reference"]) + [""]
    matched = equal_accuracy(res["rows"])
    if matched:
        lines += ["#### lambda_max at equal accuracy", "",
                  "Per peer row, the fastest of ours' rows (the default and the looser "
                  f"tolerances) whose error is at most the peer's, or at most {FLOOR:g} "
                  "(float64 rounding of a Ritz value, where neither tool can be said to be "
                  "more accurate); `peer_over_ours` > 1: ours faster.", ""]
        lines += table(matched, ["P", "dtype", "point", "peer", "peer_err", "peer_s", "ours",
                                 "ours_err", "ours_s", "peer_over_ours"]) + [""]
    return lines


#: errors below this count as equal in :func:`equal_accuracy` (about 45 ε of float64)
FLOOR = 1e-14


def equal_accuracy(rows) -> list[dict]:
    """λmax per cell and peer: the peer's time over that of ours' fastest row (``ours`` or
    ``ours tol=…``) whose error is at most max(the peer's, FLOOR); no row where none is."""
    out = []
    cells = {(r["P"], r["dtype"], r["point"]) for r in rows if r["quantity"] == "lambda_max"}
    for cell in sorted(cells):
        here = [r for r in rows if r["quantity"] == "lambda_max"
                and (r["P"], r["dtype"], r["point"]) == cell]
        ours = [r for r in here if r["tool"].startswith("ours")]
        for peer in (r for r in here if not r["tool"].startswith("ours")):
            ok = [r for r in ours if r["rel_err"] <= max(peer["rel_err"], FLOOR)]
            if ok:
                best = min(ok, key=lambda r: r["median_s"])
                out.append({"P": cell[0], "dtype": cell[1], "point": cell[2],
                            "peer": peer["tool"], "peer_err": peer["rel_err"],
                            "peer_s": peer["median_s"], "ours": best["tool"],
                            "ours_err": best["rel_err"], "ours_s": best["median_s"],
                            "peer_over_ours": peer["median_s"] / best["median_s"]})
    return out


def pitfalls_section(res, path) -> list[str]:
    """``bench_peer_pitfalls.py``: one table per pitfall."""
    c = res["config"]
    lines = [f"### PyHessian's pitfalls, measured — `{path.name}`", "", device_line(res), "",
             f"PyHessian {res['peers']['pyhessian']}, torch {res['peers']['torch']}; Deora "
             f"d = {c['d']}, H = {c['H']} (P = {c['P']}), float64, dense reference.", ""]
    specs = {
        "epsilon": ("Power iteration biased low by the 1e-6 in `v / (‖v‖ + 1e-6)` (loss × c; "
                    "`predicted_rel_err` from the fixed point of its two normalisations per "
                    "step)", ["point", "scale_c", "lambda_max", "pyhessian", "rel_err",
                              "predicted_rel_err"]),
        "trace default stop": (f"`trace()` at its defaults over {c['seeds']} seeds (c = −1: "
                               "the Hessian of −L)",
                               ["point", "scale_c", "trace", "probes_min", "probes_median",
                                "probes_max", "rel_err_median", "rel_err_max"]),
        "second hessian()": ("A second `hessian(model, …)` on the same model over the first "
                             "(same seeds)", ["point", "scenario", "first_lambda",
                                              "second_lambda", "lambda_ratio", "trace_ratio"]),
    }
    for kind, (title, cols) in specs.items():
        lines += [f"#### {title}", ""]
        lines += table([r for r in res["rows"] if r["pitfall"] == kind], cols) + [""]
    return lines


# peers_trace: the trace rows again after trace's default chunk became 1 (`bench_peers.py --full-max
# 2000000 --quantities trace --name peers_trace`); peers' own trace rows ran in chunks of 50-100;
# peers_eig: the λ rows again with one shared linearisation per cell (`--quantities lambda_max
# lambda_min --max-p 140000 --name peers_eig`), and at P = 1,056,768 (`--min-p 1000000 --name
# peers_eig_1m`); peers_lmin: the λmin rows after a λmin restarting from its Ritz vector got
# cycles of 80 vectors (`--quantities lambda_min --max-p 140000 --name peers_lmin`, and
# `--min-p 1000000 --name peers_lmin_1m`)
CUSTOM = {"peers": peers_section, "peers_trace": peers_section, "peers_eig": peers_section,
          "peers_eig_1m": peers_section, "peers_lmin": peers_section,
          "peers_lmin_1m": peers_section, "peer_pitfalls": pitfalls_section}


def seq2seq_section() -> list[str]:
    path = HERE / "results" / "seq2seq" / "results.json"
    if not path.exists():
        return []
    res = json.loads(path.read_text())
    c = res["config"]
    return [f"### Encoder–decoder on `{c['task']}` (length {c['length']}, vocab {c['vocab']})", "",
            device_line(res), "",
            f"{res['train_pool']} training sequences, {res['num_test']} held-out (disjoint); "
            f"{c['steps']} AdamW steps.", ""] + table(res["curve"], [
                "step", "train_loss", "teacher_forced_token_acc", "greedy_token_acc",
                "greedy_exact_match"]) + [""]


def symmetry_section() -> list[str]:
    lines = []
    for path in sorted((HERE / "results").glob("symmetry*/results.json")):
        res = json.loads(path.read_text())
        c = res["config"]
        rows = [dict(r, exact_match=f"{r['exact_match_mean']:.4f} ± {r['exact_match_std']:.4f}",
                     steps_to_95=",".join("—" if s is None else str(s)
                                          for s in r["steps_to_95"]))
                for r in res["table"]]
        lines += [f"### 3-digit addition, `{path.parent.name}`", "", device_line(res), "",
                  f"d_model={c['d_model']}, {c['layers']} layers, {c['heads']} heads, "
                  f"{c['steps']} AdamW steps, batch {c['batch']}, {c['num_train']} train / "
                  f"{c['num_test']} test problems, reversed answer={c['reverse_answer']}; "
                  f"enumerated exact-match ceiling {res['ceilings']['exact_match']:.4f}.", ""]
        lines += table(rows, ["mode", "positional", "residual", "seeds", "exact_match",
                              "reached_95", "steps_to_95", "ceiling", "under_ceiling",
                              "trained_invariance_max"]) + [""]
    return lines


def weak_convexity_section() -> list[str]:
    path = HERE / "results" / "weak-convexity" / "results.json"
    if not path.exists():
        return []
    res = json.loads(path.read_text())
    c, s = res["config"], res["summary"]
    # "slopes_restricted"; results written before it was named say "slopes_heads_ge_<H>"
    restricted = s.get("slopes_restricted", s.get(f"slopes_heads_ge_{c.get('fit_min_heads', 4)}",
                                                  {}))
    rows = [{"fit over": name, "quantity": q, "stage": st, "step": v["step"],
             "slope": v["slope_mean"], "SE": v["slope_se"],
             "excluded (≤ 0)": v["points_excluded_nonpositive"]}
            for name, fits in (("all H", s.get("slopes", {})),
                               (f"H ≥ {c.get('fit_min_heads', 4)}", restricted))
            for q, stages in fits.items() for st, v in stages.items()]
    conv = res["convergence"]
    lines = ["### Weak convexity against H", "", device_line(res), "",
             f"H ∈ {c['heads_grid']}, {c['seeds']} seeds, d={c['d']}, T={c['T']}, n={c['n']}, "
             f"{c['steps']} GD steps (η={c['lr']}), {s['num_probes']} probes. Chain holds at every "
             f"probe: **{s['chain_holds_everywhere']}**; negative curvature present: "
             f"{s['negative_curvature_found']}; descent lemma where applicable: "
             f"{s['descent_lemma_holds_where_applicable']}; re-probes after a certified L1 "
             f"violation: {sum(r.get('reprobed', 0) for r in res['records'])}.", "",
             "Log-log slopes against H (mean ± SE over seeds):", ""]
    lines += table(rows, ["fit over", "quantity", "stage", "step", "slope", "SE",
                          "excluded (≤ 0)"]) + [""]
    lines += [f"Finite-time bound (H={conv['heads']}): holds for all K: {conv['holds_all']}; "
              f"NTK margin {conv['ntk_margin']:.3g} (separable {conv['ntk_separable']}); "
              f"bound/loss at K=1: {conv['bound'][0] / conv['loss'][0]:.3g}, at "
              f"K={conv['K'][-1]}: {conv['bound'][-1] / conv['loss'][-1]:.3g}.", ""]
    return lines


def stability_section() -> list[str]:
    path = HERE / "results" / "stability" / "results.json"
    if not path.exists():
        return []
    res = json.loads(path.read_text())
    s = res["summary"]
    lines = ["### Stability and generalisation", "", device_line(res), "",
             f"All cells under both bounds (gap − 3 SE): **{s['all_hold']}**.", ""]
    lines += table(res["records"], ["n", "heads", "steps", "eps1", "eps2", "gen_gap",
                                    "gen_gap_se", "G", "beta", "bound_lipschitz",
                                    "bound_smooth", "holds"]) + [""]
    lines += table(s["eps1_slopes"], ["heads", "steps", "slope_mean", "slope_se"]) + [""]
    lines += ["Influence functions vs exact leave-one-out retraining (medians): " + "; ".join(
        f"{k} damping: cosine {v['cosine_median']:.3g}, relative error "
        f"{v['relative_error_median']:.3g}" for k, v in s["influence"].items()) + ".", ""]
    return lines


def heads_section(folder: str = "heads",
                  title: str = "Do more heads help? (`mhatheory run heads`)") -> list[str]:
    """A heads sweep: the claims (t-intervals, Benjamini–Hochberg), each H at its tuned best,
    robustness, matched training loss, cost, the assumptions checked on the data, and the
    fixed-K records of the primary slices."""
    path = HERE / "results" / folder / "results.json"
    if not path.exists():
        return []
    res = json.loads(path.read_text())
    c, s = res["config"], res["summary"]
    g = s["grid"]
    sweep = res.get("sweep") or {}
    floor = ("" if s["bayes_error"] is None else
             f"; Bayes error {s['bayes_error']:.4f} ± {s['bayes_error_se']:.4f}")
    lines = [f"### {title}", "", device_line(res), "",
             f"Model `{c.get('model', 'deora')}`, data `{c.get('data', 'mixture')}`, optimiser "
             f"`{c.get('optimizer', 'gd')}`.", "",
             f"H ∈ {g['heads']}; tuning grid η ∈ {g['lr']} × init ∈ {g['init_scale']} at "
             f"n = {g['reference_n']}, {c['seeds']} seeds per setting, K = {c['steps']} GD "
             f"steps, {c['num_val']} validation samples per seed and "
             + (f"{c['num_test']} fresh test samples per seed; "
                if c.get("data", "mixture") == "mixture" else "the data's own test set (the "
                "same for every seed); ") +
             f"primary slices (η, init) {g['primary']} with {c['replace']} replace-one "
             f"retrainings per seed; n ∈ {g['n']} at η = {c['lr']}, init = {c['init_scale']}; "
             + (f"fixed-width control at width {g['width']} (H ∈ {g['fixed_width_heads']}); "
                if g["width"] else "no fixed-width control; ")
             + (f"d = {c['d']}, T = {c['T']}, ζ = {c['zeta']}, σ = {c['sigma']}"
                if c.get("data", "mixture") == "mixture" else "data as given")
             + f"{floor}. {g['records']} records; "
             f"{s['failed_runs']} failed base runs; compute {s['cell_seconds'] / 60:.1f} min "
             f"summed over cells" + (f" ({sweep.get('reused', 0)} cells reused from an "
                                     "earlier run)" if sweep.get("reused") else "") + ".", "",
             f"Claims (95 % Student-t interval of the seed-averaged slope over the claim's "
             f"slices; answer from Benjamini–Hochberg at α = {c['alpha']} across slices):", ""]
    lines += table([dict(r, t95=(f"[{_fmt(r['lo'])}, {_fmt(r['hi'])}]"
                                 if r["lo"] is not None else None)) for r in s["claims"]],
                   ["name", "measured", "t95", "answer", "detail"]) + [""]
    rows = [{"claim": cl["claim"], "slice": sl["slice"], "estimate": sl["mean"],
             "t95": f"[{_fmt(sl['lo'])}, {_fmt(sl['hi'])}]" if sl["lo"] is not None else None,
             "p": sl["p"], "p_BH": sl["p_adjusted"], "verdict": sl["verdict"]}
            for cl in s["slopes"] for sl in cl["slices"]]
    lines += ["Per claim and slice: estimate (per-seed slope or difference, mean over seeds), "
              "t-interval, p-value and Benjamini–Hochberg adjusted p:", ""]
    lines += table(rows, ["claim", "slice", "estimate", "t95", "p", "p_BH", "verdict"]) + [""]
    lines += ["Each H at its tuned best (η, init and stopping step selected on validation "
              "error):", ""]
    lines += table(s["tuned"], ["arm", "heads", "lr", "init_scale", "stop_step", "val_error",
                                "test_error", "test_error_se", "gen_gap", "train_loss",
                                "on_edge"]) + [""]
    lines += ["Robustness (share of the grid within δ of each H's best validation error; "
              "failed = non-finite or L̂(θ_K) > ln 2):", ""]
    lines += table([dict(r, stable=str(r["stable_lr_range"])) for r in s["robustness"]],
                   ["arm", "heads", "delta", "good_frac", "good_frac_se", "failed_frac",
                    "stable"]) + [""]
    lines += ["At matched training loss (primary slices; means over the seeds that reached "
              "the target):", ""]
    lines += table(s["matched"], ["arm", "heads", "lr", "init_scale", "target", "reached_frac",
                                  "step", "test_error", "gen_gap", "eps1"]) + [""]
    if s.get("assumptions"):
        lines += ["The theory's assumptions on these data:", ""]
        lines += table(s["assumptions"], ["assumption", "held", "detail"]) + [""]
    lines += ["Cost per GD step (one run; an ensemble of H one-head models costs H members):",
              ""]
    lines += table(s["cost"], ["arm", "heads", "params", "flops_per_step",
                               "seconds_per_step"]) + [""]
    recs = sorted((r for r in res["records"] if r["primary"]),
                  key=lambda r: (r["arm"], r["n"], r["lr"], r["init_scale"], r["heads"]))
    lines += ["Fixed-K records of the primary slices (means over all seeds; survivors-only "
              "beside):", ""]
    lines += table(recs, ["arm", "heads", "lr", "init_scale", "n", "failed_frac", "final_loss",
                          "test_error", "test_error_survivors", "gen_gap", "eps1",
                          "bound_lipschitz", "bound_smooth"]) + [""]
    return lines


def transformer_curvature_section() -> list[str]:
    """The λmin–H law on Transformers that have learned (addition and digits): training, the
    theorem row, the slopes of −λmin/L̂ against H at matched loss, the probe-batch comparison and
    the seed means per cell and stage."""
    path = HERE / "results" / "transformer-curvature" / "results.json"
    if not path.exists():
        return []
    res = json.loads(path.read_text())
    c, s = res["config"], res["summary"]
    th = s["theorem"]
    lines = ["### The λmin–H law on Transformers that have learned "
             "(`mhatheory run transformer-curvature`)", "", device_line(res), "",
             f"Tasks {c['tasks']}; layers ∈ {c['layers_grid']}; fixed_d_model: d_model = "
             f"{c['d_model']}, H ∈ {c['heads_grid']}; fixed_head_dim: head size "
             f"{c['head_dim']}, H ∈ {c['fixed_head_dim_heads_grid']}; {c['seeds']} seeds. "
             f"AdamW (peak rate chosen per cell on validation from {c['lr_grid']}) until "
             f"validation exact match ≥ {c['target_accuracy']} or probe-batch L̂ ≤ "
             f"{c['target_loss']}, and L̂ ≤ {c['loss_levels'][-1]} (at most "
             f"{c['max_steps']} steps). Probes on {c['probe_batch']} training samples at init, "
             f"where L̂ first reaches the marginal entropy ("
             + ", ".join(f"{k} {v:.3f}" for k, v in s["entropy"].items())
             + f") and each of {c['loss_levels']}, and at the end (also on the first "
             f"{c['late_probe_batches']}).", "",
             "Training (`steps`: min, median, max; accuracies of the end point):", ""]
    lines += table([dict(v, task=k, learned=f"{v['learned']} of {v['cells']}",
                         test_accuracy=v["test_accuracy"]["mean"])
                    for k, v in s["training"].items()],
                   ["task", "learned", "steps", "accuracy", "test_accuracy", "loss"]) + [""]
    lines += [f"Theorem λmin(∇²L̂) ≥ λmin(N) over {th['probes']} probes: " + ", ".join(
                  f"{k} {v}" for k, v in th["counts"].items())
              + f"; smallest certified margin {_fmt(th['min_margin'])}.", "",
              "Log-log slope b of −λmin/L̂ against H: mean of the per-seed slopes, 95 % "
              "Student-t interval [lo, hi] over seeds (the one-layer bound scales as "
              "H^(−1/2)); `loss_means`: the seed-mean L̂ per H at that stage:", ""]
    lines += table([dict(r, b=r["slope"]) for r in s["slopes"]],
                   ["task", "scaling", "layers", "stage", "heads", "b", "lo", "hi", "n",
                    "loss_means", "excluded_nonpositive"]) + [""]
    sb, lb = s["probe_batch"][0]["small"], s["probe_batch"][0]["large"]
    lines += [f"The probe batch at the end: log((−λmin/L̂) on {sb} / on {lb} samples) per "
              "cell, mean and 95 % t-interval; mean eigenvalues on each batch:", ""]
    lines += table([dict(r, log_ratio=r["log_ratio"]["mean"], lo=r["log_ratio"]["lo"],
                         hi=r["log_ratio"]["hi"]) for r in s["probe_batch"]],
                   ["task", "layers", "cells", "log_ratio", "lo", "hi", f"lambda_min_{sb}",
                    f"lambda_min_{lb}", f"lambda_min_N_{sb}", f"lambda_min_N_{lb}",
                    f"loss_{sb}", f"loss_{lb}"]) + [""]
    groups: dict = {}
    for r in res["records"]:
        if r["probe_batch"] == c["probe_batch"]:
            key = (r["task"], r["layers"], r["d_model"], r["heads"], r["stage"])
            groups.setdefault(key, []).append(r)
    rows = [{"task": t, "layers": L, "d_model": d, "heads": h, "stage": st, "n": len(g),
             "step": float(np.mean([r["step"] for r in g])),
             "loss": float(np.mean([r["loss"] for r in g])),
             "accuracy": float(np.mean([r["accuracy"] for r in g])),
             "lambda_min": float(np.mean([r["lambda_min"] for r in g])),
             "lambda_max": float(np.mean([r["lambda_max"] for r in g])),
             "lambda_min_N": float(np.mean([r["lambda_min_N"] for r in g])),
             "−λmin/L̂": float(np.mean([r["neg_lambda_over_loss"] for r in g]))}
            for (t, L, d, h, st), g in groups.items()]
    lines += ["Seed means per cell and stage (probe batch of "
              f"{c['probe_batch']}; `n`: seeds that reached the stage):", ""]
    lines += table(rows, ["task", "layers", "d_model", "heads", "stage", "n", "step", "loss",
                          "accuracy", "lambda_min", "lambda_max", "lambda_min_N",
                          "−λmin/L̂"]) + [""]
    return lines


def certificate_coverage_section() -> list[str]:
    """``experiments/certificate_coverage.py``: the probabilistic end's miss frequency."""
    path = HERE / "results" / "certificate-coverage" / "results.json"
    if not path.exists():
        return []
    res = json.loads(path.read_text())
    c = res["config"]
    lines = ["### The probabilistic outer end: misses over random starts "
             "(`experiments/certificate_coverage.py`)", "", device_line(res), "",
             f"P = {c['num_params']}, {c['num_starts']:,} random starts per spectrum and dtype "
             f"(float32: float32 products under the float64 recurrence), the end of "
             f"`prob_interval` read every {c['every']} steps up to {c['steps']}; a miss is a run "
             "whose end excluded λmin after any of those steps. `ci_low`–`ci_high`: "
             "Clopper–Pearson 95% interval of the miss probability; `within`: it reaches down "
             f"to δ. All within δ: **{res['all_within']}**.", ""]
    lines += table(res["rows"], ["spectrum", "dtype", "failure_prob", "misses", "frequency",
                                 "ci_low", "ci_high", "within", "median_width"]) + [""]
    return lines


def render() -> str:
    """RESULTS.md's text from the committed results."""
    lines = ["# Measured results", "",
             "Generated by `python experiments/tables.py` from the JSON files in "
             "`experiments/bench/results/` and `experiments/results/`; every number was "
             "computed by the code in this repository from a seed.", "",
             "## Benchmarks", ""] + bench_sections()
    lines += (["## Experiments", ""] + certificate_coverage_section()
              + weak_convexity_section() + stability_section()
              + seq2seq_section() + symmetry_section() + heads_section()
              + heads_section("heads-digits", "Do more heads help on real digits? "
                              "(`mhatheory run heads --data digits`)")
              + transformer_curvature_section())
    return "\n".join(lines) + "\n"


def main() -> None:
    (HERE / "RESULTS.md").write_text(render())
    print(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
