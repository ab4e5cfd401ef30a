"""The switches and options of the probes, checked on the host before any work.

Every switch is an :class:`enum.Enum` whose members are also their strings
(``Which.SMALLEST == "smallest"``), so ``which="smallest"`` keeps working and a misspelt string
is refused with the list of members. :func:`resolve_key` is the one place a probe's key is
accepted: a typed key (``jax.random.key(0)``) or a raw ``uint32`` key
(``jax.random.PRNGKey(0)``), and ``None`` where a convenience allows it, which is a fresh draw
(documented there; the result records the key it used). :func:`plan_memory` decides whether the
Krylov basis is kept (:func:`lanczos_bytes` against the budget) and which reorthogonalisation
runs; :func:`work_dtype` is the dtype of the recurrence (float64 for a float32 model when x64 is
on: mixed precision).
"""

from __future__ import annotations

import enum
import secrets

import jax
import jax.numpy as jnp
import numpy as np

from mhatheory import _validate
from mhatheory.spectral._probabilistic import check_failure_prob

#: Default memory budget (bytes) of the Krylov basis and of the dense route.
DEFAULT_BASIS_BUDGET = 2 * 2**30


class Which(str, enum.Enum):
    """Which end of the spectrum a probe looks at.

    * ``SMALLEST``: λmin and the pairs next to it (ascending).
    * ``LARGEST``: λmax and the pairs next to it (descending).
    """

    SMALLEST = "smallest"
    LARGEST = "largest"


class Method(str, enum.Enum):
    """How an extreme eigenvalue is computed.

    * ``LANCZOS``: matrix-free, O(P·krylov) memory (:class:`~mhatheory.spectral.Lanczos`).
    * ``EXACT``: the dense operator and ``eigh``, P² memory, guarded by a budget
      (:class:`~mhatheory.spectral.Dense`); deterministic.
    """

    LANCZOS = "lanczos"
    EXACT = "exact"


#: Models of at most this many parameters are orthogonalised in full by ``Reortho.AUTO`` when
#: the recurrence runs on the host (the Gram–Schmidt work, O(P·j) per step on vectors of all P
#: entries, is then at most P·j ≤ 4·10⁶ flops, the basis at most 32 MiB in float64), and with
#: ``krylov=None`` (the default) in one cycle as long as the operator: the Krylov space then
#: reaches an invariant subspace without a restart, whose Ritz values are eigenvalues to
#: rounding, and a cycle still stops as soon as its pairs converge. Restarted instead, a
#: cluster can keep a run from ever meeting tol: λmin of the Gauss–Newton term of a trained
#: 6-8-3 MLP (P = 83, 9 eigenvalues within 1e-12·‖G‖ of 0) took 876 HVPs unconverged in cycles
#: of 40 (1,836 with ``failure_prob``), and 80, converged, in one; the three lowest of a
#: trained tanh MLP (P = 499, λ₁…₃ within 5e-5 of each other beside a cluster at 0) 897 HVPs
#: unconverged in selective cycles of 40, and 147 in one; its λmin 263 and 113. On Deora at
#: P = 2,176 and 8,448 one full cycle took 67–74 HVPs for λmin against 75–83 thick-restarted,
#: in 0.63–1.0× the time, and as many for λmax in 0.9–1.4×.
SMALL_OPERATOR = 2**11

#: The same bound for a compiled recurrence (an accelerator's, or past ``HOST_MAX_PARAMS``):
#: its Gram–Schmidt holds one branch per 16 rows of the basis, so a cycle as long as the
#: operator compiles P/16 of them.
SMALL_COMPILED_OPERATOR = 256

#: A block of at most this many coordinates (or ``krylov``) is orthogonalised in full by
#: ``Reortho.AUTO`` whatever the model's size: its cycles are short, though each Gram–Schmidt
#: pass works on vectors of all P entries.
SMALL_BLOCK = 64

#: The most Lanczos vectors per cycle when ``krylov=None`` and the operator is not small.
DEFAULT_KRYLOV = 40

