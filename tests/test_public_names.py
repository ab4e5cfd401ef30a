"""The names DESIGN.md §4 pins for other code: each exists with the pinned signature.

Signatures are read with :mod:`inspect` and the CLI with its parser, so this file compiles
nothing; the behaviour behind each name is tested in the module's own test file.
"""

from __future__ import annotations

import inspect

import pytest
from flax import nnx

from mhatheory import attention, cli, models, spectral, testing, train
from mhatheory.tasks import addition


def _params(fn) -> dict:
    return inspect.signature(fn).parameters


def _keyword_default(fn, name):
    p = _params(fn)[name]
    assert p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY), name
    return p.default


@pytest.mark.parametrize("fn, positional, defaults", [
    (attention.scaled_dot_product_attention, ["q", "k", "v"], {"mask": None}),
    (attention.attention_weights, ["q", "k"], {"mask": None}),
    (addition.exact_match_ceiling, [], {"lo": 0, "hi": 999, "reverse_answer": False}),
    (spectral.GaussNewton, ["f"], {"loss": "logistic"}),
    (spectral.Curvature, ["f"], {"loss": "logistic"}),
])
def test_pinned_functions_keep_their_arguments_and_defaults(fn, positional, defaults):
    names = list(_params(fn))
    assert names[:len(positional)] == positional
    for name, default in defaults.items():
        assert _keyword_default(fn, name) == default


@pytest.mark.parametrize("fn", [spectral.lambda_min, spectral.lambda_max])
def test_probes_take_a_loss_params_and_data_as_args(fn):
    p = _params(fn)
    assert list(p)[:3] == ["loss_fn", "params", "args"]
    assert p["args"].kind is p["args"].VAR_POSITIONAL
    assert _keyword_default(fn, "method") == "lanczos"
    assert _keyword_default(fn, "key") is None
    # store_basis and the Lanczos options travel as keywords to the configured probe
    assert "store_basis" in _params(spectral.Lanczos)
    assert [q.kind for q in p.values()][-1] is inspect.Parameter.VAR_KEYWORD


def test_training_and_assertions_take_data_as_args():
    for fn in (train.gd, testing.assert_weakly_convex):
        p = _params(fn)
        assert list(p)[:3] == ["loss_fn", "params", "args"]
        assert p["args"].kind is p["args"].VAR_POSITIONAL
    for name in ("kappa", "heads"):
        assert _params(testing.assert_weakly_convex)[name].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize("cls, positional, keywords", [
    (models.DeoraMHA, ["d", "num_heads"], {"rngs"}),
    (models.DecoderTransformer, ["vocab_size", "d_model", "num_heads", "num_layers"],
     {"positional", "causal", "residual", "rngs"}),
])
def test_pinned_models_are_nnx_modules_with_their_constructor(cls, positional, keywords):
    assert issubclass(cls, nnx.Module)
    p = inspect.signature(cls.__init__).parameters
    assert list(p)[1:1 + len(positional)] == positional
    assert keywords <= set(p)
    if cls is models.DecoderTransformer:
        # §4 lists positional's choices, not its default (see test_models for each choice)
        assert p["causal"].default is True and p["residual"].default is True


def _subcommands(parser):
    action = next(a for a in parser._actions if a.dest in ("command", "experiment"))
    return action.choices


def test_cli_has_verify_run_and_the_multi_process_flags():
    parser = cli.build_parser()
    commands = _subcommands(parser)
    assert {"verify", "run"} <= set(commands)
    experiments = _subcommands(commands["run"])
    assert {"heads", "transformer-curvature", "weak-convexity"} <= set(experiments)
    for name in ("heads", "transformer-curvature"):
        flags = {s for a in experiments[name]._actions for s in a.option_strings}
        assert {"--out", "--coordinator", "--num-processes", "--process-id", "--resume"} <= flags
