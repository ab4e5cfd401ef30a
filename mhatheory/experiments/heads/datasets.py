"""The data contract of the heads sweep, and its built-in data.

**Contract.** A callable with no arguments returning a dict with ``x_train [n, ...]``,
``y_train [n]``, ``x_test [m, ...]``, ``y_test [m]`` and optionally ``x_val``, ``y_val``.
Labels are either all in {−1, +1} (one logit per input, the logistic loss) or integers
0 … C−1 (C logits, cross-entropy). Without a validation split, each seed draws its own from the
training data (``num_val`` samples, disjoint from the ``n`` it trains on).
``MODULE:FUNCTION`` names such a callable (:func:`load_callable`).

**Built-in.** ``mixture``: the tokenized mixture of Deora et al. (a fresh training, validation and
test set per seed, :mod:`mhatheory.data`); ``digits``: the UCI digits of scikit-learn as 8 tokens
of 8 features, a stated pair of digits with labels ±1 (:mod:`mhatheory.tasks.digits`);
``digits10``: the same images, all 10 classes.
"""

from __future__ import annotations

import importlib
import math
from typing import NamedTuple

import numpy as np

from mhatheory.tasks import digits as _digits

BUILT_IN = ("mixture", "digits", "digits10")


class Task(NamedTuple):
    """A dataset checked against the contract: the arrays, the loss its labels imply
    ("logistic" or "cross_entropy") and the number of classes (1 for ±1 labels)."""

    arrays: dict
    loss: str
    classes: int


def load_callable(spec: str, flag: str):
    """``MODULE:FUNCTION`` → the callable, or a clear error naming ``flag``."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"{flag} takes a built-in name or MODULE:FUNCTION (e.g. "
                         f"mypkg.models:make), got {spec!r}.")
    try:
        obj = importlib.import_module(module)
    except ImportError as e:
        raise ValueError(f"{flag} {spec}: module {module!r} does not import ({e}); check the "
                         f"name and that it is on PYTHONPATH.") from e
    fn = getattr(obj, name, None)
    if fn is None:
        raise ValueError(f"{flag} {spec}: {module} has no callable named {name!r}.")
    if not callable(fn):
        raise ValueError(f"{flag} {spec}: {module}.{name} is not callable (its type is "
                         f"{type(fn).__name__}); name the function that builds it.")
    return fn


def labels_kind(y, flag: str, where: str) -> tuple[str, int]:
    """("logistic", 1) for ±1 labels, ("cross_entropy", C) for integers 0 … C−1."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{flag}: {where} must have shape [n], got {list(y.shape)}.")
    if not np.all(np.isfinite(y.astype(float))):
        raise ValueError(f"{flag}: {where} holds NaN or Inf.")
    values = set(np.unique(y).tolist())
    if values <= {-1, 1}:
        return "logistic", 1
    if np.all(y == np.round(y)) and min(values) >= 0:
        return "cross_entropy", int(max(values)) + 1
    raise ValueError(f"{flag}: {where} must be all in {{-1, +1}} (logistic loss) or integers "
                     f"0..C-1 (cross-entropy); got values {sorted(values)[:6]}.")


