"""Checks C6–C9 of notes/symmetry.md: the theorem, its negative controls, the one-layer causal
edge case, no target leakage, and the enumerated ceiling."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import compiled
from flax import nnx

from mhatheory import precision, symmetry
from mhatheory.models import DecoderTransformer
from mhatheory.tasks import addition

TOKENS = jnp.asarray(addition.encode(123, 456)[0, :8])  # "123+456=": distinct tokens 1..n−1
F64 = 1e-10  # notes C6: ≤ 1e-10 in float64


def model_fn(layers=2, causal=False, positional="none", residual=True, pre_ln=True, seed=0):
    m = DecoderTransformer(addition.VOCAB, 32, 4, layers, positional=positional, causal=causal,
                           residual=residual, pre_ln=pre_ln, rngs=nnx.Rngs(seed),
                           param_dtype=jnp.float64)
    return compiled(m)


# every pair of values of any two of (layers, pre_ln, residual) appears (a pairwise design: 6
# models where the full product takes 12, each compiling its own)
@pytest.mark.parametrize("layers, pre_ln, residual", [
    (1, True, True), (1, False, False), (2, True, False), (2, False, True), (4, True, True),
    (4, False, False)])
def test_c6_theorem_noncausal_no_pe(layers, pre_ln, residual):
    fn = model_fn(layers, pre_ln=pre_ln, residual=residual)
    res = symmetry.last_position_invariance(fn, TOKENS[:7])  # n = 7: all 6! − 1 permutations
    assert res.exhaustive and res.num_permutations == 719
    assert res.max_deviation <= F64
    res = symmetry.last_position_invariance(fn, TOKENS)  # n = 8: 50 random permutations
    assert not res.exhaustive and res.num_permutations == 50
    assert res.max_deviation <= F64
    assert symmetry.equivariance(fn, TOKENS[:6]).max_deviation <= F64


@pytest.mark.parametrize("n, num_random, exhaustive", [(3, 50, True), (7, 50, False),
                                                        (8, 300, False)])
def test_permutations_are_distinct_and_never_the_identity(n, num_random, exhaustive):
    """n = 3 has 5 non-identity permutations, fewer than asked: all of them, exhaustively; at
    n = 7 and 8 the random draws repeat and hit the identity (50 of 5,040: a repeat in one
    draw of four), and are replaced."""
    perms, exh = symmetry.permutations(n, key=jax.random.key(0), max_exhaustive=0,
                                       num_random=num_random)
    assert exh is exhaustive
    assert len(perms) == (5 if exhaustive else num_random) == len(set(perms))
    assert tuple(range(n)) not in perms
    assert all(sorted(p) == list(range(n)) for p in perms)


def test_a_function_computing_below_its_outputs_precision_is_warned_about():
    """A float64 output through float32 arithmetic (flax's default attention softmax does this)
    has float32's rounding floor, which no float64 symmetry tolerance allows for."""
    def low(t):
        return jnp.cumsum(jnp.sin(t.astype(jnp.float32))).astype(jnp.float64)[:, None]

    def high(t):
        return jnp.cumsum(jnp.sin(t.astype(jnp.float64)))[:, None]

    with pytest.warns(precision.PrecisionWarning, match="fn returns float64 but .* float32"):
        symmetry.last_position_invariance(low, jnp.arange(5))
    with warnings.catch_warnings():
        warnings.simplefilter("error", precision.PrecisionWarning)
        symmetry.last_position_invariance(high, jnp.arange(5))


def test_c6_corollary_123_plus_456_equals_654_plus_321():
    fn = model_fn(3)
    a = fn(jnp.asarray(addition.encode(123, 456)[0, :8]))[-1]
    b = fn(jnp.asarray(addition.encode(654, 321)[0, :8]))[-1]
    np.testing.assert_allclose(a, b, rtol=0, atol=F64)


@pytest.mark.parametrize("case", ["moves_last", "learned", "sinusoidal", "causal_L2",
                                  "causal_L4"])
def test_c7_negative_controls_break_invariance(case):
    if case == "moves_last":
        dev = symmetry.moving_last_deviation(model_fn(2), TOKENS).max_deviation
    elif case in ("learned", "sinusoidal"):
        dev = symmetry.last_position_invariance(model_fn(2, positional=case),
                                                TOKENS).max_deviation
    else:
        dev = symmetry.last_position_invariance(model_fn(int(case[-1]), causal=True),
                                                TOKENS).max_deviation
    assert dev > 1e-2  # clearly broken: 1e8 × F64 (C7's threshold in symmetry_sweep/check.py)


def test_c8_one_layer_causal_is_invariant_at_the_last_position_only():
    fn = model_fn(1, causal=True)
    assert symmetry.last_position_invariance(fn, TOKENS).max_deviation <= F64
    assert symmetry.earlier_position_deviation(fn, TOKENS).max_deviation > 1e-2  # as C7


def test_c9_no_target_leakage_in_prefix_inputs():
    m = compiled(DecoderTransformer(addition.VOCAB, 32, 4, 2, causal=False, positional="learned",
                                    rngs=nnx.Rngs(0), param_dtype=jnp.float64))
    seqs = addition.encode(np.array([123, 999]), np.array([456, 1]))
    for t in range(addition.ANSWER_LEN):
        inp, valid, pos, target = addition.prefix_inputs(seqs, t)
        assert np.all(inp[:, pos + 1:] == addition.PAD)
        base = m(jnp.asarray(inp), valid=jnp.asarray(valid))[:, pos]
        leaked = np.array(inp)
        leaked[:, pos + 1:] = seqs[:, pos + 1:]  # put the answer where padding was
        out = m(jnp.asarray(leaked), valid=jnp.asarray(valid))[:, pos]
        np.testing.assert_array_equal(out, base)
        np.testing.assert_array_equal(target, seqs[:, addition.PROMPT_LEN + t])


@pytest.mark.parametrize("lo, hi, reverse", [(0, 12, False), (5, 30, True), (95, 120, False)])
def test_ceiling_matches_brute_force_enumeration(lo, hi, reverse):
    c = addition.ceilings(lo, hi, reverse)
    brute = addition.ceilings_by_counting(lo, hi, reverse)
    # both are ratios of the same integer counts: equal up to one rounding of the division
    assert c.exact_match == pytest.approx(brute.exact_match, abs=1e-15)   # override: one rounding
    np.testing.assert_allclose(c.per_position, brute.per_position, rtol=0, atol=1e-15)  # ditto
    assert c.num_problems == brute.num_problems == (hi - lo + 1) ** 2
    assert 0 < c.exact_match < 1


def test_exact_match_ceiling_is_the_same_forward_and_reversed():
    # reversal is a bijection on answers, so the multiset classes and their best counts agree;
    # operands 0..549 give answers of one to four digits (leading zeros, carries into the
    # thousands) at a third of the full range's enumeration
    assert addition.exact_match_ceiling(0, 549) == addition.exact_match_ceiling(0, 549, True)


def test_split_is_disjoint_and_bad_ranges_raise():
    s = addition.split(500, 200, lo=0, hi=99, seed=3)
    train = {tuple(r) for r in s.train}
    assert len(train) == 500 and not train & {tuple(r) for r in s.test}
    assert addition.decode(addition.encode(7, 95)[0]) == "007+095=0102"
    with pytest.raises(ValueError, match="exceeds"):
        addition.split(90, 20, lo=0, hi=9)
    with pytest.raises(ValueError, match="lo <= hi"):
        addition.split(5, 5, lo=50, hi=10)
