"""Precision guard: find operations that silently run below the precision of the parameters.

The toolkit's verdicts are certified to the rounding of the dtype the loss is evaluated in. A
float64 loss that routes part of its computation through float32 (a common case:
``flax.nnx.MultiHeadAttention`` computes its attention weights in the module's ``dtype``, and a
module built with ``param_dtype=float64`` but the default ``dtype`` promotes inconsistently, or an
explicit ``.astype(jnp.float32)`` inside a model) has float32 rounding, about 1e-7 relative,
hidden inside a float64 result, which a Lanczos interval certified to 1e-15 would miss. Probes
take the lowest such dtype as their products' precision (``LinearOperator.hvp_dtype``) and
widen their intervals by the rounding they measure, which leaves out only a fixed error linear
in the vector and symmetric (``spectral._certificate``, "Symmetry"); hence the warning. The
same holds one level down: a float32 model that computes in bfloat16 or float16 (mixed-precision
layers, an autocast) carries 4e-3 or 1e-3 relative rounding inside float32 results.

:func:`lower_precision_ops` traces ``loss_fn(params, *args)`` and its Hessian–vector product to
jaxprs (no computation) and lists every equation, including those inside nested jaxprs (``jit``,
``custom_jvp``, ``scan``, ``cond`` …) and derivative rules, whose floating-point output has fewer
bits than the parameters.
:func:`warn_lower_precision` turns the list into a :class:`PrecisionWarning` naming the
operations and where they come from. Probes call it once per (function, shapes).

Fix for flax attention: ``flax.nnx.MultiHeadAttention`` calls ``jax.nn.dot_product_attention``,
which computes its softmax in float32 whatever the inputs' dtype. Use
:class:`mhatheory.attention.MultiHeadAttention` (float64 throughout), or keep the flax module and
pass ``attention_fn=mhatheory.attention.flax_attention_fn``, which computes in the inputs'
dtype.
"""

from __future__ import annotations

import inspect
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jex_core

from mhatheory import _validate


class PrecisionWarning(UserWarning):
    """A loss contains floating-point operations below its parameters' precision."""


class LowPrecisionOp(NamedTuple):
    """One equation whose output dtype is below the parameters' precision."""

    primitive: str
    dtype: str
    where: str


def _source(eqn) -> str:
    try:  # jax's own summary of the user frame that created the equation (private API)
        from jax._src import source_info_util

        return source_info_util.summarize(eqn.source_info)
    except Exception:  # noqa: BLE001 - best effort only: the op name is still reported
        return "?"


def _sub_jaxprs(value):
    if isinstance(value, jex_core.ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, jex_core.Jaxpr):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _sub_jaxprs(v)


def _walk(jaxpr, bits: int, found: list) -> None:
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            dt = getattr(getattr(var, "aval", None), "dtype", None)
            if dt is not None and jnp.issubdtype(dt, jnp.floating) and jnp.finfo(dt).bits < bits:
                found.append(LowPrecisionOp(eqn.primitive.name, str(np.dtype(dt)), _source(eqn)))
                break
        for value in eqn.params.values():
            for sub in _sub_jaxprs(value):
                _walk(sub, bits, found)


def _has_custom_rule(jaxpr) -> bool:
    """Whether ``jaxpr`` (at any depth) calls a user derivative rule (``custom_jvp``,
    ``custom_vjp``): the only derivatives not derived by JAX from the loss's own operations."""
    return any(eqn.primitive.name.startswith(("custom_jvp", "custom_vjp"))
               or any(_has_custom_rule(sub) for v in eqn.params.values()
                      for sub in _sub_jaxprs(v))
               for eqn in jaxpr.eqns)


def param_bits(params) -> int:
    """The largest floating-point width among the parameter leaves (0 if none)."""
    dtypes = [np.dtype(x.dtype) if hasattr(x, "dtype") else np.result_type(x)
              for x in jax.tree.leaves(params)]
    bits = [jnp.finfo(dt).bits for dt in dtypes if jnp.issubdtype(dt, jnp.floating)]
    return max(bits, default=0)


def lower_precision_ops(loss_fn, params, *args, derivative=None) -> list[LowPrecisionOp]:
    """Every equation of ``loss_fn(params, *args)`` and of its Hessian–vector product with a
    floating output narrower than the parameters (traced abstractly, nothing is computed).

    The HVP (forward-over-reverse, as the probes run it) is traced too when the loss calls a
    user derivative rule, which is not part of the loss's jaxpr: a ``custom_jvp`` activation
    whose rule computes in float32 leaves the loss float64 but puts float32 rounding into every
    HVP. (JAX's own rules differentiate each operation in its own dtype, so without custom
    rules the loss's jaxpr already shows every dtype the HVP uses.) A loss that cannot be
    differentiated in ``params`` is checked on its own ops. ``derivative``: a callable returning
    the jaxprs of the programs that compute the product, walked instead of a traced
    forward-over-reverse HVP (a probe passes the traces of the programs it compiles, which
    cost nothing more)."""
    bits = param_bits(params)
    found: list[LowPrecisionOp] = []
    jaxpr = jax.make_jaxpr(loss_fn)(params, *args).jaxpr
    _walk(jaxpr, bits, found)
    if not _has_custom_rule(jaxpr):     # JAX's own rules keep a float64 op's derivative float64
        return found

    def hvp(p, *a):
        return jax.jvp(lambda q: jax.grad(loss_fn)(q, *a), (p,), (p,))

    try:
        in_hvp: list[LowPrecisionOp] = []
        for program in (derivative() if derivative is not None
                        else [jax.make_jaxpr(hvp)(params, *args).jaxpr]):
            _walk(program, bits, in_hvp)
    except Exception:  # noqa: BLE001 - not differentiable in params: the loss's ops only
        in_hvp = []
    return found + [op for op in dict.fromkeys(in_hvp) if op not in found]


