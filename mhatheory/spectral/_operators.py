"""Curvature operators and the linear operator they become at a point.

A probe never sees a model. It sees a :class:`LinearOperator`: a curvature operator
(:class:`Hessian` of a loss, or :class:`~mhatheory.spectral.GaussNewton`,
:class:`~mhatheory.spectral.Curvature`, any :class:`Operator`) *linearised* at θ = ``params`` on
data ``args``, in the manner of lineax's ``AbstractLinearOperator``:

    H = spectral.Hessian(loss_fn).linearise(params, *args)   # checks the inputs, once
    H.mv(v)                        # ∇²L̂(θ) v, forward-over-reverse
    H.restrict("U", axis=0, index=3)   # a block: the same operator, restricted
    H.as_scipy(), H.as_lineax()    # hand it to scipy's eigsh or to lineax.linear_solve

**Two ways to form a product.** A :class:`LinearOperator` is *linearised* or not:

* **linearised** (:func:`linearise`, ``Operator.linearise``, ``Operator.at``): ``jax.linearize``
  of θ ↦ ∇L̂(θ) runs once at the point (one forward and one backward pass), giving a
  ``jax.tree_util.Partial`` whose leaves are the residuals and whose structure (the tangent
  program) is the same at every point of one model and shapes. Every product afterwards runs
  only the tangent program, ``_apply(lin, mask, v, scale)``, and every probe at that point (λmin,
  λmax, trace, density, blocks) shares the linearisation. Two programs compile per model and
  shapes: the linearisation and the product.
* **one program** (the one-shot conveniences ``lambda_min``, ``lambda_max``, ``extreme_eigs``,
  ``trace``, ``spectral_density`` and ``per_block`` below :data:`ONE_PROGRAM_MAX_PARAMS`
  coordinates): each product, ``_direct(op, params, args, mask, v, scale)``, linearises and
  applies in one compiled program, as a jitted forward-over-reverse HVP does.

Which is cheaper depends on how many products a linearisation serves. Measured on the 2-core
CPU machine (float64; ``experiments/bench/bench_cold.py`` has the first calls): the two programs
of the linearised form each compile about as long as the one program (Deora, P = 2,176: 0.27–0.46
s each against 0.25–0.41 s), so a first call compiles twice as much; a product of the one
program costs 0.86–1.25× a linearised product on Deora at P = 2,176 … 133,120, 1.3–1.5× on a
one-block Transformer (P = 2,578) and 1.1–1.4× on Deora at P = 1,056,768. A probe run of a
few hundred products below a few 10⁵ coordinates therefore finishes sooner with one program,
while a linearisation shared by several probes, or by the many products of a large model, pays
for its second compilation. The conveniences choose by size alone, so that a result never
depends on what ran before it in the process; :func:`linearise` always linearises. Both forms
give the same products up to rounding (they are different XLA programs).

**One compiled product per model and shapes.** In either form the product is one module-level
jitted program whose arguments are data (the point or its linearisation, a mask, the vector and
a scalar): it compiles once per model structure and shapes and serves every probe, every block
(a block is a 0/1 mask on the coordinates, data again), every point along a trajectory and
every restart. With ``MHATHEORY_BACKGROUND_COMPILE=1`` the first linearised product of a
structure compiles on a worker thread while this thread compiles and runs the linearisation
(:mod:`._compile`).
The Lanczos recurrence around it is a separate program shared by every model of the same size
(:mod:`._recurrence`). A float32 model's products run in float32 while the vectors around them
are float64 (mixed precision, :func:`~._options.work_dtype`).

**Data-parallel.** ``linearise`` uses ``args`` exactly as given and nothing here moves them, so a
batch whose sample axis is split over devices (:func:`mhatheory.distributed.shard_samples`, or
any ``NamedSharding``) keeps that split: each device evaluates the loss on its samples and an
all-reduce sums the partial gradients of every product.
"""

from __future__ import annotations

import abc
import functools
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from mhatheory import _validate, precision
from mhatheory.spectral import _compile
from mhatheory.spectral._mask import block_mask
from mhatheory.spectral._options import one_program, work_dtype


