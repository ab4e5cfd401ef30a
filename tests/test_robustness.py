"""The robustness campaign: a table of bad inputs over every public function and CLI
command, each answered by a clear error before any work, with nothing written or lost.

Each row names an entry point, the argument a user got wrong (as they would type it), a
Hypothesis strategy of bad values for it, how to call the entry point with one, and a regular
expression the error message must contain (the argument's name, and where useful the fix).
Every generated example must

* raise ``ValueError`` or ``TypeError`` (``DenseTooLargeError`` is a ``ValueError``; the CLI
  must exit with status 2 and say it on stderr, naming the flag as typed, no traceback);
* do so *before any work*: no jaxpr is lowered or compiled during the call (JAX's compile
  events, :data:`COMPILE_EVENTS`; the compilation caches are cleared when this module starts,
  so a program compiled by an earlier test cannot hide work; the bad values are built outside
  the watched call), and for the CLI the
  experiment's ``run``, ``verify.run_checks`` and ``train.gd`` are replaced by functions that
  fail the test when called;
* write nothing: the CLI's ``--out`` folder is left as it was (absent, or an existing
  ``results.json`` byte-for-byte unchanged and no new files).

The number of bad inputs tried (rows × generated examples) is printed at the end of the session
(``pytest_terminal_summary`` in conftest.py) and checked by the last test of this module.
``MHATHEORY_ROBUSTNESS_EXAMPLES`` sets the examples per row (default 4; derandomized, so the
count is the same on every run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import math
import os
import re
import string
import sys
import tempfile
import typing
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from mhatheory import (
    attention,
    cli,
    data,
    deora,
    experiments,
    spectral,
    stability,
    symmetry,
    testing,
    train,
)
from mhatheory.models import DecoderTransformer, DeoraMHA
from mhatheory.tasks import addition

EXAMPLES = int(os.environ.get("MHATHEORY_ROBUSTNESS_EXAMPLES", "4"))
CAMPAIGN = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck),
                    phases=[Phase.explicit, Phase.generate])   # a failure is shown as drawn

#: JAX's monitoring events for lowering a jaxpr and compiling it (jax._src.dispatch).
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")

TRIED: Counter = Counter()      # row id -> bad inputs tried
ANSWERED: Counter = Counter()   # row id -> answered by a clear error before any work


def summary_line() -> str | None:
    """The campaign's tally, or None when no row ran (printed by conftest.py)."""
    if not TRIED:
        return None
    tried, answered = sum(TRIED.values()), sum(ANSWERED.values())
    return (f"robustness campaign: {tried} bad inputs tried over {len(TRIED)} table rows, "
            f"{answered} answered by a clear error before any work, nothing written")


# --- watching for work -------------------------------------------------------------------------


class _Compiles:
    active = False
    seen: list = []

    @classmethod
    def listener(cls, event, duration, **kwargs):
        if cls.active and event in COMPILE_EVENTS:
            cls.seen.append(f"{event.rsplit('/', 1)[-1]}: {kwargs.get('fun_name', '?')}")


@pytest.fixture(scope="module", autouse=True)
def _campaign(request):
    jax.clear_caches()  # nothing compiled earlier in the session can hide work in a row
    jax.monitoring.register_event_duration_secs_listener(_Compiles.listener)
    request.config.robustness_summary = summary_line
    yield
    jax.monitoring.unregister_event_duration_listener(_Compiles.listener)


@contextlib.contextmanager
def no_compilation():
    _Compiles.seen = []
    _Compiles.active = True
    try:
        yield
    finally:
        _Compiles.active = False
    assert not _Compiles.seen, f"work started before the error: {_Compiles.seen}"


# --- a table row -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Row:
    """One bad input of one entry point.

    ``call(value)`` calls the entry point with the bad ``value`` (drawn from ``values``); the
    error message must contain ``match`` (a regular expression, or a function of the value
    giving one)."""

    entry: str
    arg: str
    values: st.SearchStrategy
    call: Callable
    match: str | Callable
    errors: tuple = (ValueError, TypeError)

    @property
    def id(self) -> str:
        return f"{self.entry}[{self.arg}]"


def expect_clear_error(row: Row, value) -> str:
    """Call the row with ``value``; returns the error message after checking it."""
    TRIED[row.id] += 1
    with no_compilation():
        with pytest.raises(row.errors) as exc:
            row.call(value)
    message = str(exc.value)
    pattern = row.match(value) if callable(row.match) else row.match
    assert re.search(pattern, message), f"{row.id}: {message!r} does not match {pattern!r}"
    ANSWERED[row.id] += 1
    return message


# --- bad values --------------------------------------------------------------------------------

NONFINITE = st.sampled_from([math.nan, math.inf, -math.inf])
WRONG_TYPES = st.sampled_from([None, "abc", [1, 2], object()])
NOT_INTS = st.sampled_from([1.5, 2.0, "3", True, [2]])    # None is often "the default"


def ints_at_most(hi: int):
    return st.integers(-10**6, hi)


def bad_positive_int(minimum: int = 1):
    return ints_at_most(minimum - 1) | NOT_INTS


def bad_positive_float():
    return (st.floats(max_value=0.0, allow_nan=False) | NONFINITE
            | st.sampled_from(["x", "1e-3", True, None, [1.0]]))


def bad_non_negative_float():
    return (st.floats(max_value=-1e-300, allow_nan=False) | NONFINITE
            | st.sampled_from(["x", "1", True, None]))


def text_not_in(*allowed):
    return st.text(string.ascii_letters + "-_ ", max_size=12).filter(lambda s: s not in allowed)