#: The most Lanczos vectors per cycle of a single λmin that restarts from its Ritz vector
#: (``krylov=None``, ``reortho="auto"`` past :data:`THICK_LAMBDA_MIN_MAX_PARAMS`, no
#: ``failure_prob``) where its stored basis fits the memory budget: each such restart drops the
#: cycle's Krylov space, and fewer, longer cycles spend fewer HVPs. On Deora (n = 64, medians
#: of interleaved calls, 2026-12-07) 40 → 80 took λmin from 200/212 HVPs to 166/196 at
#: P = 133,120 in float64 (ARPACK: 171/231; 0.60/0.57 s against 0.68/0.58 s), from 203/227 to
#: 178/189 at 1,056,768 (ARPACK: 191/231; 3.2/3.1 s against 3.2/3.6 s), and float32 from
#: 103/107 to 88/88 at 133,120 (ARPACK: 92/150) and 127 to 109 at 10⁶ (ARPACK: 125). At 120 the
#: float64 runs took 155–168 HVPs but a float32 one 128, its first cycle running on its
#: widened products past where 80 switches to its own.
RESTART_KRYLOV = 80

#: ``Reortho.AUTO`` orthogonalises a single λmin (k = 1, ``SMALLEST``, no ``failure_prob``) in
#: full on a model of up to this many parameters, so that its restarts are thick; and, with
#: ``failure_prob``, a single λmin or λmax whose products are rounded in a lower precision than
#: the recurrence (a float32 model: its long cycle loses orthogonality at ε₃₂'s rate). A Hessian's
#: lower end is usually a small eigenvalue beside a cluster at zero that one cycle of 40 steps
#: rarely resolves; restarting from the Ritz vector alone then takes 114–225 HVPs where a thick
#: restart takes 80–89, about ARPACK's count (Deora, n = 64, P = 2,176 and 8,448, float64), and
#: a warm call 0.64–0.75× the time. Past this size the Gram–Schmidt pass, O(P·j) per step on
#: vectors of all P entries (a block's too), costs about what the HVPs save on a model whose
#: HVP is that cheap (0.8–1.3× the time at P = 15,840 and 33,280; a block of 2,048 coordinates
#: of a model of 133,120 took 58 HVPs in 1.2 s against 94 in 0.5 s). λmax, an outlier that one
#: cycle resolves, keeps ``NONE``.
THICK_LAMBDA_MIN_MAX_PARAMS = 2**14


class Reortho(str, enum.Enum):
    """How a Lanczos run keeps its basis orthogonal.

    * ``AUTO`` (the default): ``FULL`` on a small operator, a model of at most
      :data:`SMALL_OPERATOR` parameters (:data:`SMALL_COMPILED_OPERATOR` on a compiled
      recurrence) or a block of at most ``krylov`` or
      :data:`SMALL_BLOCK` coordinates (an orthonormal basis reaches an invariant subspace
      within P steps, whose Ritz values are the eigenvalues to rounding, at O(P³) cost;
      without it a tight cluster,
      such as the near-zero eigenvalues of a small model's symmetries, can keep a restarted
      run from ever meeting tol), and for a single λmin on a model of up to
      :data:`THICK_LAMBDA_MIN_MAX_PARAMS` parameters (its restarts are then thick; with
      ``failure_prob``, a single λmin or λmax where the products are rounded in a lower
      precision than the recurrence, as a float32 model's);
      otherwise ``NONE`` for k = 1 (the certificate never relies on orthogonality, and the
      single most extreme pair is not affected by ghosts), ``SELECTIVE`` for k > 1.
    * ``SELECTIVE``: Parlett–Scott selective orthogonalisation. At each adaptive check, the
      Ritz pairs whose Ritz estimate β_{j+1}|s_{j,i}| is ≤ 1e4·√ε·‖T‖ (converged, or about to:
      the 1e4 margin covers the convergence between two checks) have their Ritz vectors formed
      from the basis (up to ``k + 3`` of them, one pass over Q, redone only when the set grows
      or converges a further 100×), and every new Lanczos vector is projected against them:
      O(P·(k+3)) per step. By Paige's theorem that is the only direction in which
      orthogonality is lost, so the basis stays semi-orthogonal, |q_iᵀq_k| ≤ √ε, at a fraction
      of the cost of Gram–Schmidt against the whole basis. Needs the stored basis.
    * ``PARTIAL``: Simon's partial reorthogonalisation (an O(m) recurrence estimates
      |q_{j+1}ᵀq_k| and a two-pass Gram–Schmidt against the whole basis runs where it exceeds
      √ε). Semi-orthogonal by construction, but each pass costs O(P·j) and, once a pair has
      converged, passes come every few steps: 6–15× the HVPs when an HVP is cheap against P.
      Use it to cross-check the selective scheme.
    * ``FULL``: Gram–Schmidt against the whole basis at every step, a second pass where the
      first removed more than 1 − 1/√2 of the vector's norm (Daniel–Gragg–Kaufman–Stewart, as
      ARPACK), O(P·m²) work. Orthonormal to rounding, so restarts are thick.
    * ``NONE``: the three-term recurrence alone, O(P) per step and no basis needed. Ghost
      copies of converged Ritz values appear once orthogonality is lost, so only the single
      most extreme pair (k = 1) is trustworthy; with the adaptive stop the run usually ends
      before a ghost forms. The only scheme for ``store_basis=False`` (the others need the
      basis), and the cheapest for k = 1.
    """

    AUTO = "auto"
    SELECTIVE = "selective"
    PARTIAL = "partial"
    FULL = "full"
    NONE = "none"