class Operator(abc.ABC):
    """A curvature operator of ``(params, *args)``: a symmetric matrix in θ-space that
    :meth:`linearise` turns into a :class:`LinearOperator` at a point. Subclasses are frozen
    (hashable) dataclasses, so that equal operators share their compiled programs."""

    #: whether every linearisation is positive semi-definite (a Gauss–Newton term of a convex loss)
    psd: bool = False

    @abc.abstractmethod
    def check(self, params, args) -> None:
        """The operator's own argument checks, before any compilation (name the argument)."""

    @abc.abstractmethod
    def matvec_at(self, params, args):
        """``(lin, flat)``: a ``jax.tree_util.Partial`` with ``lin(v)`` = the operator at θ
        applied to a flat vector v, and θ flattened (traced inside one jitted program)."""

    @abc.abstractmethod
    def scalar(self, params, *args):
        """The scalar function behind the operator (the loss), for the precision guard."""

    def check_inputs(self, params, args) -> None:
        """Every check before the operator is linearised at θ = ``params`` on ``args``: floating,
        finite parameters (naming the leaf), finite data and the operator's own checks. No
        compilation."""
        _validate.probe_inputs(params, args)
        self.check(params, tuple(args))

    def at(self, params, *args, linearised: bool | None = True) -> LinearOperator:
        """The operator at θ = ``params`` on data ``args``, without the input checks (for a
        caller that made them with :meth:`check_inputs`): linearised once (default), with
        ``linearised=False`` each product in one program, with None as the one-shot
        conveniences choose, by size (:func:`~._options.one_program`; module docstring). Warns for
        operations below the parameters' precision in the loss or in the programs that compute
        the product (:func:`mhatheory.precision.warn_lower_precision`, on the traces those
        programs compile from). With the worker on, the HVP of a new structure compiles on a
        worker thread while this one compiles and runs the linearisation (:mod:`._compile`)."""
        args = tuple(args)
        P, dtype = _validate.num_params(params)
        if linearised is None:
            linearised = not one_program(P)
        v = jax.ShapeDtypeStruct((P,), work_dtype(dtype))
        mask = jax.ShapeDtypeStruct((P,), dtype)
        if linearised:
            ready = (_compile_product(*_linearise.trace(self, params, args).out_info)
                     if _compile.enabled() else None)
            point = _Point(self, params, args, ready)
            point.linearise()

            def programs():
                return [_linearise.trace(self, params, args).jaxpr.jaxpr,
                        _apply.trace(point.lin, mask, v, 1.0).jaxpr.jaxpr]
        else:
            point = _Point(self, params, args)

            def programs():
                return [_direct.trace(self, params, args, mask, v, 1.0).jaxpr.jaxpr]

        _check_precision(point, programs)
        return LinearOperator(point, linearised=linearised)

    def linearise(self, params, *args) -> LinearOperator:
        """The operator at θ = ``params`` on data ``args``: :meth:`check_inputs`, then one
        linearisation (:meth:`at`)."""
        self.check_inputs(params, args)
        return self.at(params, *args)


def check_finite(values, where: str, op: LinearOperator | None = None) -> None:
    """Raise a FloatingPointError naming the cause when the operator's ``values`` (its products,
    or numbers computed from them ``where``) are not all finite. With the operator ``op``, its
    loss is evaluated at the point (on this error path only), so that a loss that is itself
    NaN or infinite there is named as the cause."""
    if np.all(np.isfinite(np.asarray(values))):
        return
    if op is not None:
        try:
            value = float(op.operator.scalar(op.params, *op.args))
        except Exception:                    # the message below still holds
            value = 0.0
        if not math.isfinite(value):
            raise FloatingPointError(
                f"the operator's product is NaN/Inf {where}, and the loss itself is {value} at "
                "these params and data, so its Hessian is not finite either: check the loss "
                "(a log or a division at 0, an overflow in exp) and the params.")
    raise FloatingPointError(
        f"the operator's product is NaN/Inf {where}: the Hessian (or curvature operator) is "
        "not finite at these params and data (a loss that is not twice differentiable "
        "there, e.g. sqrt or abs at 0, or an overflow); check the loss and params.")


@functools.partial(jax.jit, static_argnums=0)
def _linearise(op: Operator, params, args):
    return op.matvec_at(params, args)