@st.composite
def poisoned(draw, tree):
    """``(tree with one entry of one leaf set to NaN/±Inf, that leaf's path)``."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    i = draw(st.integers(0, len(flat) - 1))
    leaves = [np.array(leaf) for _, leaf in flat]
    j = draw(st.integers(0, leaves[i].size - 1))
    leaves[i].reshape(-1)[j] = draw(NONFINITE)
    bad = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(x) for x in leaves])
    return bad, jax.tree_util.keystr(flat[i][0])


@st.composite
def reshaped(draw, shape):
    """A shape differing from ``shape``: one axis resized, or an axis added or dropped."""
    shape = list(shape)
    kind = draw(st.sampled_from(["resize", "add", "drop"] if shape else ["add"]))
    if kind == "resize":
        i = draw(st.integers(0, len(shape) - 1))
        shape[i] = draw(st.integers(1, 9).filter(lambda s, old=shape[i]: s != old))
    elif kind == "add":
        shape.insert(draw(st.integers(0, len(shape))), draw(st.integers(2, 4)))
    else:
        shape.pop(draw(st.integers(0, len(shape) - 1)))
    return tuple(shape)


def wrong_shape(shape):
    return reshaped(shape).map(lambda s: jnp.asarray(np.random.default_rng(0).normal(size=s)))


def bad_labels(y):
    """Labels with at least one entry not in {−1, +1} (finite; {0, 1} labels included)."""
    y = np.asarray(y)

    @st.composite
    def draw_labels(draw):
        if draw(st.booleans()):
            return jnp.asarray((y + 1) / 2)  # the {0, 1} convention
        out = y.copy()
        for i in draw(st.sets(st.integers(0, y.size - 1), min_size=1)):
            out[i] = draw(st.sampled_from([0.0, 2.0, 0.5, -0.5, -3.0, 1e-3, 1 + 1e-9]))
        return jnp.asarray(out)

    return draw_labels()


def non_float_dtype(tree):
    """``(tree with one leaf cast to an integer, bool or complex dtype, that leaf's path)``."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)

    @st.composite
    def draw_tree(draw):
        i = draw(st.integers(0, len(flat) - 1))
        dtype = draw(st.sampled_from([np.int32, np.int64, np.uint8, np.bool_, np.complex64,
                                      np.complex128]))
        leaves = [jnp.asarray(np.asarray(x).astype(dtype)) if k == i else x
                  for k, (_, x) in enumerate(flat)]
        return jax.tree_util.tree_unflatten(treedef, leaves), jax.tree_util.keystr(flat[i][0])

    return draw_tree()


# --- the problems the rows spoil -----------------------------------------------------------------

D, HEADS, N, T = 4, 2, 6, 3
_rng = np.random.default_rng(0)
PARAMS = {"W": jnp.asarray(0.5 * _rng.standard_normal((HEADS, D, D))),
          "U": jnp.asarray(0.5 * _rng.standard_normal((HEADS, D)))}
BATCH = data.Batch(jnp.asarray(_rng.standard_normal((N, T, D))),
                   jnp.asarray(np.array([1.0, -1.0, 1.0, 1.0, -1.0, -1.0])))
XN, YN = np.asarray(BATCH.X), np.asarray(BATCH.y)
STACKED = {k: jnp.asarray(np.stack([np.asarray(v)] * 2)) for k, v in PARAMS.items()}
STACKED3 = {k: jnp.asarray(np.stack([np.asarray(v)] * 3)) for k, v in PARAMS.items()}
KEY = jax.random.key(0)
RNGS = nnx.Rngs(0)  # never used: every row fails before drawing a key


def stacked(tree):
    """``tree`` with every array leaf stacked twice (numpy and device_put: nothing compiles,
    where ``jnp.asarray`` of a host array would)."""
    return jax.tree.map(lambda x: jax.device_put(np.stack([np.asarray(x)] * 2))
                        if isinstance(x, jax.Array) else x, tree)
P = deora.parameter_count(D, HEADS)


def mlp_loss(p, x, y):
    return jnp.mean((jnp.tanh(x @ p["w1"]) @ p["w2"] - y) ** 2)


MLP = {"w1": jnp.asarray(_rng.standard_normal((3, 4))), "w2": jnp.asarray(_rng.standard_normal(4))}
MX, MY = jnp.asarray(_rng.standard_normal((8, 3))), jnp.asarray(_rng.standard_normal(8))


def vector_loss(p, x, y):
    return (jnp.tanh(x @ p["w1"]) @ p["w2"] - y) ** 2        # one value per sample: not scalar


def tuple_loss(p, x, y):
    return mlp_loss(p, x, y), {"aux": 1.0}


def int_loss(p, x, y):
    return jnp.sum(p["w2"] > 0)


def big_quadratic(p):
    return jnp.sum(p["w"] ** 2)


# The entry points that take ``loss_fn(params, *args)``: name -> (call, name of the params).
LOSS_ENTRIES = {
    "spectral.lambda_min": (spectral.lambda_min, "params"),
    "spectral.lambda_max": (spectral.lambda_max, "params"),
    "spectral.extreme_eigs": (spectral.extreme_eigs, "params"),
    "spectral.trace": (spectral.trace, "params"),
    "spectral.spectral_density": (spectral.spectral_density, "params"),
    "spectral.dense_hessian": (spectral.dense_hessian, "params"),
    "spectral.dense": (spectral.dense, "params"),
    "spectral.hvp": (spectral.hvp, "params"),
    "spectral.track": (lambda f, p, *a, **kw: spectral.track(f, stacked(p), *a, **kw),
                       "params_at"),
    "train.gd": (lambda f, p, *a, **kw: train.gd(f, p, *a, steps=2, lr=0.1, **kw), "params"),
    "testing.assert_weakly_convex": (lambda f, p, *a, **kw: testing.assert_weakly_convex(
        f, p, *a, kappa=1.0, heads=HEADS, **kw), "params"),
}


def loss_rows() -> list[Row]:
    rows = []
    for entry, (call, pname) in LOSS_ENTRIES.items():
        rows += [
            Row(entry, f"{pname} NaN/Inf", poisoned(PARAMS),
                lambda v, c=call: c(deora.loss_fn, v[0], BATCH),
                lambda v, p=pname: re.escape(p + v[1]) + r" contains \d+ NaN/Inf"),
            Row(entry, "batch.X NaN/Inf", poisoned(BATCH.X),
                lambda v, c=call: c(deora.loss_fn, PARAMS, BATCH._replace(X=v[0])),
                r"(args\[0\]\.X|batch\.X) contains \d+ NaN/Inf"),
            Row(entry, "MLP data NaN/Inf", poisoned((MX, MY)),
                lambda v, c=call: c(mlp_loss, MLP, *v[0]),
                lambda v: re.escape("args" + v[1]) + r" contains \d+ NaN/Inf"),
            Row(entry, "batch.y labels", bad_labels(BATCH.y),
                lambda v, c=call: c(deora.loss_fn, PARAMS, BATCH._replace(y=v)),
                r"batch\.y must hold labels in \{-1, \+1\}.*y = 2\*y - 1"),
            Row(entry, f"{pname} dtype", non_float_dtype(PARAMS),
                lambda v, c=call: c(deora.loss_fn, v[0], BATCH),
                lambda v, p=pname: re.escape(p + v[1]) + r" has dtype .*floating point"),
            Row(entry, f"{pname} type", WRONG_TYPES | st.just({}),
                lambda v, c=call: c(mlp_loss, v, MX, MY), re.escape(pname)),
            Row(entry, "params['U'] shape", wrong_shape(PARAMS["U"].shape),
                lambda v, c=call: c(deora.loss_fn, {**PARAMS, "U": v}, BATCH),
                r"U must have shape \[2, 4\]"),
            Row(entry, "params['W'] shape", wrong_shape(PARAMS["W"].shape),
                lambda v, c=call: c(deora.loss_fn, {**PARAMS, "W": v}, BATCH),
                r"\b(W|U) must have shape"),
            Row(entry, "batch.X shape", wrong_shape(BATCH.X.shape).filter(
                lambda x: x.ndim != 3 or x.shape[2] != D or x.shape[1] < 2 or x.shape[0] != N),
                lambda v, c=call: c(deora.loss_fn, PARAMS, BATCH._replace(X=v)),
                r"batch\.(X|y) (must|has)"),
            Row(entry, "MLP x shape", wrong_shape(MX.shape).filter(lambda x: x.shape[-1:] != (3,)),
                lambda v, c=call: c(mlp_loss, MLP, v, MY),
                r"loss_fn\(params, \*args\) could not be evaluated"),
            Row(entry, "loss_fn output", st.sampled_from([vector_loss, tuple_loss, int_loss]),
                lambda v, c=call: c(v, MLP, MX, MY),
                r"loss_fn must return (a scalar|one scalar|a floating-point scalar)"),
            Row(entry, "loss_fn type", WRONG_TYPES,
                lambda v, c=call: c(v, MLP, MX, MY), r"loss_fn"),
        ]
    return rows


def option_rows() -> list[Row]:
    lanczos = {"spectral.lambda_min": spectral.lambda_min,
               "spectral.lambda_max": spectral.lambda_max,
               "spectral.extreme_eigs": spectral.extreme_eigs,
               "spectral.track": LOSS_ENTRIES["spectral.track"][0],
               "testing.assert_weakly_convex": LOSS_ENTRIES["testing.assert_weakly_convex"][0]}
    rows = []
    for entry, call in lanczos.items():
        def opt(arg, values, match, c=call, entry=entry, kwarg=None):
            """A row passing the bad value as ``kwarg`` (default: the row's ``arg``)."""
            return Row(entry, arg, values,
                       lambda v: c(deora.loss_fn, PARAMS, BATCH, **{kwarg or arg: v}), match)

        v0_rows = [
            opt("v0", reshaped((P,)).map(np.ones), r"\bv0 must have P=40 entries"),
            opt("v0 NaN/Inf", NONFINITE.map(lambda x: np.r_[np.ones(P - 1), x]),
                r"\bv0 contains NaN/Inf", kwarg="v0"),
            opt("v0 zero", st.just(np.zeros(P)), r"\bv0 is the zero vector", kwarg="v0"),
            opt("v0 pytree", st.just(PARAMS), r"\bv0 must be one flat vector", kwarg="v0"),
            opt("v0 nnx.State", st.just(nnx.State(PARAMS)), r"\bv0 must be one flat vector",
                kwarg="v0"),
        ] if entry != "spectral.track" else [
            opt("v0", st.just(np.ones(P)), r"track takes no v0"),
        ]
        rows += v0_rows + [
            opt("krylov", bad_positive_int(2), r"krylov"),
            opt("tol", bad_positive_float(), r"\btol must be"),
            Row(entry, "tol >= 1", st.floats(min_value=1.0, allow_nan=False,
                                             allow_infinity=False),
                lambda v, c=call: c(deora.loss_fn, PARAMS, BATCH, tol=v),
                r"\btol=.* must be below 1"),
            opt("max_restarts", bad_positive_int(0), r"max_restarts must be"),
            opt("method", text_not_in("lanczos", "exact"),
                r"method must be one of \['lanczos', 'exact'\]"),
            opt("reortho", text_not_in("partial", "full", "none"), r"reortho must be"),
            opt("key", st.sampled_from(["abc", 0, 1.5, [0, 1], np.zeros(3)]), r"\bkey must be"),
            opt("failure_prob", st.floats(max_value=0.0) | st.floats(min_value=1.0) | NONFINITE
                | st.sampled_from(["rare", True]), r"failure_prob must"),
            opt("max_hvps", bad_positive_int(1) | st.integers(1, 6), r"max_hvps"),
            opt("warm_start_mix", st.floats(max_value=-1e-300) | NONFINITE,
                r"warm_start_mix must be"),
            Row(entry, "krylov typo", st.just(5),
                lambda v, c=call: c(deora.loss_fn, PARAMS, BATCH, krylv=v), r"'krylv'"),
        ]
    rows = [r for r in rows if not (r.entry == "spectral.track" and r.arg == "key")] + [
        Row("spectral.track", "key", st.sampled_from(["abc", 1.5, [0, 1]]),
            lambda v: LOSS_ENTRIES["spectral.track"][0](deora.loss_fn, PARAMS, BATCH, key=v),
            r"\bkey must be"),
        Row("spectral.track", "which", text_not_in("smallest", "largest").map(lambda s: (s,)),
            lambda v: LOSS_ENTRIES["spectral.track"][0](deora.loss_fn, PARAMS, BATCH, which=v),
            r"which must be"),
        Row("spectral.track", "steps", st.integers(0, 5).filter(lambda k: k != 2).map(range),
            lambda v: LOSS_ENTRIES["spectral.track"][0](deora.loss_fn, PARAMS, BATCH, steps=v),
            r"steps must hold one step per stored"),
        Row("spectral.track", "params_at leading axis", st.just(None),
            lambda v: spectral.track(deora.loss_fn, {"W": STACKED3["W"], "U": STACKED["U"]},
                                     BATCH), r"params_at.*leading axis"),
        Row("spectral.extreme_eigs", "failure_prob with a pure warm start", st.just(0.0),
            lambda v: spectral.extreme_eigs(deora.loss_fn, PARAMS, BATCH, v0=np.ones(P),
                                            warm_start_mix=v, failure_prob=1e-6),
            r"warm_start_mix=0 has no probability"),
        Row("spectral.extreme_eigs", "k", bad_positive_int(1) | st.integers(P, 10**6),
            lambda v: spectral.extreme_eigs(deora.loss_fn, PARAMS, BATCH, k=v), r"\bk\b"),
        Row("spectral.per_block", "block select", st.sampled_from(["W[", "(U", "*", "U)"]),
            lambda v: spectral.per_block(deora.loss_fn, PARAMS, BATCH,
                                         blocks={"b": (v, None, None)}),
            r"block 'b': a block's select .* is not a regular expression"),
        Row("spectral.per_block", "block index", ints_at_most(-1)
            | st.sampled_from([1.0, "0", True]),
            lambda v: spectral.per_block(deora.loss_fn, PARAMS, BATCH, blocks={"b": ("W", 0, v)}),
            r"block 'b': a block's index must be"),
        Row("spectral.per_block", "block axis", st.sampled_from([True, 1.0, "0"]),
            lambda v: spectral.per_block(deora.loss_fn, PARAMS, BATCH, blocks={"b": ("W", v, 0)}),
            r"block 'b': a block's axis must be an integer"),
        Row("spectral.per_block", "k or which", st.sampled_from([{"k": 2}, {"which": "largest"}]),
            lambda v: spectral.per_block(deora.loss_fn, PARAMS, BATCH,
                                         blocks={"b": ("W", None, None)}, **v),
            r"not an option here"),
        Row("spectral.extreme_eigs", "k beyond the operator", st.integers(P, 10**4),
            lambda v: spectral.extreme_eigs(deora.loss_fn, PARAMS, BATCH, k=v),
            r"k=\d+ must be smaller than the operator's size 40 for Lanczos"),
        Row("spectral.extreme_eigs", "k beyond krylov", st.integers(2, 10**3),
            lambda v: spectral.extreme_eigs(deora.loss_fn, PARAMS, BATCH, k=v, krylov=v),
            r"k=(\d+) needs more Lanczos vectors per cycle than krylov=\1\b"),
        Row("spectral.extreme_eigs", "which", text_not_in("smallest", "largest"),
            lambda v: spectral.extreme_eigs(deora.loss_fn, PARAMS, BATCH, which=v),
            r"which must be one of \['smallest', 'largest'\]"),
        Row("spectral.trace", "num_samples typo", st.just(5),
            lambda v: spectral.trace(deora.loss_fn, PARAMS, BATCH, num_sample=v),
            r"'num_sample' \(did you mean 'num_samples'\?\)"),
        Row("spectral.spectral_density", "krylov typo", st.just(5),
            lambda v: spectral.spectral_density(deora.loss_fn, PARAMS, BATCH, krylv=v),
            r"'krylv' \(did you mean 'krylov'\?\)"),
        Row("spectral.trace", "num_samples", bad_positive_int(2),
            lambda v: spectral.trace(deora.loss_fn, PARAMS, BATCH, num_samples=v),
            r"num_samples must be"),
        Row("spectral.trace", "key", st.sampled_from(["abc", 1.5, [0, 1]]),
            lambda v: spectral.trace(deora.loss_fn, PARAMS, BATCH, key=v), r"\bkey must be"),
        Row("spectral.spectral_density", "num_probes", bad_positive_int(2),
            lambda v: spectral.spectral_density(deora.loss_fn, PARAMS, BATCH, num_probes=v),
            r"num_probes must be"),
        Row("spectral.spectral_density", "krylov", bad_positive_int(1),
            lambda v: spectral.spectral_density(deora.loss_fn, PARAMS, BATCH, krylov=v),
            r"krylov must be"),
        Row("spectral.spectral_density", "key", st.sampled_from(["abc", 1.5, [0, 1]]),
            lambda v: spectral.spectral_density(deora.loss_fn, PARAMS, BATCH, key=v),
            r"\bkey must be"),
        Row("spectral.resampled", "num", bad_positive_int(2),
            lambda v: spectral.resampled(lambda p, b: 0.0, PARAMS, BATCH, key=KEY, num=v),
            r"\bnum must be"),
        Row("spectral.resampled", "probe", WRONG_TYPES,
            lambda v: spectral.resampled(v, PARAMS, BATCH, key=KEY), r"\bprobe must be"),
        Row("spectral.resampled", "key", st.sampled_from([None, "abc", 1.5]),
            lambda v: spectral.resampled(lambda p, b: 0.0, PARAMS, BATCH, key=v),
            r"\bkey must be"),
        Row("spectral.resampled", "batch NaN/Inf", poisoned(BATCH.X),
            lambda v: spectral.resampled(lambda p, b: 0.0, PARAMS, BATCH._replace(X=v[0]),
                                         key=KEY), r"batch\.X contains \d+ NaN/Inf"),
        Row("spectral.resampled", "batch sizes", st.integers(1, N - 1).map(lambda v: YN[:v]),
            lambda v: spectral.resampled(lambda p, b: 0.0, PARAMS, BATCH._replace(y=v),
                                         key=KEY), r"batch.*same number of samples"),
    ]
    # the dense memory guard: a budget too small, or a P whose P² does not fit the default
    dense = {"spectral.dense_hessian": spectral.dense_hessian, "spectral.dense": spectral.dense,
             "spectral.lambda_min(method='exact')": lambda *a, **kw: spectral.lambda_min(
                 *a, method="exact", **kw)}
    huge = st.integers(9_000, 60_000).map(lambda p: {"w": jnp.zeros(p)})
    for entry, call in dense.items():
        rows += [
            Row(entry, "memory_budget_bytes", st.integers(1, 4 * P * P * 8 - 1),
                lambda v, c=call: c(deora.loss_fn, PARAMS, BATCH, memory_budget_bytes=v),
                # both sizes in a unit that shows them (never "0.00 GiB over 0.00 GiB")
                r"needs about (?!0\.00)[\d.]+ (B|KiB|MiB|GiB) .*budget of (?!0\.00)[\d.]+ "
                r"(B|KiB|MiB|GiB).*memory_budget_bytes", errors=(spectral.DenseTooLargeError,)),
            Row(entry, "memory_budget_bytes type", st.sampled_from(["1GB", None, -1, math.nan]),
                lambda v, c=call: c(deora.loss_fn, PARAMS, BATCH, memory_budget_bytes=v)
                if v is not None else c(deora.loss_fn, PARAMS, BATCH, memory_budget_bytes="x"),
                r"memory_budget_bytes"),
            Row(entry, "params size (dense guard)", huge, lambda v, c=call: c(big_quadratic, v),
                r"dense matrix for P=[\d,]+ parameters.*method='lanczos'",
                errors=(spectral.DenseTooLargeError,)),
        ]
    # the Gauss-Newton / curvature split
    for op_name, op in (("GaussNewton", spectral.GaussNewton), ("Curvature", spectral.Curvature)):
        entry = f"spectral.lambda_min({op_name})"
        rows += [
            Row(entry, "labels", bad_labels(BATCH.y),
                lambda v, o=op: spectral.lambda_min(o(deora.phi), PARAMS, BATCH.X, v),
                r"targets must hold labels in \{-1, \+1\}"),
            Row(entry, "labels shape", st.integers(1, N - 1).map(lambda v: YN[:v]),
                lambda v, o=op: spectral.lambda_min(o(deora.phi), PARAMS, BATCH.X, v),
                r"targets have shape"),
            Row(entry, "(inputs, targets)", st.sampled_from([0, 1, 4]),
                lambda v, o=op: spectral.lambda_min(o(deora.phi), PARAMS,
                                                    *(BATCH.X, BATCH.y, BATCH.y, BATCH.y)[:v]),
                r"takes the data as \(inputs, targets\)"),
            Row(entry, "weights", st.sampled_from([-YN, np.zeros(N), YN[:3] ** 2]),
                lambda v, o=op: spectral.lambda_min(o(deora.phi), PARAMS, BATCH.X, BATCH.y, v),
                r"weights must"),
            Row(entry, "loss", text_not_in("logistic", "cross_entropy", "mse"),
                lambda v, o=op: spectral.lambda_min(o(deora.phi, loss=v), PARAMS, BATCH.X,
                                                    BATCH.y), r"loss must be one of"),
            Row(entry, "f", WRONG_TYPES,
                lambda v, o=op: spectral.lambda_min(o(v), PARAMS, BATCH.X, BATCH.y),
                rf"{op_name}\(f\): f must be callable"),
            Row(entry, "inputs NaN/Inf", poisoned(BATCH.X),
                lambda v, o=op: spectral.lambda_min(o(deora.phi), PARAMS, v[0], BATCH.y),
                r"args\[0\].* contains \d+ NaN/Inf"),
        ]
    return rows


def gd_rows() -> list[Row]:
    def gd(**kw):
        return train.gd(deora.loss_fn, PARAMS, BATCH, **{"steps": 2, "lr": 0.1, **kw})

    return [
        Row("train.gd", "steps", bad_positive_int(1), lambda v: gd(steps=v), r"steps must be"),
        Row("train.gd", "lr", bad_positive_float(), lambda v: gd(lr=v), r"\blr must be"),
        Row("train.gd", "record_steps", st.lists(st.integers(-10, 10), min_size=1).filter(
            lambda s: min(s) < 0 or max(s) > 2), lambda v: gd(record_steps=v),
            r"record_steps must lie in \[0, steps=2\]"),
        Row("train.gd", "metrics_fn", st.sampled_from(["acc", 3, [len]]),
            lambda v: gd(metrics_fn=v), r"metrics_fn must be"),
        Row("train.gd", "num_chunks", ints_at_most(0) | st.sampled_from([1.5, "2"]),
            lambda v: gd(num_chunks=v), r"num_chunks must be"),
        Row("train.gd", "*args (data)", st.just(()),
            lambda v: train.gd(deora.loss_fn, PARAMS, *v, steps=2, lr=0.1),
            r"gd needs the training data"),
    ]


def assertion_rows() -> list[Row]:
    def awc(**kw):
        return testing.assert_weakly_convex(deora.loss_fn, PARAMS, BATCH,
                                            **{"kappa": 1.0, "heads": HEADS, **kw})

    return [
        Row("testing.assert_weakly_convex", "kappa", st.floats(max_value=-1e-300) | NONFINITE
            | st.sampled_from(["1", None]), lambda v: awc(kappa=v), r"kappa must be"),
        Row("testing.assert_weakly_convex", "heads", bad_positive_int(1), lambda v: awc(heads=v),
            r"heads must be an integer >= 1"),
        Row("testing.assert_inequality", "lhs", NONFINITE.filter(math.isnan)
            | st.sampled_from(["big", None, (2.0, 1.0), (1.0, math.nan), (1.0,)]),
            lambda v: testing.assert_inequality(v, 0.0), r"\blhs\b"),
        Row("testing.assert_inequality", "rhs", st.sampled_from(
            [math.nan, "small", None, (3.0, -3.0), (1, 2, 3)]),
            lambda v: testing.assert_inequality(1.0, v), r"\brhs\b"),
        Row("testing.assert_inequality", "relation", text_not_in(">=", "<="),
            lambda v: testing.assert_inequality(1.0, 0.0, relation=v), r"relation must be"),
        Row("testing.assert_inequality", "slack", bad_non_negative_float(),
            lambda v: testing.assert_inequality(1.0, 0.0, slack=v), r"slack must be"),
        Row("deora.assert_chain", "batch type", st.sampled_from(
            [(BATCH.X, BATCH.y), None, {"X": BATCH.X, "y": BATCH.y}]),
            lambda v: deora.assert_chain(PARAMS, v), r"batch must be a mhatheory\.data\.Batch"),
        Row("deora.assert_chain", "method", text_not_in("lanczos", "exact"),
            lambda v: deora.assert_chain(PARAMS, BATCH, method=v), r"method must be"),
        Row("deora.assert_chain", "krylov", bad_positive_int(2),
            lambda v: deora.assert_chain(PARAMS, BATCH, krylov=v), r"krylov"),
    ]


def chain_rows() -> list[Row]:
    return [
        Row("deora.chain", "params NaN/Inf", poisoned(PARAMS),
            lambda v: deora.chain(v[0], BATCH), r"\b(W|U) contains \d+ NaN/Inf"),
        Row("deora.chain", "params dtype", non_float_dtype(PARAMS),
            lambda v: deora.chain(v[0], BATCH), r"\b(W|U) has dtype"),
        Row("deora.chain", "params keys", st.sampled_from(
            [{"W": PARAMS["W"]}, {**PARAMS, "b": PARAMS["U"]}, [PARAMS["W"], PARAMS["U"]]]),
            lambda v: deora.chain(v, BATCH), r"params must be a dict with exactly the keys"),
        Row("deora.chain", "batch.y labels", bad_labels(BATCH.y),
            lambda v: deora.chain(PARAMS, BATCH._replace(y=v)), r"batch\.y must hold labels"),
        Row("deora.chain", "batch.X NaN/Inf", poisoned(BATCH.X),
            lambda v: deora.chain(PARAMS, BATCH._replace(X=v[0])), r"batch\.X contains"),
        Row("deora.chain", "batch type", st.sampled_from([(BATCH.X, BATCH.y), None, "batch"]),
            lambda v: deora.chain(PARAMS, v), r"batch must be a mhatheory\.data\.Batch"),
        Row("deora.chain", "method", text_not_in("lanczos", "exact"),
            lambda v: deora.chain(PARAMS, BATCH, method=v), r"method must be"),
        Row("deora.chain", "krylov", bad_positive_int(2),
            lambda v: deora.chain(PARAMS, BATCH, krylov=v), r"krylov"),
        Row("deora.chain", "key", st.sampled_from(["abc", 1.5]),
            lambda v: deora.chain(PARAMS, BATCH, key=v), r"\bkey must be"),
        Row("deora.chain", "v0", reshaped((P,)).map(np.ones),
            lambda v: deora.chain(PARAMS, BATCH, v0=v), r"\bv0 must have P=40"),
        Row("deora.chain", "v0_N", reshaped((P,)).map(np.ones),
            lambda v: deora.chain(PARAMS, BATCH, v0_N=v), r"\bv0_N must have P=40"),
    ]


BASE = jnp.zeros((3, P))
POOL = data.Batch(jnp.concatenate([BATCH.X, BATCH.X[:2]]), jnp.concatenate([BATCH.y, BATCH.y[:2]]))
IDX = stability.replace_indices(N, [0, 1])


def stability_rows() -> list[Row]:
    def retrain(**kw):
        args = {"loss_fn": deora.loss_fn, "params0": PARAMS, "pool": POOL, "idx": IDX,
                "steps": 3, "lr": 0.1, "base_traj": BASE, **kw}
        return stability.retrain(args.pop("loss_fn"), args.pop("params0"), args.pop("pool"),
                                 args.pop("idx"), **args)

    R = {k: jnp.stack([v, v]) for k, v in PARAMS.items()}
    return [
        Row("stability.retrain", "params0 NaN/Inf", poisoned(PARAMS),
            lambda v: retrain(params0=v[0]), lambda v: re.escape("params0" + v[1])),
        Row("stability.retrain", "pool NaN/Inf", poisoned(POOL.X),
            lambda v: retrain(pool=POOL._replace(X=v[0])), r"pool\.X contains"),
        Row("stability.retrain", "pool labels", bad_labels(POOL.y),
            lambda v: retrain(pool=POOL._replace(y=v)), r"(pool|batch)\.y must hold labels"),
        Row("stability.retrain", "idx out of range", st.sampled_from([N + 2, 99, -1, -9]).map(
            lambda i: np.where(np.arange(N) == 0, i, IDX)), lambda v: retrain(idx=v),
            r"idx must index the pool's 8 samples"),
        Row("stability.retrain", "idx shape/dtype", st.sampled_from(
            [IDX[0], IDX.astype(float) + 0.5, IDX[None], np.zeros((0, 3), int)]),
            lambda v: retrain(idx=v), r"\bidx must be"),
        Row("stability.retrain", "idx of no samples", st.sampled_from(
            [np.zeros((1, 0), int), np.zeros((2, 0), int)]),
            lambda v: retrain(idx=v), r"gives each retraining no samples .* n >= 2"),
        Row("stability.retrain", "steps", bad_positive_int(1), lambda v: retrain(steps=v),
            r"steps must be"),
        *[Row(f"stability.{f.__name__}", "which", st.sampled_from(
              [[N], [N + 5], [-1], [1.7], [True], [0, 1, 0]]),
              lambda v, f=f: f(N, v), r"\bwhich (names samples|must be integer indices)")
          for f in (stability.loo_indices, stability.replace_indices)],
        *[Row("stability.smooth_bound", name, st.sampled_from([-1.0, math.nan, math.inf]),
              lambda v, name=name: stability.smooth_bound(**{**{"beta": 1.0, "train_loss": 0.1,
                                                                 "eps2": 0.01}, name: v}),
              rf"\b{name} must be")
          for name in ("beta", "train_loss", "eps2")],
        Row("stability.retrain", "loss with a fixed batch size", st.just(None),
            lambda v: retrain(loss_fn=lambda p, b: deora.loss_fn(
                p, jax.tree.map(lambda a: a.reshape((N,) + a.shape[1:]), b)),
                pool=BATCH, idx=stability.loo_indices(N, [0, 1])),
            r"on one retraining's data \(\d+ of the pool's \d+ samples\).*\. A loss must take "
            r"any number of samples \(no fixed batch size"),
        Row("stability.loo_indices", "n", st.sampled_from([1, 0, 2.0]),
            lambda v: stability.loo_indices(v, [0]), r"\bn must be an integer >= 2"),
        Row("stability.retrain", "lr", bad_positive_float(), lambda v: retrain(lr=v),
            r"\blr must be"),
        Row("stability.retrain", "chunk", bad_positive_int(1), lambda v: retrain(chunk=v),
            r"chunk must be"),
        Row("stability.retrain", "base_traj shape", reshaped((3, P)).map(jnp.zeros),
            lambda v: retrain(base_traj=v), r"base_traj must have shape \[3, 40\]"),
        Row("stability.retrain", "base_traj NaN/Inf", poisoned(BASE),
            lambda v: retrain(base_traj=v[0]), r"base_traj contains"),
        Row("stability.retrain", "devices", st.sampled_from([[], ()]),
            lambda v: retrain(devices=v), r"devices must"),
        Row("stability.model_stability", "retrained_params NaN/Inf", poisoned(R),
            lambda v: stability.model_stability(PARAMS, v[0]),
            lambda v: re.escape("retrained_params" + v[1])),
        Row("stability.model_stability", "theta_K NaN/Inf", poisoned(PARAMS),
            lambda v: stability.model_stability(v[0], R), lambda v: re.escape("theta_K" + v[1])),
        Row("stability.model_stability", "retrained_params shape", st.sampled_from(
            [PARAMS, {"W": R["W"]}, {**R, "U": R["U"][..., :2]}, {k: v[:0] for k, v in R.items()}]),
            lambda v: stability.model_stability(PARAMS, v), r"retrained_params"),
    ]


def data_rows() -> list[Row]:
    ok = dict(d=6, T=3, n=4, zeta=0.5, num_irrelevant=2, sigma=0.1, scale=1.0)
    bad = {"d": bad_positive_int(1) | st.integers(1, 3), "T": bad_positive_int(2),
           "n": bad_positive_int(1), "zeta": st.floats(1.0, exclude_min=True)
           | st.floats(max_value=0.0, exclude_max=True) | NONFINITE | st.sampled_from([None, "x"]),
           "num_irrelevant": bad_positive_int(1), "sigma": bad_positive_float(),
           "scale": bad_positive_float()}
    rows = [Row("data.MixtureConfig", name, values,
                lambda v, name=name: data.MixtureConfig(**{**ok, name: v}), rf"\b{name}\b")
            for name, values in bad.items()]
    cfg = data.MixtureConfig(**ok)
    return rows + [
        Row("data.sample", "n", bad_positive_int(1),
            lambda v: data.sample(cfg, KEY, v), r"\bn must be"),
        Row("data.sample", "config", WRONG_TYPES | st.just(ok),
            lambda v: data.sample(v, KEY), r"config must be a (mhatheory\.data\.)?MixtureConfig"),
        Row("data.sample", "key", st.sampled_from([None, "abc", 1.5, [0, 1]]),
            lambda v: data.sample(cfg, v), r"\bkey must be"),
    ]


MODEL = DeoraMHA.from_arrays(PARAMS["W"], PARAMS["U"])


def model_rows() -> list[Row]:
    return [
        Row("deora.init_params", "d", bad_positive_int(1),
            lambda v: deora.init_params(KEY, v, 2), r"\bd must be"),
        Row("deora.init_params", "num_heads", bad_positive_int(1),
            lambda v: deora.init_params(KEY, 4, v), r"num_heads must be"),
        Row("deora.init_params", "init_scale", bad_positive_float(),
            lambda v: deora.init_params(KEY, 4, 2, v), r"init_scale must be"),
        Row("deora.init_params", "dtype", st.sampled_from([jnp.int32, bool, jnp.complex64, "x"]),
            lambda v: deora.init_params(KEY, 4, 2, dtype=v), r"dtype must be a floating"),
        Row("deora.init_params", "key", st.sampled_from([None, "abc", 1.5]),
            lambda v: deora.init_params(v, 4, 2), r"\bkey must be"),
        Row("deora.phi", "params NaN/Inf", poisoned(PARAMS),
            lambda v: deora.phi(v[0], BATCH.X), r"\b(W|U) contains"),
        Row("deora.phi", "params keys", st.sampled_from([{"W": PARAMS["W"]}, None, [1.0]]),
            lambda v: deora.phi(v, BATCH.X), r"params must be a dict"),
        Row("deora.phi", "X shape", wrong_shape(BATCH.X.shape).filter(
            lambda x: x.ndim < 2 or x.shape[-1] != D or x.shape[-2] < 2),
            lambda v: deora.phi(PARAMS, v), r"\bX must"),
        Row("deora.phi", "X NaN/Inf", poisoned(BATCH.X),
            lambda v: deora.phi(PARAMS, v[0]), r"\bX contains"),
        Row("deora.loss_fn", "batch type", st.sampled_from([(BATCH.X, BATCH.y), None, {}]),
            lambda v: deora.loss_fn(PARAMS, v), r"batch a mhatheory\.data\.Batch"),
        Row("deora.loss_fn", "params dtype", non_float_dtype(PARAMS),
            lambda v: deora.loss_fn(v[0], BATCH), r"\b(W|U) has dtype"),
        Row("deora.loss_fn", "batch.y labels", bad_labels(BATCH.y),
            lambda v: deora.loss_fn(PARAMS, BATCH._replace(y=v)), r"batch\.y must hold labels"),
        Row("deora.loss_fn", "batch.w", st.sampled_from([jnp.ones(N - 1), jnp.full(N, jnp.nan)]),
            lambda v: deora.loss_fn(PARAMS, BATCH._replace(w=v)), r"batch\.w"),
        Row("models.DeoraMHA", "d", bad_positive_int(1),
            lambda v: DeoraMHA(v, 2, rngs=RNGS), r"\bd must be"),
        Row("models.DeoraMHA", "num_heads", bad_positive_int(1),
            lambda v: DeoraMHA(4, v, rngs=RNGS), r"num_heads must be"),
        Row("models.DeoraMHA", "init_scale", bad_positive_float(),
            lambda v: DeoraMHA(4, 2, init_scale=v, rngs=RNGS), r"init_scale must be"),
        Row("models.DeoraMHA", "rngs", st.sampled_from([None, 0, "seed"]),
            lambda v: DeoraMHA(4, 2, rngs=v), r"rngs must be"),
        Row("models.DeoraMHA", "dtype", st.sampled_from([jnp.int32, bool]),
            lambda v: DeoraMHA(4, 2, rngs=RNGS, dtype=v), r"dtype must be a floating"),
        Row("models.DeoraMHA.__call__", "X shape", wrong_shape(BATCH.X.shape).filter(
            lambda x: x.ndim < 2 or x.shape[-1] != D or x.shape[-2] < 2),
            lambda v: MODEL(v), r"\bX must"),
        Row("models.DeoraMHA.__call__", "X NaN/Inf", poisoned(BATCH.X),
            lambda v: MODEL(v[0]), r"\bX contains"),
        Row("models.DeoraMHA.from_arrays", "W, U", poisoned(PARAMS),
            lambda v: DeoraMHA.from_arrays(v[0]["W"], v[0]["U"]), r"\b(W|U) contains"),
        Row("models.DeoraMHA.from_arrays", "U shape", wrong_shape((HEADS, D)),
            lambda v: DeoraMHA.from_arrays(PARAMS["W"], v), r"\bU must have shape"),
    ]


VOCAB = 13
DECODER = DecoderTransformer(VOCAB, 8, 2, 1, max_len=6, rngs=nnx.Rngs(0))
TOKENS = np.arange(5)


def _decoder(**kw):
    args = {"vocab_size": VOCAB, "d_model": 8, "num_heads": 2, "num_layers": 1, "rngs": RNGS,
            **kw}
    return DecoderTransformer(args.pop("vocab_size"), args.pop("d_model"),
                              args.pop("num_heads"), args.pop("num_layers"), **args)


def transformer_rows() -> list[Row]:
    rows = [Row("models.DecoderTransformer", name, bad_positive_int(1),
                lambda v, name=name: _decoder(**{name: v}), rf"\b{name} must be")
            for name in ("vocab_size", "d_model", "num_heads", "num_layers", "max_len", "d_ff")]
    return rows + [
        Row("models.DecoderTransformer", "d_model % num_heads", st.sampled_from([(6, 4), (9, 2),
                                                                                (5, 3)]),
            lambda v: _decoder(d_model=v[0], num_heads=v[1]),
            r"d_model=\d+ is not divisible by num_heads"),
        Row("models.DecoderTransformer", "positional", text_not_in(*DecoderTransformer.__init__
                                                                   .__globals__["POSITIONAL"]),
            lambda v: _decoder(positional=v), r"positional must be one of"),
        Row("models.DecoderTransformer", "residual", st.sampled_from(
            ["sideways", "off:5", "off:x", (True, False, True), 3]),
            lambda v: _decoder(residual=v), r"residual"),
        Row("models.DecoderTransformer", "activation", text_not_in("relu", "gelu"),
            lambda v: _decoder(activation=v), r"activation must be"),
        Row("models.DecoderTransformer", "rngs", st.sampled_from([None, 0]),
            lambda v: _decoder(rngs=v), r"rngs must be"),
        Row("models.DecoderTransformer.__call__", "tokens range", (
            st.integers(VOCAB, 10**6) | st.integers(-10**6, -1)).map(
                lambda v: jnp.asarray(np.where(TOKENS == 2, v, TOKENS))),
            lambda v: DECODER(v), r"tokens must lie in \[0, vocab_size=13\)"),
        Row("models.DecoderTransformer.__call__", "tokens dtype", st.sampled_from(
            [np.float32, np.float64, bool]).map(lambda dt: jnp.asarray(TOKENS.astype(dt))),
            lambda v: DECODER(v), r"tokens must be integers"),
        Row("models.DecoderTransformer.__call__", "tokens length", st.integers(7, 40).map(
            lambda v: jnp.asarray(np.zeros(v, int))), lambda v: DECODER(v),
            r"tokens.*max_len=6"),
        Row("models.DecoderTransformer.__call__", "tokens shape", st.just(jnp.asarray(3)),
            lambda v: DECODER(v), r"tokens must have shape"),
        Row("models.DecoderTransformer.__call__", "valid shape", reshaped((5,)).map(
            lambda s: jnp.asarray(np.ones(s, bool))),
            lambda v: DECODER(jnp.asarray(TOKENS), valid=v), r"valid must have shape"),
    ]


Q = jnp.asarray(_rng.standard_normal((2, 5, 4)))
K = jnp.asarray(_rng.standard_normal((2, 6, 4)))
V = jnp.asarray(_rng.standard_normal((2, 6, 3)))
MHA = attention.MultiHeadAttention(8, 2, rngs=nnx.Rngs(0))
X8 = jnp.asarray(np.ones((5, 8)))


def attention_rows() -> list[Row]:
    sdpa, weights = attention.scaled_dot_product_attention, attention.attention_weights
    rows = []
    for entry, f in (("attention.scaled_dot_product_attention", lambda q, k, m=None: sdpa(
            q, k, V, mask=m)),
            ("attention.attention_weights", lambda q, k, m=None: weights(q, k, mask=m))):
        rows += [
            Row(entry, "q feature size", reshaped((4,)).filter(lambda s: len(s) == 1).map(
                lambda s: jnp.asarray(np.ones((2, 5) + s))), lambda v, f=f: f(v, K),
                r"query feature size \d+ != key feature size 4"),
            Row(entry, "q rank", st.sampled_from([jnp.asarray(np.ones(4)), jnp.asarray(1.0)]),
                lambda v, f=f: f(v, K), r"\bq must have shape \[\.\.\., Tq, dk\]"),
            Row(entry, "q type", st.sampled_from([None, "q", [[1.0]]]),
                lambda v, f=f: f(v, K), r"\bq must be"),
            Row(entry, "mask shape", reshaped((5, 6)).filter(lambda s: len(s) >= 2 and (
                s[-2:] != (5, 6)) and s[-1] != 1 and s[-2] != 1).map(lambda s: np.ones(s, bool)),
                lambda v, f=f: f(Q, K, v), r"mask of shape .* does not broadcast"),
            Row(entry, "mask dtype", st.sampled_from([np.float32, np.float64]).map(
                lambda dt: np.where(np.tril(np.ones((5, 6))), 0.0, -np.inf).astype(dt)),
                lambda v, f=f: f(Q, K, v), r"mask must be boolean.*bias="),
            Row(entry, "q/k NaN/Inf", poisoned((Q, K)), lambda v, f=f: f(*v[0]),
                r"\b(q|k) contains \d+ NaN/Inf"),
        ]
    rows += [
        Row("attention.scaled_dot_product_attention", "v length", st.integers(1, 9).filter(
            lambda n: n != 6).map(lambda n: jnp.asarray(np.ones((2, n, 3)))),
            lambda v: sdpa(Q, K, v),
            r"keys and values must have the same length"),
        Row("attention.MultiHeadAttention", "d_model", bad_positive_int(1),
            lambda v: attention.MultiHeadAttention(v, 2, rngs=RNGS), r"d_model must be"),
        Row("attention.MultiHeadAttention", "num_heads", bad_positive_int(1),
            lambda v: attention.MultiHeadAttention(8, v, rngs=RNGS), r"num_heads must be"),
        Row("attention.MultiHeadAttention", "d_model % num_heads", st.sampled_from([3, 5, 7]),
            lambda v: attention.MultiHeadAttention(8, v, rngs=RNGS),
            r"d_model=8 is not divisible by num_heads"),
        Row("attention.MultiHeadAttention", "rngs", st.sampled_from([None, 0]),
            lambda v: attention.MultiHeadAttention(8, 2, rngs=v), r"rngs must be"),
        Row("attention.MultiHeadAttention.__call__", "x feature size", st.integers(1, 12).filter(
            lambda n: n != 8).map(lambda n: jnp.asarray(np.ones((5, n)))), lambda v: MHA(v),
            r"feature size \d+, expected"),
        Row("attention.MultiHeadAttention.__call__", "x rank", st.just(jnp.asarray(np.ones(8))),
            lambda v: MHA(v), r"\bx must have shape"),
        Row("attention.MultiHeadAttention.__call__", "x NaN/Inf", poisoned(X8),
            lambda v: MHA(v[0]), r"\bx contains"),
        Row("attention.MultiHeadAttention.__call__", "mask shape", st.sampled_from(
            [(4, 5), (5, 4), (2, 3, 7)]), lambda v: MHA(X8, mask=np.ones(v, bool)),
            r"mask of shape"),
    ]
    return rows


def _ident(tokens):
    return jnp.asarray(tokens, float)[:, None]


SYMMETRY = {"symmetry.last_position_invariance": (symmetry.last_position_invariance, 3),
            "symmetry.earlier_position_deviation": (symmetry.earlier_position_deviation, 3),
            "symmetry.equivariance": (symmetry.equivariance, 2),
            "symmetry.moving_last_deviation": (symmetry.moving_last_deviation, 2)}


def symmetry_rows() -> list[Row]:
    rows = []
    toks, nine = jnp.asarray(np.arange(5)), jnp.asarray(np.arange(9))
    for entry, (f, min_len) in SYMMETRY.items():
        rows += [
            Row(entry, "fn", WRONG_TYPES, lambda v, f=f: f(v, toks), r"\bfn must be callable"),
            Row(entry, "tokens length", st.integers(0, min_len - 1).map(
                lambda v: jnp.asarray(np.arange(v))),
                lambda v, f=f: f(_ident, v), rf"tokens must hold at least {min_len}"),
            Row(entry, "tokens rank", st.sampled_from([jnp.asarray(np.ones((3, 4))),
                                                       jnp.asarray(2)]),
                lambda v, f=f: f(_ident, v), r"tokens must be one sequence"),
            Row(entry, "num_random", bad_positive_int(1),
                lambda v, f=f: f(_ident, nine, num_random=v), r"num_random must be"),
            Row(entry, "key", st.sampled_from(["abc", 1.5]),
                lambda v, f=f: f(_ident, nine, key=v), r"\bkey must be"),
            Row(entry, "fn output", st.sampled_from([jnp.sum, lambda t: t[:-1], lambda t: t[0]]),
                lambda v, f=f: f(v, nine), r"fn must map tokens \[T\] to outputs \[T, \.\.\.\]"),
        ]
    return rows + [
        Row("symmetry.last_position_invariance", "position", st.integers(5, 100)
            | st.integers(-100, -5) | st.sampled_from([0, 1, -4, 1.5]),
            lambda v: symmetry.last_position_invariance(_ident, toks, position=v),
            r"position must"),
        Row("symmetry.permutations", "n_free", ints_at_most(-1) | NOT_INTS,
            lambda v: symmetry.permutations(v), r"n_free must be"),
        Row("symmetry.permutations", "max_exhaustive", ints_at_most(-1),
            lambda v: symmetry.permutations(3, max_exhaustive=v), r"max_exhaustive must be"),
    ]


def addition_rows() -> list[Row]:
    return [
        Row("tasks.addition.exact_match_ceiling", "lo", ints_at_most(-1) | st.integers(1000, 10**9)
            | st.sampled_from([1.5, "0", None]),
            lambda v: addition.exact_match_ceiling(lo=v, hi=999), r"\blo\b"),
        Row("tasks.addition.exact_match_ceiling", "hi", ints_at_most(-1) | st.integers(1000, 10**9)
            | st.sampled_from([99.5, "999", None]),
            lambda v: addition.exact_match_ceiling(lo=0, hi=v), r"\bhi\b"),
        Row("tasks.addition.exact_match_ceiling", "lo > hi", st.tuples(
            st.integers(1, 999), st.integers(0, 998)).filter(lambda t: t[0] > t[1]),
            lambda v: addition.exact_match_ceiling(*v), r"lo <= hi"),
        Row("tasks.addition.exact_match_ceiling", "reverse_answer", st.sampled_from(
            ["yes", None, 2]), lambda v: addition.exact_match_ceiling(0, 9, v),
            r"reverse_answer must be"),
        Row("tasks.addition.split", "num_train", bad_positive_int(1),
            lambda v: addition.split(v, 10), r"num_train must be"),
        Row("tasks.addition.split", "num_test", bad_positive_int(1),
            lambda v: addition.split(10, v), r"num_test must be"),
        Row("tasks.addition.split", "sizes", st.integers(101, 10**6),
            lambda v: addition.split(v, 10, lo=0, hi=9), r"exceeds the 100 distinct problems"),
    ]


LIBRARY = (loss_rows() + option_rows() + gd_rows() + assertion_rows() + chain_rows()
           + stability_rows() + data_rows() + model_rows() + transformer_rows()
           + attention_rows() + symmetry_rows() + addition_rows())


@pytest.mark.parametrize("row", LIBRARY, ids=lambda r: r.id)
@CAMPAIGN
@given(data=st.data())
def test_a_bad_input_gets_a_clear_error_before_any_work(row, data):
    expect_clear_error(row, data.draw(row.values, label=row.arg))


# --- the CLI -------------------------------------------------------------------------------------


class WorkStarted(AssertionError):
    pass


def _no_work(*args, **kwargs):
    raise WorkStarted("the command started work although its input was bad")


#: one parser for the whole campaign: building it is ~15 ms of argparse per call (over a thousand
#: calls), and parsing leaves it unchanged, so every row still parses with ``build_parser()``'s
#: parser
_PARSER = functools.cache(cli.build_parser)


def run_cli(argv: list[str]) -> tuple[int, str]:
    """``mhatheory *argv`` with every heavy function replaced by :func:`_no_work`; returns the
    exit status and stderr."""
    from mhatheory import verify

    err = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli, "build_parser", _PARSER)
        for name in experiments.EXPERIMENTS:
            mp.setattr(experiments.load(name), "run", _no_work)
        mp.setattr(verify, "run_checks", _no_work)
        mp.setattr(train, "gd", _no_work)
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = cli.main(argv)
            except SystemExit as exc:
                code = exc.code
    return code, err.getvalue()


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


