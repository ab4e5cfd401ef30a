"""Operators and their linearisation (``spectral._operators``): the one compiled product
against dense references in float32 and float64, and the operator handed to scipy and lineax."""

import threading

import jax
import jax.numpy as jnp
import lineax
import numpy as np
import pytest
import scipy.sparse.linalg as sla
from conftest import compilations

from mhatheory import spectral
from mhatheory.models import deora
from mhatheory.testing import tol


def test_hvp_equals_the_dense_hessian(tiny_deora):
    dtype, params, batch, H64 = tiny_deora
    matvec, flat = spectral.hvp(deora.loss_fn, params, batch)
    assert flat.dtype == dtype and flat.shape == (H64.shape[0],)
    norm = np.abs(np.linalg.eigvalsh(H64)).max()
    for v in jax.random.normal(jax.random.key(2), (3, flat.size), dtype):
        hv = np.asarray(matvec(v))
        assert hv.dtype == np.dtype(dtype)
        ref = H64 @ np.asarray(v, np.float64)
        assert np.abs(hv - ref).max() <= tol(dtype, "dense") * norm * np.abs(v).max()


def test_the_products_of_one_linearisation_compile_once(tiny_deora):
    """Each product reuses the linearisation's residuals through one compiled program: the
    second and later products compile nothing."""
    _, params, batch, _ = tiny_deora
    H = spectral.linearise(deora.loss_fn, params, batch)
    vs = np.asarray(jax.random.normal(jax.random.key(0), (3, H.P)), H.dtype)
    H.mv(vs[0])
    with compilations() as seen:
        for v in vs[1:]:
            H.mv(v)
    assert not seen, seen


def test_one_program_products_equal_the_linearised_ones(tiny_deora):
    """A product formed in one program from θ and the data (the conveniences' form) equals the
    linearised operator's, on the whole space and on a block, to the products' rounding (two
    XLA programs: the dtype's "dense" tolerance relative to ‖H‖), and both equal the dense
    Hessian's to the same tolerance."""
    dtype, params, batch, H64 = tiny_deora
    op = spectral.Hessian(deora.loss_fn)
    lin, one = op.linearise(params, batch), op.at(params, batch, linearised=False)
    assert lin.linearised and not one.linearised and one.restrict("U").linearised is False
    norm = np.abs(np.linalg.eigvalsh(H64)).max()
    mask = np.asarray(spectral.block_mask(params, "U"))
    for v in jax.random.normal(jax.random.key(3), (2, lin.P), jnp.float64):
        atol = tol(dtype, "dense") * norm * float(np.abs(v).max())
        for a, b, m in ((lin, one, np.ones_like(mask)),
                        (lin.restrict("U"), one.restrict("U"), mask)):
            np.testing.assert_allclose(np.asarray(b.mv(v)), np.asarray(a.mv(v)), rtol=0,
                                       atol=atol)
            np.testing.assert_allclose(np.asarray(b.mv(v)), m * (H64 @ (m * np.asarray(v))),
                                       rtol=0, atol=atol)


def _fresh_problem(P):
    """A loss of a structure no other test compiles (P unique to the caller)."""
    x, d = jnp.linspace(0.1, 1.0, P), jnp.linspace(-1.0, 2.0, P)
    return (lambda x, d: jnp.sum(jnp.sin(d * x) * x) + 0.25 * jnp.sum(x**4)), x, d


@pytest.mark.parametrize("background", [True, False])
def test_the_product_compiles_on_a_worker_while_the_linearisation_runs(background, monkeypatch):
    """With the worker on, the HVP program is compiled by the worker thread (while the main
    thread compiles the linearisation) and the main thread's first product compiles nothing;
    with MHATHEORY_BACKGROUND_COMPILE=0 the main thread compiles it, in order. Either way the
    product is the same."""
    monkeypatch.setenv("MHATHEORY_BACKGROUND_COMPILE", "1" if background else "0")
    loss, x, d = _fresh_problem(41 if background else 43)
    with compilations(threads=True) as seen:
        H = spectral.linearise(loss, x, d)
        hv = H.mv(jnp.ones_like(x))
    where = [thread for name, thread in seen if name == "jit(_apply)"]
    assert len(where) == 1, seen                       # compiled once, never again on first use
    if background:
        assert where[0].startswith("mhatheory-compile"), seen
    else:
        assert where[0] == threading.main_thread().name, seen
    dense = np.asarray(spectral.dense_hessian(loss, x, d))
    np.testing.assert_allclose(hv, dense.sum(1), rtol=0, atol=tol(np.float64, "dense")
                               * np.abs(dense).sum(1).max())