def _compile_product(lin_info, flat_info):
    """Compile :func:`_apply` for a linearisation of structure ``lin_info`` (``ShapeDtypeStruct``
    leaves) at θ like ``flat_info``, for vectors of the work dtype, on a worker thread once per
    structure (:mod:`._compile`): the job's future, or None."""
    leaves, tree = jax.tree.flatten(lin_info)
    mask = jax.ShapeDtypeStruct(flat_info.shape, flat_info.dtype)
    v = jax.ShapeDtypeStruct(flat_info.shape, work_dtype(flat_info.dtype))
    key = ("apply", tree, tuple((x.shape, np.dtype(x.dtype), getattr(x, "sharding", None))
                                for x in leaves), mask.shape, np.dtype(mask.dtype))
    return _compile.background(key, lambda: _apply.lower(lin_info, mask, v, 1.0).compile())


def _product(lin, mask, v, scale):
    """``scale · mask · H(mask · v)`` with H = ``lin`` in its own dtype (the mask's), returned
    in v's (``scale`` is exact when a power of 2)."""
    x = (v * mask).astype(mask.dtype)
    return lin(x).astype(v.dtype) * (scale * mask.astype(v.dtype))


@jax.jit
def _apply(lin, mask, v, scale):
    """The product of a held linearisation ``lin`` (:func:`_product`)."""
    return _product(lin, mask, v, scale)


@functools.partial(jax.jit, static_argnums=0)
def _direct(op: Operator, params, args, mask, v, scale):
    """The product of ``op`` at θ = ``params`` on ``args`` in one program: the linearisation
    and its tangent together (:func:`_product`)."""
    return _product(op.matvec_at(params, args)[0], mask, v, scale)


def _check_precision(point, programs, widened_from=None) -> None:
    """Warn for operations below the point's parameter precision in its loss or in the
    ``programs()`` that compute its products (:func:`mhatheory.precision.warn_lower_precision`),
    and record the lowest such dtype as the point's ``hvp_dtype``."""
    found = precision.warn_lower_precision(point.operator.scalar, point.params, *point.args,
                                           derivative=programs, widened_from=widened_from)
    if found:
        point.hvp_dtype = min((np.dtype(op.dtype) for op in found),
                              key=lambda d: jnp.finfo(d).bits)


_BASIS_LOCK = threading.Lock()

#: How many Krylov bases (of distinct shapes) a point keeps for later compiled runs: a λmin's
#: cycles of 80 vectors and a λmax's of 40 alternate at one point without either mapping a
#: fresh buffer (140 ms for 41 rows at P = 1,056,768); a third shape drops the oldest.
KEPT_BASES = 2


class _Point:
    """θ, the data and the operator a :class:`LinearOperator` and its blocks share, and their
    linearisation once it is made (:meth:`linearise`, at most once)."""

    def __init__(self, operator: Operator, params, args: tuple, ready=None):
        self.operator, self.params, self.args = operator, params, args
        self.lin = self.flat = self._widened = self.hvp_dtype = None
        self.ready = ready                     # the product's compilation on a worker thread
        self.bases = {}                        # finished compiled runs' bases by Q's shape

    def linearise(self):
        """The linearisation ``(lin, flat)`` at the point, made on the first call."""
        if self.lin is None:
            self.lin, self.flat = _linearise(self.operator, self.params, self.args)
        return self.lin, self.flat

    def widened(self, dtype) -> _Point:
        """The same operator at θ and data whose floating arrays are in ``dtype`` (integer
        labels as they are), made on the first call."""
        if self._widened is None:
            def cast(a):
                floating = hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.floating)
                return a.astype(dtype) if floating else a

            wide = _Point(self.operator, jax.tree.map(cast, self.params),
                          jax.tree.map(cast, self.args))
            # a model that computes in a lower dtype whatever its inputs' (a flax module with
            # dtype=float32) is not widened by this: warn, as for any operation below the
            # parameters' precision, since the fixed rounding it leaves is not certified
            P, own = _validate.num_params(self.params)
            vec = jax.ShapeDtypeStruct((P,), dtype)
            _check_precision(wide, lambda: [
                _direct.trace(wide.operator, wide.params, wide.args, vec, vec, 1.0).jaxpr.jaxpr],
                widened_from=own)
            self._widened = wide
        return self._widened


