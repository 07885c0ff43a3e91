"""The LLVM renderer and the JIT: hand-built loop-IR programs run against NumPy.

Programs are data, so each test builds one, renders it, JIT-compiles it and calls
the entry point through cffi (ABI mode) with NumPy buffers.
"""

from __future__ import annotations

import gc
import re
from concurrent.futures import ThreadPoolExecutor

import cffi
import numpy as np
import pytest

from fusegrad.compiler import loopir as L
from fusegrad.compiler import symbolic
from fusegrad.compiler.errors import CompileError
from fusegrad.compiler.llvm.render import render_program
from fusegrad.compiler.llvm.scalar import SCALAR_OPS
from fusegrad.runtime.jit import jit_compile

ffi = cffi.FFI()
C_TYPES = {"float64": "double", "float32": "float", "bool": "uint8_t"}
NP_TYPES = {"float64": np.float64, "float32": np.float32, "bool": np.bool_}

n, m = symbolic.Dim.symbol("n"), symbolic.Dim.symbol("m")
i, j = L.loop_var(0), L.loop_var(1)


def buf(name, dtype, shape, kind):
    return L.Buffer(name, dtype, tuple(shape), kind)


def run(program, dims, *inputs, expect_status=0):
    """Compile `program` and call it; returns the output arrays."""
    kernel = jit_compile(render_program(program), program.name)
    buffers = program.inputs + program.outputs
    parameters = ["int64_t"] * len(program.dims) + [C_TYPES[b.dtype] + "*" for b in buffers]
    signature = ", ".join(parameters)
    function = ffi.cast(f"int32_t(*)({signature})", kernel.address)
    outputs = [
        np.empty(tuple(max(symbolic.evaluate(d, dims), 0) for d in b.shape), NP_TYPES[b.dtype])
        for b in program.outputs
    ]
    arrays = [np.ascontiguousarray(a, NP_TYPES[b.dtype]) for a, b in zip(inputs, program.inputs)]
    pointers = [
        ffi.from_buffer(C_TYPES[b.dtype] + "[]", a.view(np.uint8) if b.dtype == "bool" else a)
        for a, b in zip(arrays + outputs, buffers)
    ]
    status = function(*[dims[name] for name in program.dims], *pointers)
    assert status == expect_status
    return outputs


# -- index math, loops, buffers --------------------------------------------------------------
def test_broadcast_add_2d():
    x, b = buf("x", "float64", (n, m), "input"), buf("b", "float64", (m,), "input")
    out = buf("out", "float64", (n, m), "output")
    body = [L.Loop(i.name, n, [L.Loop(j.name, m, [
        L.Store(out, i * m + j, L.Apply("add", (L.Load(x, i * m + j), L.Load(b, j)), "float64")),
    ], "vector")])]
    program = L.Program("bcast", ["n", "m"], [x, b], [out], body=body)
    xv, bv = np.random.rand(5, 7), np.random.rand(7)
    (result,) = run(program, {"n": 5, "m": 7}, xv, bv)
    np.testing.assert_array_equal(result, xv + bv)


def test_zero_extent_runs_nothing_and_negative_dim_is_status_1():
    x, out = buf("x", "float64", (n,), "input"), buf("out", "float64", (n,), "output")
    body = [L.Loop(i.name, n, [L.Store(out, i, L.Load(x, i))])]
    program = L.Program("copy", ["n"], [x], [out], body=body)
    (result,) = run(program, {"n": 0}, np.zeros(0))
    assert result.shape == (0,)
    kernel = jit_compile(render_program(program), "copy")
    function = ffi.cast("int32_t(*)(int64_t, double*, double*)", kernel.address)
    assert function(-1, ffi.NULL, ffi.NULL) == 1


def _reduce_rows(op, dtype="float64"):
    """out[r] = op over c of x[r, c]."""
    x, out = buf("x", dtype, (n, m), "input"), buf("out", dtype, (n,), "output")
    acc = L.Accumulator("acc1", op, dtype)
    body = [L.Loop(i.name, n, [
        L.AccInit(acc),
        L.Loop(j.name, m, [L.AccUpdate(acc, L.Load(x, i * m + j))]),
        L.Store(out, i, L.AccRef(acc)),
    ])]
    return L.Program(f"reduce_{op}", ["n", "m"], [x], [out], body=body)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sum_rows(dtype):
    xv = np.random.rand(4, 9).astype(dtype)
    (result,) = run(_reduce_rows("add", dtype), {"n": 4, "m": 9}, xv)
    np.testing.assert_allclose(result, xv.sum(axis=1), rtol=1e-6)


