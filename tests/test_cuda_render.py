"""The CUDA C renderer: hand-built loop programs rendered, run on the CPU emulation of a
GPU (runtime/cuda/emulate.py, g++) against NumPy, and compiled by NVRTC for sm_80 and
sm_90 (no GPU needed). End-to-end `target="cuda"` functions are in test_cuda_emulate.py.
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from fusegrad.compiler import loopir as L
from fusegrad.compiler import symbolic
from fusegrad.compiler.cuda import plan
from fusegrad.compiler.cuda.combines import split_combines
from fusegrad.compiler.cuda.ops import CUDA_OPS, constant
from fusegrad.compiler.cuda.render import render_cuda
from fusegrad.runtime.cuda.execute import execute
from test_cuda_runtime import needs_nvrtc
from test_llvm_render import BINARY, COMPARE, NUMPY, SPECIALS, UNARY, _check

NP_TYPES = {"float64": np.float64, "float32": np.float32, "bool": np.bool_}
n, m = symbolic.Dim.symbol("n"), symbolic.Dim.symbol("m")
i, j, k = L.loop_var(0), L.loop_var(1), L.loop_var(2)

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="the emulation needs g++")


def buf(name, dtype, shape, kind):
    return L.Buffer(name, dtype, tuple(shape), kind)


@pytest.fixture(scope="module")
def device():
    if shutil.which("g++") is None:
        pytest.skip("the emulated device needs g++")
    from fusegrad.runtime.cuda.emulate import EmulatedDevice

    return EmulatedDevice()


def run(device, program, dims, *inputs):
    """Render `program`, run it on the emulated device; the outputs as NumPy arrays."""
    cuda = render_cuda(program)
    pointers = {}
    for buffer, value in zip(program.inputs, inputs):
        host = np.ascontiguousarray(value, NP_TYPES[buffer.dtype])
        pointers[buffer.name] = device.alloc(host.nbytes)
        device.upload(pointers[buffer.name], host.view(np.uint8) if host.dtype == bool else host)
    outputs = []
    for buffer in program.outputs:
        shape = tuple(max(symbolic.evaluate(d, dims), 0) for d in buffer.shape)
        outputs.append(np.empty(shape, NP_TYPES[buffer.dtype]))
        pointers[buffer.name] = device.alloc(outputs[-1].nbytes)
    execute(device, cuda, dims, {b.name: pointers[b.name] for b in program.inputs},
            {b.name: pointers[b.name] for b in program.outputs})
    for buffer, array in zip(program.outputs, outputs):
        device.download(array.view(np.uint8) if array.dtype == bool else array, pointers[buffer.name])
    for pointer in pointers.values():
        device.free(pointer)
    return outputs


# -- programs ------------------------------------------------------------------------------
def elementwise_program(name, ops, in_dtypes, out_dtype_of):
    """out_k[i] = op_k(x0[i], x1[i], …) for every op of `ops`, in one loop."""
    inputs = [buf(f"x{q}", d, (n,), "input") for q, d in enumerate(in_dtypes)]
    outputs, body = [], []
    for op in ops:
        arity = 3 if op == "select" else 1 if op in UNARY + ["logical_not", "cast"] else 2
        out = buf(f"out_{op}", out_dtype_of(op), (n,), "output")
        outputs.append(out)
        value = L.Apply(op, tuple(L.Load(b, i) for b in inputs[:arity]), out.dtype)
        body.append(L.Store(out, i, value))
    return L.Program(name, ["n"], inputs, outputs, body=[L.Loop(i.name, n, body, "parallel")])


def unary_program(dtype):
    return elementwise_program(f"unary_{dtype}", UNARY, [dtype], lambda op: dtype)


def binary_program(dtype):
    return elementwise_program(f"binary_{dtype}", BINARY + COMPARE, [dtype, dtype],
                               lambda op: "bool" if op in COMPARE else dtype)


def chunked_sum_program(op, dtype="float64", chunk=16):
    """The shape `parallelize` gives a reduction: partials per chunk, then a combine."""
    x = buf("x", dtype, (n,), "input")
    out = buf("out", dtype, (), "output")
    chunks = symbolic.simplify((n + (chunk - 1)) // chunk)
    partials = buf("p", dtype, (chunks,), "scratch")
    total, private = L.Accumulator("total", op, dtype), L.Accumulator("total_c", op, dtype)
    c = L.loop_var(10)
    extent = symbolic.dim_min(chunk, n - symbolic.as_dim(c) * chunk)
    element = symbolic.as_dim(c) * chunk + j
    body = [
        L.AccInit(total),
        L.Loop(c.name, chunks, [
            L.AccInit(private),
            L.Loop(j.name, extent, [L.AccUpdate(private, L.Load(x, element))]),
            L.Store(partials, c, L.AccRef(private)),
        ], "parallel"),
        L.Loop(c.name, chunks, [L.AccUpdate(total, L.Load(partials, c))]),
        L.Store(out, 0, L.AccRef(total)),
    ]
    return L.Program(f"chunked_{op}_{dtype}", ["n"], [x], [out], [partials], body)


def row_sums_program(dtype="float64"):
    """out[r] = Σ_c X[r, c] + m (a dim as a float): a grid loop with an inner loop."""
    x = buf("X", dtype, (n, m), "input")
    out = buf("out", dtype, (n,), "output")
    acc = L.Accumulator("row", "add", dtype)
    body = [L.Loop(i.name, n, [
        L.AccInit(acc),
        L.Loop(j.name, m, [L.AccUpdate(acc, L.Load(x, symbolic.as_dim(i) * m + j))]),
        L.Store(out, i, L.Apply("add", (L.AccRef(acc), L.DimValue(m, dtype)), dtype)),
    ], "parallel")]
    return L.Program(f"row_sums_{dtype}", ["n", "m"], [x], [out], body=body)


def local_and_atoms_program():
    """A thread-local array, floordiv/max atoms in indices, and a serial recurrence."""
    x = buf("x", "float64", (n,), "input")
    halves = buf("halves", "float64", (symbolic.dim_max(n // 2, 1),), "output")
    prefix = buf("prefix", "float64", (n,), "output")
    tmp = buf("tmp", "float64", (2,), "local")
    half = symbolic.dim_max(n // 2, 1)
    body = [
        L.Loop(i.name, half, [
            L.Store(tmp, 0, L.Load(x, symbolic.dim_min(2 * symbolic.as_dim(i), n - 1))),
            L.Store(tmp, 1, L.Load(x, symbolic.dim_min(2 * symbolic.as_dim(i) + 1, n - 1))),
            L.Store(halves, i, L.Apply("add", (L.Load(tmp, 0), L.Load(tmp, 1)), "float64")),
        ], "parallel"),
        L.Loop(i.name, n, [L.Store(prefix, i, L.Load(x, i))]),
        L.Loop(i.name, n - 1, [L.Store(prefix, symbolic.as_dim(i) + 1, L.Apply("add", (
            L.Load(prefix, i), L.Load(prefix, symbolic.as_dim(i) + 1)), "float64"))]),
    ]
    return L.Program("local_and_atoms", ["n"], [x], [halves, prefix], body=body)


def casts_program():
    sources = ["float32", "float64", "bool"]
    inputs = [buf(f"x_{s}", s, (n,), "input") for s in sources]
    outputs, body = [], []
    for source in inputs:
        for target in sources:
            out = buf(f"{source.dtype}_to_{target}", target, (n,), "output")
            outputs.append(out)
            body.append(L.Store(out, i, L.Apply("cast", (L.Load(source, i),), target)))
    return L.Program("casts", ["n"], inputs, outputs, body=[L.Loop(i.name, n, body, "parallel")])


def constants_program(dtype):
    out = buf("out", dtype, (5,), "output")
    values = [np.inf, -np.inf, np.nan, 0.1, -0.0]
    body = [L.Store(out, q, L.Const(v, dtype)) for q, v in enumerate(values)]
    return L.Program(f"constants_{dtype}", [], [], [out], body=body), values


def select_program(dtype):
    return elementwise_program(f"select_{dtype}", ["select"], ["bool", dtype, dtype],
                               lambda op: dtype)


def logical_program():
    ops = ["logical_and", "logical_or", "logical_not"]
    return elementwise_program("logical", ops, ["bool", "bool"], lambda op: "bool")


def all_programs():
    """Every hand-built program of this file (NVRTC compiles them all)."""
    programs = [casts_program(), local_and_atoms_program(), logical_program(), row_block_program()]
    for dtype in ("float32", "float64"):
        programs += [unary_program(dtype), binary_program(dtype), row_sums_program(dtype),
                     select_program(dtype), constants_program(dtype)[0]]
        programs += [chunked_sum_program(op, dtype) for op in ("add", "max", "min")]
        programs += [gemm_program(ta, tb, dtype) for ta in (0, 1) for tb in (0, 1)]
    return programs


# -- element-wise ops against NumPy ----------------------------------------------------------
def test_every_elementwise_op_has_a_cuda_row():
    from fusegrad.compiler.llvm.scalar import SCALAR_OPS

    assert set(CUDA_OPS) == set(SCALAR_OPS)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_unary_ops_match_numpy(device, dtype):
    with np.errstate(all="ignore"):
        x = np.array(SPECIALS, dtype=dtype)
    results = run(device, unary_program(dtype), {"n": len(x)}, x)
    for op, result in zip(UNARY, results):
        with np.errstate(all="ignore"):
            _check(op, result, NUMPY[op](x), dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_binary_ops_and_comparisons_match_numpy(device, dtype):
    with np.errstate(all="ignore"):
        values = np.array(SPECIALS, dtype=dtype)
    a, b = np.repeat(values, len(values)), np.tile(values, len(values))
    results = run(device, binary_program(dtype), {"n": len(a)}, a, b)
    for op, result in zip(BINARY + COMPARE, results):
        with np.errstate(all="ignore"):
            _check(op, result, NUMPY[op](a, b), dtype)


def test_logical_ops_select_and_casts(device):
    a, b = np.array([False, False, True, True]), np.array([False, True, False, True])
    results = run(device, logical_program(), {"n": 4}, a, b)
    for op, result in zip(["logical_and", "logical_or"], results):
        np.testing.assert_array_equal(result, NUMPY[op](a, b))
    np.testing.assert_array_equal(results[2], ~a)
    with np.errstate(all="ignore"):
        x = np.array(SPECIALS, dtype=np.float64)
        inputs = [x.astype(np.float32), x, x != 0]
    results = iter(run(device, casts_program(), {"n": len(x)}, *inputs))
    for source in inputs:
        for target in (np.float32, np.float64, np.bool_):
            result = next(results)
            with np.errstate(all="ignore"):
                expected = source.astype(target)
            np.testing.assert_array_equal(result, expected)
            np.testing.assert_array_equal(np.signbit(result), np.signbit(expected))
    cond = np.array([True, False] * 10)
    a, b = np.array(SPECIALS), np.array(SPECIALS[::-1])
    (result,) = run(device, select_program("float64"), {"n": 20}, cond, a, b)
    np.testing.assert_array_equal(result, np.where(cond, a, b))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_constants_are_exact(device, dtype):
    program, values = constants_program(dtype)
    (result,) = run(device, program, {})
    expected = np.array(values, dtype=dtype)
    np.testing.assert_array_equal(result, expected)
    number = ~np.isnan(expected)  # a NaN's sign bit means nothing (x86's 0/0 sets it)
    np.testing.assert_array_equal(np.signbit(result[number]), np.signbit(expected[number]))


def test_constant_literals():
    assert constant(0.1, "float64") == "0.1"
    assert constant(0.1, "float32") == "((float)0.1)"  # the double, rounded once
    assert constant(0.5, "float32") == "0.5f"
    assert constant(-2.0, "float64") == "(-2.0)"  # never `--2.0` after a minus
    assert constant(float("-inf"), "float32") == "(-1.0f / 0.0f)"


# -- reductions, grids, indices ------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 1000, 5000])
def test_block_reductions_give_sums_of_any_size(device, size):
    x = np.random.default_rng(size).standard_normal(size)
    (result,) = run(device, chunked_sum_program("add"), {"n": size}, x)
    assert result == pytest.approx(x.sum(), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("op, numpy_op", [("max", np.max), ("min", np.min)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_max_min_reductions_propagate_nan_and_have_identities(device, op, numpy_op, dtype):
    x = np.random.default_rng(0).standard_normal(1000).astype(dtype)
    program = chunked_sum_program(op, dtype)
    (result,) = run(device, program, {"n": 1000}, x)
    assert result == numpy_op(x)
    x[637] = np.nan
    (result,) = run(device, program, {"n": 1000}, x)
    assert np.isnan(result)
    (empty,) = run(device, program, {"n": 0}, x[:0])
    assert empty == (-np.inf if op == "max" else np.inf)


def test_reductions_are_the_same_bits_on_every_run(device):
    x = np.random.default_rng(1).standard_normal(100_003)
    program = chunked_sum_program("add", chunk=4096)
    first = run(device, program, {"n": x.size}, x)[0]
    for _ in range(2):
        assert run(device, program, {"n": x.size}, x)[0].tobytes() == first.tobytes()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_grid_loop_with_inner_loop_and_dim_value(device, dtype):
    X = np.random.default_rng(2).standard_normal((300, 7)).astype(dtype)
    (result,) = run(device, row_sums_program(dtype), {"n": 300, "m": 7}, X)
    np.testing.assert_allclose(result, X.sum(axis=1) + 7, rtol=1e-6 if dtype == "float32" else 1e-13)


@pytest.mark.parametrize("size", [1, 2, 5, 600])
def test_local_arrays_index_atoms_and_serial_recurrences(device, size):
    x = np.arange(1.0, size + 1)
    halves, prefix = run(device, local_and_atoms_program(), {"n": size}, x)
    padded = np.append(x, [x[-1]] * 2)
    expected = [padded[min(2 * r, size - 1)] + padded[min(2 * r + 1, size - 1)]
                for r in range(max(size // 2, 1))]
    np.testing.assert_array_equal(halves, expected)
    np.testing.assert_array_equal(prefix, np.cumsum(x))


# -- which kernel each statement gets ------------------------------------------------------------
def kinds(program):
    stmts = plan.flatten_blocks(program.body)
    return [type(kernel).__name__ for kernel in plan.plan(stmts, set(plan.slots(stmts)))]


def test_plan_of_a_chunked_reduction():
    """The total's init moves next to the combine, and the serial statements around the
    combine run in its block: two launches."""
    program = chunked_sum_program("add")
    assert kinds(program) == ["ChunkReduction", "Combine"]
    stmts = plan.flatten_blocks(program.body)
    combine = plan.plan(stmts, set(plan.slots(stmts)))[1]
    assert [type(s).__name__ for s in combine.prologue + combine.epilogue] == ["AccInit", "Store"]
    launches = render_cuda(program).steps
    assert [(s.block, s.grid) for s in launches][1:] == [(plan.BLOCK, 1)]


def test_row_reductions_get_a_block_per_row():
    """A parallel loop of rows, each a flat reduction: the row's threads share its work."""
    assert kinds(row_sums_program()) == ["ChunkReduction"]
    (launch,) = render_cuda(row_sums_program()).steps
    assert launch.grid == n and launch.block == plan.BLOCK