@dataclass(frozen=True)
class Hessian(Operator):
    """∇²_θ ``loss_fn(params, *args)`` (forward-over-reverse: ``jax.linearize`` of the gradient)."""

    loss_fn: Callable

    def __post_init__(self):
        _validate.callable_arg("Hessian(loss_fn): loss_fn", self.loss_fn,
                               "loss_fn(params, *args) -> scalar")

    def check(self, params, args) -> None:
        """A scalar loss, and the loss's own ``check_args`` when it declares one."""
        _validate.loss_inputs(self.loss_fn, params, args)

    def matvec_at(self, params, args):
        flat, unravel = ravel_pytree(params)

        def grad_flat(x):
            return ravel_pytree(jax.grad(self.loss_fn)(unravel(x), *args))[0]

        _, lin = jax.linearize(grad_flat, flat)
        return lin, flat

    def scalar(self, params, *args):
        return self.loss_fn(params, *args)


def as_operator(loss_fn_or_operator) -> Operator:
    """An :class:`Operator` as is; a plain loss function ``loss_fn(params, *args) -> scalar``
    becomes its :class:`Hessian`."""
    if isinstance(loss_fn_or_operator, Operator):
        return loss_fn_or_operator
    if isinstance(loss_fn_or_operator, LinearOperator):
        raise ValueError("this takes a loss function or an operator with its params and data; "
                         "a LinearOperator (already at a point) goes to a probe directly, e.g. "
                         "spectral.Lanczos()(H, key=key).")
    if not callable(loss_fn_or_operator):
        raise ValueError("expected a loss_fn(params, *args) -> scalar or a curvature operator "
                         f"(spectral.Hessian, GaussNewton, Curvature, Block), got "
                         f"{type(loss_fn_or_operator).__name__}.")
    return Hessian(loss_fn_or_operator)


def linearise(loss_fn_or_operator, params, *args) -> LinearOperator:
    """The curvature operator (or the Hessian of a loss function) at θ = ``params`` on ``args``:
    :meth:`Operator.linearise`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> H = linearise(lambda x, d: 0.5 * jnp.sum(d * x**2), jnp.ones(3), jnp.arange(3.0))
        >>> H, H.mv(jnp.ones(3)).tolist()
        (LinearOperator(Hessian, P=3, float64), [0.0, 1.0, 2.0])
    """
    return as_operator(loss_fn_or_operator).linearise(params, *args)


def one_shot(loss_fn_or_operator, params, *args) -> LinearOperator:
    """The operator at θ = ``params`` on ``args`` for the probes of one convenience call,
    checked as by :func:`linearise`: each product in one program up to
    :data:`~._options.ONE_PROGRAM_MAX_PARAMS` parameters, linearised above (module docstring)."""
    op = as_operator(loss_fn_or_operator)
    op.check_inputs(params, args)
    return op.at(params, *args, linearised=None)


def size_of(loss_fn_or_operator, params) -> int:
    """How many coordinates the operator acts on at ``params`` (P, or a
    :class:`Block`'s), from the shapes alone: what checks before any work need."""
    op = as_operator(loss_fn_or_operator)
    if isinstance(op, Block):
        return int(np.count_nonzero(block_mask(params, op.select, op.axis, op.index)))
    return _validate.num_params(params)[0]


