"""Row dot products rendered a vector register of rows at a time (compiler/llvm/row_dots.py):
which loops take that form, and that the kernels compute what NumPy does for every
shape, dtype and vector width (groups of rows and leftover rows, full column chunks
and masked tails)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fusegrad as fg
from fusegrad.compiler import loopir, symbolic
from fusegrad.compiler.llvm import row_dots
from fusegrad.compiler.llvm.render import render_program
from fusegrad.runtime import kernel

WIDTHS = (16, 32, 64)  # SSE2, AVX2, AVX-512 registers (the IR runs on any x86-64 host)


def row_loop(matrix_index, vector_index, out_index=None):
    """for @r in range(R): acc = 0; for @v in range(C): acc += A[..]·w[..]; out[..] = acc"""
    R, C = symbolic.Dim.symbol("R"), symbolic.Dim.symbol("C")
    r, v = symbolic.Dim.symbol("@r"), symbolic.Dim.symbol("@v")
    A = loopir.Buffer("A", "float64", (R, C), "input")
    w = loopir.Buffer("w", "float64", (C,), "input")
    out = loopir.Buffer("out", "float64", (R,), "output")
    acc = loopir.Accumulator("acc", "add", "float64")
    product = loopir.Apply("mul", (loopir.Load(A, matrix_index(r, v, C)),
                                   loopir.Load(w, vector_index(r, v, C))), "float64")
    inner = loopir.Loop("@v", C, [loopir.AccUpdate(acc, product)], "vector")
    store = loopir.Store(out, r if out_index is None else out_index(r), loopir.AccRef(acc))
    return loopir.Loop("@r", R, [loopir.AccInit(acc), inner, store], "serial")


def test_a_matrix_vector_row_loop_matches():
    dots = row_dots.match(row_loop(lambda r, v, C: r * C + v, lambda r, v, C: v))
    assert dots is not None
    assert dots.matrix.name == "A" and dots.vector.name == "w"
    assert symbolic.simplify(dots.row_stride - symbolic.Dim.symbol("C")) == 0
    assert dots.matrix_start == 0 and dots.vector_start == 0 and dots.out_start == 0


def test_operands_in_either_order_and_offsets_match():
    dots = row_loop(lambda r, v, C: v + 3, lambda r, v, C: 2 * C + r * C + v,
                    out_index=lambda r: r + 5)
    dots = row_dots.match(dots)
    assert dots is not None and dots.matrix.name == "w"  # the operand with the row stride
    assert dots.out_start == 5


@pytest.mark.parametrize("matrix_index, vector_index", [
    (lambda r, v, C: r * C + 2 * v, lambda r, v, C: v),  # a strided row
    (lambda r, v, C: v * C + r, lambda r, v, C: v),  # a column, not a row
    (lambda r, v, C: r * C + v, lambda r, v, C: r + v),  # the vector moves with the row
])
def test_other_loops_do_not_match(matrix_index, vector_index):
    assert row_dots.match(row_loop(matrix_index, vector_index)) is None


def test_a_row_that_is_stored_elsewhere_does_not_match():
    assert row_dots.match(row_loop(lambda r, v, C: r * C + v, lambda r, v, C: v,
                                   out_index=lambda r: 2 * r)) is None


def logistic(w, X, y):
    return np.sum(np.log1p(np.exp(-y * (X @ w))))


@pytest.mark.parametrize("width", WIDTHS)
def test_the_logistic_kernel_renders_its_row_dots_in_groups(width):
    w, X, y = np.ones(8), np.ones((100, 8)), np.ones(100)
    program = fg.compile_grad(logistic).kernel(w, X, y).program
    text = render_program(program, vector_bytes=width)
    assert "dots.group" in text
    assert f"<{width // 8} x double>" in text
    assert "shufflevector" in text


@pytest.fixture
def vector_width(monkeypatch, request):
    monkeypatch.setenv("FUSEGRAD_CACHE", "0")
    monkeypatch.setattr(kernel, "_kernels", {})
    monkeypatch.setattr(kernel, "host_vector_bytes", lambda: request.param)
    return request.param


@pytest.mark.parametrize("vector_width", WIDTHS, indirect=True)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
# the fixture is meant to hold for every example: one vector width, one set of kernels
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(0, 150), columns=st.integers(1, 70), seed=st.integers(0, 2**16))
def test_matrix_vector_products_and_fused_passes_match_numpy(vector_width, dtype, rows,
                                                              columns, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, columns)).astype(dtype)
    w = rng.standard_normal(columns).astype(dtype)
    y = np.sign(rng.standard_normal(rows)).astype(dtype)
    exact = X.astype(np.float64) @ w.astype(np.float64)
    tolerance = 1e-12 if dtype == np.float64 else 2e-5
    scale = np.sqrt(columns) * np.abs(exact).max(initial=1.0)
    np.testing.assert_allclose(fg.compile(lambda X, w: X @ w)(X, w), exact,
                               rtol=tolerance, atol=tolerance * scale)
    value, grad = fg.compile_grad(logistic)(w, X, y)
    margins = -y.astype(np.float64) * exact
    np.testing.assert_allclose(value, np.sum(np.logaddexp(0.0, margins)),
                               rtol=tolerance * 10, atol=tolerance)
    reference_grad = -(X.astype(np.float64).T @ (y / (1.0 + np.exp(-margins))))
    np.testing.assert_allclose(grad, reference_grad, rtol=tolerance * 10,
                               atol=tolerance * 10 * max(rows, 1))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_row_dots_give_the_same_bits_for_any_thread_count(threads):
    from fusegrad.runtime import native

    rng = np.random.default_rng(5)
    X, w = rng.standard_normal((20_011, 37)), rng.standard_normal(37)
    product = fg.compile(lambda X, w: X @ w)
    before = native.get_num_threads()
    try:
        native.set_num_threads(1)
        one = product(X, w)
        native.set_num_threads(threads)
        np.testing.assert_array_equal(product(X, w), one)
    finally:
        native.set_num_threads(before)