@dataclasses.dataclass(frozen=True)
class CliRow:
    """``mhatheory *argv(value, out)`` must exit with status 2 naming ``flag`` on stderr."""

    command: str
    flag: str
    values: st.SearchStrategy
    argv: Callable       # (value, out) -> argv
    match: str | None = None

    @property
    def id(self) -> str:
        return f"mhatheory {self.command}[{self.flag}]"


def _flag_pattern(flag: str) -> str:
    return re.escape(flag) + r"(?![\w-])"


MALFORMED = {
    int: st.sampled_from(["two", "1.5", "", "1e3", "0x10", "4 heads", "½"]),
    float: st.sampled_from(["abc", "", "1,2", "one", "1..2", "0.1x"]),
    str: st.nothing(),
    bool: st.sampled_from(["yes", "no", "1", "false"]),
}
MALFORMED_LISTS = {
    int: st.sampled_from([",", "1,x", "1;2", "1.5,2", "a,b", " ", "1,2.0", "1,,2", "1,"]),
    float: st.sampled_from([",", "1,abc", "1;2", "x", " , ", "1,,2"]),
    str: st.sampled_from([",", " , ", " ", "a,,b"]),
}


SMALL_INTS = st.integers(1, 8)


def _grid(bad, good=SMALL_INTS):
    """A comma list with at least one bad entry."""
    return st.tuples(st.lists(good, max_size=3), bad, st.lists(good, max_size=3)).map(
        lambda t: ",".join(map(str, [*t[0], t[1], *t[2]])))


