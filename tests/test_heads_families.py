"""The heads sweep on any flax.nnx model family and any data: a family and a dataset written in
this file, run through the CLI as MODULE:FUNCTION; the built-in digits; the data and model
contracts, each violation answered before any work with nothing written to --out."""

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mhatheory import attention, cli, precision
from mhatheory.experiments import heads
from mhatheory.experiments.heads import datasets, families
from mhatheory.tasks import digits

TINY = ["--heads-grid", "1,2", "--lr-grid", "0.01,0.1", "--init-scale-grid", "1.0",
        "--n-grid", "24", "--n", "24", "--lr", "0.01", "--init-scale", "1.0",
        "--primary-lrs", "0.01", "--primary-inits", "1.0", "--seeds", "2", "--steps", "12",
        "--replace", "1", "--probe-seeds", "1", "--num-val", "8", "--record-points", "6",
        "--no-average-control", "--no-progress"]


class Tiny(nnx.Module):
    """A user's own family: flax.nnx.MultiHeadAttention over 4 tokens of 3 features, mean-pooled,
    one logit (labels ±1) or C logits."""

    def __init__(self, num_heads: int, classes: int = 1, *, rngs: nnx.Rngs):
        # flax's attention computes its softmax in float32; the toolkit's attention_fn keeps
        # float64, so the certified float64 probes hold (the precision guard warns otherwise)
        self.attn = nnx.MultiHeadAttention(num_heads=num_heads, in_features=3,
                                           qkv_features=2 * num_heads, out_features=4,
                                           decode=False, param_dtype=np.float64,
                                           attention_fn=attention.flax_attention_fn, rngs=rngs)
        self.head = nnx.Linear(4, classes, param_dtype=np.float64, rngs=rngs)
        self.classes = classes

    def __call__(self, x):
        out = self.head(self.attn(x).mean(axis=-2))
        return out[..., 0] if self.classes == 1 else out


def make(num_heads, *, rngs):
    return Tiny(num_heads, rngs=rngs)


def make_three_class(num_heads, *, rngs):
    return Tiny(num_heads, 3, rngs=rngs)


class _Column(Tiny):
    def __call__(self, x):
        return self.head(self.attn(x).mean(axis=-2))          # [n, 1], not [n]


def make_column(num_heads, *, rngs):
    """A wrong family for ±1 labels: logits [n, 1]."""
    return _Column(num_heads, rngs=rngs)


class _Empty(nnx.Module):
    def __call__(self, x):
        return x.mean(axis=(-2, -1))


def make_empty_at_2(num_heads, *, rngs):
    """A wrong family: no parameters with 2 heads."""
    return _Empty() if num_heads == 2 else Tiny(num_heads, rngs=rngs)


class _TwoHeadsAlways(Tiny):
    """A wrong family: two heads whatever num_heads."""

    def __init__(self, num_heads: int, *, rngs: nnx.Rngs):
        super().__init__(2, rngs=rngs)


def make_ignoring_heads(num_heads, *, rngs):
    return _TwoHeadsAlways(num_heads, rngs=rngs)


class _Fused(nnx.Module):
    """One fused q, k, v projection split into num_heads heads inside ``__call__``: the same
    parameter shapes at every H, and H still matters."""

    def __init__(self, num_heads: int, *, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.qkv = nnx.Linear(3, 12, param_dtype=np.float64, rngs=rngs)
        self.head = nnx.Linear(4, 1, param_dtype=np.float64, rngs=rngs)

    def __call__(self, x):
        def split(a):
            return a.reshape(*a.shape[:-1], self.num_heads, 4 // self.num_heads)

        q, k, v = jnp.split(self.qkv(x), 3, axis=-1)
        out = nnx.dot_product_attention(split(q), split(k), split(v))
        return self.head(out.reshape(*x.shape[:-1], 4).mean(axis=-2))[..., 0]


def make_fused(num_heads, *, rngs):
    return _Fused(num_heads, rngs=rngs)


class _Float32(nnx.Module):
    """A family at flax.nnx's default parameter dtype, float32."""

    def __init__(self, num_heads: int, *, rngs: nnx.Rngs):
        self.attn = nnx.MultiHeadAttention(num_heads=num_heads, in_features=3,
                                           qkv_features=2 * num_heads, out_features=4,
                                           decode=False, rngs=rngs)
        self.head = nnx.Linear(4, 1, rngs=rngs)

    def __call__(self, x):
        return self.head(self.attn(x).mean(axis=-2))[..., 0]


def make_float32(num_heads, *, rngs):
    return _Float32(num_heads, rngs=rngs)


def data(labels="pm1", nan=False, mismatch=False, no_test=False):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 4, 3))
    y = np.sign(x[:, 0, 0] + 0.3 * x[:, 1, 1])
    if labels == "classes":
        y = (np.digitize(x[:, 0, 0], [-0.4, 0.4])).astype(int)
    if labels == "bad":
        y = y * 0.5
    if nan:
        x[3, 1, 2] = np.nan
    out = {"x_train": x[:60], "y_train": y[:60], "x_test": x[60:], "y_test": y[60:]}
    if mismatch:
        out["y_train"] = y[:59]
    if no_test:
        del out["x_test"], out["y_test"]
    return out


