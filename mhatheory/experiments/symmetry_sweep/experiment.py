"""The ``symmetry-sweep`` experiment's config and run; see
:mod:`mhatheory.experiments.symmetry_sweep`."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from mhatheory import results, symmetry, train
from mhatheory.experiments._common import validate_common
from mhatheory.experiments.sweep import cell_digest, run_cells, selector_fields
from mhatheory.experiments.symmetry_sweep import plots
from mhatheory.models import DecoderTransformer
from mhatheory.models.transformer import POSITIONAL, residual_plan
from mhatheory.tasks import addition as ad


@dataclass(frozen=True)
class Config:
    """The 3-digit addition sweep over mask × positional encoding × residuals.

    Attributes:
        causal_grid: attention masks to sweep: causal, noncausal.
        positional_grid: positional encodings to sweep: none, sinusoidal, learned, relative.
        residual_grid: residual connections to sweep: all, none, attention-only, mlp-only, off:K.
        noncausal_residual_ablation: sweep residual_grid for non-causal models too (else only
            its first entry).
        seeds: training seeds per variant (seed, seed + 1, ...).
        d_model: model width (divisible by heads).
        heads: attention heads per layer.
        layers: decoder layers.
        num_train: training additions.
        num_test: held-out test additions.
        lo: smallest operand.
        hi: largest operand.
        reverse_answer: write the answer digits least significant first.
        batch: examples per AdamW step.
        steps: AdamW steps.
        lr: peak learning rate (linear warm-up, then cosine decay).
        warmup: warm-up steps (< steps).
        weight_decay: AdamW weight decay.
        eval_every: evaluate on the test set every this many steps.
        checkpoint_every: save an orbax checkpoint every this many steps (to resume mid-training).
        seed: base random seed (data split and the seeds of the cells).
    """

    causal_grid: tuple[str, ...] = ("causal", "noncausal")
    positional_grid: tuple[str, ...] = ("none", "sinusoidal", "learned")
    residual_grid: tuple[str, ...] = ("all", "none")
    noncausal_residual_ablation: bool = False
    seeds: int = 3
    d_model: int = 64
    heads: int = 4
    layers: int = 2
    num_train: int = 20_000
    num_test: int = 2_000
    lo: int = 0
    hi: int = 999
    reverse_answer: bool = True
    batch: int = 128
    steps: int = 2_500
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.1
    eval_every: int = 250
    checkpoint_every: int = 500
    seed: int = 0

    def __post_init__(self):
        validate_common(self)
        ad.check_range(self.lo, self.hi, self.reverse_answer)
        ad.check_sizes(self.num_train, self.num_test, self.lo, self.hi)
        if self.d_model % self.heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by heads={self.heads}.")
        if not 0 <= self.warmup < self.steps:
            raise ValueError(f"warmup={self.warmup} must lie in [0, steps={self.steps}).")
        bad = set(self.causal_grid) - {"causal", "noncausal"}
        if bad:
            raise ValueError(f"causal_grid entries must be 'causal' or 'noncausal', got {bad}.")
        bad = set(self.positional_grid) - set(POSITIONAL)
        if bad:
            raise ValueError(f"positional_grid entries must be among {sorted(POSITIONAL)}, "
                             f"got {bad}.")
        for res in self.residual_grid:
            try:
                residual_plan(res, self.layers)
            except ValueError:
                raise ValueError("residual_grid entries must be 'all', 'none', 'attention-only', "
                                 f"'mlp-only' or 'off:K' with K < layers={self.layers}, got "
                                 f"{res!r}.") from None
        for name in ("causal_grid", "positional_grid", "residual_grid"):
            if not getattr(self, name):
                raise ValueError(f"{name} must hold at least one entry.")


FULL = {"d_model": 128, "layers": 4, "num_train": 100_000, "num_test": 10_000, "batch": 256,
        "steps": 10_000, "noncausal_residual_ablation": True}


def _not_in_cells(config: Config) -> set[str]:
    """Config fields that only choose which cells exist (the grids, ``seeds`` and whether
    non-causal cells get the residual ablation)."""
    return selector_fields(config) | {"noncausal_residual_ablation"}


def variants(config: Config):
    """The (mask, positional encoding, residual) variants the config sweeps."""
    for mode in config.causal_grid:
        for pe in config.positional_grid:
            res_grid = (config.residual_grid if mode == "causal" or
                        config.noncausal_residual_ablation else config.residual_grid[:1])
            for res in res_grid:
                yield mode, pe, res


def build(config: Config, mode, pe, res, seed, dtype=jnp.float32):
    """The decoder-only transformer of one variant."""
    return DecoderTransformer(ad.VOCAB, config.d_model, config.heads, config.layers,
                              positional=pe, causal=mode == "causal", residual=res,
                              max_len=ad.SEQ_LEN, rngs=nnx.Rngs(seed), param_dtype=dtype)


def train_cell(config: Config, spec: dict, data, folder: Path, progress: bool) -> dict:
    """Train one (variant, seed) cell with checkpoints; its curve, final row and analyses."""
    import orbax.checkpoint as ocp

    mode, pe, res, seed = spec["mode"], spec["positional"], spec["residual"], spec["seed"]
    model = build(config, mode, pe, res, seed)
    optimizer = train.warmup_cosine_adamw(model, lr=config.lr, warmup=config.warmup,
                                          steps=config.steps,
                                          weight_decay=config.weight_decay)
    # checkpoints are keyed by the cell's config, so a changed setting never restores them
    ckpt_dir = f"{spec['name']}-{cell_digest(config, spec, _not_in_cells(config))}"
    # a multi-process run resumes whole cells only: orbax there expects arrays global to all
    # processes, and only process 0 writes (each process trains its own cells)
    ckpt = (ocp.CheckpointManager(folder.resolve() / "checkpoints" / ckpt_dir,
                                  options=ocp.CheckpointManagerOptions(max_to_keep=1))
            if jax.process_count() == 1 else None)
    state = {"model": nnx.to_pure_dict(nnx.state(model)),
             "opt": nnx.to_pure_dict(nnx.state(optimizer))}
    start, curve = 0, []
    if ckpt is not None and ckpt.latest_step() is not None:  # resume mid-training
        start = ckpt.latest_step()
        restored = ckpt.restore(start, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(state), curve=ocp.args.JsonRestore()))
        for obj, key in ((model, "model"), (optimizer, "opt")):
            s = nnx.state(obj)
            nnx.replace_by_pure_dict(s, restored["state"][key])
            nnx.update(obj, s)
        curve = restored["curve"]["curve"]
        if progress:
            tqdm.write(f"{spec['name']}: resumed from its checkpoint at step {start} of "
                       f"{config.steps}", file=sys.stderr)
    train_seqs, test = data
    for step in tqdm(range(start + 1, config.steps + 1), desc=spec["name"], leave=False,
                     disable=not progress):
        # the batch is a function of (seed, step), so a resumed run repeats the same batches
        idx = np.random.default_rng([seed, step]).integers(0, len(train_seqs), config.batch)
        value = float(ad.train_step(model, optimizer, jnp.asarray(train_seqs[idx])))
        if step % config.eval_every == 0 or step == config.steps:
            curve.append({"step": step, "train_loss": value, **ad.evaluate(model, test)})
        if ckpt is not None and step % config.checkpoint_every == 0 and step < config.steps:
            state = {"model": nnx.to_pure_dict(nnx.state(model)),
                     "opt": nnx.to_pure_dict(nnx.state(optimizer))}
            ckpt.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    curve=ocp.args.JsonSave({"curve": curve})))
    if ckpt is not None:
        ckpt.wait_until_finished()
    steps95 = next((c["step"] for c in curve if c["exact_match"] >= 0.95), None)
    out = {"curve": curve, "final": curve[-1], "steps_to_95": steps95}
    if mode == "noncausal" and pe == "none":   # C13: the theorem on the trained model, float64
        m64 = build(config, mode, pe, res, seed, jnp.float64)
        s = nnx.state(m64)
        nnx.replace_by_pure_dict(s, jax.tree.map(lambda a: np.asarray(a, np.float64),
                                                 nnx.to_pure_dict(nnx.state(model))))
        nnx.update(m64, s)
        tok = jnp.asarray(test[0, :ad.PROMPT_LEN])
        out["trained_invariance"] = symmetry.last_position_invariance(
            lambda t: m64(t), tok).max_deviation
    out["correlations"] = correlations(model, test[:512])
    return out


def correlations(model, seqs) -> dict:
    """(a) Pearson correlation over examples between the top hidden state at k and
    the input embedding of token j (mean over dimensions), and (b) cosine between h^L_k and
    h^0_j, averaged over examples; both ``[T, T]`` over the prompt."""
    _, hidden = model(jnp.asarray(seqs[:, :ad.PROMPT_LEN]), return_hidden=True)
    h0, hL = np.asarray(hidden[0], np.float64), np.asarray(hidden[-1], np.float64)
    z = lambda x: (x - x.mean(0)) / (x.std(0) + 1e-12)  # noqa: E731  (over examples)
    a = np.einsum("nkd,njd->kj", z(hL), z(h0)) / (hL.shape[0] * hL.shape[-1])
    unit = lambda x: x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-12)  # noqa: E731
    b = np.einsum("nkd,njd->kj", unit(hL), unit(h0)) / hL.shape[0]
    return {"slice_to_input": a.tolist(), "cosine_top_vs_input": b.tolist()}


class Summary(NamedTuple):
    """What :func:`run` returns.

    Attributes:
        ceilings: the enumerated accuracy ceilings of non-causal, position-free models.
        table: one row per variant (:func:`summarise`).
        figures: figure name → file written.
    """

    ceilings: ad.Ceilings
    table: list
    figures: dict


def plan(config: Config) -> list[tuple[str, dict]]:
    """Every cell as ``(name, spec)``, a variant and a seed each; the names are file and folder
    names (the cell's record, its checkpoints), so the residual spec "off:K" is written
    "off-K" in them."""
    return [(name, {"mode": m, "positional": pe, "residual": r, "seed": config.seed + s,
                    "name": name})
            for m, pe, r in variants(config) for s in range(config.seeds)
            for name in [f"{m}_{pe}_res-{r.replace(':', '-')}_seed{s}"]]


def run(config: Config, out_dir, progress: bool = True, resume: bool = False) -> Summary:
    """Every cell (resumable), the table against the ceilings, the figures, ``results.json``."""
    out = Path(out_dir)
    results.retire(out)
    data = ad.split(config.num_train, config.num_test, lo=config.lo, hi=config.hi,
                    reverse_answer=config.reverse_answer, seed=config.seed)
    ceil = ad.ceilings(config.lo, config.hi, config.reverse_answer)
    cells = plan(config)
    payloads = run_cells(out, cells, lambda spec: train_cell(config, spec, data, out, progress),
                         resume=resume, progress=progress, desc="symmetry cells",
                         config=config, ignore=_not_in_cells(config))
    table = summarise(payloads, ceil, config.num_test)
    figs = {"learning_curves": plots.addition_curves(payloads, ceil),
            "residual_ablation": plots.residual_ablation(payloads),
            "correlations": plots.correlation_heatmaps(payloads)}
    figures = {name: results.save_figure_atomic(fig, out / f"{name}.png")
               for name, fig in figs.items()}
    body = {"ceilings": ceil, "table": table, "cells": list(payloads), "sweep": payloads.info}
    results.write_results(out, "symmetry", config, config.seed, body, figures=figures.values())
    return Summary(ceil, table, figures)


def summarise(payloads, ceil, num_test) -> list[dict]:
    """Mean ± std over seeds per variant; for non-causal no-PE cells the ceiling check (C10):
    exact match and every teacher-forced per-position accuracy under its enumerated ceiling
    + 2σ of test-set noise (binomial σ of the ceiling at ``num_test`` examples)."""
    rows = {}
    for p in payloads:
        s = p["spec"]
        rows.setdefault((s["mode"], s["positional"], s["residual"]), []).append(p)
    table = []
    noise = 2 * np.sqrt(ceil.exact_match * (1 - ceil.exact_match) / num_test)
    for (mode, pe, res), ps in rows.items():
        em = np.array([p["final"]["exact_match"] for p in ps])
        s95 = [p["steps_to_95"] for p in ps]
        row = {"mode": mode, "positional": pe, "residual": res, "seeds": len(ps),
               "exact_match_mean": float(em.mean()), "exact_match_std": float(em.std(ddof=1))
               if len(ps) > 1 else 0.0, "steps_to_95": s95,
               "reached_95": int(sum(x is not None for x in s95))}
        if mode == "noncausal" and pe == "none":
            row["ceiling"] = ceil.exact_match
            per = np.array([p["final"]["per_position_tf"] for p in ps])       # (seeds, 4)
            cp = np.asarray(ceil.per_position)
            row["per_position_tf"] = per.mean(0).tolist()
            row["under_ceiling"] = bool(np.all(em <= ceil.exact_match + noise)
                                        and np.all(per <= cp + 2 * np.sqrt(cp * (1 - cp)
                                                                           / num_test)))
            row["trained_invariance_max"] = max(p["trained_invariance"] for p in ps)
        table.append(row)
    return table
