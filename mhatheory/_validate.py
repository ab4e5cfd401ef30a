"""Input checks shared by the public entry points.

Each raises ``ValueError`` naming the argument, what was expected and what was given, before any
tracing or compilation starts. They run on concrete (host) values only; under ``jit`` tracing the
value checks are skipped and only static shape checks apply.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import os
import sys
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def is_concrete(x) -> bool:
    """True for a host value (not a tracer under ``jit``): value checks only run on these."""
    return _concrete(x)


def positive_int(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int ≥ ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def int_array(name: str, value) -> np.ndarray:
    """``value`` (a sequence of integers, possibly empty) as a flat int array; any other dtype
    is an error, since a cast would truncate 2.7 to 2 silently."""
    arr = np.asarray(value).reshape(-1)
    if arr.size == 0:
        return arr.astype(int)
    if arr.dtype.kind not in "iu":
        what = ("booleans, not indices (a mask would read True as sample 1)"
                if arr.dtype.kind == "b" else f"of dtype {arr.dtype}: a cast to int would "
                "truncate fractions silently")
        raise ValueError(f"{name} must be integer indices, got {arr.tolist()}, {what}.")
    return arr


def _as_float(name: str, value, what: str) -> float:
    """``float(value)``, or a ValueError saying ``name`` must be ``what``: text ("1e-3", which
    ``float`` would parse) and booleans are refused, as numbers in disguise."""
    if isinstance(value, (str, bytes, bool, np.bool_)):
        raise ValueError(f"{name} must be {what}, got the {type(value).__name__} {value!r}; "
                         "pass a number (e.g. 1e-3, not '1e-3').")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {what}, got {value!r}.") from None


def positive_float(name: str, value) -> float:
    """``value`` as a finite float > 0."""
    f = _as_float(name, value, "a positive number")
    if not np.isfinite(f) or f <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    return f


def probability(name: str, value) -> float:
    """``value`` as a float in [0, 1]."""
    f = _as_float(name, value, "a number in [0, 1]")
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}.")
    return f


def finite(name: str, x) -> None:
    """Raise if a concrete array holds NaN or Inf."""
    if _concrete(x) and not bool(np.all(np.isfinite(np.asarray(x)))):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(np.asarray(x))))
        raise ValueError(
            f"{name} contains {bad} NaN/Inf value(s); clean the data (or check the sampler "
            "config) before training or probing."
        )


def labels_pm1(name: str, y) -> None:
    """Raise unless every label is −1 or +1."""
    if _concrete(y):
        arr = np.asarray(y)
        ok = (arr == 1) | (arr == -1)
        if not bool(np.all(ok)):
            bad = np.unique(arr[~ok])[:5]
            raise ValueError(
                f"{name} must hold labels in {{-1, +1}}, found {bad.tolist()}; map {{0, 1}} "
                "labels with y = 2*y - 1."
            )


def shape(name: str, x, expected: Sequence, leading: bool = False) -> None:
    """Check the trailing (``leading=True``: any leading batch axes allowed) shape of ``x``.

    ``expected`` holds ints or ``None`` (any size).
    """
    got = tuple(np.shape(x))
    exp = tuple(expected)
    if leading:
        ok = len(got) >= len(exp) and all(
            e is None or g == e for g, e in zip(got[len(got) - len(exp):], exp, strict=True)
        )
        what = f"[..., {', '.join('*' if e is None else str(e) for e in exp)}]"
    else:
        ok = len(got) == len(exp) and all(
            e is None or g == e for g, e in zip(got, exp, strict=True))
        what = f"[{', '.join('*' if e is None else str(e) for e in exp)}]"
    if not ok:
        raise ValueError(f"{name} must have shape {what}, got {list(got)}.")


# ---------------------------------------------------------------------------------------------
# One input check for every public entry point that takes ``loss_fn(params, *args)``.


def leaf_paths(tree, prefix: str):
    """``[(name, leaf)]`` with names as the user would write them (``params['W']``)."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [(prefix + jax.tree_util.keystr(path), leaf) for path, leaf in flat]