def classes_data():
    return data("classes")


def bad_label_data():
    return data("bad")


def nan_data():
    return data(nan=True)


def misspelt_data():
    return {**data(), "x_tset": data()["x_test"]}


def one_class_data():
    out = data()
    return {**out, "y_train": np.abs(out["y_train"])}


def mismatched_data():
    return data(mismatch=True)


def no_test_data():
    return data(no_test=True)


#: not a callable (``--model MODULE:NOT_CALLABLE`` must be refused)
NOT_CALLABLE = 3


def test_a_tiny_sweep_of_a_family_and_data_defined_here_runs_through_the_cli(tmp_path):
    out = tmp_path / "mine"
    argv = ["run", "heads", "--model", f"{__name__}:make", "--data", f"{__name__}:data",
            "--optimizer", "adam", "--out", str(out), *TINY]
    assert cli.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    s = res["summary"]
    assert s["grid"]["arms"] == ["growing"]          # no fixed-width control for a user family
    assert {t["heads"] for t in s["tuned"]} == {1, 2} and s["cost"]
    rows = {a["assumption"]: a for a in s["assumptions"]}
    theorem = rows["λmin(∇²L̂) ≥ λmin(N) at every probe (theorem, certified)"]
    assert "VIOLATED 0" in theorem["detail"]
    assert res["config"]["model"] == f"{__name__}:make" and s["bayes_error"] is None
    # resuming reuses every cell
    assert cli.main(argv + ["--resume"]) == 0
    assert json.loads((out / "results.json").read_text())["sweep"]["reused"] == 2  # H = 1, 2


def test_integer_labels_train_with_cross_entropy(tmp_path):
    out = tmp_path / "three"
    cfg = heads.Config(model=f"{__name__}:make_three_class", data=f"{__name__}:classes_data",
                       heads_grid=(1,), lr_grid=(0.1,), init_scale_grid=(1.0,), n_grid=(24,),
                       n=24, lr=0.1, init_scale=1.0, primary_lrs=(0.1,), primary_inits=(1.0,),
                       seeds=2, steps=10, replace=1, probe_seeds=0, num_val=8, record_points=4,
                       average_control=False)
    with pytest.warns(UserWarning, match="holds one H"):       # one H: no claim to read
        heads.run(cfg, out, progress=False, figures=False)
    rec = json.loads((out / "results.json").read_text())["records"][0]
    # cross-entropy of 3 classes starts near ln 3, not ln 2
    assert abs(rec["curves"]["train_loss"][0][0] - np.log(3)) < 0.5
    assert rec["failed_frac"] == 0.0


def test_the_digits_load_as_tokens_with_a_fixed_stratified_split():
    d = digits.load((3, 8))
    assert d["x_train"].shape[1:] == (8, 8) and set(np.unique(d["y_train"])) == {-1.0, 1.0}
    assert 0 <= d["x_train"].min() and d["x_train"].max() <= 1
    n3 = int((d["y_test"] == 1).sum()) + int((d["y_train"] == 1).sum())
    assert n3 == 183                     # every 3 of the UCI set, half of them in the test set
    assert int((d["y_test"] == 1).sum()) == round(0.5 * 183)
    again = digits.load((3, 8))
    assert np.array_equal(again["x_test"], d["x_test"])
    ten = digits.load(None)
    assert set(np.unique(ten["y_train"])) == set(range(10))
    assert datasets.check(ten).loss == "cross_entropy" and datasets.check(ten).classes == 10