class Engine(str, enum.Enum):
    """Where a Lanczos probe runs its recurrence (everything but the operator's products: the
    three-term step, reorthogonalisation, Ritz vectors, restarts, the certificate).

    * ``AUTO`` (the default): ``HOST`` when the operator lives on a CPU and has at most
      :data:`HOST_MAX_PARAMS` coordinates, ``COMPILED`` otherwise.
    * ``HOST``: NumPy on the host. Nothing is compiled but the model's HVP, so a first call
      costs about one HVP compilation plus its products, and a warm call no dispatch of a
      compiled step per HVP; on a CPU at small P both are most of a probe's time.
    * ``COMPILED``: one compiled step per Krylov size and P (and a handful of small compiled
      programs), driven from Python between the HVPs; on an accelerator the vectors never leave
      the device, and at large P on a CPU its fused vector work beats NumPy's.

    Both draw the same random numbers from a key and run the same recurrence; their numbers
    differ by rounding (sums taken in another order). Where a discrete decision (a
    reorthogonalisation, a stop, a restart) sits at its threshold, that rounding can tip it, so
    a run may take a few steps more on one engine than on the other (measured: 408 against
    389 HVPs for three pairs of a float32 MLP with partial reorthogonalisation); either run's
    certified intervals hold.
    """

    AUTO = "auto"
    HOST = "host"
    COMPILED = "compiled"


#: ``Engine.AUTO`` runs the recurrence on the host up to this many coordinates (on a CPU): the
#: warm crossover lies between P = 133,120 (host/compiled 0.92 for λmin, 0.73 for λmax on
#: Deora) and 266,240 (1.42 and 0.80; ``experiments/bench/bench_engine.py``), and a first call on
#: the host compiles nothing but the HVP.
HOST_MAX_PARAMS = 5 * 2**15

#: The one-shot conveniences (``lambda_min``, ``lambda_max``, ``extreme_eigs``, ``trace``,
#: ``spectral_density``, ``per_block``) compute each product in one program up to this many
#: parameters and linearise above. A one-program product costs 1.1–1.4× a linearised one on
#: Deora at P = 133,120 and 1,056,768, and saves one compilation (about 0.3–0.5 s): over the
#: 150–250 products of a λmin the saving wins at the first size and loses at the second
#: (``spectral._operators``' docstring has the measurements).
ONE_PROGRAM_MAX_PARAMS = 2**18


def one_program(num_params: int) -> bool:
    """Whether a one-shot convenience computes its products in one program (not linearised)
    for a model of ``num_params`` parameters: up to :data:`ONE_PROGRAM_MAX_PARAMS`."""
    return num_params <= ONE_PROGRAM_MAX_PARAMS


