"""Matrix products on fusegrad's pool (csrc/fusegrad_products.c): every way of cutting a
product (bands of rows, bands of columns, parts of k with ordered partial sums, one call),
both dtypes and all transposes, against NumPy; the same bits for any thread count."""

from __future__ import annotations

import os

import numpy as np
import pytest

import fusegrad as fg
from fusegrad.runtime import blas, native

pytestmark = pytest.mark.skipif(not blas.available(), reason="scipy-openblas32 is not installed")

TOLERANCE = {np.float64: 1e-12, np.float32: 2e-5}

#: (m, n, k) → how fusegrad_products.c cuts it (see choose_pieces there)
SHAPES = {
    "one call": (7, 3, 5),
    "bands of rows": (600, 40, 30),
    "bands of columns": (40, 600, 30),
    "parts of k": (30, 20, 3000),
    "parts of k, uneven": (9, 70, 2999),
    "bands, uneven": (641, 65, 17),
}

PRODUCTS = {
    "A @ B": (lambda A, B: A @ B, False, False),
    "A.T @ B": (lambda A, B: A.T @ B, True, False),
    "A @ B.T": (lambda A, B: A @ B.T, False, True),
    "A.T @ B.T": (lambda A, B: A.T @ B.T, True, True),
}


@pytest.fixture
def threads():
    before = native.get_num_threads()
    yield native.set_num_threads
    native.set_num_threads(before)