class LinearOperator:
    """A curvature operator at a point (module docstring): ``mv`` applies it to flat vectors of
    P entries (θ order of ``ravel_pytree``); a block (:meth:`restrict`) is the principal
    sub-matrix on the coordinates of a mask, acting on P-vectors that vanish outside it. Made by
    :func:`linearise` or :meth:`Operator.at`.

    Attributes:
        operator: the :class:`Operator` it came from; params: θ, the point; args: the data.
        P: θ's length; dtype: the products' dtype (the model's).
        size: the number of coordinates the operator acts on (P, or the block's).
        mask: boolean ``[P]``, the block's coordinates (None: every coordinate).
        linearised: whether products run from the linearisation held at the point (True) or
            each in one program from θ and the data (False); module docstring.
        symmetric: always True (a Hessian-type operator); psd: True for a Gauss–Newton term of
            a convex loss, which probes may use (lineax's positive-semidefinite tag).
    """

    symmetric = True

    def __init__(self, point: _Point, mask: np.ndarray | None = None, linearised: bool = True):
        self._point, self.linearised = point, bool(linearised)
        self.operator, self.params, self.args = point.operator, point.params, point.args
        self.mask = mask
        P, dtype = _validate.num_params(self.params)
        self.P, self.dtype = int(P), np.dtype(dtype)
        self.size = self.P if mask is None else int(np.count_nonzero(mask))
        self.psd = bool(self.operator.psd)
        # placed from the host: an eager jnp.ones would compile a program of its own
        self._mask = jax.device_put(np.ones(self.P, self.dtype) if mask is None
                                    else np.asarray(mask, self.dtype))

    @property
    def lin(self):
        """The linearisation at the point, a ``jax.tree_util.Partial`` with ``lin(x)`` = the
        operator applied to a flat vector x in the model's dtype (made on first use when the
        operator is not ``linearised``)."""
        return self._point.linearise()[0]

    @property
    def flat(self) -> jax.Array:
        """θ flattened (``ravel_pytree`` order)."""
        if self._point.flat is None:
            self._point.flat = ravel_pytree(self.params)[0]
        return self._point.flat

    @property
    def platforms(self) -> set[str]:
        """The platforms of the devices that hold θ (JAX's default backend for host arrays)."""
        placed = {d.platform for x in jax.tree.leaves(self.params) if isinstance(x, jax.Array)
                  for d in x.devices()}
        return placed or {jax.default_backend()}

    @property
    def hvp_dtype(self):
        """The precision the products compute in: the parameters' dtype, or the lowest dtype of
        an operation below it in the loss or its derivative programs (the one a
        :class:`~mhatheory.precision.PrecisionWarning` names, e.g. float32 in a flax attention
        softmax of a float64 model). Probes take their rounding model and acceptance
        threshold from it: the recurrence's orthogonality estimates, the noise floor of the
        residual, the rounding term of the certificate."""
        return self._point.hvp_dtype or self.dtype

    @property
    def work_dtype(self):
        """The dtype of the vectors around the products (float64 under x64)."""
        return work_dtype(self.dtype)

    @property
    def vector_mask(self) -> jax.Array:
        """The block's mask as a 0/1 vector in the products' dtype (ones for the whole space)."""
        return self._mask

    def swap_basis(self, basis=None, shape=None):
        """The Krylov basis ``(Q, rows)`` with Q of ``shape`` that an earlier compiled Lanczos
        run at this point left, taken away (None: none of that shape, or no ``shape``), and
        ``basis`` left for a later run on this operator or its blocks to take over instead of
        allocating its own (:func:`._recurrence.reusable`). The point keeps the bases of the
        :data:`KEPT_BASES` shapes left last; they are freed with it: the operator, its blocks
        and its widened operator."""
        bases = self._point.bases
        with _BASIS_LOCK:                      # one taker per basis, whatever the threads
            old = None if shape is None else bases.pop(tuple(shape), None)
            if basis is not None:
                key = tuple(basis[0].shape)
                bases.pop(key, None)           # re-inserted: the newest
                bases[key] = basis
                while len(bases) > KEPT_BASES:
                    bases.pop(next(iter(bases)))
        return old

    def mv(self, v) -> jax.Array:
        """The operator applied to a P-vector v (entries outside the block ignored), in v's
        dtype: one product of the model's one compiled HVP."""
        return self.scaled_mv(v, 1.0)

    def scaled_mv(self, v, scale: float) -> jax.Array:
        """``scale`` times :meth:`mv` in the same compiled product (exact for a power of 2: a
        probe scales the operator to avoid under- and overflow)."""
        point = self._point
        if point.ready is not None:
            _compile.wait(point.ready)
            point.ready = None
        # a NumPy vector (the host engine's) goes to the compiled product as it is (jit places
        # it), with no eager conversion of its own
        v = v if isinstance(v, (np.ndarray, jax.Array)) else jnp.asarray(v)
        if self.linearised:
            return _apply(self.lin, self._mask, v, scale)
        return _direct(self.operator, self.params, self.args, self._mask, v, scale)

    def widened(self) -> LinearOperator:
        """This operator (its block too) at the same point with θ and the data's floating
        arrays in the work dtype (float64 under x64), its products in one more compiled
        program; itself when it already computes in the work dtype.

        A float32 evaluation differs from the exact operator by rounding that depends on the
        vector (which a probe's linearity defect measures) and by a fixed perturbation E, the
        rounding of what the product computes once at θ (the activations; a softmax minus its
        labels near convergence), linear in the vector and so invisible to any linearity test.
        So a Lanczos probe of a float32 operator compares its final vectors' products with the
        widened operator's (:func:`._certificate.certify`'s ``reference``), and the exact route
        decomposes the widened operator. A model that computes in float32 whatever its inputs'
        dtype (a flax module built with ``dtype=float32``) rounds the same way here, and E
        stays unmeasured: widening it warns (:class:`~mhatheory.precision.PrecisionWarning`),
        since its intervals do not cover E. With x64 off there is no wider dtype, and the
        intervals are those of the float32 operator."""
        wdt = np.dtype(self.work_dtype)
        if self.dtype == wdt:
            return self
        return LinearOperator(self._point.widened(wdt), self.mask, linearised=False)

    def restrict(self, select, axis: int | None = None, index: int | None = None
                 ) -> LinearOperator:
        """The block on the coordinates :func:`block_mask` selects (within this operator's own
        block): the principal sub-matrix A_SS, whose eigenvalues interlace A's (Cauchy)."""
        mask = block_mask(self.params, select, axis, index)
        if self.mask is not None:
            mask = mask & self.mask
            if not mask.any():
                raise ValueError(f"block selection {select!r} (axis {axis}, index {index}) "
                                 "shares no coordinate with this operator's block.")
        return LinearOperator(self._point, mask, self.linearised)

    def _embed(self, x):
        idx = np.flatnonzero(self.mask)
        return jnp.zeros(self.P, x.dtype).at[idx].set(x)

    def _compress(self, v):
        return v[np.flatnonzero(self.mask)]

    def block_mv(self, x) -> jax.Array:
        """The operator on the block's own coordinates: a ``size``-vector in, one out."""
        if self.mask is None:
            return self.mv(x)
        return self._compress(self.mv(self._embed(jnp.asarray(x))))

    def as_scipy(self):
        """A ``scipy.sparse.linalg.LinearOperator`` of shape ``(size, size)`` (float64 NumPy
        vectors in and out), e.g. for ``scipy.sparse.linalg.eigsh``."""
        import scipy.sparse.linalg as sla

        def matvec(x):
            x = jnp.asarray(np.asarray(x).reshape(-1), self.work_dtype)
            return np.asarray(self.block_mv(x))

        return sla.LinearOperator((self.size, self.size), matvec=matvec, rmatvec=matvec,
                                  dtype=np.dtype(self.work_dtype))

    def as_lineax(self):
        """A ``lineax.FunctionLinearOperator`` on the block's ``size``-vectors, tagged symmetric
        (and positive semi-definite when ``psd``), for ``lineax.linear_solve``. lineax is an
        optional dependency, imported here."""
        try:
            import lineax
        except ImportError as err:
            raise ImportError("as_lineax needs lineax, which mhatheory does not install: "
                              "pip install lineax") from err

        tags = [lineax.symmetric_tag] + ([lineax.positive_semidefinite_tag] if self.psd else [])
        return lineax.FunctionLinearOperator(
            self.block_mv, jax.ShapeDtypeStruct((self.size,), self.work_dtype), tags=tags)

    def __repr__(self) -> str:
        block = "" if self.mask is None else f", block of {self.size}"
        return (f"LinearOperator({type(self.operator).__name__}, P={self.P:,}{block}, "
                f"{self.dtype.name})")