def _nonpositive_floats():
    return (st.floats(max_value=0.0, allow_nan=False) | NONFINITE).map(repr)


def _words_not_in(*allowed):
    return st.text(string.ascii_lowercase + "-:", min_size=1, max_size=10).filter(
        lambda s: s not in allowed and not s.startswith(("-", "off:")))


#: Out-of-range values for every config field of every experiment (as typed on the command
#: line). Each value is bad for every experiment that has the field.
RANGES = {
    "d": ints_at_most(5).map(str),                       # d >= num_irrelevant + 2 = 6
    "T": ints_at_most(1).map(str),
    "zeta": (st.floats(1.0, exclude_min=True) | st.floats(max_value=0.0, exclude_max=True)
             | NONFINITE).map(repr),
    "num_irrelevant": ints_at_most(0).map(str),
    "sigma": _nonpositive_floats(),
    "scale": _nonpositive_floats(),
    "init_scale": _nonpositive_floats(),
    "lr": _nonpositive_floats(),
    "num_test": ints_at_most(0).map(str),
    "seed": ints_at_most(-1).map(str),
    "heads": ints_at_most(0).map(str),
    "n": ints_at_most(0).map(str),
    "steps": ints_at_most(0).map(str),
    "krylov": ints_at_most(1).map(str),
    "num_probes": ints_at_most(0).map(str),
    "trace_samples": ints_at_most(1).map(str),
    "dense_max_params": ints_at_most(-1).map(str),
    "exact_max_params": ints_at_most(-1).map(str),
    "heads_grid": _grid(ints_at_most(0)) | st.just(""),
    "seeds": ints_at_most(0).map(str),
    "convergence_heads": ints_at_most(0).map(str),
    "convergence_steps": ints_at_most(0).map(str),
    "fit_min_heads": ints_at_most(0).map(str),
    "task": _words_not_in("reverse", "copy"),
    "length": ints_at_most(1).map(str),
    "vocab": ints_at_most(3).map(str),
    "d_model": ints_at_most(0).map(str),
    "layers": ints_at_most(0).map(str),
    "train_pool": ints_at_most(0).map(str),
    "batch": ints_at_most(0).map(str),
    "warmup": ints_at_most(-1).map(str),
    "eval_every": ints_at_most(0).map(str),
    "causal_grid": _grid(_words_not_in("causal", "noncausal"), st.just("causal")),
    "positional_grid": _grid(_words_not_in("none", "sinusoidal", "learned", "relative"),
                             st.just("none")),
    "residual_grid": _grid(_words_not_in("all", "none", "attention-only", "mlp-only", "off:0",
                                         "off:1"), st.just("all")),
    "num_train": ints_at_most(0).map(str),
    "lo": ints_at_most(-1).map(str),
    "hi": (ints_at_most(-1) | st.integers(1000, 10**9)).map(str),
    "weight_decay": (st.floats(max_value=-1e-300, allow_nan=False) | NONFINITE).map(repr),
    "checkpoint_every": ints_at_most(0).map(str),
    "n_grid": _grid(ints_at_most(1), st.integers(2, 64)) | st.just(""),
    "steps_grid": _grid(ints_at_most(0)) | st.just(""),
    "subset": ints_at_most(0).map(str),
    "chunk": ints_at_most(0).map(str),
    "influence_samples": ints_at_most(0).map(str),
    "lr_grid": _grid(_nonpositive_floats(), st.just("16.0")) | st.just(""),
    "init_scale_grid": _grid(_nonpositive_floats(), st.just("3.0")) | st.just(""),
    "replace": ints_at_most(0).map(str),
    "probe_seeds": ints_at_most(-1).map(str),
    "const_test": ints_at_most(0).map(str),
    "bayes_samples": ints_at_most(0).map(str),
    "layers_grid": _grid(ints_at_most(0)) | st.just(""),
    "scaling_grid": _grid(_words_not_in("fixed_d_model", "fixed_head_dim"),
                          st.just("fixed_d_model")),
    "head_dim": ints_at_most(0).map(str),
    "probe_batch": ints_at_most(0).map(str),
    "early_step": ints_at_most(0).map(str),
    "tol": _nonpositive_floats(),
    "max_restarts": ints_at_most(-1).map(str),
    "num_val": ints_at_most(1).map(str),
    "record_points": ints_at_most(1).map(str),
    "delta": _nonpositive_floats(),
    "loss_targets": (_grid(_nonpositive_floats(), st.just("0.3")) | st.just("")
                     | st.sampled_from(["0.1,0.3", "0.3,0.3"])),
    "loss_levels": (_grid(_nonpositive_floats(), st.just("0.3")) | st.just("")
                    | st.sampled_from(["0.1,0.3", "0.3,0.3"])),
    "tasks": _grid(_words_not_in("addition", "digits"), st.just("addition")),
    "fixed_head_dim_heads_grid": _grid(ints_at_most(0)) | st.just(""),
    "late_probe_batches": _grid(ints_at_most(0), st.just("32")) | st.just(""),
    "max_steps": ints_at_most(0).map(str),
    "target_accuracy": (st.floats(max_value=0.0) | st.floats(1.0, exclude_min=True)
                        | NONFINITE).map(repr),
    "target_loss": _nonpositive_floats(),
    "alpha": (st.floats(1.0) | st.floats(max_value=0.0) | NONFINITE).map(repr),
    "width": (ints_at_most(-1) | st.sampled_from([3, 5, 7])).map(str),
    "primary_lrs": _grid(_nonpositive_floats(), st.just("4.0")) | st.just(""),
    "primary_inits": _grid(_nonpositive_floats(), st.just("0.3")) | st.just(""),
    "optimizer": _words_not_in("gd", "adam"),
    "digits_pair": st.sampled_from(["3", "3,3", "3,10", "1,2,3", "-1,2"]),
    # a built-in name that does not exist, a module that does not import, a name that is not
    # callable, and the user data the contract refuses (NaN, sample counts that differ, no
    # test set, labels that fit neither loss) or a family whose output does not fit the labels
    "model": st.sampled_from(["nothing", "no_such_module_xyz:make", "json:NOT_THERE",
                              "test_heads_families:NOT_CALLABLE",
                              "test_heads_families:make_column"]),
    "data": st.sampled_from(["nothing", "no_such_module_xyz:load",
                             "test_heads_families:nan_data",
                             "test_heads_families:mismatched_data",
                             "test_heads_families:no_test_data",
                             "test_heads_families:bad_label_data",
                             "test_heads_families:classes_data"]),
}
#: Boolean switches: only malformed values can be wrong.
SWITCHES = {"noncausal_residual_ablation", "reverse_answer", "full_product", "head_blocks",
            "layer_blocks", "average_control"}


