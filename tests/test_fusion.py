"""The schedule the compiler chooses: what is fused, what is parallel, what is stored.

These are properties of the loop IR, so they hold on any machine: a regression
in fusion shows here as a changed loop structure before it shows in benchmarks.
"""

import numpy as np

import fusegrad as fg
from fusegrad.compiler import pipeline
from fusegrad.compiler.loop_walk import walk
from fusegrad.compiler.loopir import Loop
from fusegrad.compiler.loop_walk import loads_in


def loop_ir(fn, *args):
    return pipeline.to_loop_ir(fg.compile(fn).lower(*args))


def loops_reading(program, buffer_name):
    """Top-level statements whose loops load from the named buffer."""
    found = []
    for stmt in program.body:
        for inner in walk([stmt]):
            value = getattr(inner, "value", None)
            if value is not None and any(
                load.buffer.name == buffer_name for load in loads_in(value)
            ):
                found.append(stmt)
                break
    return found


def logistic(w, X, y):
    return np.sum(np.log1p(np.exp(-y * (X @ w))))


def test_logistic_value_and_gradient_read_X_in_one_pass():
    program = loop_ir(fg.value_and_grad(logistic), np.ones(3), np.ones((4, 3)), np.ones(4))
    assert len(loops_reading(program, "X")) == 1
    # Nothing of size m is stored: z = X w and the residual live in registers.
    for buffer in program.scratch:
        assert "y_0" not in repr(buffer.shape) or buffer.name.startswith("p_"), buffer


def test_elementwise_chain_value_and_gradient_are_one_loop():
    def chain(x):
        return np.sum(np.tanh(x) * np.exp(-x * x) + np.log1p(x * x))

    program = loop_ir(fg.value_and_grad(chain), np.ones(5))
    assert len(loops_reading(program, "x")) == 1
    assert all(b.name.startswith("p_") for b in program.scratch)


def test_rowwise_logsumexp_and_its_gradient_share_the_row_loop():
    def lse(X):
        return np.sum(fg.logsumexp(X, axis=1))

    program = loop_ir(fg.value_and_grad(lse), np.ones((3, 4)))
    assert len(loops_reading(program, "X")) == 1


def test_independent_loops_are_parallel_and_reductions_are_chunked():
    program = loop_ir(lambda x: (np.exp(x), x.sum()), np.ones((3, 4)))
    kinds = [s.kind for s in program.body if isinstance(s, Loop)]
    assert kinds == ["parallel", "serial"]  # exp and the sum in chunks, then the partials in order


def loads_with_innermost_loop(stmts, enclosing=None):
    """(load, innermost enclosing loop variable) for every load in the statements."""
    for stmt in stmts:
        if isinstance(stmt, Loop):
            yield from loads_with_innermost_loop(stmt.body, stmt.var)
        value = getattr(stmt, "value", None)
        for load in loads_in(value) if value is not None else ():
            yield load, enclosing


def test_column_sums_stream_rows():
    # Summing over axis 0 accumulates rows into the output: x is read with unit
    # stride along the innermost loop.
    program = loop_ir(lambda x: x.sum(axis=0), np.ones((3, 4)))
    reads = [(load, var) for load, var in loads_with_innermost_loop(program.body)
             if load.buffer.name == "x"]
    assert reads
    for load, var in reads:
        terms = dict((tuple(repr(a) for a in m), c) for m, c in load.index.terms)
        assert terms.get((var,)) == 1, (load.index, var)


def test_scratch_buffers_with_disjoint_lifetimes_share_memory():
    from fusegrad.compiler.fuse_loops import fuse_loops
    from fusegrad.compiler.lower import lower
    from fusegrad.compiler.parallelize import parallelize
    from fusegrad.compiler.plan_buffers import plan_buffers

    def two_stages(A, B):
        first = np.tanh(A @ B)  # lives until the second product
        second = np.exp(first @ B)
        return (np.sin(second @ B)).sum()

    A, B = np.ones((4, 4)), np.ones((4, 4))
    function = fg.compile(two_stages).lower(A, B)
    before = parallelize(fuse_loops(lower(function, blas=True)))
    after = plan_buffers(before)
    assert len(after.scratch) < len(before.scratch)
    # and the planned kernel still computes the same thing
    from reference import reference

    np.testing.assert_allclose(fg.compile(two_stages)(A * 0.1, B * 0.2),
                               reference(two_stages, A * 0.1, B * 0.2), rtol=1e-12)