@pytest.mark.parametrize("op, numpy_op", [("max", np.max), ("min", np.min)])
def test_max_min_propagate_nan(op, numpy_op):
    xv = np.array([
        [1.0, 5.0, -2.0, 0.0],
        [np.nan, 1.0, 2.0, 3.0],   # NaN first: the accumulator stays NaN
        [1.0, 2.0, 3.0, np.nan],   # NaN last: it replaces the accumulator
        [-np.inf, np.inf, 0.0, -0.0],
    ])
    (result,) = run(_reduce_rows(op), {"n": 4, "m": 4}, xv)
    np.testing.assert_array_equal(result, numpy_op(xv, axis=1))


def test_reductions_over_empty_extent_give_identity():
    for op, identity in [("min", np.inf), ("max", -np.inf), ("add", 0.0)]:
        (result,) = run(_reduce_rows(op), {"n": 3, "m": 0}, np.zeros((3, 0)))
        np.testing.assert_array_equal(result, np.full(3, identity))


def test_bool_buffers():
    x, mask = buf("x", "float64", (n,), "input"), buf("mask", "bool", (n,), "input")
    positive, out = buf("positive", "bool", (n,), "output"), buf("out", "float64", (n,), "output")
    body = [L.Loop(i.name, n, [
        L.Store(positive, i, L.Apply("gt", (L.Load(x, i), L.Const(0.0, "float64")), "bool")),
        L.Store(out, i, L.Apply("select", (L.Load(mask, i), L.Load(x, i), L.Const(-1.0, "float64")),
                                "float64")),
    ])]
    program = L.Program("masks", ["n"], [x, mask], [positive, out], body=body)
    xv, mv = np.array([1.0, -2.0, 0.0, 3.0, np.nan]), np.array([True, False, True, False, True])
    result_positive, result = run(program, {"n": 5}, xv, mv)
    np.testing.assert_array_equal(result_positive, xv > 0)
    assert set(result_positive.view(np.uint8)) <= {0, 1}
    np.testing.assert_array_equal(result, np.where(mv, xv, -1.0))


def test_scratch_buffer_and_status_2_when_allocation_fails():
    # t = exp(x) in a (n, m) scratch buffer; out = t + 1. A second scratch buffer
    # of m³ elements is too large to allocate (or to count in bytes) when m is huge.
    x, out = buf("x", "float64", (n, m), "input"), buf("out", "float64", (n, m), "output")
    t, big = buf("t", "float64", (n, m), "scratch"), buf("big", "float64", (m, m, m), "scratch")
    exp_x = L.Apply("exp", (L.Load(x, i),), "float64")
    t_plus_1 = L.Apply("add", (L.Load(t, i), L.Const(1.0, "float64")), "float64")
    body = [
        L.Loop(i.name, n * m, [L.Store(t, i, exp_x)]),
        L.Loop(i.name, n * m, [L.Store(out, i, t_plus_1)]),
    ]
    program = L.Program("scratch", ["n", "m"], [x], [out], scratch=[t, big], body=body)
    xv = np.random.rand(3, 4)
    (result,) = run(program, {"n": 3, "m": 4}, xv)
    np.testing.assert_allclose(result, np.exp(xv) + 1, rtol=1e-15)
    kernel = jit_compile(render_program(program), "scratch")
    function = ffi.cast("int32_t(*)(int64_t, int64_t, double*, double*)", kernel.address)
    assert function(1, 2**19, ffi.NULL, ffi.NULL) == 2  # 8·2^57 bytes
    assert function(1, 2**22, ffi.NULL, ffi.NULL) == 2  # 8·2^66 bytes overflow i64