def _fields(name):
    config = experiments.load(name).Config
    hints = typing.get_type_hints(config)
    for f in dataclasses.fields(config):
        hint = hints[f.name]
        if typing.get_origin(hint) is tuple:
            yield f.name, tuple, typing.get_args(hint)[0]
        else:
            yield f.name, type(f.default), None


def cli_rows() -> list[CliRow]:
    rows = []
    for name in experiments.EXPERIMENTS:
        defaults = experiments.load(name).Config()
        for field, kind, item in _fields(name):
            flag = cli._flag(field)
            if field in RANGES:
                rows.append(CliRow(f"run {name}", flag, RANGES[field],
                                   lambda v, out, n=name, fl=flag: ["run", n, f"{fl}={v}",
                                                                    "--out", out]))
            malformed = MALFORMED_LISTS[item] if kind is tuple else MALFORMED[kind]
            if kind is bool:
                rows.append(CliRow(f"run {name}", flag + " (malformed)", malformed,
                                   lambda v, out, n=name, fl=flag: ["run", n, f"{fl}={v}",
                                                                    "--out", out],
                                   _flag_pattern(flag) + ".*ignored explicit argument"))
            elif kind is not str:
                rows.append(CliRow(f"run {name}", flag + " (malformed)", malformed,
                                   lambda v, out, n=name, fl=flag: ["run", n, f"{fl}={v}",
                                                                    "--out", out],
                                   "argument " + _flag_pattern(flag)))
            if field.endswith("_grid") and kind is tuple:
                default = getattr(defaults, field)
                repeated = ",".join(map(str, (*default, default[0])))
                rows.append(CliRow(f"run {name}", flag + " (a value twice)", st.just(repeated),
                                   lambda v, out, n=name, fl=flag: ["run", n, f"{fl}={v}",
                                                                    "--out", out],
                                   _flag_pattern(flag) + ".* more than once"))
        for where in ("a file", "a path under a file"):
            rows.append(CliRow(f"run {name}", f"--out ({where})", st.just(where),
                               lambda v, out, n=name: ["run", n, "--out", out]))
        rows.append(CliRow(f"run {name}", "--out (empty)", st.sampled_from(["", " "]),
                           lambda v, out, n=name: ["run", n, "--out", v]))
        rows.append(CliRow(f"run {name}", "--out (missing)", st.just(None),
                           lambda v, out, n=name: ["run", n], r"required: --out"))
        rows.append(CliRow(f"run {name}", "unknown flag", _words_not_in().map(
            lambda s: "--zz" + s.replace(":", "")), lambda v, out, n=name: ["run", n, v, "3",
                                                                         "--out", out],
            r"unrecognized arguments: --zz"))
    rows += [
        # the dense memory guard: a threshold that would materialise a huge Hessian
        CliRow("run spectrum", "--dense-max-params (dense guard)", st.integers(5 * 10**6, 10**12),
               lambda v, out: ["run", "spectrum", "--heads", "64", "--d", "256",
                               f"--dense-max-params={v}", "--out", out],
               r"--dense-max-params.*GiB"),
        CliRow("run spectrum", "--num-probes (SLQ needs two)", st.integers(-5, 1).map(str),
               lambda v, out: ["run", "spectrum", f"--num-probes={v}", "--out", out]),
        CliRow("run weak-convexity", "--exact-max-params (dense guard)",
               st.integers(10**7, 10**12), lambda v, out: [
                   "run", "weak-convexity", "--heads-grid", "1,512", "--d", "64",
                   f"--exact-max-params={v}", "--out", out], r"--exact-max-params.*GiB"),
        CliRow("run seq2seq", "--d-model % --heads", st.sampled_from([(10, 4), (9, 2)]),
               lambda v, out: ["run", "seq2seq", f"--d-model={v[0]}", f"--heads={v[1]}",
                               "--out", out], r"--d-model"),
        CliRow("run seq2seq", "--warmup >= --steps", st.integers(10, 10**6),
               lambda v, out: ["run", "seq2seq", "--steps", "10", f"--warmup={v}", "--out", out]),
        CliRow("run symmetry", "--lo > --hi", st.tuples(st.integers(1, 999), st.integers(0, 998))
               .filter(lambda t: t[0] > t[1]),
               lambda v, out: ["run", "symmetry", f"--lo={v[0]}", f"--hi={v[1]}", "--out", out],
               r"--lo"),
        CliRow("run symmetry", "--num-train + --num-test", st.integers(91, 10**6),
               lambda v, out: ["run", "symmetry", "--lo", "0", "--hi", "9", f"--num-train={v}",
                               "--num-test", "10", "--out", out], r"--num-train"),
        CliRow("run", "EXPERIMENT", _words_not_in(*experiments.EXPERIMENTS),
               lambda v, out: ["run", v, "--out", out], r"invalid choice"),
        CliRow("run", "EXPERIMENT (missing)", st.just(None), lambda v, out: ["run"],
               r"required: experiment"),
        CliRow("verify", "--only", _words_not_in(), lambda v, out: ["verify", "--only", v,
                                                                    "--out", out],
               r"argument --only: invalid choice"),
        CliRow("verify", "--out (a file)", st.just("a file"),
               lambda v, out: ["verify", "--only", "model", "--out", out]),
        CliRow("verify", "--out (a path under a file)", st.just("a path under a file"),
               lambda v, out: ["verify", "--out", out]),
        CliRow("verify", "--out (empty)", st.sampled_from(["", " "]),
               lambda v, out: ["verify", "--out", v]),
        CliRow("info", "extra arguments", st.sampled_from([["--out", "x"], ["now"], ["--full"]]),
               lambda v, out: ["info", *v], r"unrecognized arguments"),
        CliRow("mhatheory", "COMMAND", _words_not_in("run", "verify", "info"),
               lambda v, out: [v], r"invalid choice"),
    ]
    return rows