def resolve_engine(engine: Engine, num_params: int, platforms: set[str] | None = None) -> bool:
    """Whether a probe configured with ``engine`` runs its recurrence on the host, for an
    operator of ``num_params`` coordinates whose arrays live on ``platforms`` (None: JAX's
    default backend); see :class:`Engine`."""
    if engine is Engine.AUTO:
        return (platforms or {jax.default_backend()}) == {"cpu"} and \
            num_params <= HOST_MAX_PARAMS
    return engine is Engine.HOST


def as_enum(cls, value, name: str):
    """``value`` as a member of the string enum ``cls`` (a member or its string); a clear error
    naming ``name`` and the members otherwise."""
    try:
        return cls(value)
    except ValueError:
        raise ValueError(f"{name} must be one of {[m.value for m in cls]} (or a "
                         f"spectral.{cls.__name__}), got {value!r}.") from None


def resolve_key(key, name: str = "key", allow_none: bool = False):
    """The probe's key as a typed key. A raw ``uint32`` key (``jax.random.PRNGKey(0)``, still
    the most common kind) is wrapped; ``None`` is refused unless ``allow_none``, where it is a
    fresh draw from the operating system's randomness (each call a new start; pass a key, or
    reuse the one the result records, to reproduce it).

    Example:
        >>> import jax
        >>> resolve_key(jax.random.PRNGKey(0)).dtype      # a raw uint32 key, wrapped
        key<fry>
    """
    if key is None:
        if not allow_none:
            raise ValueError(f"{name} must be a JAX random key (jax.random.key(seed)); it draws "
                             "the start vector and the random probes.")
        # from the raw bits: no program is compiled before the inputs are checked
        return jax.random.wrap_key_data(np.array([secrets.randbits(32), secrets.randbits(32)],
                                                 np.uint32))
    _validate.prng_key(name, key)
    if isinstance(key, jax.core.Tracer):
        return key
    if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(jnp.asarray(key, jnp.uint32))
    return key


def work_dtype(dtype):
    """The dtype of the Lanczos recurrence for an HVP in ``dtype``: float64 when JAX has x64
    enabled (mixed precision: a float32 model's HVP runs in float32, while the recurrence,
    Rayleigh quotients, tridiagonal and certificate run in float64), else ``dtype``."""
    if jax.config.jax_enable_x64 and jnp.finfo(dtype).bits < 64:
        return jnp.dtype(jnp.float64)
    return jnp.dtype(dtype)


def lanczos_bytes(num_params: int, krylov: int, k: int, dtype, store_basis: bool,
                  slots: int = 0) -> int:
    """Bytes of Lanczos vectors a probe holds (the HVP's own workspace comes on top): the basis
    (``krylov``·P, if stored), the selective set (``slots``·P) plus 10 + 3(k+1) P-vectors
    (start, q_{j−1}, q_j, w, the next q, the rounding probe z and its three HVPs; per wanted pair
    and neighbour: the Ritz vector, its HVP and a restart/replay accumulator).

    Example:
        >>> stored = lanczos_bytes(10_000, krylov=40, k=1, dtype="float64", store_basis=True)
        >>> free = lanczos_bytes(10_000, krylov=40, k=1, dtype="float64", store_basis=False)
        >>> stored - free == 40 * 10_000 * 8      # the basis
        True
    """
    per = np.dtype(dtype).itemsize * num_params
    return per * ((krylov if store_basis else 0) + slots + 10 + 3 * (k + 1))


#: A warm start ``v0`` gets a random unit vector of this weight added to its unit direction
#: (:func:`start_vector`), unless the probe's ``warm_start_mix`` says otherwise. Lanczos only
#: sees the eigenvectors its start vector has a component along: started exactly on (or near)
#: an eigenvector of another eigenvalue, e.g. the previous step's λmin vector after the minimum
#: moved to another direction, it converges there and certifies the wrong eigenvalue. With the
#: random part, every direction is present at ~1e-2/√P and the first residuals (≥ ~1e-2·gap)
#: are far above tol, so the recurrence runs until the extreme Ritz value has absorbed it, as
#: from a random start; the warm part still saves steps. The weight also enters the
#: probabilistic end (:func:`~._probabilistic.start_threshold`).
WARM_START_MIX = 1e-2

