"""Row blocking (compiler/block_rows.py): per-row scalar work moves into SIMD lanes.

The structure tests check the loop IR (what runs in a flat "vector" phase); the
value tests check compiled kernels against the reference interpreter at sizes
around the block size, on one and on two threads.
"""

import numpy as np
import pytest

import fusegrad as fg
from fusegrad.compiler import pipeline, symbolic
from fusegrad.compiler.block_rows import BLOCK, block_rows
from fusegrad.compiler.loop_walk import walk
from fusegrad.compiler.loopir import (AccInit, AccRef, AccUpdate, Accumulator, Apply, Buffer,
                                      Load, Loop, Program, Store)
from fusegrad.runtime import native

from reference import reference


def loop_ir(fn, *args):
    return pipeline.to_loop_ir(fg.compile(fn).lower(*args))


def expensive_ops_by_loop_kind(program):
    """{loop kind: number of transcendental Applies directly in loops of that kind}."""
    counts = {}

    def count(expr):
        if isinstance(expr, Apply):
            return (expr.op in ("exp", "log1p", "tanh", "div")) + sum(count(a) for a in expr.args)
        return 0

    for loop in walk(program.body):
        if isinstance(loop, Loop):
            n = sum(count(s.value) for s in loop.body if hasattr(s, "value"))
            counts[loop.kind] = counts.get(loop.kind, 0) + n
    return counts


def logistic(w, X, y):
    return np.sum(np.log1p(np.exp(-y * (X @ w))))


def test_logistic_gradient_computes_its_transcendentals_in_a_vector_phase():
    program = loop_ir(fg.value_and_grad(logistic), np.ones(3), np.ones((4, 3)), np.ones(4))
    counts = expensive_ops_by_loop_kind(program)
    assert counts.get("vector", 0) >= 2
    assert counts.get("serial", 0) == 0 and counts.get("parallel", 0) == 0
    local = {b.name for s in walk(program.body) if isinstance(s, Store)
             for b in [s.buffer] if b.kind == "local"}
    assert len(local) == 2  # z = X w, and the residual the gradient's axpy reads


def test_row_outputs_are_blocked_in_a_parallel_block_loop():
    def f(X):
        return np.tanh(np.sum(X * X, axis=1)) + np.log1p(np.sum(X, axis=1) ** 2)

    program = loop_ir(f, np.ones((5, 3)))
    (outer,) = [s for s in program.body if isinstance(s, Loop)]
    assert outer.kind == "parallel"
    assert [phase.kind for phase in outer.body] == ["serial", "serial", "vector"]


def test_loops_without_expensive_scalar_work_are_left_alone():
    def f(X, w):
        return np.sum((X @ w) * 2.0)

    assert not any(b.kind == "local" for s in walk(loop_ir(f, np.ones((4, 3)), np.ones(3)).body)
                   if isinstance(s, Store) for b in [s.buffer])


def _row_loop(store_index, load_index):
    """for i in range(n):
           a = Σ_j X[i, j]
           for j: out[store_index] = tanh(a) X[i, j]
           for j: out2[i, j] = out[load_index]"""
    n, m = symbolic.Dim.symbol("n"), symbolic.Dim.symbol("m")
    i, j = symbolic.Dim.symbol("@i"), symbolic.Dim.symbol("@j")
    X = Buffer("X", "float64", (n, m), "input")
    out = Buffer("out", "float64", (n + 1, m), "output")
    out2 = Buffer("out2", "float64", (n, m), "output")
    acc = Accumulator("a", "add", "float64")
    body = [
        AccInit(acc),
        Loop("@j", m, [AccUpdate(acc, Load(X, i * m + j))], "vector"),
        Loop("@j", m, [Store(out, store_index(i, j, m), Apply(
            "mul", (Apply("tanh", (AccRef(acc),), "float64"), Load(X, i * m + j)), "float64"))]),
        Loop("@j", m, [Store(out2, i * m + j, Load(out, load_index(i, j, m)))]),
    ]
    return Program("p", ["n", "m"], [X], [out, out2], [], [Loop("@i", n, body, "serial")])


def _is_blocked(program):
    return any(b.kind == "local" for s in walk(program.body) if isinstance(s, Store)
               for b in [s.buffer])


def test_rows_are_blocked_only_when_each_iteration_keeps_to_its_own_row():
    def row(i, j, m):
        return i * m + j

    def next_row(i, j, m):
        return (i + 1) * m + j

    assert _is_blocked(block_rows(_row_loop(row, row)))
    assert _is_blocked(block_rows(_row_loop(next_row, next_row)))  # all of row i + 1
    # Iteration i writes row i + 1 and reads row i: two rows per iteration, refused
    # (distributed, a read of row i could move before the write that feeds it).
    assert not _is_blocked(block_rows(_row_loop(next_row, row)))
    assert not _is_blocked(block_rows(_row_loop(row, lambda i, j, m: j)))  # a shared row


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("rows", [1, BLOCK - 1, BLOCK, BLOCK + 1, 200, 4097])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_blocked_logistic_gradient_matches_the_reference(rows, threads, dtype):
    rng = np.random.default_rng(rows)
    X = rng.standard_normal((rows, 7)).astype(dtype)
    y = np.sign(rng.standard_normal(rows)).astype(dtype)
    w = (0.3 * rng.standard_normal(7)).astype(dtype)
    f = fg.compile(fg.value_and_grad(logistic))
    expected_value, expected_grad = reference(fg.value_and_grad(logistic), w, X, y)
    old = native.get_num_threads()
    native.set_num_threads(threads)
    try:
        value, grad = f(w, X, y)
    finally:
        native.set_num_threads(old)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(value, expected_value, rtol=tol)
    np.testing.assert_allclose(grad, expected_grad, rtol=tol, atol=tol * np.abs(expected_grad).max())


@pytest.mark.parametrize("rows", [1, BLOCK, 3 * BLOCK + 5])
def test_blocked_row_outputs_match_the_reference(rows):
    def f(X, v):
        s = np.sum(X * v, axis=1)
        return np.tanh(s) * np.exp(-np.sum(X * X, axis=1)) / (1.0 + s * s)

    rng = np.random.default_rng(0)
    X, v = rng.standard_normal((rows, 9)), rng.standard_normal(9)
    np.testing.assert_allclose(fg.compile(f)(X, v), reference(f, X, v), rtol=1e-13, atol=1e-15)


def test_blocked_reductions_give_the_same_bits_on_any_thread_count():
    rng = np.random.default_rng(1)
    X, y, w = rng.standard_normal((20000, 5)), np.sign(rng.standard_normal(20000)), np.ones(5)
    f = fg.compile(fg.value_and_grad(logistic))
    old = native.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            native.set_num_threads(threads)
            results.append(f(w, X, y))
    finally:
        native.set_num_threads(old)
    assert results[0][0] == results[1][0]
    assert np.array_equal(results[0][1], results[1][1])


def test_the_gradient_axpy_takes_four_rows_per_step():
    program = loop_ir(fg.value_and_grad(logistic), np.ones(3), np.ones((4, 3)), np.ones(4))
    jammed = [s for s in walk(program.body) if isinstance(s, Loop) and s.var.startswith("@q")]
    assert len(jammed) == 1
    (axpy,) = jammed[0].body
    (store,) = axpy.body
    assert len([load for load in _loads_of(store.value) if load.buffer.name == "X"]) == 4


def _loads_of(expr):
    if isinstance(expr, Load):
        yield expr
    for arg in getattr(expr, "args", ()):
        yield from _loads_of(arg)