def test_a_tiny_sweep_on_the_digits(tmp_path):
    out = tmp_path / "digits"
    # the assumption probes are tested on the family above; here the per-seed θ_0 checks, which
    # one H (one cell) exercises as well as several
    argv = ["run", "heads", "--data", "digits", "--out", str(out), "--width", "0", *TINY]
    argv[argv.index("--heads-grid") + 1] = "2"
    argv[argv.index("--probe-seeds") + 1] = "0"
    argv[argv.index("--lr-grid") + 1] = "1.0,16.0"
    for flag in ("--lr", "--primary-lrs"):
        argv[argv.index(flag) + 1] = "1.0"
    with pytest.warns(UserWarning, match="holds one H"):
        assert cli.main(argv) == 0
    s = json.loads((out / "results.json").read_text())["summary"]
    rows = {a["assumption"]: a for a in s["assumptions"]}
    assert rows["NTK features separable at θ₀ (realizability)"]["held"] is not None
    assert "bounded tokens (the chain's R = max ‖x_t‖)" in rows
    assert s["grid"]["arms"] == ["growing"] and s["bayes_error"] is None
    # the results say what the data were, and that the mixture's fields were not read
    res = json.loads((out / "results.json").read_text())
    d, pair = res["data"], tuple(res["config"]["digits_pair"])
    assert d["source"] == "digits" and d["loss"] == "logistic" and d["classes"] == 1
    assert d["num_test"] == len(digits.load(pair)["x_test"]) != res["config"]["num_test"]
    assert "num_test" in d["config_fields_unused"]


@pytest.mark.parametrize("args, message", [
    (["--model", "no_such_module_xyz:make"], "--model no_such_module_xyz:make: module"),
    (["--model", f"{__name__}:NOT_CALLABLE"], "NOT_CALLABLE is not callable (its type is int)"),
    (["--model", f"{__name__}:no_such_function"], "no callable named 'no_such_function'"),
    (["--data", f"{__name__}:misspelt_data"], "unknown keys ['x_tset']"),
    (["--data", f"{__name__}:one_class_data"], "y_train holds one class only"),
    (["--model", "nothing"], "--model must be one of deora, transformer or MODULE:FUNCTION"),
    (["--data", "nothing"], "--data must be one of mixture, digits, digits10"),
    (["--data", f"{__name__}:nan_data"], "x_train holds NaN or Inf"),
    (["--data", f"{__name__}:mismatched_data"], "x_train has 60 samples but y_train has 59"),
    (["--data", f"{__name__}:no_test_data"], "a test set is required"),
    (["--data", f"{__name__}:bad_label_data"], "must be all in {-1, +1}"),
    (["--model", f"{__name__}:make_column"], "maps x [2, 4, 3] to [2, 1], but the labels"),
    (["--model", f"{__name__}:make_empty_at_2"], "make(2, rngs=...) has no nnx.Param to train"),
    (["--model", f"{__name__}:make_ignoring_heads"],
     "make(1, rngs=...) and make(2, rngs=...) build the same module"),
    (["--model", f"{__name__}:make", "--data", f"{__name__}:classes_data"],
     "to [2], but the labels need [N, 3]"),
    (["--model", "deora", "--data", f"{__name__}:classes_data"], "--model deora has one output"),
    (["--n-grid", "60", "--n", "60"], "exceeds the 60 training samples"),
])
def test_bad_models_and_data_are_refused_before_any_work(tmp_path, capsys, args, message):
    out = tmp_path / "never"
    base = ["--model", f"{__name__}:make", "--data", f"{__name__}:data"]
    argv = ["run", "heads", "--out", str(out), *TINY, *base, *args]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not out.exists()


def make_wider(num_heads, *, rngs):
    """``make`` with another parameter shape (a head without a bias)."""
    module = Tiny(num_heads, rngs=rngs)
    module.head = nnx.Linear(4, 1, use_bias=False, param_dtype=np.float64, rngs=rngs)
    return module


