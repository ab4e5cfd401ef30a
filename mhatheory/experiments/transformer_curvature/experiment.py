"""The ``transformer-curvature`` experiment's config, cells and run; see
:mod:`mhatheory.experiments.transformer_curvature`."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from mhatheory import _validate, results
from mhatheory.experiments._common import validate_common
from mhatheory.experiments.sweep import run_cells
from mhatheory.experiments.transformer_curvature import analysis, plots
from mhatheory.experiments.transformer_curvature import tasks as tk
from mhatheory.experiments.transformer_curvature.grid import (
    MIN_D_MODEL,
    SCALINGS,
    widths,
)
from mhatheory.experiments.transformer_curvature.probes import operators, probe
from mhatheory.experiments.transformer_curvature.training import first_below, trainer
from mhatheory.tasks import addition as ad


@dataclass(frozen=True)
class Config:
    """The λmin–H law on Transformers trained until they have learned, read at matched loss.

    Attributes:
        tasks: which tasks to run: ``addition`` (a causal decoder on 3-digit addition) and
            ``digits`` (an encoder classifier on the 10-class UCI digits).
        scaling_grid: how the width follows H: fixed_d_model (d_model fixed, head size
            d_model/H, over ``heads_grid``) and fixed_head_dim (head size fixed, d_model =
            head_dim·H, over ``fixed_head_dim_heads_grid``).
        heads_grid: heads per layer at fixed d_model (each divides ``d_model``).
        fixed_head_dim_heads_grid: heads per layer at fixed head size.
        layers_grid: numbers of Transformer layers (each ≥ 1).
        seeds: training seeds per cell (seed, seed + 1, ...).
        d_model: the width at fixed d_model (≥ 8).
        head_dim: the head size at fixed head size (head_dim·H ≥ 8 for every H).
        num_train: training additions (the AdamW pool; the probe batch is its first sequences).
        num_val: held-out samples that decide when a model has learned (additions, and digits
            taken from the training half).
        num_test: held-out additions on which the test accuracy is reported (digits: the
            stratified test half).
        probe_batch: training samples (the first ones) on which L̂ and its Hessian are probed
            at every stage.
        late_probe_batches: further numbers of training samples (the first ones) probed at the
            end of training, to show how the curvature depends on how many samples a probe
            sees.
        batch: samples per AdamW step.
        max_steps: AdamW steps at most (the cosine schedule ends here).
        eval_every: AdamW steps between two readings of the probe-batch loss and the
            validation accuracy (the resolution of the matched-loss probes).
        lr_grid: peak AdamW learning rates (linear warm-up, then cosine decay to 0 at
            max_steps), one chosen per cell on validation data (:func:`run_cell`).
        warmup: warm-up steps (< max_steps).
        weight_decay: AdamW weight decay.
        target_accuracy: a model has learned once its validation exact-match accuracy reaches
            this, in (0, 1] ...
        target_loss: ... or once its probe-batch loss is at most this (nats, > 0).
        loss_levels: the matched loss levels (nats, positive and decreasing) below the task's
            marginal entropy, which is always the first level; each is probed where first
            reached, and training goes on until the last is reached and the model has learned.
        krylov: Lanczos vectors per cycle.
        tol: Lanczos stopping tolerance (relative residual).
        max_restarts: Lanczos restart budget per eigenvalue.
        head_blocks: also probe the per-head blocks of N in the first layer (H Lanczos runs per
            probe).
        layer_blocks: also probe the per-layer blocks of ∇²L̂ (one Lanczos run per layer).
        seed: base random seed (the data splits and the seeds of the cells).
    """

    tasks: tuple[str, ...] = tk.TASKS
    scaling_grid: tuple[str, ...] = SCALINGS
    heads_grid: tuple[int, ...] = (2, 4, 8)
    fixed_head_dim_heads_grid: tuple[int, ...] = (2, 4, 8)
    layers_grid: tuple[int, ...] = (1, 2)
    seeds: int = 5
    d_model: int = 32
    head_dim: int = 8
    num_train: int = 4_000
    num_val: int = 200
    num_test: int = 1_000
    probe_batch: int = 128
    late_probe_batches: tuple[int, ...] = (32, 256)
    batch: int = 64
    max_steps: int = 4_000
    eval_every: int = 25
    lr_grid: tuple[float, ...] = (3e-3, 5e-3, 1e-2)
    warmup: int = 50
    weight_decay: float = 0.01
    target_accuracy: float = 0.95
    target_loss: float = 0.01
    loss_levels: tuple[float, ...] = (1.0, 0.3, 0.1)
    krylov: int = 30
    tol: float = 1e-6
    max_restarts: int = 8
    head_blocks: bool = False
    layer_blocks: bool = False
    seed: int = 0

    def __post_init__(self):
        for name in ("tasks", "scaling_grid", "layers_grid"):
            if not getattr(self, name):
                raise ValueError(f"{name} must hold at least one entry.")
        validate_common(self)
        bad = set(self.tasks) - set(tk.TASKS)
        if bad:
            raise ValueError(f"tasks entries must be among {list(tk.TASKS)}, got {sorted(bad)}.")
        bad = set(self.scaling_grid) - set(SCALINGS)
        if bad:
            raise ValueError(f"scaling_grid entries must be among {list(SCALINGS)}, got "
                             f"{sorted(bad)}.")
        for name in ("heads_grid", "fixed_head_dim_heads_grid", "layers_grid"):
            for v in getattr(self, name):
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                    raise ValueError(f"{name} entries must be integers ≥ 1, got {v!r}.")
        for name in ("heads_grid", "fixed_head_dim_heads_grid"):
            scaling = "fixed_d_model" if name == "heads_grid" else "fixed_head_dim"
            if scaling in self.scaling_grid and not getattr(self, name):
                raise ValueError(f"{name} must hold at least one entry for scaling {scaling}.")
        for name in ("head_dim", "probe_batch", "num_val", "max_steps",
                     "krylov", "max_restarts"):
            v = getattr(self, name)
            least = {"krylov": 2, "max_restarts": 0, "num_val": 2}.get(name, 1)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < least:
                raise ValueError(f"{name} must be an integer ≥ {least}, got {v!r}.")
        if not self.lr_grid or any(isinstance(v, bool) or not isinstance(v, (int, float))
                                   or not v > 0 for v in self.lr_grid):
            raise ValueError(f"lr_grid must hold learning rates > 0, e.g. 3e-3,1e-2; got "
                             f"{self.lr_grid!r}.")
        if not (isinstance(self.tol, (int, float)) and 0 < self.tol < 1):
            raise ValueError(f"tol must lie in (0, 1), got {self.tol!r}.")
        if not (isinstance(self.target_accuracy, (int, float))
                and 0 < self.target_accuracy <= 1):
            raise ValueError(f"target_accuracy must lie in (0, 1] (a share of held-out samples "
                             f"answered exactly), got {self.target_accuracy!r}.")
        if not (isinstance(self.target_loss, (int, float)) and self.target_loss > 0):
            raise ValueError(f"target_loss must be a loss in nats > 0, got "
                             f"{self.target_loss!r}.")
        levels = np.asarray(self.loss_levels, dtype=float)
        if not levels.size or np.any(levels <= 0) or np.any(np.diff(levels) >= 0):
            raise ValueError(f"loss_levels must be positive and strictly decreasing (nats), "
                             f"e.g. 1.0,0.3,0.1; got {self.loss_levels!r}.")
        if "fixed_d_model" in self.scaling_grid:
            bad_h = [h for h in self.heads_grid if self.d_model % h]
            if bad_h:
                raise ValueError(f"heads_grid entries {bad_h} do not divide d_model="
                                 f"{self.d_model} (scaling fixed_d_model needs head size "
                                 "d_model/H); choose d_model as a multiple of every H.")
        narrow = sorted({(d, h) for d, h in widths(self) if d < MIN_D_MODEL})
        if narrow:
            raise ValueError(
                f"cells (width, H) = {narrow} are narrower than width {MIN_D_MODEL}, too small "
                "to learn the task; raise d_model or head_dim, or drop the smallest H from "
                "fixed_head_dim_heads_grid.")
        if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1
               or v == self.probe_batch for v in self.late_probe_batches) or len(
                set(self.late_probe_batches)) != len(self.late_probe_batches):
            raise ValueError(f"late_probe_batches must be distinct sample counts ≥ 1 other than "
                             f"probe_batch={self.probe_batch}, got {self.late_probe_batches!r}.")
        if max(self.probe_sizes) > self.num_train:
            raise ValueError(f"probing {max(self.probe_sizes)} samples "
                             f"(probe_batch, late_probe_batches) exceeds the training set "
                             f"(num_train={self.num_train}); lower --probe-batch or "
                             "--late-probe-batches.")
        if not 0 <= self.warmup < self.max_steps:
            raise ValueError(f"warmup={self.warmup} must lie in [0, max_steps="
                             f"{self.max_steps}).")
        if self.max_steps % self.eval_every:
            raise ValueError(f"max_steps={self.max_steps} must be a multiple of eval_every="
                             f"{self.eval_every} (training is read every eval_every steps).")
        if "addition" in self.tasks:
            ad.check_sizes(self.num_train, self.num_val + self.num_test)

    @property
    def probe_sizes(self) -> tuple[int, ...]:
        """Every probe batch of the end of training, in increasing size."""
        return tuple(sorted({self.probe_batch, *self.late_probe_batches}))


#: the GPU-sized grid (``--full``): four H per scaling at d_model 64, up to 4 layers, 10 seeds,
#: a lower last loss level, and the probe-batch comparison from 32 to 512 samples (the digits'
#: training pool holds 699)
FULL = dict(heads_grid=(2, 4, 8, 16), fixed_head_dim_heads_grid=(2, 4, 8, 16), d_model=64,
            layers_grid=(1, 2, 4), seeds=10, num_train=20_000, probe_batch=256,
            late_probe_batches=(32, 512), max_steps=10_000, loss_levels=(1.0, 0.3, 0.1, 0.03))


#: a tiny grid for ``mhatheory verify``: addition only, two H at d_model 16, one layer, a
#: short run whose late probe is reported with the accuracy it reached (not a learned model)
VERIFY = dict(tasks=("addition",), scaling_grid=("fixed_d_model",), heads_grid=(1, 4),
              layers_grid=(1,), seeds=2, d_model=16, num_train=400, num_val=100, num_test=100,
              probe_batch=32, late_probe_batches=(8,), batch=32, max_steps=150, eval_every=25,
              warmup=10, lr_grid=(1e-2,), loss_levels=(1.5,), krylov=20, max_restarts=4)


#: the config fields no cell's result depends on (which cells exist: the grids but lr_grid, the
#: seeds, the tasks, the two widths, which the cell's spec carries): changing them keeps the
#: cells already computed valid for ``--resume``
CELL_IGNORE = ({f.name for f in dataclasses.fields(Config) if f.name.endswith("_grid")}
               - {"lr_grid"}) | {"seeds", "tasks", "d_model", "head_dim"}


def load_tasks(config: Config) -> dict[str, tk.Task]:
    """The tasks' data, with the checks that need it (the probe batch fits each pool)."""
    out = {}
    for name in config.tasks:
        task = (tk.addition(config.num_train, config.num_val, config.num_test, config.seed)
                if name == "addition" else tk.digits(config.num_val, config.seed))
        if max(config.probe_sizes) > len(task.train.targets):
            raise ValueError(f"probing {max(config.probe_sizes)} samples "
                             f"(probe_batch, late_probe_batches) exceeds the {name} training "
                             f"set ({len(task.train.targets)} samples); lower --probe-batch or "
                             "--late-probe-batches.")
        out[name] = task
    return out