def row_block_program():
    """Per row: z = X[r]·w, s += log1p(z²), out[r, :] = X[r, :] · z (a dot, a scalar,
    an axpy: the shape of the logistic gradient's rows)."""
    x, w = buf("X", "float64", (n, m), "input"), buf("w", "float64", (m,), "input")
    out, total = buf("out", "float64", (n, m), "output"), buf("total", "float64", (n,), "output")
    z, s = L.Accumulator("z", "add", "float64"), L.Accumulator("s", "add", "float64")
    row = symbolic.as_dim(i) * m
    body = [L.Loop(i.name, n, [
        L.AccInit(s),
        L.Loop(k.name, 3, [  # three passes over the row: a serial loop in every thread
            L.AccInit(z),
            L.Loop(j.name, m, [L.AccUpdate(z, L.Apply("mul", (L.Load(x, row + j), L.Load(w, j)), "float64"))]),
            L.AccUpdate(s, L.Apply("log1p", (L.Apply("mul", (L.AccRef(z), L.AccRef(z)), "float64"),), "float64")),
            L.Loop(j.name, m, [L.Store(out, row + j, L.Apply("mul", (L.Load(x, row + j), L.AccRef(z)), "float64"))]),
        ]),
        L.Store(total, i, L.AccRef(s)),
    ], "parallel")]
    return L.Program("row_block", ["n", "m"], [x, w], [out, total], body=body)