def test_floordiv_and_max_atoms_in_indices():
    # out[i] = x[(i−3)//3 + 1] + x[(i−5)//4 + 2] + x[max(i−2, 0)] + x[min(i, n−3)]: floor
    # division of negative numbers, by a power of two and by another number
    x, out = buf("x", "float64", (n,), "input"), buf("out", "float64", (n,), "output")
    indices = [(i - 3) // 3 + 1, (i - 5) // 4 + 2, symbolic.dim_max(i - 2, 0),
               symbolic.dim_min(i, n - 3)]
    total = L.Load(x, indices[0])
    for index in indices[1:]:
        total = L.Apply("add", (total, L.Load(x, index)), "float64")
    body = [L.Loop(i.name, n, [L.Store(out, i, total)])]
    program = L.Program("atoms", ["n"], [x], [out], body=body)
    xv = np.arange(10.0) ** 2
    (result,) = run(program, {"n": 10}, xv)
    k = np.arange(10)
    expected = xv[(k - 3) // 3 + 1] + xv[(k - 5) // 4 + 2] + xv[np.maximum(k - 2, 0)]
    expected += xv[np.minimum(k, 10 - 3)]
    np.testing.assert_array_equal(result, expected)


def test_dim_value():
    out = buf("out", "float32", (n,), "output")
    value = L.Apply("mul", (L.DimValue(i, "float32"), L.DimValue(n, "float32")), "float32")
    body = [L.Loop(i.name, n, [L.Store(out, i, value)])]
    program = L.Program("dimvalue", ["n"], [], [out], body=body)
    (result,) = run(program, {"n": 6})
    np.testing.assert_array_equal(result, np.arange(6, dtype=np.float32) * 6)


def test_shadowed_loop_variable_is_the_innermost_loop():
    # for @i0 < n: out[@i0] = x[@i0]; (for @i0 < n: acc += x[@i0]); sums[@i0] = acc
    x, out = buf("x", "float64", (n,), "input"), buf("out", "float64", (n,), "output")
    sums = buf("sums", "float64", (n,), "output")
    acc = L.Accumulator("acc1", "add", "float64")
    body = [L.Loop(i.name, n, [
        L.Store(out, i, L.Load(x, i)),
        L.AccInit(acc),
        L.Loop(i.name, n, [L.AccUpdate(acc, L.Load(x, i))]),
        L.Store(sums, i, L.AccRef(acc)),
    ])]
    program = L.Program("shadow", ["n"], [x], [out, sums], body=body)
    xv = np.array([1.0, 2.0, 4.0])
    result, result_sums = run(program, {"n": 3}, xv)
    np.testing.assert_array_equal(result, xv)
    np.testing.assert_array_equal(result_sums, np.full(3, 7.0))


# -- element-wise ops against NumPy ------------------------------------------------------------
SPECIALS = [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, 1e-8, -1e-8, 1e-300, 1e-40, 88.0, -88.0, 700.0,
            -750.0, 1e300, -3e38, np.inf, -np.inf, np.nan]
UNARY = ["neg", "abs", "sign", "exp", "log", "log1p", "expm1", "sqrt", "tanh", "sin", "cos",
         "logistic"]
BINARY = ["add", "sub", "mul", "div", "pow", "maximum", "minimum"]
COMPARE = ["lt", "le", "gt", "ge", "eq", "ne"]
EXACT = {"neg", "abs", "sign", "sqrt", "add", "sub", "mul", "div", "maximum", "minimum"}


def _logistic(x):
    e = np.exp(np.minimum(x, 0))
    return np.where(x >= 0, 1 / (1 + np.exp(-np.maximum(x, 0))), e / (1 + e))


NUMPY = {
    "neg": np.negative, "abs": np.abs, "sign": np.sign, "exp": np.exp, "log": np.log,
    "log1p": np.log1p, "expm1": np.expm1, "sqrt": np.sqrt, "tanh": np.tanh, "sin": np.sin,
    "cos": np.cos, "logistic": _logistic, "add": np.add, "sub": np.subtract,
    "mul": np.multiply, "div": np.divide, "pow": np.power, "maximum": np.maximum,
    "minimum": np.minimum, "lt": np.less, "le": np.less_equal, "gt": np.greater,
    "ge": np.greater_equal, "eq": np.equal, "ne": np.not_equal,
    "logical_and": np.logical_and, "logical_or": np.logical_or, "logical_not": np.logical_not,
}


def _elementwise_program(op, in_dtypes, out_dtype):
    inputs = [buf(f"x{k}", d, (n,), "input") for k, d in enumerate(in_dtypes)]
    out = buf("out", out_dtype, (n,), "output")
    value = L.Apply(op, tuple(L.Load(b, i) for b in inputs), out_dtype)
    body = [L.Loop(i.name, n, [L.Store(out, i, value)])]
    return L.Program(f"op_{op}", ["n"], inputs, [out], body=body)


def _check(op, result, expected, dtype):
    with np.errstate(all="ignore"):
        expected = np.asarray(expected, dtype=result.dtype)
    if result.dtype == np.bool_:
        np.testing.assert_array_equal(result, expected)
        return
    rtol = 1e-6 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(result, expected, rtol=rtol, atol=0, err_msg=op)
    if op in EXACT:  # bit for bit, signed zeros included
        np.testing.assert_array_equal(np.signbit(result), np.signbit(expected), err_msg=op)
        np.testing.assert_array_equal(result, expected, err_msg=op)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", UNARY)
def test_unary_op_matches_numpy(op, dtype):
    with np.errstate(all="ignore"):
        xv = np.array(SPECIALS, dtype=dtype)
        expected = NUMPY[op](xv)
    (result,) = run(_elementwise_program(op, [dtype], dtype), {"n": len(xv)}, xv)
    _check(op, result, expected, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", BINARY + COMPARE)
def test_binary_op_matches_numpy(op, dtype):
    with np.errstate(all="ignore"):
        values = np.array(SPECIALS, dtype=dtype)
        a, b = np.repeat(values, len(values)), np.tile(values, len(values))
        expected = NUMPY[op](a, b)
    out_dtype = "bool" if op in COMPARE else dtype
    (result,) = run(_elementwise_program(op, [dtype, dtype], out_dtype), {"n": len(a)}, a, b)
    _check(op, result, expected, dtype)


@pytest.mark.parametrize("op", ["logical_and", "logical_or", "logical_not", "eq", "ne", "lt"])
def test_logical_ops(op):
    a, b = np.array([False, False, True, True]), np.array([False, True, False, True])
    args = (a,) if op == "logical_not" else (a, b)
    (result,) = run(_elementwise_program(op, ["bool"] * len(args), "bool"), {"n": 4}, *args)
    np.testing.assert_array_equal(result, NUMPY[op](*args))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_select(dtype):
    cond = np.array([True, False] * 10)
    with np.errstate(all="ignore"):
        a, b = np.array(SPECIALS, dtype=dtype), np.array(SPECIALS[::-1], dtype=dtype)
    program = _elementwise_program("select", ["bool", dtype, dtype], dtype)
    (result,) = run(program, {"n": len(a)}, cond, a, b)
    _check("select", result, np.where(cond, a, b), dtype)


@pytest.mark.parametrize("source", ["float32", "float64", "bool"])
@pytest.mark.parametrize("target", ["float32", "float64", "bool"])
def test_cast(source, target):
    with np.errstate(all="ignore"):
        xv = np.array(SPECIALS, dtype=np.float64).astype(NP_TYPES[source])
        expected = xv.astype(NP_TYPES[target])
    (result,) = run(_elementwise_program("cast", [source], target), {"n": len(xv)}, xv)
    np.testing.assert_array_equal(result, expected)
    np.testing.assert_array_equal(np.signbit(result), np.signbit(expected))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_constants(dtype):
    out = buf("out", dtype, (4,), "output")
    values = [np.inf, -np.inf, np.nan, 0.1]
    body = [L.Store(out, k, L.Const(v, dtype)) for k, v in enumerate(values)]
    (result,) = run(L.Program("consts", [], [], [out], body=body), {})
    np.testing.assert_array_equal(result, np.array(values, dtype=dtype))


def test_every_elementwise_op_has_a_row():
    from fusegrad.compiler.ops import elementwise

    ops = elementwise.UNARY + elementwise.BINARY + elementwise.COMPARE + elementwise.LOGICAL
    assert set(ops) | {"select", "cast"} <= SCALAR_OPS
    assert set(UNARY + BINARY + COMPARE) <= set(ops)  # this file tests every one of them


# -- generated code -------------------------------------------------------------------------------
def test_rendered_ir_has_no_fast_math_and_the_elementwise_loop_vectorizes():
    text = render_program(_elementwise_program("mul", ["float64", "float64"], "float64"))
    assert not re.search(r"\b(fast|nnan|ninf|nsz|arcp|contract|afn|reassoc)\b", text)
    kernel = jit_compile(text, "op_mul")
    assert re.search(r"<\d+ x double>", kernel.llvm_ir)
    assert "op_mul" in kernel.asm


def _interleave_counts(text: str) -> dict:
    """{loop header name: interleave count asked for in its latch's loop metadata}."""
    counts = dict(re.findall(r'^(!\d+) = !\{ !"llvm.loop.interleave.count", i32 (\d+) \}',
                             text, re.MULTILINE))
    loop_ids = {}
    for loop_id, properties in re.findall(r"^(!\d+) = !\{ \1, (.*) \}$", text, re.MULTILINE):
        loop_ids[loop_id] = [counts[p] for p in properties.split(", ") if p in counts]
    marked = re.findall(r'br label %"([\w.]+)\.header", !llvm.loop (!\d+)', text)
    return {header: loop_ids[loop_id] for header, loop_id in marked}


def test_map_loops_are_not_interleaved_and_reductions_are():
    # the map loop of an element-wise op, and the rows of a row sum: only the inner loop
    # reduces; the outer loop stores one element per row but holds a loop
    assert _interleave_counts(render_program(
        _elementwise_program("mul", ["float64", "float64"], "float64"))) == {"i0": ["1"]}
    assert _interleave_counts(render_program(_reduce_rows("add", "float64"))) == {}
    # each loop has a metadata node of its own (LLVM's loop ids are distinct)
    two_maps = L.Program("two", ["n"], [buf("x", "float64", [n], "input")],
                         [buf("y", "float64", [n], "output"), buf("z", "float64", [n], "output")])
    x, y, z = two_maps.inputs[0], *two_maps.outputs
    two_maps.body = [L.Loop(i.name, n, [L.Store(y, i, L.Load(x, i))]),
                     L.Loop(j.name, n, [L.Store(z, j, L.Load(x, j))])]
    text = render_program(two_maps)
    assert len(set(re.findall(r"!llvm.loop (!\d+)", text))) == 2
    yv = np.random.rand(7)
    ys, zs = run(two_maps, {"n": 7}, yv)
    np.testing.assert_array_equal(ys, yv)
    np.testing.assert_array_equal(zs, yv)


def test_invalid_ir_raises_compile_error():
    with pytest.raises(CompileError):
        jit_compile("define i32 @f( {", "f")


IDENTITY_IR = "define i64 @f(i64 %x) {\n  ret i64 %x\n}\ndefine i64 @g(i64 %x) {\n  ret i64 %x\n}\n"


def test_exported_functions_have_addresses_and_a_missing_one_is_a_compile_error():
    kernel = jit_compile(IDENTITY_IR, "f", exports=("g",))
    g = ffi.cast("int64_t(*)(int64_t)", kernel.address_of("g"))
    assert g(41) == 41 and kernel.address != kernel.address_of("g")
    with pytest.raises(CompileError, match="no_such_function"):
        jit_compile(IDENTITY_IR, "no_such_function")


def test_an_unresolved_external_function_is_a_compile_error_not_a_crash():
    text = "declare i64 @fg_not_in_the_runtime(i64)\n" + IDENTITY_IR.replace(
        "ret i64 %x\n}\ndefine i64 @g", "%y = call i64 @fg_not_in_the_runtime(i64 %x)\n"
        "  ret i64 %y\n}\ndefine i64 @g", 1)
    with pytest.raises(CompileError, match="linking the compiled object code failed"):
        jit_compile(text, "f")


def test_freed_kernels_unload_and_new_ones_still_link():
    # Each kernel is a library of the process's one LLJIT instance, unloaded when freed.
    for k in range(50):
        kernel = jit_compile(IDENTITY_IR, "f")
        assert ffi.cast("int64_t(*)(int64_t)", kernel.address)(k) == k
        del kernel
    gc.collect()


def test_unknown_op_raises_compile_error():
    with pytest.raises(CompileError):
        render_program(_elementwise_program("no_such_op", ["float64"], "float64"))


def test_concurrent_compilation():
    program = _elementwise_program("exp", ["float64"], "float64")
    text = render_program(program)
    xv = np.linspace(-3, 3, 11)
    with ThreadPoolExecutor(max_workers=8) as pool:
        kernels = list(pool.map(lambda _: jit_compile(text, "op_exp"), range(8)))
    for kernel in kernels:
        function = ffi.cast("int32_t(*)(int64_t, double*, double*)", kernel.address)
        out = np.empty_like(xv)
        x_pointer, out_pointer = ffi.from_buffer("double[]", xv), ffi.from_buffer("double[]", out)
        assert function(len(xv), x_pointer, out_pointer) == 0
        np.testing.assert_allclose(out, np.exp(xv), rtol=1e-13)