#: The HVP budget of a run sized for its probabilistic end (``failure_prob`` given) when
#: ``max_hvps`` is not.
DEFAULT_MAX_HVPS = 2000


def key_words(key) -> np.ndarray:
    """The words of a JAX key (typed or raw ``uint32``) as NumPy integers: the seed of the
    host's generators (:func:`host_rng`), so that one key gives one run on every engine."""
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.asarray(key, np.uint32).astype(np.uint64).ravel()


def derive_key(key, *path: int):
    """A key for the sub-task ``path`` (integers) of the typed ``key``, derived on the host: the
    words of NumPy's ``SeedSequence`` of the key's words and the path, wrapped as a key of the
    same implementation. Distinct paths give independent keys, and deriving one compiles
    nothing (``jax.random.fold_in`` and ``split`` each compile a program on their first call in
    a process, 0.1 s each on a 2-core CPU)."""
    data = jax.random.key_data(key)
    seed = [int(w) for w in key_words(key)] + [int(i) for i in path]
    words = np.random.SeedSequence(seed).generate_state(np.size(data), np.uint32)
    return jax.random.wrap_key_data(words.reshape(np.shape(data)),
                                    impl=jax.random.key_impl(key))


def host_rng(words, stream: int) -> np.random.Generator:
    """NumPy's generator for stream ``stream`` of the key with words ``words``
    (:func:`key_words`): a ``SeedSequence`` of the words and the stream number, so distinct
    streams are independent."""
    return np.random.default_rng(np.append(words, np.uint64(stream)))


def start_vector(size: int, rng: np.random.Generator, v0, dtype, mix: float = WARM_START_MIX,
                 mask=None) -> np.ndarray:
    """The start of a run, drawn on the host from ``rng``: a Gaussian vector (uniform on the
    sphere once normalised), or the unit direction of ``v0`` plus ``mix`` times an independent
    uniform unit vector; zero outside ``mask`` (a block: uniform on the block's sphere)."""
    r = rng.standard_normal(size).astype(dtype)
    if mask is not None:
        r = r * mask
    if v0 is None:
        return r
    v0 = np.asarray(v0).reshape(-1).astype(dtype)
    if mask is not None:
        v0 = v0 * mask
    n0 = np.linalg.norm(v0)
    unit = v0 / n0 if n0 > 0 else np.zeros_like(v0)
    return unit + mix * r / np.linalg.norm(r)


#: How an inconclusive eigenvalue check spends more HVPs: each level multiplies the HVP budget of
#: a run sized for its probabilistic end (``max_hvps``, default :data:`DEFAULT_MAX_HVPS`) and its
#: restarts, and tightens the tolerance, applied to the options of the first try.
ESCALATION = ({"max_hvps": 2, "max_restarts": 3, "tol": 1e-2},
              {"max_hvps": 8, "max_restarts": 6, "tol": 1e-4})


def escalated(options: dict, level: int) -> dict:
    """The Lanczos options of escalation ``level`` (1, 2, …) from the first try's ``options``."""
    step = ESCALATION[level - 1]
    out = dict(options)
    out["max_hvps"] = int(options.get("max_hvps") or DEFAULT_MAX_HVPS) * step["max_hvps"]
    out["max_restarts"] = max(int(options.get("max_restarts", 20) * step["max_restarts"]), 1)
    out["tol"] = max(float(options.get("tol", 1e-10)) * step["tol"], 1e-15)
    return out


def min_hvps(k: int, basis_free: bool = False) -> int:
    """HVPs of the shortest certified run: k + 1 steps (the wanted pairs and a neighbour), their
    k + 1 residuals, the 1 + min(2, k + 1) HVPs of the rounding estimate at most (one fewer
    where the start's product serves), and k replayed steps when basis-free."""
    return (k + 1) + (k + 1) + 1 + min(2, k + 1) + (k if basis_free else 0)


