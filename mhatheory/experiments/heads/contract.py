"""What a ``heads`` sweep checks before any work (:func:`prepare`): the data against their
contract, the model family's parameters and outputs at every H against the labels, a family
that ignores H, and parameters narrower than JAX's float dtype; and the fingerprints of a
user's model family and data (:func:`fingerprints`), by which a resumed sweep tells whether
its cells were computed from the same code and arrays. ``config`` is the experiment's
:class:`~mhatheory.experiments.heads.Config`."""

from __future__ import annotations

import hashlib
import inspect
import warnings

import jax
import numpy as np

from mhatheory import _validate, precision
from mhatheory.experiments.heads import datasets, families, seeds


def prepare(config) -> dict:
    """Check the model family and the data against their contracts before any work: the data
    callable's arrays (:func:`datasets.check`), the training pool against n, num_val and
    replace, the Deora family's token input and ±1 labels, and every arm's parameters and
    output shape at every H against the labels (traced with ``jax.eval_shape``, nothing
    compiled); a family that builds the same module at every H is refused
    (:func:`families.ignores_heads`: built and run only where its parameter shapes do not
    change with H), and parameters narrower than JAX's float dtype are warned about (a
    :class:`~mhatheory.precision.PrecisionWarning`), as is a grid of one H, which no claim can
    read (they compare H). Returns :func:`fingerprints`."""
    if len(set(config.heads_grid)) < 2:
        warnings.warn(f"--heads-grid {','.join(map(str, config.heads_grid))} holds one H: the "
                      "sweep trains and probes it, but every claim compares H and will answer "
                      "'undecided'; give two or more (e.g. --heads-grid 1,2,4).",
                      stacklevel=_validate.user_stacklevel())
    task = seeds.task_of(config.data, config.digits_pair)
    shape, loss, classes = seeds.data_shape(config, task)
    if task is not None:
        for n in set(config.n_grid):
            datasets.seed_split(task, config.seed, n, config.num_val, spare=config.replace)
    if config.model == "deora":
        if loss != "logistic":
            raise ValueError("--model deora has one output per input (labels ±1); for "
                             f"{classes} classes use --model transformer or MODULE:FUNCTION.")
        if len(shape) != 2 or shape[0] < 2:
            raise ValueError(f"--model deora takes token inputs x [n, T, d] with T >= 2; "
                             f"--data gives samples of shape {list(shape)}.")
        return fingerprints(config, task, {})
    x_shape = (2,) + tuple(shape)
    want = (2,) if loss == "logistic" else (2, classes)
    dtype = jax.dtypes.canonicalize_dtype(float)
    arms = ["growing"] + (["fixed_width"] if config.width and config.model == "transformer"
                          else [])
    narrow, shapes = set(), {}
    for arm in arms:
        make = seeds.nnx_make(config, task, arm)
        heads = config.fixed_width_heads if arm == "fixed_width" else config.heads_grid
        abstracts = {}
        for h in sorted(set(heads)):
            try:
                abstracts[h] = families.abstract(make, h, x_shape, dtype)
            except Exception as e:  # noqa: BLE001 - a user's module failing to build or run
                if str(e).startswith("--model"):
                    raise
                raise ValueError(f"--model {config.model}: building or calling the module "
                                 f"with {h} heads on inputs of shape {list(x_shape)} failed: "
                                 f"{type(e).__name__}: {e}") from e
            got = abstracts[h].output
            if tuple(got) != want:
                what = ("[N] (one logit per input) for labels ±1" if loss == "logistic" else
                        f"[N, {classes}] (one logit per class) for integer labels")
                raise ValueError(f"--model {config.model}: with {h} heads the module maps "
                                 f"x {list(x_shape)} to {list(got)}, but the labels need "
                                 f"{what}.")
            narrow.update(families.narrower_floats(abstracts[h].params, dtype))
            shapes[f"{arm} H={h}"] = abstracts[h]
        same = families.ignores_heads(make, abstracts, x_shape, dtype)
        if same is not None:
            raise ValueError(f"--model {config.model}: make({same[0]}, rngs=...) and "
                             f"make({same[1]}, rngs=...) build the same module (the same "
                             "parameters drawn from one key, the same outputs): the family "
                             "ignores num_heads, so the sweep would compare a network with "
                             "itself. Pass num_heads to its attention layers (e.g. "
                             "nnx.MultiHeadAttention(num_heads=num_heads, ...)).")
    if narrow:
        warnings.warn(
            f"--model {config.model}: the module's parameters include {', '.join(narrow)} "
            f"arrays while JAX computes in {dtype.name}: the sweep trains them in that "
            f"precision and its Hessian probes run on their {', '.join(narrow)} products "
            f"(certified against the same weights widened to {dtype.name}, their intervals "
            "widened by the products' rounding). To train and probe in float64, build the "
            "layers with param_dtype=jnp.float64 (flax.nnx layers default to float32).",
            precision.PrecisionWarning, stacklevel=_validate.user_stacklevel())
    return fingerprints(config, task, shapes)