@dataclass(frozen=True)
class Block(Operator):
    """``op`` (a loss function or operator) restricted to the coordinates :func:`block_mask`
    selects: the principal sub-matrix. ``Block(op, select, axis, index).linearise(params, *args)``
    is ``linearise(op, params, *args).restrict(select, axis, index)``."""

    op: Any
    select: str | Callable
    axis: int | None = None
    index: int | None = None

    @property
    def psd(self) -> bool:  # a principal sub-matrix of a PSD matrix is PSD
        return as_operator(self.op).psd

    def check(self, params, args) -> None:
        block_mask(params, self.select, self.axis, self.index)     # raises when nothing matches
        as_operator(self.op).check(params, args)

    def matvec_at(self, params, args):
        return as_operator(self.op).matvec_at(params, args)

    def scalar(self, params, *args):
        return as_operator(self.op).scalar(params, *args)

    def check_inputs(self, params, args) -> None:
        block_mask(params, self.select, self.axis, self.index)     # raises when nothing matches
        as_operator(self.op).check_inputs(params, args)

    def at(self, params, *args, linearised: bool | None = True) -> LinearOperator:
        return as_operator(self.op).at(params, *args, linearised=linearised).restrict(
            self.select, self.axis, self.index)


__all__ = ["Block", "Hessian", "LinearOperator", "Operator", "as_operator", "check_finite",
           "linearise", "one_shot", "size_of"]