CLI = cli_rows()


@pytest.mark.parametrize("row", CLI, ids=lambda r: r.id)
@CAMPAIGN
@given(data=st.data())
def test_a_bad_command_line_exits_2_naming_the_flag_before_any_work(row, data):
    value = data.draw(row.values, label=row.flag)
    existing = data.draw(st.booleans(), label="--out holds an earlier results.json")
    TRIED[row.id] += 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        out = root / "out"
        if "(a file)" in row.flag or "a path under a file" in row.flag:
            (root / "taken").write_text("precious")
            out = root / "taken" if "(a file)" in row.flag else root / "taken" / "sub"
        elif existing:
            out.mkdir()
            (out / "results.json").write_text('{"experiment": "earlier", "records": [1, 2]}\n')
        before = _snapshot(root)
        with no_compilation():
            code, err = run_cli(row.argv(value, str(out)))
        assert code == 2, f"{row.id}: exit status {code}; stderr: {err!r}"
        pattern = row.match or _flag_pattern(row.flag.split(" ")[0])
        assert re.search(pattern, err), f"{row.id}: stderr {err!r} does not match {pattern!r}"
        assert "Traceback" not in err
        assert _snapshot(root) == before, f"{row.id}: files changed in {root}"
    ANSWERED[row.id] += 1