def test_scipy_finds_the_extremes_through_the_operator(tiny_deora):
    """``as_scipy`` hands ARPACK the same products: its extremes equal the dense ones to the
    products' rounding (the dtype's "dense" tolerance relative to ‖H‖)."""
    dtype, params, batch, H64 = tiny_deora
    H = spectral.linearise(deora.loss_fn, params, batch)
    A = H.as_scipy()
    assert A.shape == H64.shape and A.dtype == np.float64
    ev = np.linalg.eigvalsh(H64)
    got = np.sort(sla.eigsh(A, k=2, which="BE", v0=np.ones(H.P), tol=0)[0])
    norm = np.abs(ev).max()
    assert np.abs(got - ev[[0, -1]]).max() <= tol(dtype, "dense") * norm * np.sqrt(H.P)


def test_lineax_solves_through_the_operator_and_reads_its_tags():
    """A Hessian is tagged symmetric, a Gauss–Newton term symmetric and PSD: lineax's CG
    accepts the latter, and its solution of G x = b matches the dense solve. Here G = XᵀX/n
    of a linear least-squares model, positive definite (n > P)."""
    x = jax.random.normal(jax.random.key(0), (20, 3))
    t = jax.random.normal(jax.random.key(1), (20, 1))
    w = {"w": jnp.zeros((3, 1))}

    def f(p, x):
        return x @ p["w"]

    G = spectral.linearise(spectral.GaussNewton(f, loss="mse"), w, x, t)
    H = spectral.linearise(lambda p, x, t: jnp.mean((f(p, x) - t) ** 2), w, x, t)
    assert G.psd and not H.psd
    assert lineax.is_symmetric(H.as_lineax()) and not lineax.is_positive_semidefinite(
        H.as_lineax())
    assert lineax.is_positive_semidefinite(G.as_lineax())
    b = jnp.arange(1.0, 4.0)
    # CG's stopping rule (solver options); it leaves an error ≤ κ(G)·1e-12 with κ(G) ≈ 1.8 here,
    # so 1e-9 relative has ample room for the dense solve's rounding (no table kind: a solver)
    sol = lineax.linear_solve(G.as_lineax(), b, lineax.CG(rtol=1e-12, atol=1e-12)).value
    dense = np.asarray(spectral.dense(spectral.GaussNewton(f, loss="mse"), w, x, t))
    np.testing.assert_allclose(sol, np.linalg.solve(dense, b), rtol=1e-9)


def test_a_block_is_the_principal_submatrix_on_its_own_coordinates(tiny_deora):
    """``restrict`` keeps the product and masks it: ``block_mv`` on the block's coordinates is
    the dense principal sub-matrix times the vector (the dtype's "dense" tolerance)."""
    dtype, params, batch, H64 = tiny_deora
    H = spectral.linearise(deora.loss_fn, params, batch)
    B = H.restrict("U")
    idx = np.flatnonzero(spectral.block_mask(params, "U"))
    assert B.size == idx.size and B.P == H.P
    x = np.asarray(jax.random.normal(jax.random.key(3), (B.size,)), dtype)
    ref = H64[np.ix_(idx, idx)] @ np.asarray(x, np.float64)
    norm = np.abs(np.linalg.eigvalsh(H64)).max()
    assert np.abs(np.asarray(B.block_mv(x)) - ref).max() <= (tol(dtype, "dense") * norm
                                                            * np.abs(x).max())
    with pytest.raises(ValueError, match="shares no coordinate"):
        B.restrict("W")


@pytest.mark.parametrize("loss_fn", [3, "loss", None])
def test_a_hessian_of_something_not_callable_is_refused_where_it_is_built(loss_fn):
    with pytest.raises(TypeError, match=r"Hessian\(loss_fn\): loss_fn must be callable as "
                                        r"loss_fn\(params, \*args\) -> scalar"):
        spectral.Hessian(loss_fn)