def _probe_data(task: tk.Task, size: int, config: Config):
    """The first ``size`` training samples as (inputs, targets, weights). A batch smaller than
    ``probe_batch`` is the first ``probe_batch`` samples with weights zero beyond ``size``: the
    loss is a weighted mean, so this *is* the loss of the first ``size`` samples, and it shares
    the probe batch's compiled programs."""
    p = task.train.take(slice(0, max(size, config.probe_batch)))
    w = np.asarray(p.weights, dtype=np.float64).copy()
    w[size:] = 0.0
    return jnp.asarray(p.inputs), jnp.asarray(p.targets), jnp.asarray(w)


def _learned(config: Config, loss: float, acc: float) -> bool:
    """The model has learned: validation exact match ≥ target_accuracy or probe-batch loss ≤
    target_loss."""
    return acc >= config.target_accuracy or loss <= config.target_loss


def _readings(fns, params, lr: float, key, pool, main, val, lowest_level: float,
              config: Config):
    """Train from ``params`` at peak rate ``lr``, yielding ``(step, params, loss, accuracy)`` at
    step 0 and every ``eval_every`` steps (loss on the probe batch ``main``, exact match on
    ``val``) until the model has learned and its loss has reached ``lowest_level``, or
    ``max_steps``."""
    init, step_fn, metrics = fns
    state, step, lowest = init(params), 0, math.inf
    while True:
        loss = float(metrics(params, main)[0])
        acc = float(metrics(params, val)[1])
        yield step, params, loss, acc
        lowest = min(lowest, loss)
        if (_learned(config, loss, acc) and lowest <= lowest_level) or step >= config.max_steps:
            return
        params, state = step_fn(params, state, lr, key, step, pool)
        step += config.eval_every