def check_budget(memory_budget_bytes) -> None:
    """``memory_budget_bytes`` is None (the default budget) or a number of bytes ≥ 0."""
    if memory_budget_bytes is None:
        return
    if (isinstance(memory_budget_bytes, bool)
            or not isinstance(memory_budget_bytes, (int, float, np.integer, np.floating))
            or not memory_budget_bytes >= 0 or memory_budget_bytes == float("inf")):
        raise ValueError(f"memory_budget_bytes must be a finite number of bytes >= 0 (or None "
                         f"for the default {DEFAULT_BASIS_BUDGET / 2**30:.0f} GiB), got "
                         f"{memory_budget_bytes!r}.")


def krylov_error(k: int, asked: str) -> ValueError:
    """The error of a probe for k pairs whose Krylov size (``asked``, in words) is ≤ k."""
    return ValueError(f"k={k} needs more Lanczos vectors per cycle than {asked}: the Krylov "
                      "space holds the k pairs and a neighbour; pass krylov above k (a run "
                      "caps it at the operator's size, which k must stay below; method='exact' "
                      "takes k up to it).")


def check_lanczos(*, k, which, krylov, tol, max_restarts, reortho, check_every, store_basis,
                  memory_budget_bytes, failure_prob, max_hvps, warm_start_mix,
                  engine=Engine.AUTO) -> dict:
    """The options of a :class:`~mhatheory.spectral.Lanczos` probe, checked (each error names the
    option) and normalised (enums, ints, floats); returns them as a dict."""
    reortho = as_enum(Reortho, reortho, "reortho")
    which = as_enum(Which, which, "which")
    engine = as_enum(Engine, engine, "engine")
    k = _validate.positive_int("k", k)
    if store_basis not in (None, True, False):
        raise ValueError(f"store_basis must be True, False or None (keep the basis when it "
                         f"fits memory_budget_bytes), got {store_basis!r}.")
    if reortho is Reortho.NONE and k > 1:
        raise ValueError(f"reortho='none' cannot tell the {k} most extreme eigenvalues from ghost "
                         "copies of the first; use reortho='selective' (or 'auto') for k > 1.")
    if store_basis is False and k > 1:
        raise ValueError(f"store_basis=False runs the plain recurrence, which cannot tell the {k} "
                         "most extreme eigenvalues from ghost copies of the first; use k=1 or "
                         "store_basis=True.")
    if store_basis is False and reortho not in (Reortho.AUTO, Reortho.NONE):
        raise ValueError(f"reortho={reortho.value!r} needs the Krylov basis; with "
                         "store_basis=False leave reortho at 'auto' (or 'none').")
    if krylov is not None:
        krylov = _validate.positive_int("krylov", krylov)
    if krylov is not None and krylov <= k:
        raise krylov_error(k, f"krylov={krylov}")
    tol = _validate.positive_float("tol", tol)
    if tol >= 1:
        raise ValueError(f"tol={tol!r} is a residual relative to ‖H‖ and must be below 1 (the "
                         "default 1e-10; 1e-3 for a rough value).")
    max_restarts = _validate.positive_int("max_restarts", max_restarts, minimum=0)
    check_every = _validate.positive_int("check_every", check_every)
    check_budget(memory_budget_bytes)
    if failure_prob is not None:
        failure_prob = check_failure_prob(failure_prob)
    mix = _validate.non_negative_float("warm_start_mix", warm_start_mix)
    if max_hvps is not None:
        max_hvps = _validate.positive_int("max_hvps", max_hvps)
        least = min_hvps(k, store_basis is False)
        if max_hvps < least:
            raise ValueError(f"max_hvps={max_hvps} is below the {least} HVPs of the shortest run "
                             f"that can certify k={k} pair(s) (k + 1 Lanczos steps, the Ritz "
                             "pairs' residuals and the rounding estimate); raise max_hvps.")
    return dict(k=k, which=which, krylov=krylov, tol=tol, max_restarts=max_restarts,
                reortho=reortho, check_every=check_every, store_basis=store_basis,
                memory_budget_bytes=memory_budget_bytes, failure_prob=failure_prob,
                max_hvps=max_hvps, warm_start_mix=mix, engine=engine)