def test_the_fingerprints_of_a_user_family_and_data_follow_their_code_and_arrays(monkeypatch):
    """``prepare`` fingerprints what a ``MODULE:FUNCTION`` config names (a resumed sweep reuses
    only cells with the same ones): the same code and arrays give the same digests, a family
    with other parameters or other arrays behind the same name other ones."""
    cfg = heads.Config(model=f"{__name__}:make", data=f"{__name__}:data", heads_grid=(1, 2),
                       n_grid=(24,), n=24, num_val=8, replace=1)
    first = heads.prepare(cfg)
    assert set(first) == {"model", "data"} and heads.prepare(cfg) == first
    module, base = __import__(__name__, fromlist=["data"]), data()
    monkeypatch.setattr(module, "data", lambda: {k: v + (k == "x_train") * 1e-9
                                                 for k, v in base.items()})
    second = heads.prepare(cfg)
    # the data's digest follows the arrays; the family's covers every function of its module,
    # this data function included
    assert second["data"] != first["data"] and second["model"] != first["model"]
    monkeypatch.undo()
    # a method of a class the family builds, redefined in the process (same shapes)
    monkeypatch.setattr(Tiny, "__call__", lambda self, x: self.head(self.attn(x).sum(-2))[..., 0])
    assert heads.prepare(cfg)["model"] != first["model"]
    monkeypatch.undo()
    assert heads.prepare(cfg) == first
    monkeypatch.setattr(module, "make", make_wider)
    assert heads.prepare(cfg)["model"] != first["model"]
    builtin = heads.Config(heads_grid=(1, 2), n_grid=(24,), n=24)
    assert heads.prepare(builtin) == {}


def test_a_grid_of_one_h_is_warned_about_before_any_work():
    cfg = heads.Config(model=f"{__name__}:make", data=f"{__name__}:data", heads_grid=(2,),
                       n_grid=(24,), n=24, num_val=8, replace=1)
    with pytest.warns(UserWarning, match="holds one H"):
        heads.prepare(cfg)


def test_a_refused_run_leaves_the_last_results_alone(tmp_path):
    out = tmp_path / "kept"
    out.mkdir()
    (out / "results.json").write_text("{}")
    cfg = heads.Config(model=f"{__name__}:make_column", data=f"{__name__}:data",
                       heads_grid=(1, 2), n_grid=(24,), n=24, num_val=8, replace=1)
    with pytest.raises(ValueError, match="but the labels"):
        heads.run(cfg, out, progress=False)
    assert (out / "results.json").read_text() == "{}"


@pytest.mark.parametrize("data_name, classes", [("digits", 1), ("digits10", 10)])
def test_the_transformer_family_fits_binary_and_class_labels(data_name, classes):
    cfg = heads.Config(model="transformer", data=data_name, heads_grid=(1, 2, 4), n_grid=(64,),
                       n=64, num_val=64, width=8)
    heads.prepare(cfg)                   # every arm's output shape checked against the labels
    make = families.transformer(8, classes, head_dim=2)
    want = (5,) if classes == 1 else (5, classes)
    assert families.abstract(make, 4, (5, 8, 8), np.float64).output == want
    fixed = families.transformer(8, classes, d_model=8)
    params, phi = families.nnx_params(fixed, 4, 0, 2.0)
    base, _ = families.nnx_params(fixed, 4, 0, 1.0)
    # the sweep's init scale multiplies the module's own initial parameters
    assert all(np.allclose(a, 2 * b) for a, b in zip(jax.tree.leaves(params),
                                                      jax.tree.leaves(base), strict=True))
    assert jax.eval_shape(phi, params, np.zeros((5, 8, 8))).shape == want


def test_a_family_with_the_same_shapes_at_every_h_is_refused_only_if_h_changes_nothing():
    """Two families with the same parameter shapes at every H: one ignores H (refused by
    ``prepare`` through ``ignores_heads``), one splits a fused projection into H heads (kept)."""
    x_shape = (2, 4, 3)

    def check(make):
        abstracts = {h: families.abstract(make, h, x_shape, np.float64) for h in (1, 2, 4)}
        return families.ignores_heads(make, abstracts, x_shape, np.float64)

    assert check(make_ignoring_heads) == (1, 4)
    assert check(make_fused) is None
    # and a family whose shapes change with H is never built
    assert check(make) is None


@pytest.mark.parametrize("family, narrow", [("make_float32", True), ("make", False)])
def test_parameters_narrower_than_the_float_dtype_are_warned_about(family, narrow):
    cfg = heads.Config(model=f"{__name__}:{family}", data=f"{__name__}:data", heads_grid=(1, 2),
                       n_grid=(24,), n=24, num_val=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        heads.prepare(cfg)
    said = [str(w.message) for w in caught if issubclass(w.category, precision.PrecisionWarning)]
    assert len(said) == narrow, said
    if narrow:
        assert "float32 arrays while JAX computes in float64" in said[0]
        assert "param_dtype=jnp.float64" in said[0]