def run_cell(config: Config, spec: dict, task: tk.Task, progress: bool) -> dict:
    """Train one cell with AdamW until it has learned and probe it at init, at each matched
    loss level where first reached, and at the end (on every probe batch).

    The peak learning rate is chosen per cell on validation data: each rate of ``lr_grid`` is
    trained (same init, same minibatches) under the same stopping rule; the rate that learns in
    the fewest steps wins (if none learns, the lowest validation loss at ``max_steps``), and
    the probed run is that rate's run again.

    Args:
        config: the experiment's configuration.
        spec: the cell: ``task``, ``d_model``, ``heads``, ``layers``, ``seed`` and ``name`` (the
            progress bar's label).
        task: the cell's task (:func:`load_tasks`).
        progress: show a progress bar over the training steps.

    Returns:
        ``{"records", "curve", "trained", "steps", "lr", "lr_trials"}``: one record per probe
        (its coordinates, stage, step, level, validation and test accuracy beside
        :func:`probe`'s values), the loss and validation accuracy at every reading, whether the
        model met the target, the steps it trained, the chosen rate and every rate's outcome.
    """
    d, heads, layers, seed = spec["d_model"], spec["heads"], spec["layers"], spec["seed"]
    model = task.make(d, heads, layers, seed)
    if nnx.state(model, nnx.Not(nnx.Param)):
        raise ValueError("transformer-curvature probes a model whose state is its parameters; "
                         "this model carries other state (e.g. dropout RNGs).")
    graphdef, state = nnx.split(model)
    params0 = nnx.to_pure_dict(state)
    fns = trainer(graphdef, config.warmup, config.max_steps, float(config.weight_decay),
                  config.batch, config.eval_every)
    metrics = fns[2]
    ops = operators(graphdef, layers)
    pool, val, test = (tk.Split(*(jnp.asarray(a) for a in s))
                       for s in (task.train, task.val, task.test))
    main = _probe_data(task, config.probe_batch, config)
    main_split = tk.Split(*main)
    levels = {"entropy": task.entropy, **{f"loss_{v:g}": float(v) for v in config.loss_levels}}
    lowest_level = min(levels.values())
    key, train_key = jax.random.split(jax.random.key(seed))

    trials = {}
    for lr in config.lr_grid if len(config.lr_grid) > 1 else ():
        for reading in _readings(fns, params0, lr, train_key, pool, main_split, val,
                                 lowest_level, config):
            step, params, loss, acc = reading      # the last reading is the run's outcome
        trials[lr] = {"lr": lr, "steps": step, "learned": _learned(config, loss, acc),
                      "val_loss": float(metrics(params, val)[0]), "accuracy": acc}
    lr = (min(trials.values(), key=lambda t: (not t["learned"],
                                             t["steps"] if t["learned"] else 0,
                                             t["val_loss"]))["lr"]
          if trials else config.lr_grid[0])

    where = {"task": task.name, "heads": heads, "layers": layers, "d_model": d,
             "head_dim": d // heads, "params": _validate.num_params(params0)[0], "seed": seed,
             "lr": lr}
    probed: dict = {}         # (step, probe batch) → probe values: a step is probed once
    scored: dict = {}         # step → validation and test accuracy, read once per step

    def record(stage, step, params, level, data, size):
        if (step, size) not in probed:
            k = jax.random.fold_in(jax.random.fold_in(key, step), size)
            probed[(step, size)] = probe(ops, params, data, config, k)
        if step not in scored:
            scored[step] = {"accuracy": float(metrics(params, val)[1]),
                            "test_accuracy": float(metrics(params, test)[1])}
        return {**where, "stage": stage, "step": step, "level": level, "probe_batch": size,
                **scored[step], **probed[(step, size)]}

    curve = {"step": [], "loss": [], "accuracy": []}
    records, reached = [], set()
    bar = tqdm(total=config.max_steps, desc=spec["name"], leave=False, disable=not progress)
    for step, params, loss, acc in _readings(fns, params0, lr, train_key, pool, main_split,
                                             val, lowest_level, config):
        for k, v in zip(curve, (step, loss, acc), strict=True):
            curve[k].append(v)
        if step == 0:
            records.append(record("init", 0, params, None, main, config.probe_batch))
        hits = first_below(curve["step"], curve["loss"], levels.values())
        for stage, level in levels.items():
            if stage not in reached and hits[level] == step:
                reached.add(stage)
                records.append(record(stage, step, params, level, main, config.probe_batch))
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{loss:.3g}", acc=f"{acc:.3f}")
    bar.close()
    records += [record("late", step, params, None, _probe_data(task, n, config), n)
                for n in config.probe_sizes]
    return {"records": records, "trained": _learned(config, loss, acc), "steps": step,
            "lr": lr, "lr_trials": list(trials.values()), "curve": curve}


