"""The two tasks of ``mhatheory run transformer-curvature``, in one shape.

A task is a model family ``make(d_model, heads, layers, seed)`` and three splits (train pool,
validation, test), each a :class:`Split` of ``inputs``, integer ``targets`` and ``weights`` (one
per target, 1 where the loss counts it). Every task is trained and probed through the same loss,

    L̂(θ) = Σ_{i,t} w_{i,t} ℓ_CE(z_{i,t}(θ), y_{i,t}) / Σ_{i,t} w_{i,t},

the weighted cross-entropy that :class:`mhatheory.spectral.Curvature` with
``loss="cross_entropy"`` splits into G + N, so the loss a model trains on, the loss whose
Hessian is probed and the levels L̂ is matched at are one function. A sample counts as right
when every weighted target is the argmax of its logits (exact match).

* ``addition``: a causal :class:`~mhatheory.models.DecoderTransformer` (learned positions) on
  3-digit addition ``abc+def=`` with the 4-digit sum written least significant digit first
  (``reverse_answer``: the order in which a left-to-right model can carry), teacher forcing,
  weights on the 4 answer positions. With teacher forcing, all four argmaxes right is exactly
  greedy decoding's answer right (each greedy step then sees the true prefix), so exact match
  is the held-out sums' accuracy.
* ``digits``: an :class:`~mhatheory.models.EncoderClassifier` (8 row tokens of 8 pixels, mean
  pooling) on the UCI handwritten digits, 10 classes, weight 1 per image.

``entropy`` is the loss of the best constant predictor (per answer position for addition: the
marginal entropy of each answer digit, averaged), the level a model must get below to have
learned anything from its inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from flax import nnx

from mhatheory.models import DecoderTransformer, EncoderClassifier
from mhatheory.tasks import addition as ad
from mhatheory.tasks import digits as dg

TASKS = ("addition", "digits")


class Split(NamedTuple):
    """Inputs, integer targets and their loss weights (module docstring)."""

    inputs: np.ndarray
    targets: np.ndarray
    weights: np.ndarray

    def take(self, idx) -> Split:
        """The samples ``idx``."""
        return Split(*(a[idx] for a in self))


class Task(NamedTuple):
    """One task: the model family, the splits and the constant predictor's loss."""

    name: str
    make: Callable[[int, int, int, int], nnx.Module]
    train: Split
    val: Split
    test: Split
    entropy: float


def _entropy(targets, weights) -> float:
    """Mean over weighted target columns of the entropy (nats) of that column's targets."""
    t = targets.reshape(len(targets), -1)
    w = weights.reshape(len(weights), -1)
    out = []
    for j in range(t.shape[1]):
        if w[:, j].any():
            p = np.bincount(t[w[:, j] > 0, j]) / np.sum(w[:, j] > 0)
            p = p[p > 0]
            out.append(float(-np.sum(p * np.log(p))))
    return float(np.mean(out))


def _teacher_forcing(seqs) -> Split:
    seqs = np.asarray(seqs)
    w = np.zeros(seqs[:, 1:].shape)
    w[:, ad.PROMPT_LEN - 1:] = 1.0
    return Split(seqs[:, :-1], seqs[:, 1:], w)


def addition(num_train: int, num_val: int, num_test: int, seed: int) -> Task:
    """3-digit addition (reversed answers): disjoint train, validation and test problems."""
    sp = ad.split(num_train, num_val + num_test, reverse_answer=True, seed=seed)
    train = _teacher_forcing(sp.train)

    def make(d_model, heads, layers, seed):
        return DecoderTransformer(ad.VOCAB, d_model, heads, layers, positional="learned",
                                  causal=True, max_len=ad.SEQ_LEN, rngs=nnx.Rngs(seed),
                                  param_dtype=jnp.float64)

    return Task("addition", make, train, _teacher_forcing(sp.test[:num_val]),
                _teacher_forcing(sp.test[num_val:]), _entropy(train.targets, train.weights))


def digits(num_val: int, seed: int) -> Task:
    """The 10-class UCI digits: half the images for test (stratified), ``num_val`` of the other
    half for validation, the rest the training pool."""
    d = dg.load(None, test_fraction=0.5, seed=seed)
    perm = np.random.default_rng([seed, 1]).permutation(len(d["y_train"]))
    x, y = d["x_train"][perm], d["y_train"][perm]
    if num_val >= len(y):
        raise ValueError(f"num_val={num_val} leaves no digits to train on ({len(y)} training "
                         "images); lower --num-val.")
    split = lambda xs, ys: Split(xs, ys, np.ones(len(ys)))    # noqa: E731
    train = split(x[num_val:], y[num_val:])

    def make(d_model, heads, layers, seed):
        return EncoderClassifier(8, 10, d_model=d_model, num_heads=heads, num_layers=layers,
                                 max_len=8, rngs=nnx.Rngs(seed), param_dtype=jnp.float64)

    return Task("digits", make, train, split(x[:num_val], y[:num_val]),
                split(d["x_test"], d["y_test"]), _entropy(train.targets, train.weights))