def float_params(params, name: str = "params") -> None:
    """Every leaf of ``params`` is a floating-point array (the Hessian is over real numbers).

    Integer or boolean leaves usually mean a whole ``nnx.state(model)`` (with RNG counters) was
    passed instead of its parameters.
    """
    leaves = leaf_paths(params, name)
    if not leaves:
        raise ValueError(f"{name} has no array leaves; pass the parameter pytree, e.g. "
                         "nnx.split(model, nnx.Param)[1] or a dict of arrays.")
    for path, leaf in leaves:
        dt = np.dtype(leaf.dtype) if hasattr(leaf, "dtype") else np.result_type(type(leaf))
        if not jnp.issubdtype(dt, jnp.floating):
            raise ValueError(
                f"{path} has dtype {dt}, but every parameter leaf must be floating point "
                "(the Hessian is taken in the parameters). Pass only the trainable parameters: "
                "for a flax.nnx model, `graphdef, params, rest = nnx.split(model, nnx.Param, ...)`"
                " and probe `params`; cast integer leaves with .astype(float).")


def finite_tree(tree, name: str) -> None:
    """Raise, naming the leaf, if a concrete floating leaf of ``tree`` holds NaN or Inf."""
    for path, leaf in leaf_paths(tree, name):
        if leaf is None or not _concrete(leaf):
            continue
        arr = np.asarray(leaf)
        if jnp.issubdtype(arr.dtype, jnp.inexact) and not bool(np.all(np.isfinite(arr))):
            bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
            raise ValueError(f"{path} contains {bad} NaN/Inf value(s) (shape {list(arr.shape)}); "
                             "every probe and bound needs finite inputs: clean the data or "
                             "restore finite parameters before probing.")


def nonfinite_rows(tree, n: int) -> np.ndarray:
    """The indices along the leading axis (of length ``n`` on every leaf) where any leaf of
    ``tree`` holds a NaN/Inf."""
    bad = np.zeros(n, bool)
    for leaf in jax.tree.leaves(tree):
        bad |= ~np.all(np.isfinite(np.asarray(leaf).reshape(n, -1)), axis=1)
    return np.flatnonzero(bad)


def listed(values, limit: int = 8) -> str:
    """The first ``limit`` of ``values`` comma-separated, with " …" when there are more."""
    values = [str(int(v)) for v in values]
    return ", ".join(values[:limit]) + (" …" if len(values) > limit else "")


def scalar_loss(loss_fn, params, args, name: str = "loss_fn") -> None:
    """``loss_fn(params, *args)`` traces to a real scalar (checked abstractly: no compute)."""
    if not callable(loss_fn):
        raise ValueError(f"{name} must be callable as loss_fn(params, *args) -> scalar, got "
                         f"{type(loss_fn).__name__}.")
    try:
        out = jax.eval_shape(loss_fn, params, *args)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}(params, *args) could not be evaluated on these inputs: {err}"
                         ) from err
    if isinstance(out, tuple) or not hasattr(out, "shape"):
        aux = (" (a loss with auxiliary outputs, as jax.value_and_grad(..., has_aux=True) "
               "takes?)" if isinstance(out, tuple) else "")
        raise ValueError(f"{name} must return one scalar array, got {type(out).__name__}{aux}; "
                         "pass a function that returns only the loss, e.g. "
                         "lambda params, *args: loss_fn(params, *args)[0].")
    if out.shape != ():
        raise ValueError(f"{name} must return a scalar, got shape {list(out.shape)}; reduce it "
                         "(e.g. jnp.mean over samples) so the Hessian is that of one number.")
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise ValueError(f"{name} must return a floating-point scalar, got dtype {out.dtype}.")


def probe_inputs(params, args) -> None:
    """The checks of parameters and data before a probe, assertion or training run starts any
    compilation: floating, finite parameters (naming the leaf), at least one entry, and finite
    data. The loss's or operator's own checks come on top (:func:`loss_inputs`)."""
    float_params(params)
    if num_params(params)[0] == 0:
        raise ValueError("params have no entries (P = 0, every leaf is empty): there is no "
                         "Hessian to probe and nothing to train.")
    finite_tree(params, "params")
    finite_tree(tuple(args), "args")


def loss_inputs(loss_fn, params, args) -> None:
    """The loss's own ``check_args`` when it declares one (first: it names the wrong shape or
    label precisely, where tracing would fail with an einsum error), then a scalar loss."""
    check = getattr(loss_fn, "check_args", None)
    if check is not None:
        check(params, *args)
    scalar_loss(loss_fn, params, args)