class Summary(NamedTuple):
    """What :func:`run` returns (``results.json`` holds the same ``summary`` and ``rows``).

    Attributes:
        summary: :func:`~.analysis.summarise`'s theorem verdicts, training tally, slopes and
            probe-batch comparison.
        rows: the verify rows (:func:`~.analysis.rows`).
        figures: figure name → file written.
    """

    summary: dict
    rows: list
    figures: dict


def run(config: Config, out_dir, progress: bool = True, resume: bool = False) -> Summary:
    """Run the sweep (one cell per task, width, heads, layers and seed) and write its results.

    Args:
        config: the experiment's configuration.
        out_dir: the output folder (``cells/``, ``results.json``, the figures).
        progress: show progress bars.
        resume: reuse the cells already written in ``out_dir/cells`` whose config matches.

    Returns:
        the :class:`Summary`.
    """
    out = Path(out_dir)
    results.retire(out)
    data = load_tasks(config)
    cells = [(f"{t}_d{d}_H{h}_L{L}_seed{s}",
              {"task": t, "d_model": d, "heads": h, "layers": L, "seed": config.seed + s,
               "name": f"{t}_d{d}_H{h}_L{L}_seed{s}"})
             for t in config.tasks for L in config.layers_grid for d, h in widths(config)
             for s in range(config.seeds)]
    payloads = run_cells(out, cells,
                         lambda spec: run_cell(config, spec, data[spec["task"]], progress),
                         resume=resume, progress=progress, desc="transformer-curvature cells",
                         config=config, ignore=CELL_IGNORE)
    records = [r for p in payloads for r in p["records"]]
    training = [{k: spec[k] for k in ("task", "d_model", "heads", "layers", "seed")}
                | {k: p[k] for k in ("trained", "steps", "lr", "lr_trials", "curve")}
                for (_, spec), p in zip(cells, payloads, strict=True)]
    entropy = {name: t.entropy for name, t in data.items()}
    summary = analysis.summarise(records, training, config, entropy)
    figures = {}
    for name, fig in plots.figures(records, training, summary, config).items():
        figures[name] = out / f"{name}.png"
        results.save_figure_atomic(fig, figures[name])
    table = analysis.rows(summary)
    results.write_results(out, "transformer-curvature", config, config.seed,
                          {"records": records, "training": training, "summary": summary,
                           "rows": table, "sweep": payloads.info}, figures=figures.values())
    return Summary(summary, table, figures)