def operands(m, n, k, trans_a, trans_b, dtype, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    B = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    return A, B


def assert_close(actual, expected, dtype, k):
    scale = max(1.0, np.sqrt(k))  # entries of a product of standard normals grow like √k
    np.testing.assert_allclose(actual, expected, rtol=TOLERANCE[dtype] * scale,
                               atol=TOLERANCE[dtype] * scale)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("product", sorted(PRODUCTS))
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_products_match_numpy_however_they_are_cut(shape, product, dtype):
    m, n, k = SHAPES[shape]
    fn, trans_a, trans_b = PRODUCTS[product]
    A, B = operands(m, n, k, trans_a, trans_b, dtype)
    C = fg.compile(fn)(A, B)
    assert C.dtype == dtype and C.shape == (m, n)
    expected = fn(A.astype(np.float64), B.astype(np.float64))
    assert_close(C, expected, dtype, k)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_products_give_the_same_bits_for_any_thread_count(shape, threads):
    m, n, k = SHAPES[shape]
    fn, trans_a, trans_b = PRODUCTS["A.T @ B"]
    A, B = operands(m, n, k, trans_a, trans_b, np.float64, seed=1)
    compiled = fg.compile(fn)
    results = []
    for count in (1, 2, 3):
        threads(count)
        results.append(compiled(A, B))
    assert all(r.tobytes() == results[0].tobytes() for r in results[1:])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("m, n, k", [(0, 5, 7), (5, 0, 7), (64, 64, 0), (1, 1, 1), (1, 1, 5000)])
def test_degenerate_products(m, n, k, dtype):
    A, B = operands(m, n, k, False, False, dtype)
    C = fg.compile(lambda A, B: A @ B)(A, B)
    assert C.shape == (m, n)
    assert_close(C, A.astype(np.float64) @ B.astype(np.float64), dtype, k)


def logistic(w, X, y):
    return fg.sum(fg.log1p(fg.exp(-y * (X @ w))))


def signed_weights(w, X, y):
    return fg.sum(fg.sin(X @ w) * y)  # Hessian Xᵀ diag(−sin(z) y) X: weights of both signs


def negative_weights(w, X, y):
    return -fg.sum(fg.exp(X @ w) * y * y)  # Hessian Xᵀ diag(−e^z y²) X: no weight > 0


def hessian_problem(rows, columns, dtype=np.float64):
    rng = np.random.default_rng(rows + columns)
    X = rng.standard_normal((rows, columns)) / np.sqrt(columns)
    y = np.sign(rng.standard_normal(rows))
    w = 0.5 * rng.standard_normal(columns)
    return tuple(a.astype(dtype) for a in (w, X, y))


def hessians_on(counts, loss, problem, threads) -> np.ndarray:
    """The compiled Hessian with each thread count: exactly symmetric, the same bits."""
    hessian = fg.compile(fg.hessian(loss))
    results = []
    for count in counts:
        threads(count)
        results.append(hessian(*problem))
    H = results[0]
    assert np.array_equal(H, H.T)
    assert all(r.tobytes() == H.tobytes() for r in results[1:])
    return H


def closed_form(loss, w, X, y) -> np.ndarray:
    """Xᵀ diag(s) X in float64."""
    w, X, y = (a.astype(np.float64) for a in (w, X, y))
    z = X @ w
    if loss is logistic:  # weights ≥ 0: found at run time, C = (√s ⊙ X)ᵀ(√s ⊙ X) by syrk
        p = 1.0 / (1.0 + np.exp(-y * z))
        s = p * (1.0 - p)
    elif loss is negative_weights:  # weights ≤ 0: C = −(√|s| ⊙ X)ᵀ(√|s| ⊙ X)
        s = -np.exp(z) * y * y
    else:  # both signs: gemmt on s ⊙ X and X
        s = -np.sin(z) * y
    return X.T @ (X * s[:, None])


@pytest.mark.parametrize("loss", [logistic, signed_weights, negative_weights])
@pytest.mark.parametrize("rows, columns", [(5000, 16), (3000, 40), (300, 200), (3000, 150)])
def test_hessians_are_exactly_symmetric_and_the_same_for_any_thread_count(loss, rows, columns,
                                                                          threads):
    problem = hessian_problem(rows, columns)
    H = hessians_on((1, 2, 3), loss, problem, threads)
    np.testing.assert_allclose(H, closed_form(loss, *problem), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rows", [200, 3000])  # one call, or parts of the rows
@pytest.mark.parametrize("columns", [16, 17, 33, 64, 100, 128, 129])
def test_the_gram_tiles_match_the_closed_form_for_every_padding(rows, columns, threads):
    # 16 ≤ n ≤ 128 in float64: AVX-512 tiles over rows packed with n padded to a multiple
    # of 16 (fusegrad_gram.c); 129 takes the BLAS
    problem = hessian_problem(rows, columns)
    H = hessians_on((1, 2), signed_weights, problem, threads)
    np.testing.assert_allclose(H, closed_form(signed_weights, *problem), rtol=1e-10, atol=1e-12)


def test_the_gram_tiles_run_where_the_cpu_has_avx512_unless_switched_off():
    import subprocess
    import sys

    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    code = "from fusegrad.runtime import native; print(native.lib.fg_gram_kernel_available())"
    for setting, expected in (("1", int(" avx512f" in flags)), ("0", 0)):
        env = {**os.environ, "FUSEGRAD_GRAM_TILES": setting}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True).stdout
        assert int(out) == expected


def test_a_hessian_product_scales_rows_as_it_packs_them_and_stores_no_scaled_copy():
    from fusegrad.compiler import pipeline
    from fusegrad.compiler.loop_walk import walk
    from fusegrad.compiler.loopir import Gemm

    w, X, y = np.ones(3), np.ones((5, 3)), np.ones(5)
    program = pipeline.to_loop_ir(fg.compile(fg.hessian(logistic)).lower(w, X, y), blas=True)
    (gemm,) = [s for s in walk(program.body) if isinstance(s, Gemm)]
    assert gemm.row_scale is not None and gemm.a is gemm.b and gemm.b.name == "X"
    assert [len(b.shape) for b in program.scratch] == [1]  # the row scales: k numbers


@pytest.mark.parametrize("loss", [logistic, signed_weights, negative_weights])
@pytest.mark.parametrize("dtype, rows, columns", [
    (np.float32, 3000, 40),   # the BLAS on scaled blocks (the tiles are float64)
    (np.float32, 100, 60),    # few rows: the scaled rows stored whole, gemm bands
    (np.float64, 3000, 150),  # more columns than the tiles take
    (np.float64, 0, 20),      # no rows: H = 0
])
def test_row_scaled_hessians_in_both_dtypes_and_every_path(loss, dtype, rows, columns,
                                                           threads):
    problem = hessian_problem(rows, columns, dtype)
    H = hessians_on((1, 3), loss, problem, threads)
    assert H.dtype == dtype
    tolerance = 1e-10 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(H, closed_form(loss, *problem), rtol=tolerance, atol=tolerance)


def test_weights_of_one_sign_with_zeros_and_a_nan():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((4000, 24))
    hessian = fg.compile(fg.hessian(lambda w, X, r: 0.5 * fg.sum(r * (X @ w) ** 2)))
    r = np.abs(rng.standard_normal(4000))
    r[::7] = 0.0  # zeros keep the sign: still the gram way
    np.testing.assert_allclose(hessian(np.zeros(24), X, r), X.T @ (X * r[:, None]),
                               rtol=1e-10, atol=1e-10)
    r[5] = np.nan  # a NaN: no sign; every entry sums row 5's term, as NumPy's does
    assert np.isnan(X.T @ (X * r[:, None])).all()
    assert np.isnan(hessian(np.zeros(24), X, r)).all()