def test_the_watchers_see_work():
    """Controls: the compile watcher catches a compilation, and a good command line reaches the
    experiment's (replaced) ``run``, so a row that passes really stopped before any work."""
    with pytest.raises(AssertionError, match="work started before the error"):
        with no_compilation():
            jax.jit(lambda x: x * 3.0 + 1.0)(jax.device_put(np.ones(7)))
    for name in experiments.EXPERIMENTS:
        with tempfile.TemporaryDirectory() as tmp, pytest.raises(WorkStarted):
            run_cli(["run", name, "--out", tmp, "--no-progress"])
    with tempfile.TemporaryDirectory() as tmp, pytest.raises(WorkStarted):
        run_cli(["verify", "--only", "model", "--out", tmp])


def test_every_config_field_of_every_experiment_has_bad_values_in_the_table():
    for name in experiments.EXPERIMENTS:
        for field, _, _ in _fields(name):
            assert field in RANGES or field in SWITCHES, (
                f"mhatheory run {name} {cli._flag(field)}: add its out-of-range values to "
                "RANGES in tests/test_robustness.py")


def test_the_campaign_answered_every_bad_input(request):
    """The tally: every row of the table that was collected ran, and every bad input it tried
    was answered by a clear error before any work (printed at the end of the session)."""
    ids = {item.callspec.params["row"].id for item in request.session.items
           if getattr(item, "module", None) is sys.modules[__name__]
           and hasattr(item, "callspec")}
    if not ids:
        pytest.skip("no row of the table was selected")
    table = [r.id for r in LIBRARY + CLI]
    assert len(set(table)) == len(table), "two rows share an id; every row must be counted"
    assert set(TRIED) == ids, f"rows that did not run: {sorted(ids - set(TRIED))}"
    assert ANSWERED == TRIED, {k: (TRIED[k], ANSWERED[k]) for k in TRIED if TRIED[k] != ANSWERED[k]}
    print("\n" + summary_line())