def _signature(tree):
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((np.shape(x), str(getattr(x, "dtype", type(x)))) for x in leaves)


def warn_lower_precision(loss_fn, params, *args, derivative=None,
                         widened_from=None) -> list[LowPrecisionOp]:
    """Warn (:class:`PrecisionWarning`) when operations in ``loss_fn`` compute below the
    parameters' own precision (float32 inside a float64 loss, bfloat16 or float16 inside a
    float32 one); returns the list. A loss computing in its parameters' precision is never
    flagged (a float32 model is probed in float32 on purpose). Cached per (function, shapes and
    dtypes). ``derivative`` as in :func:`lower_precision_ops`. ``widened_from``: the dtype of
    the model's own parameters when ``params`` are their widened copy (the reference a probe
    of a float32 model certifies against), which the message then names."""
    bits = param_bits(params)
    if bits < 32:
        return []
    key = (_signature(params), _signature(tuple(args)))
    try:
        found = _lookup(loss_fn, key, params, args, derivative)
    except Exception:  # noqa: BLE001 - a guard must never break a probe that would run
        return []
    if found:
        shown, lowest, rel = _summary(found)
        kind = f"float{bits}"
        fix = _fix(bits, "probe the model in the lower precision on purpose")
        if widened_from is None:
            what = (f"the loss has {kind} parameters but {len(found)} operation(s) compute in "
                    f"lower precision")
        else:
            low = np.dtype(widened_from).name
            what = (f"widened from {low} to {kind} (the reference that certifies a {low} "
                    f"probe), the loss still has {len(found)} operation(s) computing in lower "
                    f"precision")
            fix = (f"let the model compute in its inputs' dtype (flax modules: no fixed "
                   f"dtype={low}; no .astype inside the loss), or probe it in {kind}")
        warnings.warn(
            f"{what} ({shown}). Its Hessian carries that rounding (≈{rel:.0e} relative for "
            f"{lowest}): the probes take {lowest}'s rounding into their intervals, as far as "
            "their rounding estimate and symmetry test measure it, but a fixed error that is "
            "linear in the vector and symmetric (a saturated softmax can make one) passes both "
            f"unseen, and no interval covers it. Fix: {fix}.",
            PrecisionWarning, stacklevel=_validate.user_stacklevel())
    return found


def _summary(found: list[LowPrecisionOp]) -> tuple[str, str, float]:
    """``(shown, lowest, rel)``: the first five distinct operations as text, the lowest dtype
    among them and its relative rounding."""
    ops = sorted({f"{op.primitive} → {op.dtype} at {op.where}" for op in found})
    shown = "; ".join(ops[:5]) + (f"; … {len(ops) - 5} more" if len(ops) > 5 else "")
    lowest = min((op.dtype for op in found), key=lambda d: jnp.finfo(d).bits)
    return shown, lowest, float(jnp.finfo(lowest).eps)


def _fix(bits: int, on_purpose: str) -> str:
    """The fix a precision warning names for a computation meant to run in float``bits``."""
    if bits >= 64:
        return ("compute in float64 throughout; for flax attention use "
                "mhatheory.attention.MultiHeadAttention, or nnx.MultiHeadAttention(..., "
                "attention_fn=mhatheory.attention.flax_attention_fn)")
    return (f"compute in float{bits} throughout (e.g. the modules' dtype= and any .astype "
            f"inside the function), or {on_purpose}")


def warn_below_outputs(closed, what: str) -> list[LowPrecisionOp]:
    """Warn (:class:`PrecisionWarning`) where the traced function ``closed`` (a ``ClosedJaxpr``)
    computes below the precision of its own floating outputs (a float64 output through a
    float32 softmax), so that a deviation it is checked for to that precision's rounding has a
    floor of the lower one's; returns the list. Nothing is computed."""
    bits = max((jnp.finfo(a.dtype).bits for a in closed.out_avals
                if jnp.issubdtype(a.dtype, jnp.floating)), default=0)
    found: list[LowPrecisionOp] = []
    if bits >= 32:
        _walk(closed.jaxpr, bits, found)
    if found:
        shown, lowest, rel = _summary(found)
        warnings.warn(
            f"{what} returns float{bits} but {len(found)} operation(s) compute in lower "
            f"precision ({shown}): its outputs carry {lowest}'s rounding (≈{rel:.0e} "
            f"relative), so a deviation measured on them is at that floor, not float{bits}'s. "
            f"Fix: {_fix(bits, f'compare deviations with {lowest} tolerances')}.",
            PrecisionWarning, stacklevel=_validate.user_stacklevel())
    return found


_SEEN: dict = {}


def _identity(fn):
    """What the cache knows ``fn`` by: a bound method by its function and the value of its object
    (Python compares bound methods by the identity of their object, so an operator built anew
    for every call, equal to the last one, would never be found), anything else as itself."""
    return (fn.__func__, fn.__self__) if inspect.ismethod(fn) else fn


def _lookup(fn, key, params, args, derivative):
    try:
        cache_key = (_identity(fn), key)
        hash(cache_key)
    except TypeError:
        return lower_precision_ops(fn, params, *args, derivative=derivative)
    if cache_key not in _SEEN:
        if len(_SEEN) > 256:
            _SEEN.clear()
        _SEEN[cache_key] = lower_precision_ops(fn, params, *args, derivative=derivative)
    return _SEEN[cache_key]