def check(arrays: dict, flag: str = "--data") -> Task:
    """Check a dataset against the contract (module docstring) before any work."""
    if not isinstance(arrays, dict):
        raise ValueError(f"{flag}: the data callable must return a dict with x_train, y_train, "
                         f"x_test, y_test; got {type(arrays).__name__}.")
    for key in ("x_train", "y_train", "x_test", "y_test"):
        if key not in arrays:
            raise ValueError(f"{flag}: the data have no {key!r} (a test set is required: "
                             f"return x_test and y_test).")
    if ("x_val" in arrays) != ("y_val" in arrays):
        raise ValueError(f"{flag}: give both x_val and y_val, or neither.")
    unknown = sorted(set(arrays) - {f"{a}_{s}" for a in "xy" for s in ("train", "val", "test")})
    if unknown:
        raise ValueError(f"{flag}: the data hold unknown keys {unknown} (a misspelt split would "
                         "be ignored); the keys are x_train, y_train, x_test, y_test and "
                         "optionally x_val, y_val.")
    out = {}
    kinds = set()
    for split in ("train", "val", "test"):
        if f"x_{split}" not in arrays:
            continue
        x = np.asarray(arrays[f"x_{split}"], dtype=np.float64)
        y = np.asarray(arrays[f"y_{split}"])
        if x.ndim < 2 or x.shape[0] != y.shape[0]:
            raise ValueError(f"{flag}: x_{split} has {x.shape[0] if x.ndim else 0} samples "
                             f"but y_{split} has {y.shape[0] if y.ndim else 0}; they must "
                             f"match (x [n, ...], y [n]).")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{flag}: x_{split} holds NaN or Inf; clean the data first.")
        kinds.add(labels_kind(y, flag, f"y_{split}"))
        if split == "train" and len(np.unique(y)) < 2:
            raise ValueError(f"{flag}: y_train holds one class only ({np.unique(y).tolist()}): "
                             "a classifier learns nothing from it; check the labels.")
        out[f"x_{split}"] = x
        out[f"y_{split}"] = y
    if len({k[0] for k in kinds}) > 1:
        raise ValueError(f"{flag}: the splits' labels mix ±1 and class indices; use one kind.")
    loss = kinds.pop()[0]
    if loss == "logistic":
        for k in [k for k in out if k.startswith("y_")]:
            out[k] = out[k].astype(np.float64)
        classes = 1
    else:
        classes = max(int(out[k].max()) + 1 for k in out if k.startswith("y_"))
        for k in [k for k in out if k.startswith("y_")]:
            out[k] = out[k].astype(np.int32)
    shapes = {out[k].shape[1:] for k in out if k.startswith("x_")}
    if len(shapes) > 1:
        raise ValueError(f"{flag}: the splits' inputs have different shapes {sorted(shapes)}.")
    return Task(out, loss, classes)


def resolve(name: str, digits_pair=(3, 8)):
    """A data callable from its ``--data`` name (``mixture`` is handled by the sweep)."""
    if name == "digits":
        return lambda: _digits.load(tuple(digits_pair))
    if name == "digits10":
        return lambda: _digits.load(None)
    if ":" in name:
        return load_callable(name, "--data")
    raise ValueError(f"--data must be one of {', '.join(BUILT_IN)} or MODULE:FUNCTION, got "
                     f"{name!r}.")


def seed_split(task: Task, seed: int, n: int, num_val: int, spare: int = 0) -> dict:
    """One seed's training set (``n`` samples drawn from the training data), validation set
    (the given one, else ``num_val`` further samples from the training data) and ``spare``
    further samples (the replacements of replace-one retraining), all disjoint; the test set is
    shared by all seeds."""
    a = task.arrays
    pool = a["x_train"].shape[0]
    val = 0 if "x_val" in a else num_val
    need = n + val + spare
    if need > pool:
        parts = [f"--n {n}"] + ([f"--num-val {num_val}"] if val else []) + (
            [f"--replace {spare}"] if spare else [])
        raise ValueError(f"{' + '.join(parts)} = {need} exceeds the {pool} training samples "
                         f"of --data; lower them (e.g. --n-grid and --n) or give x_val, y_val.")
    idx = np.random.default_rng([seed, 7_331]).permutation(pool)
    take = {"train": idx[:n], "val": idx[n:n + val], "spare": idx[n + val:need]}
    out = {f"{k}_{s}": a[f"{k}_train"][i] for s, i in take.items() for k in ("x", "y")}
    out.update(x_test=a["x_test"], y_test=a["y_test"])
    if "x_val" in a:
        out["x_val"], out["y_val"] = a["x_val"], a["y_val"]
    return out


def trivial_loss(task_loss: str, classes: int) -> float:
    """The loss of the predictor that outputs 0 (uniform): ln 2 (logistic), ln C (CE)."""
    return math.log(2) if task_loss == "logistic" else math.log(classes)
