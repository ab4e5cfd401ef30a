"""Three-digit addition: ``abc+def=`` followed by the zero-padded 4-digit sum (optionally
written reversed), character tokens, disjoint train/test splits, prefix-wise evaluation, and the
accuracy ceiling that the symmetry theorem imposes on non-causal models without positions.

Tokens: digits 0–9 are ids 0–9, ``+`` = 10, ``=`` = 11, padding = 12. A full sequence has 12
tokens: the 8-token prompt and the 4 answer digits.

**Prefix-wise prediction (no target leakage).** Answer digit t is predicted at the last position
of the prefix prompt + answer[:t]; later positions are padding whose keys are masked, which for
any model is the same as truncating the input (the padding mask moves with the tokens). Greedy
decoding feeds its own digits back.

**The ceiling (by exact enumeration).** Without a causal mask and positions, the
next-token prediction depends only on (the multiset of the input, its last token). Greedy
decoding from a prompt ending in ``=`` is therefore a function of the prompt's multiset, so within
each multiset class at most the most frequent answer can be right:
ceiling = Σ_classes max_answer count / #problems. Per answer position t the key is
(multiset of prompt + answer[:t], previous token) with target answer[t].
"""

from __future__ import annotations

from collections import Counter, defaultdict
from functools import lru_cache
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from mhatheory import train

PLUS, EQUALS, PAD = 10, 11, 12
VOCAB = 13
PROMPT_LEN, ANSWER_LEN = 8, 4
SEQ_LEN = PROMPT_LEN + ANSWER_LEN