def check_start(v0, *, size: int | None = None, failure_prob=None, warm_start_mix=WARM_START_MIX,
                name: str = "v0") -> None:
    """A warm start ``v0``: a real, finite, non-zero vector of ``size`` entries; with a
    ``failure_prob`` it needs a random part (``warm_start_mix`` > 0)."""
    if v0 is None:
        return
    if failure_prob is not None and warm_start_mix == 0:
        raise ValueError(f"failure_prob={failure_prob!r} needs a random start: a warm start v0 "
                         "with warm_start_mix=0 has no probability behind it. Mix in a uniform "
                         "part (warm_start_mix > 0, e.g. the default 1e-2) or drop v0.")
    if not _validate.is_concrete(v0):
        return
    if not hasattr(v0, "shape") and not all(np.isscalar(x) for x in jax.tree.leaves(v0)):
        raise ValueError(f"{name} must be one flat vector of P entries in ravel_pytree order "
                         f"(as EigResult.vector), got a {type(v0).__name__} of arrays; flatten "
                         "it with jax.flatten_util.ravel_pytree(v0)[0].")
    arr = np.asarray(v0)
    if not jnp.issubdtype(arr.dtype, jnp.number) or np.iscomplexobj(arr):
        raise ValueError(f"{name} must be a real vector (a warm start), got dtype {arr.dtype}.")
    if size is not None and arr.size != size:
        raise ValueError(f"{name} must have P={size} entries (one per parameter), got "
                         f"{arr.size} (shape {list(arr.shape)}).")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN/Inf; pass a finite start vector (e.g. the "
                         "previous probe's .vector) or None for a random start.")
    if not np.any(arr):
        raise ValueError(f"{name} is the zero vector, which spans no Krylov space; pass a "
                         "non-zero start vector or None for a random start.")


def basis_budget(memory_budget_bytes) -> int:
    """The bytes a run's Lanczos vectors may take: ``memory_budget_bytes``, or
    :data:`DEFAULT_BASIS_BUDGET` for None."""
    return DEFAULT_BASIS_BUDGET if memory_budget_bytes is None else memory_budget_bytes


def plan_memory(num_params: int, krylov: int, k: int, dtype, store_basis, reortho: Reortho,
                memory_budget_bytes, slots: int = 0) -> tuple[bool, Reortho]:
    """``(store_basis, reortho)`` for a run: the basis is kept when asked, or (``None``) when
    :func:`lanczos_bytes` with it fits the budget; without it the recurrence is the plain one.
    Raises a ``ValueError`` naming ``memory_budget_bytes`` when not even the O(P) vectors fit,
    or when k > 1 needs a basis the budget cannot hold."""
    budget = basis_budget(memory_budget_bytes)
    free = lanczos_bytes(num_params, krylov, k, dtype, False)
    if free > budget:
        raise ValueError(
            f"memory_budget_bytes={budget:,} is too small even for the O(P) Lanczos vectors: "
            f"P={num_params:,} {np.dtype(dtype).name} needs {free:,} bytes without the basis "
            f"({10 + 3 * (k + 1)} vectors). Raise memory_budget_bytes to at least {free:,}.")
    stored = lanczos_bytes(num_params, krylov, k, dtype, True, slots)
    if store_basis is None:
        store_basis = stored <= budget
        if not store_basis and k > 1:
            raise ValueError(
                f"k={k} needs the Krylov basis ({stored:,} bytes for krylov={krylov}, "
                f"P={num_params:,}), over memory_budget_bytes={budget:,}; raise "
                "memory_budget_bytes, lower krylov, or ask for k=1 (basis-free).")
    elif store_basis and memory_budget_bytes is not None and stored > budget:
        raise ValueError(
            f"store_basis=True needs {stored:,} bytes (krylov={krylov}, P={num_params:,}), over "
            f"memory_budget_bytes={budget:,}; use store_basis=None (basis-free when it does not "
            "fit), lower krylov, or raise memory_budget_bytes.")
    if reortho is Reortho.AUTO:
        reortho = Reortho.SELECTIVE if store_basis and k > 1 else Reortho.NONE
    return bool(store_basis), reortho
