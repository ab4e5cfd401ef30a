"""``verify`` group ``stability``: replace-one stability, the Lei–Ying bounds against the
generalisation gap, the slope of ε₁ in n, and influence functions against exact retraining."""

from __future__ import annotations

from pathlib import Path

from mhatheory.checks import Check, figure, lower, tendency
from mhatheory.experiments import stability_sweep

#: the small grid of a plain ``mhatheory verify`` (``--full`` uses ``stability_sweep.FULL``)
SMALL = dict(n_grid=(32, 64, 128), steps_grid=(100,), seeds=3, subset=16)


def rows(full: bool, out, progress: bool = False) -> list[Check]:
    """Replace-one stability, the Lei–Ying bounds against the gap, the ε₁ slope in n."""
    cfg = stability_sweep.Config(**(stability_sweep.FULL if full else SMALL))
    s = stability_sweep.run(cfg, Path(out) / "stability", progress=progress)
    fig = {name: figure(path, out) for name, path in s.figures.items()}
    out_rows = []
    for name, bound in (("G·ε₁ (Lipschitz)", s.lipschitz), ("smooth, best γ", s.smooth)):
        out_rows.append(Check(
            f"stability: gap + 3 SE ≤ {name} bound, every cell", "theorem", bound.verdict,
            bound.worst_margin, 0.0, bound.worst_margin,
            f"{s.num_cells} cells × {s.seeds} seeds; 10⁴ fresh test samples; HOLDS needs the "
            "whole ±3 SE interval of the gap under the bound", (fig["gap_vs_bounds"],)))
    out_rows.append(lower("stability: ε₁ > 0 (min over cells)", "sanity", s.min_eps1, 1e-300,
                          "retraining differs"))
    for sl in s.eps1_slopes:
        out_rows.append(tendency(
            f"stability: slope of ε₁ vs n (H={sl['heads']}, K={sl['steps']})",
            sl["slope_mean"], -1.0, sl["slope_se"],
            "log-log fit per seed, mean ± SE; GD theory suggests about −1", (fig["eps1_vs_n"],)))
    for name, v in s.influence.items():
        out_rows.append(tendency(
            f"stability: influence-function cosine ({name} damping)", v["cosine_median"], 1.0,
            v["relative_error_median"], "median cosine with exact retraining (1 = exact); "
            "margin column: median relative error",
            (fig["distance"],) if name == "spectral" else ()))
    return out_rows