def _digits(x, width):
    x = np.asarray(x, dtype=np.int64)
    return np.stack([(x // 10 ** (width - 1 - i)) % 10 for i in range(width)], axis=-1)


def encode(a, b, reverse_answer: bool = False) -> np.ndarray:
    """``[N, 12]`` token sequences for operands ``a, b`` (arrays of ints in 0..999)."""
    a, b = np.atleast_1d(a), np.atleast_1d(b)
    if np.any((a < 0) | (a > 999) | (b < 0) | (b > 999)):
        raise ValueError("operands must lie in 0..999 for 3-digit addition.")
    ans = _digits(a + b, ANSWER_LEN)
    if reverse_answer:
        ans = ans[:, ::-1]
    n = a.shape[0]
    return np.concatenate([_digits(a, 3), np.full((n, 1), PLUS), _digits(b, 3),
                           np.full((n, 1), EQUALS), ans], axis=1)


def decode(tokens) -> str:
    """Tokens as text, e.g. ``123+456=0579`` (padding as ``_``)."""
    return "".join("0123456789+=_"[int(t)] for t in tokens)


class Split(NamedTuple):
    """Disjoint train and test token sequences (:func:`split`)."""
    train: np.ndarray   # [N_train, 12]
    test: np.ndarray    # [N_test, 12]


def check_range(lo, hi, reverse_answer=False) -> None:
    """``lo``, ``hi`` integers with 0 <= lo <= hi <= 999 and ``reverse_answer`` a bool."""
    for name, v in (("lo", lo), ("hi", hi)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v <= 999:
            raise ValueError(f"{name} must be an integer operand in 0..999 (3-digit addition), "
                             f"got {v!r}.")
    if lo > hi:
        raise ValueError(f"need 0 <= lo <= hi <= 999, got lo={lo}, hi={hi}.")
    if not isinstance(reverse_answer, (bool, np.bool_)):
        raise ValueError(f"reverse_answer must be True or False, got {reverse_answer!r}.")


def check_sizes(num_train, num_test, lo: int = 0, hi: int = 999) -> None:
    """``num_train``, ``num_test`` ≥ 1 and together at most the (hi − lo + 1)² problems."""
    for name, v in (("num_train", num_train), ("num_test", num_test)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}.")
    total = (hi - lo + 1) ** 2
    if num_train + num_test > total:
        raise ValueError(f"num_train + num_test = {num_train + num_test} exceeds the "
                         f"{total} distinct problems in [{lo}, {hi}]².")


def split(num_train: int, num_test: int, *, lo: int = 0, hi: int = 999,
          reverse_answer: bool = False, seed: int = 0) -> Split:
    """Disjoint train/test problems drawn without replacement from [lo, hi]²."""
    check_range(lo, hi, reverse_answer)
    check_sizes(num_train, num_test, lo, hi)
    m = hi - lo + 1
    total = m * m
    idx = np.random.default_rng(seed).choice(total, num_train + num_test, replace=False)
    a, b = lo + idx // m, lo + idx % m
    seqs = encode(a, b, reverse_answer)
    return Split(seqs[:num_train], seqs[num_train:])


def prefix_inputs(seqs, t: int):
    """Prefix of answer position t as a padded ``[N, 12]`` input, its validity mask, the readout
    position and the target digit (JAX arrays; works inside ``jit`` for a static ``t``).

    Example:
        >>> inp, valid, pos, target = prefix_inputs(encode(123, 456), 1)
        >>> decode(inp[0]), int(pos), int(target[0])
        ('123+456=0___', 8, 5)
    """
    length = PROMPT_LEN + t
    valid = jnp.broadcast_to(jnp.arange(SEQ_LEN) < length, jnp.shape(seqs))
    return jnp.where(valid, seqs, PAD), valid, length - 1, jnp.asarray(seqs)[:, length]


# --- training and evaluating a model on the task

def _ce(logits, targets):
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()


def loss(model, seqs):
    """Teacher forcing for causal models; prefix-wise (4 masked passes,
    :func:`prefix_inputs`) for non-causal ones."""
    if model.causal:
        logits = model(seqs[:, :-1])
        return _ce(logits[:, PROMPT_LEN - 1:], seqs[:, PROMPT_LEN:])
    total = 0.0
    for t in range(ANSWER_LEN):
        inp, valid, pos, target = prefix_inputs(seqs, t)
        total = total + _ce(model(inp, valid=valid)[:, pos], target)
    return total / ANSWER_LEN


#: One AdamW step of :func:`loss` on a batch of sequences (``train.nnx_step``).
train_step = train.nnx_step(loss)


@nnx.jit
def greedy(model, seqs):
    """Greedy answer digits from the prompts of ``seqs`` (prefix-masked, any model)."""
    out = prefix_inputs(seqs, 0)[0]
    for t in range(ANSWER_LEN):
        inp, valid, pos, _ = prefix_inputs(out, t)
        out = out.at[:, pos + 1].set(jnp.argmax(model(inp, valid=valid)[:, pos], axis=-1))
    return out[:, PROMPT_LEN:]


@nnx.jit
def per_position_accuracy(model, seqs):
    """Teacher-forced prefix-wise accuracy of each answer digit."""
    accs = []
    for t in range(ANSWER_LEN):
        inp, valid, pos, target = prefix_inputs(seqs, t)
        accs.append(jnp.mean(jnp.argmax(model(inp, valid=valid)[:, pos], -1) == target))
    return jnp.stack(accs)


def evaluate(model, test) -> dict:
    """Greedy exact match, digit accuracy and teacher-forced per-position accuracy."""
    pred = np.asarray(greedy(model, jnp.asarray(test)))
    ans = test[:, PROMPT_LEN:]
    return {"exact_match": float(np.mean(np.all(pred == ans, axis=1))),
            "digit_accuracy": float(np.mean(pred == ans)),
            "per_position_tf": np.asarray(per_position_accuracy(model, jnp.asarray(test))).tolist()}



def _group_max_fraction(keys, targets, num_targets: int) -> float:
    combo = keys * num_targets + targets
    uniq, counts = np.unique(combo, return_counts=True)
    k = uniq // num_targets
    order = np.argsort(k, kind="stable")
    k, counts = k[order], counts[order]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    return float(np.maximum.reduceat(counts, starts).sum() / keys.size)


#: 13ᵈ for digit d, 0 for the other tokens: Σ over a row's tokens of _DIGIT_WEIGHT[token] is
#: Σ_d count_d·13ᵈ, the row's digit counts written in base 13 (each count ≤ 12 < 13)
_DIGIT_WEIGHT = np.array([13**d for d in range(10)] + [0] * (VOCAB - 10), dtype=np.int64)


def _multiset_key(tokens) -> np.ndarray:
    """Injective key of the multiset of digit tokens per row: its digit counts in base 13 (rows
    of at most 12 tokens, so every count is a base-13 digit), summed in one gather."""
    return _DIGIT_WEIGHT[np.asarray(tokens)].sum(axis=1)


class Ceilings(NamedTuple):
    """The accuracy ceilings of a non-causal, position-free model (module docstring)."""

    exact_match: float                 #: best greedy exact-match accuracy over all problems
    per_position: tuple[float, ...]    #: best teacher-forced accuracy of each answer digit
    num_problems: int                  #: problems enumerated, (hi − lo + 1)²


@lru_cache(maxsize=8)
def ceilings(lo: int = 0, hi: int = 999, reverse_answer: bool = False) -> Ceilings:
    """Exact-match ceiling and the per-position ceilings, by enumerating every problem."""
    check_range(lo, hi, reverse_answer)
    r = np.arange(lo, hi + 1)
    a, b = np.repeat(r, r.size), np.tile(r, r.size)
    seqs = encode(a, b, reverse_answer)
    prompt_key = _multiset_key(seqs[:, :PROMPT_LEN])
    overall = _group_max_fraction(prompt_key, a + b, 2000)
    per_position = []
    for t in range(ANSWER_LEN):
        key = _multiset_key(seqs[:, : PROMPT_LEN + t]) * VOCAB + seqs[:, PROMPT_LEN + t - 1]
        per_position.append(_group_max_fraction(key, seqs[:, PROMPT_LEN + t], 10))
    return Ceilings(overall, tuple(per_position), int(a.size))


def ceilings_by_counting(lo: int = 0, hi: int = 999, reverse_answer: bool = False) -> Ceilings:
    """:func:`ceilings` the slow way, for tests and ``verify``: one problem at a time, the
    multiset classes as dictionaries of sorted token tuples (written differently from the
    vectorised enumeration, so agreement means something). O((hi − lo + 1)²) Python steps."""
    check_range(lo, hi, reverse_answer)
    classes = defaultdict(Counter)
    per_position = [defaultdict(Counter) for _ in range(ANSWER_LEN)]
    for a in range(lo, hi + 1):
        for b in range(lo, hi + 1):
            s = encode(a, b, reverse_answer)[0]
            classes[tuple(sorted(s[:PROMPT_LEN]))][a + b] += 1
            for t in range(ANSWER_LEN):
                key = (tuple(sorted(s[:PROMPT_LEN + t])), s[PROMPT_LEN + t - 1])
                per_position[t][key][s[PROMPT_LEN + t]] += 1
    n = (hi - lo + 1) ** 2
    best = [sum(max(c.values()) for c in groups.values()) / n
            for groups in (classes, *per_position)]
    return Ceilings(best[0], tuple(best[1:]), n)


def exact_match_ceiling(lo: int = 0, hi: int = 999, reverse_answer: bool = False) -> float:
    """The best exact-match accuracy any non-causal, position-free model can reach on
    ``abc+def=`` with operands in [lo, hi] (greedy decoding), by exhaustive enumeration."""
    check_range(lo, hi, reverse_answer)
    return ceilings(lo, hi, reverse_answer).exact_match
