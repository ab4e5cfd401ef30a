"""``mhatheory verify``: every check of the toolkit at small size, as one table and a report.

Each group is a module with ``rows(full, out, progress) -> list[Check]``: an experiment's
``check.py`` beside its run (``mhatheory/experiments/<name>/check.py``), or, for the groups that
check library pieces only, :mod:`mhatheory.verify.model` and :mod:`mhatheory.verify.attention`.
This package is their registry (:data:`GROUPS`), the runner (:func:`run_checks`), the terminal
table and the report files. Adding a group is one module and one line in :data:`GROUPS`.

Gated rows carry a three-valued :class:`~mhatheory.verdicts.Verdict` (see
:mod:`mhatheory.checks` for the row kinds and their builders): status PASS when certified to
hold, FAIL when certified to fail, INCONCLUSIVE when the check could not decide (after spending
more HVPs where that can help). The exit status (:func:`exit_status`) is 1 when any row
FAILs, 3 when none fails but some is INCONCLUSIVE, 0 when every gated row passes.
"""

from __future__ import annotations

import importlib
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from mhatheory import _numerics, report, results
from mhatheory.checks import Check, lower, tendency, upper

#: The check groups: CLI name → (what it checks, the module whose ``rows`` builds its rows: an
#: experiment's ``check`` module, or one of this package's for the library-only groups).
GROUPS: dict[str, tuple[str, str]] = {
    "model": ("the Deora MHA formula", "mhatheory.verify.model"),
    "train": ("gradient descent", "mhatheory.experiments.learning_curve.check"),
    "spectral": ("spectral probes against dense references",
                 "mhatheory.experiments.spectrum.check"),
    "weak-convexity": ("the weak-convexity chain, H-slopes, convergence",
                       "mhatheory.experiments.weak_convexity.check"),
    "attention": ("attention identities C1–C5 and flax equality", "mhatheory.verify.attention"),
    "symmetry": ("the permutation theorem, its controls, the addition ceiling",
                 "mhatheory.experiments.symmetry_sweep.check"),
    "stability": ("stability bounds and the ε₁ slope",
                  "mhatheory.experiments.stability_sweep.check"),
    "heads": ("do more heads help? the paper's claims as tendencies",
              "mhatheory.experiments.heads.check"),
    "transformer-curvature": ("the λmin–H law on a decoder Transformer (theorem + slopes)",
                              "mhatheory.experiments.transformer_curvature.check"),
}


def _group(module: str) -> Callable[..., list[Check]]:
    """The ``rows`` function of ``module``, imported when first called (so ``mhatheory --help``
    does not import every experiment)."""

    def rows(full: bool, out, progress: bool = False) -> list[Check]:
        return importlib.import_module(module).rows(full, Path(out), progress=progress)

    rows.__name__ = rows.__qualname__ = module.removesuffix(".check").rsplit(".", 1)[-1]
    rows.__doc__ = f"The rows of :mod:`{module}`."
    return rows


#: CLI name → (what it checks, ``rows(full, out, progress)``); the runner calls these.
CHECKS: dict[str, tuple[str, Callable[..., list[Check]]]] = {
    name: (text, _group(module)) for name, (text, module) in GROUPS.items()}

#: The groups a plain ``mhatheory verify`` runs (all of them).
DEFAULT = tuple(CHECKS)

# one name per group for direct calls (``verify.check_spectral(False, "out")``)
check_model = CHECKS["model"][1]
check_training = CHECKS["train"][1]
check_spectral = CHECKS["spectral"][1]
check_weak_convexity = CHECKS["weak-convexity"][1]
check_attention = CHECKS["attention"][1]
check_symmetry = CHECKS["symmetry"][1]
check_stability = CHECKS["stability"][1]
check_heads = CHECKS["heads"][1]
check_transformer_curvature = CHECKS["transformer-curvature"][1]


def run_checks(only=None, full: bool = False, out_dir="report", progress: bool = True):
    """Run the selected checks; returns ``(rows, seconds per group)``. With ``progress`` the
    outer bar advances per group and the long groups show their own inner bars."""
    names = list(DEFAULT) if not only else list(only)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; choose from {list(CHECKS)}.")
    out = Path(out_dir)
    results.retire(out)
    rows, timing = [], {}
    bar = tqdm(names, desc="verify", unit="group", disable=not progress)
    for name in bar:
        bar.set_postfix_str(name)
        t0 = time.perf_counter()
        rows.extend(CHECKS[name][1](full, out, progress=progress))
        timing[name] = time.perf_counter() - t0
        _numerics.relieve_code_mappings()   # a group's programs are not reused by the next
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
    """``report/results.json``, ``report/index.md`` and ``report/index.html`` (the pages listed
    under ``figures``, for :func:`mhatheory.results.retire`)."""
    out = Path(out_dir)
    results.write_json_atomic(out / "results.json", {
        "experiment": "verify", **results.provenance({"full": full, "checks": list(timing)}, 0),
        "checks": [dict(r.__dict__, verdict=None if r.verdict is None else str(r.verdict),
                        status=r.status) for r in rows],
        "seconds": timing, "all_pass": all_pass(rows), "exit_status": exit_status(rows),
        "figures": ["index.html", "index.md"]})
    return report.write(rows, timing, out)


def all_pass(rows: list[Check]) -> bool:
    """At least one gated row, and every gated row certified to hold (INCONCLUSIVE is not a
    pass; a run of tendency rows only has nothing that passed)."""
    return any(r.kind != "tendency" for r in rows) and all(r.passed for r in rows)


def exit_status(rows: list[Check]) -> int:
    """0: every gated row PASS; 1: some row FAILs; 3: none fails but some is INCONCLUSIVE."""
    statuses = {r.status for r in rows}
    return 1 if "FAIL" in statuses else (3 if "INCONCLUSIVE" in statuses else 0)


def summary_line(rows: list[Check]) -> str:
    """One line: how many rows PASS / FAIL / INCONCLUSIVE / REPORT."""
    counts = Counter(r.status for r in rows)
    verdict = {0: "ALL CHECKS PASS", 1: "SOME CHECKS FAIL",
               3: "SOME CHECKS INCONCLUSIVE (none fails)"}[exit_status(rows)]
    if counts["REPORT"] == len(rows):
        verdict = "NO GATED CHECK RAN (REPORT rows only: measured tendencies, nothing to pass)"
    return verdict + " (" + ", ".join(f"{counts[s]} {s}" for s in
                                      ("PASS", "FAIL", "INCONCLUSIVE", "REPORT")) + ")"


__all__ = ["CHECKS", "DEFAULT", "GROUPS", "Check", "all_pass", "exit_status", "format_table",
           "lower", "run_checks", "summary_line", "tendency", "upper", "write_report"]
