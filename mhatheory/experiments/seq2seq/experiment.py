"""The ``seq2seq`` experiment's config and run; see
:mod:`mhatheory.experiments.seq2seq`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from mhatheory import results, train
from mhatheory.experiments._common import validate_common
from mhatheory.models import Seq2SeqTransformer

BOS = 1
FIRST = 2  # tokens FIRST..vocab-1 are content; 0 is unused padding


@dataclass(frozen=True)
class Config:
    """An encoder–decoder transformer on sequence reversal or copying.

    Attributes:
        task: what the decoder must output: reverse or copy (the source sequence).
        length: tokens per sequence (≥ 2).
        vocab: vocabulary size, padding and BOS included (> 3).
        d_model: model width (divisible by heads).
        heads: attention heads per layer.
        layers: encoder and decoder layers.
        train_pool: random sequences drawn for training (test sequences are removed).
        num_test: held-out test sequences (duplicates removed).
        batch: sequences per AdamW step.
        steps: AdamW steps.
        lr: peak learning rate (linear warm-up, then cosine decay).
        warmup: warm-up steps.
        eval_every: evaluate on the test set every this many steps.
        seed: random seed (data and initialisation).
    """

    task: str = "reverse"
    length: int = 8
    vocab: int = 12
    d_model: int = 64
    heads: int = 4
    layers: int = 2
    train_pool: int = 50_000
    num_test: int = 2_000
    batch: int = 128
    steps: int = 2_000
    lr: float = 2e-3
    warmup: int = 200
    eval_every: int = 250
    seed: int = 0

    def __post_init__(self):
        validate_common(self)
        if not self.warmup < self.steps:
            raise ValueError(f"warmup={self.warmup} must lie in [0, steps={self.steps}).")
        if self.task not in ("reverse", "copy"):
            raise ValueError(f"task must be 'reverse' or 'copy', got {self.task!r}.")
        if self.vocab <= FIRST + 1 or self.length < 2 or self.d_model % self.heads:
            raise ValueError("need vocab > 3, length >= 2 and d_model divisible by heads; got "
                             f"vocab={self.vocab}, length={self.length}, d_model={self.d_model}, "
                             f"heads={self.heads}.")


def make_data(config: Config):
    """``(pool, test)``: random training sequences and disjoint held-out ones."""
    rng = np.random.default_rng(config.seed)
    draw = lambda n: rng.integers(FIRST, config.vocab, (n, config.length))  # noqa: E731
    test = np.unique(draw(config.num_test), axis=0)
    pool = draw(config.train_pool)
    test_keys = {row.tobytes() for row in test}
    pool = pool[[row.tobytes() not in test_keys for row in pool]]
    return pool, test


def target(config: Config, src):
    """The decoder's target for ``src``: reversed or copied."""
    return src[..., ::-1] if config.task == "reverse" else src


def _loss(model, src, tgt):
    tgt_in = jnp.concatenate([jnp.full_like(tgt[:, :1], BOS), tgt[:, :-1]], axis=1)
    logits = model(src, tgt_in)
    return optax.softmax_cross_entropy_with_integer_labels(logits, tgt).mean()


_train_step = train.nnx_step(_loss)


@nnx.jit
def _greedy(model, src):
    memory = model.encode(src)
    out = jnp.full((src.shape[0], src.shape[1] + 1), BOS, src.dtype)

    def step(t, out):
        logits = model.decode(out[:, :-1], memory)
        return out.at[:, t + 1].set(jnp.argmax(logits[:, t], axis=-1))

    return jax.lax.fori_loop(0, src.shape[1], step, out)[:, 1:]


@nnx.jit
def _teacher_forced(model, src, tgt):
    tgt_in = jnp.concatenate([jnp.full_like(tgt[:, :1], BOS), tgt[:, :-1]], axis=1)
    return jnp.argmax(model(src, tgt_in), axis=-1)


#: test sequences decoded at once: the decoder's activations grow as chunk × length² (100,000
#: sequences of length 100 asked 74 GB of one program)
EVAL_CHUNK = 1024


def evaluate(model, config: Config, test):
    """Greedy and teacher-forced held-out accuracy and exact match, over the test set in
    chunks of :data:`EVAL_CHUNK` sequences (every sequence has the same length, so the token
    accuracy is the mean of the per-sequence ones)."""
    test = np.asarray(test)
    sums = np.zeros(3)
    for start in range(0, len(test), EVAL_CHUNK):
        src = jnp.asarray(test[start:start + EVAL_CHUNK])
        tgt = target(config, src)
        greedy = _greedy(model, src) == tgt
        tf = _teacher_forced(model, src, tgt) == tgt
        sums += [float(jnp.sum(jnp.mean(greedy, axis=1))), float(jnp.sum(jnp.all(greedy, axis=1))),
                 float(jnp.sum(jnp.mean(tf, axis=1)))]
    acc, exact, tf_acc = sums / len(test)
    return {"greedy_token_acc": float(acc), "greedy_exact_match": float(exact),
            "teacher_forced_token_acc": float(tf_acc)}


def run(config: Config, out_dir, progress: bool = True) -> dict:
    """Train with AdamW, write ``results.json`` and the learning curve; returns the final row."""
    results.retire(out_dir)
    pool, test = make_data(config)
    model = Seq2SeqTransformer(config.vocab, config.vocab, config.d_model, config.heads,
                               config.layers, max_len=config.length + 1,
                               rngs=nnx.Rngs(config.seed))
    optimizer = train.warmup_cosine_adamw(model, lr=config.lr, warmup=config.warmup,
                                          steps=config.steps, weight_decay=0.01)
    rng = np.random.default_rng(config.seed + 1)
    curve, losses = [], []
    for step in tqdm(range(1, config.steps + 1), desc="seq2seq", disable=not progress):
        src = jnp.asarray(pool[rng.integers(0, len(pool), config.batch)])
        losses.append(float(_train_step(model, optimizer, src, target(config, src))))
        if step % config.eval_every == 0 or step == config.steps:
            curve.append({"step": step, "train_loss": float(np.mean(losses[-50:])),
                          **evaluate(model, config, test)})
    final = curve[-1]
    out = Path(out_dir)
    results.save_figure_atomic(_figure(curve, config), out / "learning_curve.png")
    body = {"final": final, "curve": curve, "train_pool": int(len(pool)),
            "num_test": int(len(test)), "disjoint": True}
    results.write_results(out, "seq2seq", config, config.seed, body,
                          figures=["learning_curve.png"])
    return final


def _figure(curve, config):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    steps = [c["step"] for c in curve]
    ax[0].semilogy(steps, [c["train_loss"] for c in curve], "o-")
    ax[0].set_xlabel("AdamW step")
    ax[0].set_ylabel("training cross-entropy (nats/token)")
    for key in ("greedy_token_acc", "greedy_exact_match", "teacher_forced_token_acc"):
        ax[1].plot(steps, [100 * c[key] for c in curve], "o-", label=key.replace("_", " "))
    ax[1].axhline(99, color="gray", ls=":", label="99 %")
    ax[1].set_xlabel("AdamW step")
    ax[1].set_ylabel("held-out accuracy (%)")
    ax[1].legend(fontsize=8)
    fig.suptitle(f"Encoder–decoder transformer, task: {config.task} (length {config.length})")
    fig.tight_layout()
    return fig