@pytest.mark.parametrize("rows, cols", [(5, 1), (40, 32), (7, 70), (3, 0)])
def test_row_blocks_share_each_rows_loops_among_a_warp(device, rows, cols):
    assert kinds(row_block_program()) == ["RowBlock"]
    (launch,) = render_cuda(row_block_program()).steps
    assert launch.block == plan.ROW_BLOCK and launch.grid == n
    rng = np.random.default_rng(cols)
    X, w = rng.standard_normal((rows, cols)), rng.standard_normal(cols)
    out, total = run(device, row_block_program(), {"n": rows, "m": cols}, X, w)
    z = X @ w
    np.testing.assert_allclose(out, X * z[:, None], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(total, 3 * np.log1p(z * z), rtol=1e-12, atol=1e-14)


def test_a_row_loop_reading_a_neighbours_element_is_not_shared():
    program = row_block_program()
    axpy = program.body[0].body[1].body[3]
    axpy.body[0] = L.Store(program.outputs[0], symbolic.as_dim(i) * m + j,
                           L.Load(program.outputs[0], symbolic.as_dim(i) * m))  # element 0
    assert kinds(program) == ["GridLoop"]


def test_a_chunk_writing_a_shared_row_is_one_thread_per_chunk():
    """A store whose index does not move with the element (a row `parallelize` shrank to
    one per chunk) would be written by every thread of a block: a grid loop instead."""
    program = chunked_sum_program("add")
    chunk_loop = program.body[1]
    row = buf("row", "float64", (symbolic.simplify((n + 15) // 16),), "scratch")
    inner = chunk_loop.body[1]
    inner.body.insert(0, L.Store(row, L.loop_var(10), L.Const(1.0, "float64")))
    program.scratch.append(row)
    assert kinds(program)[0] == "GridLoop"


def test_fills_are_grid_loops_and_serial_statements_merge():
    out = buf("out", "float64", (n,), "output")
    total = buf("total", "float64", (), "output")
    body = [
        L.Loop(i.name, n, [L.Store(out, i, L.Const(0.0, "float64"))]),
        L.Store(total, 0, L.Const(1.0, "float64")),
        L.Store(total, 0, L.Apply("add", (L.Load(total, 0), L.Const(1.0, "float64")), "float64")),
    ]
    program = L.Program("f", ["n"], [], [out, total], body=body)
    # the stores do not depend on the fill: they move up and share one kernel
    assert kinds(program) == ["Serial", "GridLoop"]
    body.append(L.Store(total, 0, L.Load(out, 0)))  # this one waits for the fill
    assert kinds(program) == ["Serial", "GridLoop", "Serial"]


def gemm_program(trans_a, trans_b, dtype="float64"):
    kk = symbolic.Dim.symbol("k")
    a = buf("a", dtype, (kk, n) if trans_a else (n, kk), "input")
    b = buf("b", dtype, (m, kk) if trans_b else (kk, m), "input")
    c = buf("c", dtype, (n, m), "output")
    name = f"gemm_{int(trans_a)}{int(trans_b)}_{dtype}"
    return L.Program(name, ["n", "m", "k"], [a, b], [c],
                     body=[L.Gemm(c, a, b, n, m, kk, trans_a, trans_b)])


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("shape", [(1, 1, 1), (17, 33, 16), (40, 5, 70), (3, 4, 0)])
def test_tiled_matrix_products(device, trans_a, trans_b, shape):
    rows, cols, inner = shape
    rng = np.random.default_rng(inner)
    A, B = rng.standard_normal((rows, inner)), rng.standard_normal((inner, cols))
    a = np.ascontiguousarray(A.T) if trans_a else A
    b = np.ascontiguousarray(B.T) if trans_b else B
    (c,) = run(device, gemm_program(trans_a, trans_b), {"n": rows, "m": cols, "k": inner}, a, b)
    np.testing.assert_allclose(c, A @ B, rtol=1e-12, atol=1e-12)
    assert kinds(gemm_program(trans_a, trans_b)) == ["TiledGemm"]


def test_split_combines_makes_buffer_combines_parallel():
    g = buf("g", "float64", (m,), "output")
    partials = buf("P", "float64", (n, m), "scratch")
    p_acc = buf("p_acc", "float64", (n,), "scratch")
    acc = L.Accumulator("s", "add", "float64")
    c = L.loop_var(10)
    combine = L.Loop(c.name, n, [
        L.AccUpdate(acc, L.Load(p_acc, c)),
        L.Loop(k.name, m, [L.Store(g, k, L.Apply("add", (
            L.Load(g, k), L.Load(partials, symbolic.as_dim(c) * m + k)), "float64"))]),
    ])
    program = L.Program("p", ["n", "m"], [], [g], [partials, p_acc], [L.AccInit(acc), combine])
    split = split_combines(program).body
    assert [type(s).__name__ for s in split] == ["AccInit", "Loop", "Loop"]
    assert split[1].kind == "serial" and split[1].body == [combine.body[0]]
    assert split[2].kind == "parallel" and split[2].var == k.name
    # each element: a reduction over the chunks of its own, a block on the GPU
    init, chunks, total = split[2].body
    assert isinstance(init, L.AccInit) and chunks.var == c.name and isinstance(total, L.Store)
    assert kinds(L.Program("p", ["n", "m"], [], [g], [partials, p_acc], split)) == [
        "Combine", "ChunkReduction"]
    g_value = np.arange(3.0)
    P = np.random.default_rng(0).standard_normal((50, 3))
    p_sums = np.random.default_rng(1).standard_normal(50)
    if shutil.which("g++") is not None:
        from fusegrad.runtime.cuda.emulate import EmulatedDevice

        program_io = L.Program("combine", ["n", "m"],
                               [buf("P", "float64", (n, m), "input"),
                                buf("p_acc", "float64", (n,), "input"),
                                buf("g0", "float64", (m,), "input")],
                               [g, buf("s_out", "float64", (), "output")], [], [])
        P_in, pacc_in, g0 = program_io.inputs
        body = [L.AccInit(acc), L.Loop(k.name, m, [L.Store(g, k, L.Load(g0, k))], "parallel")]
        body += rewrite_loads(split[1:], {partials: P_in, p_acc: pacc_in})
        body.append(L.Store(program_io.outputs[1], 0, L.AccRef(acc)))
        program_io.body = body
        result, total_sum = run(EmulatedDevice(), program_io, {"n": 50, "m": 3}, P, p_sums, g_value)
        np.testing.assert_allclose(result, g_value + P.sum(axis=0), rtol=1e-13)
        assert total_sum == pytest.approx(p_sums.sum(), rel=1e-13)
    # an update that reads the combined buffer depends on it: left alone
    combine.body[0] = L.AccUpdate(acc, L.Load(g, 0))
    assert split_combines(program).body[1] is combine


def rewrite_loads(stmts, replacement):
    from fusegrad.compiler.loop_walk import rewrite

    return rewrite(stmts, load=lambda e: L.Load(replacement.get(e.buffer, e.buffer), e.index))


# -- generated text ---------------------------------------------------------------------------
def test_shared_sub_expressions_are_computed_once():
    x = buf("x", "float64", (n,), "input")
    out = buf("out", "float64", (n,), "output")
    e = L.Apply("exp", (L.Load(x, i),), "float64")
    for _ in range(30):  # a DAG 30 levels deep: as text without sharing, 2^30 exps
        e = L.Apply("add", (e, e), "float64")
    program = L.Program("deep", ["n"], [x], [out], body=[L.Loop(i.name, n, [L.Store(out, i, e)], "parallel")])
    source = render_cuda(program).source
    kernel = source[source.index('extern "C"'):]
    assert kernel.count("exp(") == 1 and len(kernel) < 5_000


def test_kernel_parameters_are_const_restrict_and_named_after_the_buffers():
    source = render_cuda(row_sums_program()).source
    assert re.search(r"row_sums_float64_k0\(long long d_m, "
                     r"const double \*__restrict__ b_X, double \*__restrict__ b_out\)", source)


# -- NVRTC: every program above compiles to CUBIN for sm_80 and sm_90 ----------------------------
@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_nvrtc_compiles_every_program_here(arch):
    from fusegrad.runtime.cuda import nvrtc

    sources = [render_cuda(p).source for p in all_programs()]
    cubin = nvrtc.compile_cubin(one_translation_unit(sources), arch, "test_cuda_render.cu")
    assert cubin[:4] == b"\x7fELF"


def one_translation_unit(sources) -> str:
    """Several rendered programs as one source: the shared preamble once, then each
    program's kernels (their names differ: each starts with its program's name)."""
    marker = 'extern "C" __global__'
    preamble = sources[0][: sources[0].index(marker)]
    return preamble + "\n".join(s[s.index(marker):] for s in sources)


def test_the_cuda_plan_refuses_products_only_the_cpu_passes_make():
    # Gram (syrk) and row-scaled products come from CPU loop passes; the CUDA pipeline
    # never runs them, and its planner says so rather than dropping the scaling
    from dataclasses import replace

    from fusegrad.compiler.cuda import plan as cuda_plan
    from fusegrad.compiler.errors import CompileError

    program = gemm_program(True, False)
    (gemm,) = program.body
    rows = L.Buffer("rows", "float64", (gemm.k,), "scratch")
    for odd in (replace(gemm, gram=1), replace(gemm, row_scale=rows)):
        with pytest.raises(CompileError, match="Gram or row-scaled"):
            cuda_plan.plan([odd], set())