def fingerprints(config, task, abstracts: dict) -> dict:
    """What a sweep's cells depend on beyond its config, for a ``MODULE:FUNCTION`` model or data
    (the config holds only their names): ``model``, a SHA-256 of the family's module as it is
    in this process (its file's source, and the bytecode of every function and class method it
    defines with its plain global values: a class or global redefined in a notebook or script
    counts) and of the parameter shapes and dtypes and output shape at every H and arm
    (``abstracts``: ``{label: families.Abstract}``), and ``data``, a SHA-256 of the arrays
    (names, dtypes, shapes, bytes). Empty for the built-in families and data, which the config
    and the package version determine. A change that none of these sees (another module the
    family imports, edited) is not detected: start that sweep afresh."""
    out = {}
    if ":" in config.model:
        make = datasets.load_callable(config.model, "--model")
        module = inspect.getmodule(make)
        digest = hashlib.sha256(_source(module).encode())
        digest.update(_members(module, make).encode())
        for label, a in sorted(abstracts.items()):
            leaves = [(jax.tree_util.keystr(path), leaf.shape, str(leaf.dtype)) for path, leaf
                      in jax.tree_util.tree_flatten_with_path(a.params)[0]]
            digest.update(repr((label, a.output, leaves)).encode())
        out["model"] = digest.hexdigest()
    if ":" in config.data and task is not None:
        digest = hashlib.sha256()
        for name in sorted(task.arrays):
            a = np.ascontiguousarray(task.arrays[name])
            digest.update(repr((name, str(a.dtype), a.shape)).encode())
            digest.update(a.tobytes())
        out["data"] = digest.hexdigest()
    return out


def _source(module) -> str:
    """The module's file source where it has one (empty for a notebook's ``__main__``)."""
    try:
        return inspect.getsource(module)
    except (OSError, TypeError):
        return ""


def _members(module, make) -> str:
    """``make``'s code and, for every function and class ``module`` defines, its functions'
    code (:func:`_code`), and the module's plain global values (numbers, strings, tuples)."""
    name = getattr(module, "__name__", None)
    parts = [_code(make)]
    for key, obj in sorted(vars(module).items() if module is not None else ()):
        if inspect.isfunction(obj) and obj.__module__ == name:
            parts.append(f"{key}:{_code(obj)}")
        elif inspect.isclass(obj) and obj.__module__ == name:
            parts += [f"{key}.{k}:{_code(v)}" for k, v in sorted(vars(obj).items())
                      if _code(v)]
        elif isinstance(obj, (bool, int, float, str, tuple)) and not key.startswith("__"):
            parts.append(f"{key}={obj!r}")
    return "\n".join(parts)


def _code(obj) -> str:
    """A function's (or a method's, a property's getter's) bytecode, names and constants, with
    nested code objects (inner functions, lambdas) by their own content, not their address, so
    that the same code gives the same text in every process; empty for anything without code."""
    obj = getattr(obj, "__func__", None) or getattr(obj, "fget", None) or obj
    code = getattr(obj, "__code__", obj)
    if not inspect.iscode(code):
        return ""
    consts = [_code(c) if inspect.iscode(c) else _const(c) for c in code.co_consts]
    return f"{code.co_code.hex()}|{code.co_names}|{consts}"


def _const(c) -> str:
    """A constant's repr, a frozenset's (``x in {"a", "b"}``) with its elements sorted: their
    order follows the process's string hashing, and the digest must not."""
    return repr(sorted(map(repr, c))) if isinstance(c, frozenset) else repr(c)
