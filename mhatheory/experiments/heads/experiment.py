"""The ``heads`` experiment's config, cells and run; see :mod:`mhatheory.experiments.heads`."""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from mhatheory import _validate, data, results, train
from mhatheory.experiments import _batched
from mhatheory.experiments._common import DeoraFields
from mhatheory.experiments.heads import analysis, datasets, families, plots, probes, seeds
from mhatheory.experiments.heads.claims import answer_claims
from mhatheory.experiments.heads.contract import prepare
from mhatheory.experiments.heads.records import compact, make_records
from mhatheory.experiments.sweep import run_cells


@dataclass(frozen=True)
class Config(DeoraFields):
    """The heads sweep (data and GD fields: see ``DeoraFields``; the data are harder than the
    other experiments' (ζ = 0.3, σ = 0.3: Bayes error ≈ 3 %) so test errors differ between H).

    Attributes:
        model: the model family: ``deora`` (the Deora model), ``transformer`` (an encoder
            classifier, :class:`mhatheory.models.EncoderClassifier`, head size ``head_dim``)
            or ``MODULE:FUNCTION``, a callable ``make(num_heads, *, rngs) -> nnx.Module``
            mapping ``x [n, ...]`` to logits ``[n]`` (labels ±1) or ``[n, C]`` (classes).
        data: the data: ``mixture`` (the tokenized mixture, fresh sets per seed), ``digits``
            (two UCI digits, ``digits_pair``, labels ±1), ``digits10`` (all 10 classes) or
            ``MODULE:FUNCTION``, a callable returning ``x_train``, ``y_train``, ``x_test``,
            ``y_test`` (and optionally ``x_val``, ``y_val``).
        digits_pair: the two digits of ``data=digits`` (+1 for the first).
        optimizer: ``gd`` (full-batch GD, the theory's) or ``adam``.
        head_dim: head size of the ``transformer`` family (d_model = H·head_dim; its
            fixed-width control has d_model = ``width``).
        heads_grid: numbers of heads H to sweep (each ≥ 1).
        lr_grid: GD step sizes η to sweep (each > 0). λmax(θ_0) ≈ 0.05–0.09 here, so the
            default grid runs from η·λmax ≈ 0.02 (too slow to train in K steps) to ≈ 90.
        init_scale_grid: initialisation scales to sweep (each > 0; W, U entries ~ N(0, s²/d)).
        n_grid: training-set sizes n (each ≥ 2); the tuning grid runs at ``n``, the others
            at the reference slice (``lr``, ``init_scale``) unless ``full_product``.
        seeds: seeds per setting (≥ 2): training, validation and test sets and θ_0.
        num_val: validation samples per seed (≥ 2), drawn like the training set; they select
            η, the init scale and the stopping step per H.
        primary_lrs: the step sizes of the primary slices, paired with ``primary_inits``:
            the slices named before the run whose slopes decide the claims. One pair must be
            (``lr``, ``init_scale``), so new primary slices usually need --lr and --init-scale
            as well.
        primary_inits: the init scales of the primary slices (same length as primary_lrs).
        lr: the reference step size of the n slices (with ``init_scale`` a primary slice).
        init_scale: the reference init scale of the n slices.
        n: the training-set size of the tuning grid and the primary slices.
        full_product: run the η × init tuning grid at every n, not only at ``n``.
        steps: GD steps K per run.
        record_points: about this many recorded steps (log- and linearly spaced in [0, K])
            at which validation and test metrics and distances are kept.
        delta: robustness margin: a setting is good when its validation error is within δ of
            the best of its H.
        loss_targets: training-loss levels (decreasing, > 0) at which H is compared at matched
            training (each quantity read when L̂ first reaches the level).
        alpha: false-discovery level of the Benjamini–Hochberg rule across slices.
        width: total attention width of the fixed-width control (head size width/H, for the
            H of heads_grid that divide it; 0 turns the control off).
        average_control: also train max(heads_grid) one-head models per seed on the primary
            slices and compare H heads with the average of H one-head models.
        replace: replace-one retrainings per seed on the primary slices (1 ≤ replace ≤ n).
        probe_seeds: seeds whose Hessian is probed (λmin, λmax at θ_0, θ_{K/10}, θ_K) on the
            primary slices, and whose G, β the stability bounds use (at least the first).
        krylov: Lanczos vectors per cycle for P > exact_max_params.
        exact_max_params: dense eigh for up to this many parameters.
        const_test: test samples added to the training set when measuring G and β.
        bayes_samples: Monte-Carlo samples for the Bayes error floor.
    """

    model: str = "deora"
    data: str = "mixture"
    digits_pair: tuple[int, ...] = (3, 8)
    optimizer: str = "gd"
    head_dim: int = 4
    zeta: float = 0.3
    sigma: float = 0.3
    num_test: int = 2000
    heads_grid: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    lr_grid: tuple[float, ...] = (0.25, 1.0, 4.0, 16.0, 64.0, 256.0, 1024.0)
    init_scale_grid: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
    n_grid: tuple[int, ...] = (32, 128, 512)
    seeds: int = 12
    num_val: int = 256
    primary_lrs: tuple[float, ...] = (4.0, 64.0)
    primary_inits: tuple[float, ...] = (0.3, 3.0)
    lr: float = 4.0
    init_scale: float = 0.3
    n: int = 128
    full_product: bool = False
    steps: int = 300
    record_points: int = 24
    delta: float = 0.01
    loss_targets: tuple[float, ...] = (0.3, 0.1, 0.03)
    alpha: float = 0.05
    width: int = 8
    average_control: bool = True
    replace: int = 2
    probe_seeds: int = 2
    krylov: int = 30
    exact_max_params: int = 300
    const_test: int = 128
    bayes_samples: int = 200_000

    def __post_init__(self):
        # a list or NumPy array is taken as the tuple it spells, NumPy scalars as Python's
        for name in _SEQUENCES:
            value = getattr(self, name)
            if isinstance(value, (np.ndarray, jax.Array)):
                value = np.asarray(value).tolist()
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, name, tuple(v.item() if isinstance(v, np.generic)
                                                     else v for v in value))
        super().__post_init__()             # the shared fields (η, init scale, ...) first
        for flag, value, names in (("--model", self.model, families.BUILT_IN),
                                   ("--data", self.data, datasets.BUILT_IN)):
            if callable(value):
                module, name = (getattr(value, k, "?") for k in ("__module__", "__name__"))
                if name == "<lambda>":
                    raise ValueError(f"{flag} takes the name of a function, MODULE:FUNCTION; a "
                                     "lambda has none: define it with def.")
                raise ValueError(f"{flag} takes a name, not the function itself: "
                                 f"'{module}:{name}'"
                                 + ("" if module == "__main__" else
                                    f" (one defined in a notebook: '__main__:{name}')") + ".")
            if not isinstance(value, str) or (value not in names and ":" not in value):
                raise ValueError(f"{flag} must be one of {', '.join(names)} or "
                                 f"MODULE:FUNCTION, got {value!r}.")
        if self.optimizer not in train.OPTIMIZERS:
            raise ValueError(f"--optimizer must be one of {', '.join(train.OPTIMIZERS)}, got "
                             f"{self.optimizer!r}.")
        if (len(self.digits_pair) != 2 or len(set(self.digits_pair)) != 2
                or not all(isinstance(v, int) and 0 <= v <= 9 for v in self.digits_pair)):
            raise ValueError(f"--digits-pair must be two different digits such as 3,8, got "
                             f"{','.join(map(str, self.digits_pair))}.")
        if isinstance(self.head_dim, bool) or not isinstance(self.head_dim, int) \
                or self.head_dim < 1:
            raise ValueError(f"--head-dim must be an integer >= 1, got {self.head_dim!r}.")
        _check_grid("--heads-grid", self.heads_grid, "integers >= 1",
                    lambda v: isinstance(v, int) and v >= 1)
        _check_grid("--lr-grid", self.lr_grid, "step sizes > 0", lambda v: v > 0)
        _check_grid("--init-scale-grid", self.init_scale_grid, "scales > 0", lambda v: v > 0)
        _check_grid("--n-grid", self.n_grid, "training-set sizes >= 2", lambda v: v >= 2)
        _check_grid("--loss-targets", self.loss_targets, "losses > 0", lambda v: v > 0)
        if any(b >= a for a, b in zip(self.loss_targets[:-1], self.loss_targets[1:], strict=True)):
            raise ValueError(f"--loss-targets must be strictly decreasing (the levels L̂ "
                             f"reaches one after another), got "
                             f"{','.join(map(str, self.loss_targets))}.")
        for flag, value, lo in (("--seeds", self.seeds, 2), ("--num-val", self.num_val, 2),
                                ("--record-points", self.record_points, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ValueError(f"{flag} must be an integer >= {lo}, got {value!r}.")
        if not (isinstance(self.delta, (int, float)) and math.isfinite(self.delta)
                and self.delta > 0):
            raise ValueError(f"--delta (the robustness margin in validation error) must be a "
                             f"number > 0 such as 0.01, got {self.delta!r}.")
        if not (isinstance(self.alpha, float) and 0 < self.alpha < 1):
            raise ValueError(f"--alpha (false-discovery level) must lie in (0, 1), got "
                             f"{self.alpha!r}.")
        _check_grid("--primary-lrs", self.primary_lrs, "step sizes of --lr-grid",
                    lambda v: v in self.lr_grid)
        _check_grid("--primary-inits", self.primary_inits, "scales of --init-scale-grid",
                    lambda v: v in self.init_scale_grid)
        if len(self.primary_lrs) != len(self.primary_inits):
            raise ValueError(f"--primary-lrs and --primary-inits pair up into slices (η, init) "
                             f"and must have the same length, got {len(self.primary_lrs)} and "
                             f"{len(self.primary_inits)}.")
        if (self.lr, self.init_scale) not in self.primary:
            raise ValueError(f"--lr {self.lr:g} and --init-scale {self.init_scale:g} (the n "
                             f"slices' reference) must be one of the primary slices "
                             f"{self.primary}.")
        if self.n not in self.n_grid:
            raise ValueError(f"--n must be one of --n-grid {','.join(map(str, self.n_grid))}, "
                             f"got {self.n!r}.")
        if not 1 <= self.replace <= min(self.n_grid):
            raise ValueError(f"--replace must lie in [1, min(--n-grid) = {min(self.n_grid)}], "
                             f"got {self.replace!r}.")
        if not 1 <= self.const_test <= self.num_test:
            raise ValueError(f"--const-test must lie in [1, --num-test = {self.num_test}], got "
                             f"{self.const_test!r}.")
        if not 0 <= self.probe_seeds <= self.seeds:
            raise ValueError(f"--probe-seeds must lie in [0, --seeds = {self.seeds}], got "
                             f"{self.probe_seeds!r}.")
        if isinstance(self.width, bool) or not isinstance(self.width, int) or self.width < 0:
            raise ValueError(f"--width must be an integer >= 0 (0: no fixed-width control), "
                             f"got {self.width!r}.")
        if self.width and self.model in families.BUILT_IN and len(self.fixed_width_heads) < 2:
            raise ValueError(f"--width {self.width} is divided by fewer than two H of "
                             f"--heads-grid; the fixed-width control needs two (e.g. --width 8 "
                             f"for H = 1, 2, 4, 8), or --width 0 to turn it off.")

    @property
    def primary(self) -> tuple[tuple[float, float], ...]:
        """The primary slices (η, init scale)."""
        return tuple(zip(self.primary_lrs, self.primary_inits, strict=True))

    @property
    def fixed_width_heads(self) -> tuple[int, ...]:
        """The H of ``heads_grid`` that divide ``width`` (the fixed-width control's grid)."""
        return tuple(h for h in self.heads_grid if self.width and self.width % h == 0)

    @property
    def arms(self) -> tuple[str, ...]:
        """The arms that run: the model itself, its fixed-width control (built-in families,
        ``width`` > 0) and the ensembles of one-head models (``average_control``)."""
        return (("growing",)
                + (("fixed_width",) if self.width and self.model in families.BUILT_IN else ())
                + (("average",) if self.average_control else ()))

    @property
    def mixture_data(self) -> bool:
        """Whether the data are the tokenized mixture (fresh sets drawn per seed)."""
        return self.data == "mixture"

    def record_steps(self) -> tuple[int, ...]:
        """Recorded steps: log- and linearly spaced in [0, K], with θ_{K/10} and θ_K."""
        K, m = self.steps, self.record_points
        lin = np.round(np.linspace(0, K, max(2, m // 2))).astype(int)
        return tuple(int(k) for k in np.unique(np.concatenate(
            [train.log_schedule(K, m - len(lin) + 1), lin, probe_steps(K)])))


#: the Config fields that hold several values (a tuple; a list or array is converted)
_SEQUENCES = ("digits_pair", "heads_grid", "lr_grid", "init_scale_grid", "n_grid",
              "primary_lrs", "primary_inits", "loss_targets")


def _check_grid(flag, grid, what, ok) -> None:
    if not isinstance(grid, tuple):
        raise ValueError(f"{flag} must be a tuple of numbers such as (1, 2, 4), got "
                         f"{type(grid).__name__} {grid!r}.")
    if not grid:
        raise ValueError(f"{flag} is empty; give at least one value (comma-separated).")
    bad = [v for v in grid if isinstance(v, bool) or not isinstance(v, (int, float))
           or not math.isfinite(v) or not ok(v)]
    if bad:
        raise ValueError(f"{flag} must hold {what}, got {','.join(map(str, grid))} "
                         f"(bad: {','.join(map(str, bad))}).")


#: GPU-sized: the tuning grid at every n, more seeds, retrainings, probes and steps.
FULL = {"full_product": True, "seeds": 20, "replace": 8, "probe_seeds": 5, "steps": 1000,
        "lr_grid": (0.0625, 0.25, 1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0),
        "init_scale_grid": (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0),
        "n_grid": (32, 128, 512, 2048), "record_points": 40, "width": 16,
        "heads_grid": (1, 2, 4, 8, 16, 32, 64, 128)}

#: A grid for ``mhatheory verify`` (tendency rows): under a minute on 2 CPU cores.
VERIFY = {"heads_grid": (1, 2, 8), "lr_grid": (4.0, 64.0, 1024.0), "init_scale_grid": (0.3, 3.0),
          "n_grid": (32,), "n": 32, "seeds": 4, "steps": 100, "replace": 1, "probe_seeds": 0,
          "num_test": 1000, "num_val": 64, "const_test": 32, "bayes_samples": 20_000,
          "record_points": 12, "average_control": False, "width": 0,
          "primary_lrs": (4.0, 64.0), "primary_inits": (0.3, 3.0)}


def probe_steps(steps: int) -> tuple[int, ...]:
    """θ_0, θ_{K/10}, θ_K: the "init", "early" and "late" probes."""
    return tuple(sorted({0, max(1, steps // 10), steps}))


def plan(config: Config) -> list[tuple[str, dict]]:
    """The cells: (name, spec), one per (arm, H, init scale, n) with every step size of its
    slice in ``lrs`` and the primary ones (retrained, probed) in ``primary``; the ensemble
    control is one cell per primary init scale."""
    cells = []
    arms = [("growing", config.heads_grid)]
    if "fixed_width" in config.arms:
        arms.append(("fixed_width", config.fixed_width_heads))
    ref = (config.lr, config.init_scale)
    for arm, heads in arms:
        for n in config.n_grid:
            for init in config.init_scale_grid:
                if n == config.n or config.full_product:
                    lrs = list(config.lr_grid)
                elif arm == "growing" and init == config.init_scale:
                    lrs = [config.lr]
                else:
                    continue
                primary = [lr for lr in lrs if (lr, init) in config.primary
                           and (n == config.n or (lr, init) == ref)]
                for h in heads:
                    cells.append((f"{arm}_H{h}_init{init:g}_n{n}",
                                  {"arm": arm, "heads": h, "init_scale": init, "n": n,
                                   "lrs": lrs, "primary": primary, "seeds": config.seeds}))
    if "average" in config.arms:
        for init in sorted(set(config.primary_inits)):
            lrs = [lr for lr, i in config.primary if i == init]
            cells.append((f"average_M{max(config.heads_grid)}_init{init:g}_n{config.n}",
                          {"arm": "average", "heads": max(config.heads_grid), "init_scale": init,
                           "n": config.n, "lrs": lrs, "primary": lrs, "seeds": config.seeds}))
    return cells


def _cost(phi, layout, params0, batch: data.Batch, reps: int = 50) -> dict:
    """One run's optimiser step: FLOPs from the compiled program's ``cost_analysis()`` and warm
    seconds per step (a scan of ``reps`` steps, timed on its second call)."""
    loss = functools.partial(_batched._loss, phi, layout.loss)
    opt, step = train.make_step(loss, 1e-3, layout.optimizer)
    state = opt.init(params0)
    compiled = jax.jit(step).lower(params0, state, batch.X, batch.y).compile()
    analysis_ = compiled.cost_analysis()
    analysis_ = analysis_[0] if isinstance(analysis_, (list, tuple)) else analysis_
    flops = float(analysis_.get("flops", float("nan"))) if analysis_ else float("nan")

    @jax.jit
    def many(p):
        return jax.lax.scan(lambda c, _: (step(c, state, batch.X, batch.y)[0], None), p,
                            None, length=reps)[0]

    jax.block_until_ready(many(params0))
    t0 = time.perf_counter()
    jax.block_until_ready(many(params0))
    return {"params": _validate.num_params(params0)[0],
            "flops_per_step": flops, "seconds_per_step": (time.perf_counter() - t0) / reps}


def run_cell(config: Config, spec: dict) -> dict:
    """Train (and on the primary slices retrain and probe) one (arm, H, init, n) cell for all
    its step sizes and seeds; see :mod:`mhatheory.experiments._batched` for the run layout."""
    t0 = time.perf_counter()
    arm, H, init, n, lrs, S = (spec[k] for k in ("arm", "heads", "init_scale", "n", "lrs",
                                                 "seeds"))
    primary = [lrs.index(lr) for lr in spec["primary"]]
    E, K = len(lrs), config.steps
    M = H if arm == "average" else 1
    R = config.replace if arm != "average" else 0
    sets = [seeds.seed_data(config, spec, config.seed + s) for s in range(S)]
    phi = sets[0].phi
    _, loss, classes = seeds.data_shape(config, seeds.task_of(config.data, config.digits_pair))
    trivial = datasets.trivial_loss(loss, classes)
    # base rows (e, s, m), then one retraining per (primary e, s, r)
    X, y, p0, lr_rows, pairs = [], [], [], [], []
    for e in range(E):
        for s in range(S):
            for m in range(M):
                X.append(sets[s].train.X)
                y.append(sets[s].train.y)
                p0.append(sets[s].members[m])
                lr_rows.append(lrs[e])
    for e in primary if R else ():
        for s in range(S):
            for r, i in enumerate(sets[s].which):
                X.append(sets[s].train.X.at[i].set(sets[s].fresh.X[r]))
                y.append(sets[s].train.y.at[i].set(sets[s].fresh.y[r]))
                p0.append(sets[s].members[0])
                lr_rows.append(lrs[e])
                pairs.append((e * S + s) * M)
    layout = _batched.Layout(E, S, M, tuple(pairs),
                             tuple(config.heads_grid) if arm == "average" else (), loss,
                             config.optimizer)
    probe_s = range(max(1, config.probe_seeds)) if arm == "growing" else range(0)
    snap_rows = tuple((e * S + s) for e in primary for s in probe_s)
    steps_p = probe_steps(K)
    rec_steps = config.record_steps()
    eval_sets = {name: (jnp.stack([getattr(st, name).X for st in sets]),
                        jnp.stack([getattr(st, name).y for st in sets]))
                 for name in ("train", "val", "test")}
    out = _batched.train_runs(phi, seeds.stack(p0), jnp.stack(X), jnp.stack(y),
                              jnp.asarray(lr_rows, dtype=sets[0].train.X.dtype), eval_sets,
                              layout=layout, steps=K, record_steps=rec_steps,
                              snapshot_rows=snap_rows, snapshot_steps=steps_p if snap_rows else ())
    curves = np.asarray(out["loss"])                                      # [K+1, rows]
    bad = np.asarray(out["nonfinite_step"])
    recs = {k: np.asarray(v) for k, v in out["records"].items()}
    rec_idx = np.asarray(rec_steps)
    timing = {"gd": time.perf_counter() - t0}

    def rounded(a):
        # np.round scales by 10⁷ and overflows past ~1e301: larger values are kept as they are
        a = np.asarray(a, float)
        small = np.abs(a) < 1e290
        with np.errstate(invalid="ignore"):
            return np.where(small, np.round(np.where(small, a, 0.0), 7), a).tolist()

    per_lr = []
    for e, lr in enumerate(lrs):
        part = {"lr": lr, "primary": e in primary}
        if arm == "average":
            outcomes = [[_batched.failed(curves[:, (e * S + s) * M + m],
                                         int(bad[(e * S + s) * M + m]), trivial)
                         for m in range(M)] for s in range(S)]
            part["members_failed"] = [sum(o["failed"] for o in row) for row in outcomes]
            part["curves"] = {q: [[rounded(recs[q][:, e, s, j]) for s in range(S)]
                                  for j in range(len(layout.prefixes))]
                              for q in ("train_loss", "val_loss", "val_error", "test_loss",
                                        "test_error", "train_error")}
            part["prefixes"] = list(layout.prefixes)
            per_lr.append(part)
            continue
        rows = [(e * S + s) * M for s in range(S)]
        outcomes = [_batched.failed(curves[:, r], int(bad[r]), trivial) for r in rows]
        part["outcome"] = {k: [o[k] for o in outcomes]
                           for k in ("failed", "failed_step", "spiked", "max_loss_ratio")}
        part["final_loss"] = [float(curves[-1, r]) for r in rows]
        part["curves"] = {"train_loss": [rounded(curves[rec_idx, r]) for r in rows]}
        for q in ("val_loss", "val_error", "test_loss", "test_error", "train_error",
                  "theta_dist"):
            part["curves"][q] = [rounded(recs[q][:, e, s, 0]) for s in range(S)]
        if e in primary and R:
            j0 = [j for j, b in enumerate(pairs) if b in rows]
            part["pair_dist"] = [[rounded(recs["pair_dist"][:, j])
                                  for j in j0 if pairs[j] == rows[s]] for s in range(S)]
            part["replaced_failed"] = [[_batched.failed(curves[:, layout.base + j],
                                                        int(bad[layout.base + j]),
                                                        trivial)["failed"]
                                        for j in j0 if pairs[j] == rows[s]] for s in range(S)]
        per_lr.append(part)
    payload = {"record_steps": list(rec_steps), "per_lr": per_lr, "timing": timing,
               "trivial_loss": trivial}
    if arm == "growing" and primary:
        payload.update(probes.probe(config, spec, sets, lrs, primary, out, steps_p, probe_s,
                                    curves, timing, layout, trivial))
    if arm == "average" or (init == min(config.init_scale_grid) and n == config.n):
        # one member of an ensemble (H = 1): analysis.cost scales it by H
        payload["cost"] = _cost(phi, layout, sets[0].members[0], sets[0].train)
    payload["seconds"] = time.perf_counter() - t0
    return payload


def run(config: Config, out_dir, progress: bool = True, resume: bool = False,
        figures: bool = True) -> dict:
    """Run (or resume) the sweep; write ``results.json`` and (unless ``figures=False``) the
    figures; return the summary (less its long tables) with ``answers``, each claim's answer
    by name."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    inputs = prepare(config)        # a refused model or data leaves the last results alone
    results.retire(out)
    cells = plan(config)
    # a cell's spec holds its step sizes, primary slices and seed count; the grids and the
    # analysis fields only choose which cells exist or how they are read
    ignore = {f.name for f in dataclasses.fields(config) if f.name.endswith("_grid")} | {
        "seeds", "lr", "init_scale", "full_product", "primary_lrs", "primary_inits", "delta",
        "loss_targets", "alpha", "average_control", "bayes_samples"}
    payloads = run_cells(out, cells, lambda spec: run_cell(config, spec), resume=resume,
                         progress=progress, desc="heads cells", config=config, ignore=ignore,
                         fingerprints=inputs)
    bayes = bayes_se = None
    if config.mixture_data:
        bayes, bayes_se = data.bayes_error(config.mixture(), jax.random.key(config.seed + 99),
                                           num=config.bayes_samples)
    records = make_records(payloads, bayes)
    summary = analysis.summarise(records, payloads, config)
    answer_claims(records, summary, config)
    summary.update({"bayes_error": bayes, "bayes_error_se": bayes_se,
                    "cell_seconds": sum(p["seconds"] for p in payloads),
                    "wall_seconds": time.perf_counter() - t0})
    figs = plots.all_figures(records, summary, config) if figures else {}
    for name, fig in figs.items():
        results.save_figure_atomic(fig, out / name)
    results.write_results(out, "heads", config, config.seed,
                          {"summary": summary, "records": compact(records),
                           "data": seeds.data_summary(config),
                           "sweep": getattr(payloads, "info", None)}, figures=list(figs))
    # the terminal's table (``mhatheory run``) shows each claim's answer beside its name first
    return {"answers": summary["answers"],
            **{k: v for k, v in summary.items()
               if k not in ("slopes", "tuned", "robustness", "matched", "cost", "controls",
                            "answers")}}

