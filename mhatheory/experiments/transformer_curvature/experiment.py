"""The ``transformer-curvature`` experiment's config and run; see
:mod:`mhatheory.experiments.transformer_curvature`."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from mhatheory import results, spectral, trends
from mhatheory.experiments._common import validate_common
from mhatheory.experiments.sweep import run_cells
from mhatheory.experiments.transformer_curvature import plots
from mhatheory.models import DecoderTransformer
from mhatheory.tasks import addition as ad
from mhatheory.train import warmup_cosine_adamw
from mhatheory.verdicts import Interval, Verdict, compare

SCALINGS = ("fixed_d_model", "fixed_head_dim")
STAGES = ("init", "early", "late")

#: the attention parameters of one head (head axis −2: query/key/value kernels [d, H, e] and
#: biases [H, e]) in the first layer
HEAD_SELECT = r"\['layers'\]\[0\]\['self_attn'\]\['(query|key|value)_(kernel|bias)'\]"


@dataclass(frozen=True)
class Config:
    """The λmin–H law on a causal decoder Transformer trained on 3-digit addition.

    Attributes:
        heads_grid: numbers of heads H per layer to sweep.
        layers_grid: numbers of decoder layers to sweep (each ≥ 1).
        scaling_grid: how the width follows H: fixed_d_model (head size d_model/H) or
            fixed_head_dim (d_model = head_dim·H).
        seeds: training seeds per (scaling, H, layers) (seed, seed + 1, ...).
        d_model: model width for fixed_d_model (divisible by every H).
        head_dim: head size for fixed_head_dim.
        num_train: training additions (the AdamW pool; the probe batch is its first sequences).
        probe_batch: sequences in the fixed probe batch.
        batch: examples per AdamW step.
        steps: AdamW steps (the late probe).
        early_step: the step of the early probe (1 ≤ early_step < steps).
        lr: peak AdamW learning rate (linear warm-up, then cosine decay).
        warmup: warm-up steps (< steps).
        weight_decay: AdamW weight decay.
        krylov: Lanczos vectors per cycle.
        tol: Lanczos stopping tolerance (relative residual).
        max_restarts: Lanczos restart budget per eigenvalue.
        head_blocks: probe the per-head blocks of N (H Lanczos runs per probe).
        layer_blocks: probe the per-layer blocks of ∇²L̂ (one Lanczos run per layer and probe).
        seed: base random seed (data split and the seeds of the cells).
    """

    heads_grid: tuple[int, ...] = (1, 2, 4, 8, 16)
    layers_grid: tuple[int, ...] = (1, 2)
    scaling_grid: tuple[str, ...] = SCALINGS
    seeds: int = 3
    d_model: int = 16
    head_dim: int = 2
    num_train: int = 2_000
    probe_batch: int = 32
    batch: int = 64
    steps: int = 150
    early_step: int = 15
    lr: float = 3e-3
    warmup: int = 10
    weight_decay: float = 0.1
    krylov: int = 30
    tol: float = 1e-6
    max_restarts: int = 8
    head_blocks: bool = True
    layer_blocks: bool = True
    seed: int = 0

    def __post_init__(self):
        for name in ("heads_grid", "layers_grid", "scaling_grid"):
            if not getattr(self, name):
                raise ValueError(f"{name} must hold at least one entry.")
        validate_common(self)
        for name in ("heads_grid", "layers_grid"):
            for v in getattr(self, name):
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                    raise ValueError(f"{name} entries must be integers ≥ 1, got {v!r}.")
        bad = set(self.scaling_grid) - set(SCALINGS)
        if bad:
            raise ValueError(f"scaling_grid entries must be among {list(SCALINGS)}, got "
                             f"{sorted(bad)}.")
        for name in ("head_dim", "probe_batch", "krylov", "max_restarts"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int) \
                    or getattr(self, name) < (2 if name == "krylov" else 1 if name != "max_restarts"
                                              else 0):
                raise ValueError(f"{name} must be a positive integer, got "
                                 f"{getattr(self, name)!r}.")
        if not (isinstance(self.tol, (int, float)) and 0 < self.tol < 1):
            raise ValueError(f"tol must lie in (0, 1), got {self.tol!r}.")
        if "fixed_d_model" in self.scaling_grid:
            bad_h = [h for h in self.heads_grid if self.d_model % h]
            if bad_h:
                raise ValueError(f"heads_grid entries {bad_h} do not divide d_model="
                                 f"{self.d_model} (scaling fixed_d_model needs head size "
                                 "d_model/H); choose d_model as a multiple of every H.")
        if not 0 <= self.warmup < self.steps:
            raise ValueError(f"warmup={self.warmup} must lie in [0, steps={self.steps}).")
        if not 1 <= self.early_step < self.steps:
            raise ValueError(f"early_step={self.early_step} must lie in [1, steps={self.steps}).")
        if self.probe_batch > self.num_train:
            raise ValueError(f"probe_batch={self.probe_batch} exceeds num_train="
                             f"{self.num_train}.")
        ad.check_sizes(self.num_train, 1)


#: a tiny grid for ``mhatheory verify``: the theorem row and the slopes need only λmin of ∇²L̂
#: and of N (and λmax for the records); the blocks' extra compilations (~12 s each on 2 CPU
#: cores) are left to the full run and the tests
VERIFY = dict(heads_grid=(1, 4), layers_grid=(1,), scaling_grid=("fixed_d_model",), seeds=2,
              d_model=8, num_train=200, probe_batch=8, batch=16, steps=10, early_step=2,
              warmup=2, krylov=20, max_restarts=4, head_blocks=False, layer_blocks=False)


def width(config: Config, scaling: str, heads: int) -> int:
    """The model width d_model of one cell.

    Args:
        config: the experiment's configuration (``d_model`` and ``head_dim``).
        scaling: ``"fixed_d_model"`` (width ``config.d_model`` for every H) or
            ``"fixed_head_dim"`` (width ``config.head_dim · heads``).
        heads: the number of attention heads H.

    Returns:
        The width of the cell's :class:`~mhatheory.models.DecoderTransformer`.

    Example:
        >>> width(Config(), "fixed_head_dim", 4) == 4 * Config().head_dim
        True
    """
    return config.d_model if scaling == "fixed_d_model" else config.head_dim * heads


def answer_problem(seqs):
    """(inputs, targets, weights) of teacher forcing: inputs = tokens but the last, targets the
    next tokens, weights the answer positions (the loss :func:`mhatheory.tasks.addition.loss`
    trains on)."""
    seqs = np.asarray(seqs)
    inputs, targets = seqs[:, :-1], seqs[:, 1:]
    w = np.zeros(targets.shape)
    w[:, ad.PROMPT_LEN - 1:] = 1.0
    return jnp.asarray(inputs), jnp.asarray(targets), jnp.asarray(w)


def _params64(model):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                        nnx.to_pure_dict(nnx.state(model, nnx.Param)))


@functools.cache
def operators(graphdef, layers: int, head_blocks: bool) -> dict:
    """The loss and N of one model structure (``graphdef``s of equal structure are equal), built
    once so that every probe of every cell with that structure reuses their compiled HVPs;
    layers and heads are blocks (masks) of the same operators, so they compile nothing more."""
    def f(params, inputs):
        return nnx.merge(graphdef, nnx.State(params))(inputs)

    curv = spectral.Curvature(f, loss="cross_entropy")
    return {"curv": curv, "hess": spectral.Hessian(curv.value), "layers": layers,
            "head_blocks": head_blocks}


def _block_row(op, key, value_key: str, **where) -> dict:
    r = spectral.Lanczos(which="smallest")(op, key=key)[0]
    return {**where, value_key: r.value, "interval": list(r.interval),
            "prob_interval": list(r.prob_interval), "converged": bool(r.converged)}


def probe(ops: dict, params, data, config: Config, key) -> dict:
    """Every curvature quantity of one probe (see the module docstring)."""
    opts = dict(krylov=config.krylov, tol=config.tol, max_restarts=config.max_restarts)
    hess = ops["hess"].linearise(params, *data)           # one linearisation each, shared by
    curv = ops["curv"].linearise(params, *data)           # every probe and block below
    loss = float(ops["curv"].value(params, *data))
    keys = jax.random.split(key, 4)
    hi = spectral.Lanczos(which="largest", **opts)(hess, key=keys[0])[0]
    loN = spectral.Lanczos(which="smallest", **opts)(curv, key=keys[1])[0]
    # the theorem's left side is probed until its probabilistic interval decides it against
    # λmin(N)'s (probability ≥ 1 − 2δ for both outer ends, whatever the spectrum)
    lo = spectral.Lanczos(which="smallest", failure_prob=spectral.DEFAULT_FAILURE_PROB,
                          **opts)(hess, key=keys[2], target=Interval(*loN.prob_interval))[0]
    verdict, margin = compare(Interval(*lo.prob_interval), Interval(*loN.prob_interval))
    rec = {"loss": loss,
           "lambda_min": lo.value, "lambda_min_interval": list(lo.interval),
           "lambda_min_prob_interval": list(lo.prob_interval),
           "lambda_min_converged": bool(lo.converged),
           "lambda_max": hi.value, "lambda_max_interval": list(hi.interval),
           "lambda_max_prob_interval": list(hi.prob_interval),
           "lambda_max_converged": bool(hi.converged),
           "lambda_min_N": loN.value, "lambda_min_N_interval": list(loN.interval),
           "lambda_min_N_prob_interval": list(loN.prob_interval),
           "lambda_min_N_converged": bool(loN.converged),
           "failure_prob": lo.failure_prob + loN.failure_prob,
           "neg_lambda_over_loss": (-lo.value / loss) if loss > 0 else None,
           "theorem_verdict": str(verdict), "theorem_margin": float(margin)}
    if config.layer_blocks:
        rec["layer_blocks"] = [
            _block_row(hess.restrict(rf"^\['layers'\]\[{i}\]"), jax.random.fold_in(keys[3], i),
                       "lambda_min", layer=i) for i in range(ops["layers"])]
    if config.head_blocks:
        heads = params["layers"][0]["self_attn"]["query_kernel"].shape[-2]
        rec["head_blocks_N"] = [
            _block_row(curv.restrict(HEAD_SELECT, -2, h), jax.random.fold_in(keys[3], 100 + h),
                       "lambda_min_N", head=h) for h in range(heads)]
        rec["head_block_min_N"] = min(r["lambda_min_N"] for r in rec["head_blocks_N"])
    return rec


def run_cell(config: Config, spec: dict, train, progress: bool) -> dict:
    """Train one cell with AdamW and probe it at the init, early and late steps.

    Args:
        config: the experiment's configuration.
        spec: the cell: ``scaling``, ``heads``, ``layers``, ``seed`` and ``name`` (the
            progress bar's label).
        train: the training sequences, ``[num_train, SEQ_LEN]`` token ids.
        progress: show a progress bar over the training steps.

    Returns:
        ``{"records": [...]}``: one record per probed stage, the cell's coordinates, width,
        parameter count and step beside the probe's values (:func:`probe`).
    """
    scaling, heads, layers, seed = spec["scaling"], spec["heads"], spec["layers"], spec["seed"]
    d = width(config, scaling, heads)
    model = DecoderTransformer(ad.VOCAB, d, heads, layers, positional="learned", causal=True,
                               max_len=ad.SEQ_LEN, rngs=nnx.Rngs(seed), param_dtype=jnp.float64)
    graphdef, _ = nnx.split(model)
    if nnx.state(model, nnx.Not(nnx.Param)):
        raise ValueError("transformer-curvature probes a model whose state is its parameters; "
                         "this DecoderTransformer carries other state (e.g. dropout RNGs).")
    data = answer_problem(train[:config.probe_batch])
    optimizer = warmup_cosine_adamw(model, lr=config.lr, warmup=config.warmup,
                                    steps=config.steps, weight_decay=config.weight_decay)
    ops = operators(graphdef, layers, config.head_blocks)
    stage_at = {0: "init", config.early_step: "early", config.steps: "late"}
    key = jax.random.key(seed)
    records = []
    P = int(sum(np.size(x) for x in jax.tree.leaves(_params64(model))))
    for step in tqdm(range(config.steps + 1), desc=spec["name"], leave=False,
                     disable=not progress):
        if step:
            idx = np.random.default_rng([seed, step]).integers(0, len(train), config.batch)
            ad.train_step(model, optimizer, jnp.asarray(train[idx]))
        if step in stage_at:
            rec = probe(ops, _params64(model), data, config, key)
            records.append({"scaling": scaling, "heads": heads, "layers": layers,
                            "d_model": d, "head_dim": d // heads, "params": P,
                            "step": step, "stage": stage_at[step], "seed": seed, **rec})
    return {"records": records}


def summarise(records: list[dict], config: Config) -> dict:
    """The theorem tally and the tendency slopes over all records.

    Args:
        records: every probe record of the sweep (:func:`run_cell`).
        config: the experiment's configuration (its scaling and layer grids).

    Returns:
        A dict with ``theorem`` (verdict counts of λmin(∇²L̂) ≥ λmin(N) over the probes, their
        number, the smallest margin, the number of probes whose Lanczos did not converge) and
        ``slopes`` (per scaling, layers and stage: the log-log slope of −λmin/L̂ against H,
        mean ± SE over seeds, ``None`` below two head counts).
    """
    counts = {v.value: 0 for v in Verdict}
    for r in records:
        counts[r["theorem_verdict"]] += 1
    margins = [r["theorem_margin"] for r in records]
    slopes = []
    for scaling in config.scaling_grid:
        for layers in config.layers_grid:
            for stage in STAGES:
                sel = [r for r in records if r["scaling"] == scaling and r["layers"] == layers
                       and r["stage"] == stage]
                seeds = sorted({r["seed"] for r in sel})
                heads = sorted({r["heads"] for r in sel})
                table = {(r["heads"], r["seed"]): r["neg_lambda_over_loss"] for r in sel}
                per_seed = [[table.get((h, s)) for s in seeds] for h in heads]
                fit = trends.fit_slope(heads, per_seed, "log") if len(heads) >= 2 else None
                slopes.append({"scaling": scaling, "layers": layers, "stage": stage,
                               "heads": heads, "seeds": len(seeds),
                               "slope": fit and fit["slope"], "se": fit and fit["se"],
                               "per_seed": fit and fit["per_seed"],
                               "means": fit and fit["means"],
                               "excluded_nonpositive": fit and fit["excluded"],
                               "verdict": fit["verdict"] if fit else "undecided"})
    unconverged = sum(not (r["lambda_min_converged"] and r["lambda_min_N_converged"])
                      for r in records)
    return {"theorem": {"counts": counts, "probes": len(records),
                        "min_margin": min(margins) if margins else None,
                        "unconverged_probes": unconverged},
            "slopes": slopes}


def rows(summary: dict) -> list[dict]:
    """Verify rows: the theorem λmin(∇²L̂) ≥ λmin(N) over every probe, and one tendency row per
    (scaling, layers, stage) slope of −λmin/L̂ against H (reference −1/2)."""
    th = summary["theorem"]
    c = th["counts"]
    verdict = ("VIOLATED" if c.get("VIOLATED") else "HOLDS"
               if c.get("HOLDS") == th["probes"] and th["probes"] else "INCONCLUSIVE")
    out = [{"name": "Transformer: λmin(∇²L̂) ≥ λmin(N) (cross-entropy, answer tokens)",
            "kind": "theorem", "verdict": verdict, "measured": th["min_margin"],
            "reference": 0.0, "margin": th["min_margin"],
            "detail": f"{c.get('HOLDS', 0)} HOLDS, {c.get('VIOLATED', 0)} VIOLATED, "
                      f"{c.get('INCONCLUSIVE', 0)} INCONCLUSIVE of {th['probes']} probes"}]
    for s in summary["slopes"]:
        out.append({"name": f"Transformer −λmin/L̂ ∝ H^b ({s['scaling']}, {s['layers']} layer"
                            f"{'s' if s['layers'] > 1 else ''}, {s['stage']})",
                    "kind": "tendency", "verdict": s["verdict"], "measured": s["slope"],
                    "reference": -0.5, "se": s["se"],
                    "detail": f"H ∈ {s['heads']}, {s['seeds']} seeds; "
                              f"{s['excluded_nonpositive']} points with λmin ≥ 0 excluded"})
    return out


class Summary(NamedTuple):
    """What :func:`run` returns (``results.json`` holds the same ``summary`` and ``rows``).

    Attributes:
        summary: :func:`summarise`'s theorem verdicts and slopes.
        rows: the verify rows (:func:`rows`).
        figures: figure name (``law``, ``head_blocks``) → file written.
    """

    summary: dict
    rows: list
    figures: dict


def run(config: Config, out_dir, progress: bool = True, resume: bool = False) -> Summary:
    """Run the sweep (one cell per scaling, layers, H and seed) and write its results.

    Args:
        config: the experiment's configuration.
        out_dir: the output folder (``cells/``, ``results.json``, ``law.png``,
            ``head_blocks.png``).
        progress: show progress bars.
        resume: reuse the cells already written in ``out_dir/cells`` whose config matches.

    Returns:
        the :class:`Summary`: :func:`summarise`'s summary, the verify rows and the figures.
    """
    out = Path(out_dir)
    train = np.asarray(ad.split(config.num_train, 1, seed=config.seed)[0])
    cells = [(f"{sc}_H{h}_L{L}_seed{s}",
              {"scaling": sc, "heads": h, "layers": L, "seed": config.seed + s,
               "name": f"{sc}_H{h}_L{L}_seed{s}"})
             for sc in config.scaling_grid for L in config.layers_grid
             for h in config.heads_grid for s in range(config.seeds)]
    payloads = run_cells(out, cells, lambda spec: run_cell(config, spec, train, progress),
                         resume=resume, progress=progress, desc="transformer-curvature cells",
                         config=config)
    records = [r for p in payloads for r in p["records"]]
    summary = summarise(records, config)

    figures = {"law": out / "law.png", "head_blocks": out / "head_blocks.png"}
    for name, fig in {"law": plots.law(records, summary, config),
                      "head_blocks": plots.head_block_minima(records, config)}.items():
        results.save_figure_atomic(fig, figures[name])
    results.write_results(out, "transformer-curvature", config, config.seed,
                          {"records": records, "summary": summary, "rows": rows(summary),
                           "sweep": payloads.info})
    return Summary(summary, rows(summary), figures)