def checks_args(check):
    """Decorator: attach ``check(params, *args)`` to a loss function as ``loss.check_args``, so
    every probe validates the loss's data (labels, shapes) before any work."""
    def attach(loss_fn):
        loss_fn.check_args = check
        return loss_fn
    return attach


def non_negative_float(name: str, value) -> float:
    """``value`` as a finite float ≥ 0."""
    f = _as_float(name, value, "a number >= 0")
    if not np.isfinite(f) or f < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
    return f


def callable_arg(name: str, fn, signature: str) -> None:
    """Raise unless ``fn`` is callable; ``signature`` shows how it is called."""
    if not callable(fn):
        raise TypeError(f"{name} must be callable as {signature}, got {type(fn).__name__}.")


def prng_key(name: str, key) -> None:
    """Raise unless ``key`` is one JAX random key: a typed key (``jax.random.key(0)``) or a
    raw ``uint32`` key (``jax.random.PRNGKey(0)``)."""
    if isinstance(key, jax.core.Tracer):
        return
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if np.shape(key) == ():
            return
    elif dtype is not None and np.dtype(dtype) == np.uint32 and np.ndim(key) == 1:
        return
    raise TypeError(f"{name} must be one JAX random key such as jax.random.key(0), got "
                    f"{type(key).__name__}"
                    + (f" of dtype {dtype} and shape {list(np.shape(key))}" if dtype is not None
                       else f" {key!r}"[:60]) + ".")


def floating_dtype(name: str, dtype) -> None:
    """Raise unless ``dtype`` (None = the default float) is a floating-point dtype."""
    if dtype is None:
        return
    try:
        ok = jnp.issubdtype(np.dtype(dtype), jnp.floating)
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a floating-point dtype such as jnp.float64 or "
                         f"jnp.float32, got {dtype!r}.")


def unknown_names(unknown, known) -> str:
    """``unknown`` names, each with the closest of ``known`` as a hint where one is close.

    Example:
        >>> unknown_names(["num_sample", "zzz"], ["num_samples", "key"])
        "'num_sample' (did you mean 'num_samples'?), 'zzz'"
    """
    return ", ".join(f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name)
                     for name in unknown
                     for close in [difflib.get_close_matches(name, list(known), n=1)])


def suggests_keywords(fn):
    """``fn`` (without ``**kwargs``) whose unknown keyword arguments raise a TypeError naming the
    closest known one, which Python's own message does not."""
    params = inspect.signature(fn).parameters.values()
    known = [p.name for p in params
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    @functools.wraps(fn)
    def checked(*args, **kwargs):
        unknown = sorted(set(kwargs) - set(known))
        if unknown:
            raise TypeError(f"{fn.__name__}() got an unknown keyword argument "
                            f"{unknown_names(unknown, known)}; it takes {', '.join(known)}.")
        return fn(*args, **kwargs)

    return checked


def size_text(num_bytes: int) -> str:
    """``num_bytes`` in the largest binary unit that keeps it ≥ 1 (B, KiB, MiB, GiB, TiB), so a
    message never reads "0.00 GiB over 0.00 GiB".

    Example:
        >>> size_text(100), size_text(3 * 2**20), size_text(2**31)
        ('100 B', '3.00 MiB', '2.00 GiB')
    """
    value, unit = float(num_bytes), "B"
    for name in ("KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024:
            break
        value, unit = value / 1024, name
    return f"{value:.0f} B" if unit == "B" else f"{value:.2f} {unit}"


def num_params(params) -> tuple[int, np.dtype]:
    """``(P, dtype)`` of a parameter pytree as ``ravel_pytree`` would flatten it, computed on
    the host (no device work)."""
    leaves = jax.tree.leaves(params)
    size = sum(int(np.size(x)) for x in leaves)
    dtype = np.result_type(*[x.dtype if hasattr(x, "dtype") else np.result_type(x)
                             for x in leaves]) if leaves else np.dtype(float)
    return size, dtype


def rngs(name: str, value) -> None:
    """Raise unless ``value`` is a ``flax.nnx.Rngs``."""
    from flax import nnx

    if not isinstance(value, nnx.Rngs):
        raise TypeError(f"{name} must be a flax.nnx.Rngs, e.g. rngs=nnx.Rngs(0), got "
                        f"{type(value).__name__}.")


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes ``warnings.warn``, called by the caller of this function,
    point at the first frame outside the mhatheory package: the user's line, however deep in
    the package the warning is raised."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level

