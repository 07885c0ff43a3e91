"""Vectorizable transcendentals (compiler/llvm/mathlib.py) against the C library.

Each function is JIT-compiled inside a loop over an array (like a rendered element-wise
kernel) and compared with NumPy — float64 NumPy (glibc or NumPy's own SIMD code) for
float64, the same rounded to float32 for float32 — and, where `np.longdouble` is the x87
80-bit format, with long double results rounded once (a near-exact reference). Errors
are counted in ulp: representable values between result and reference.
"""

from __future__ import annotations

import functools
import platform

import cffi
import llvmlite.binding as llvm
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from llvmlite import ir

from fusegrad.compiler.llvm.mathlib import VECTOR_MATH
from fusegrad.runtime.jit import jit_compile

# inputs deliberately include values a float32 cast overflows, and NaN
pytestmark = pytest.mark.filterwarnings("ignore:(overflow|invalid value):RuntimeWarning")

ffi = cffi.FFI()
OPS = ["exp", "log", "log1p", "expm1", "tanh", "logistic", "sin", "cos", "pow"]
DTYPES = ["float64", "float32"]
C_TYPES = {"float64": "double", "float32": "float"}
IR_TYPES = {"float64": ir.DoubleType(), "float32": ir.FloatType()}
I64 = ir.IntType(64)
EXTENDED_LONG_DOUBLE = np.finfo(np.longdouble).nmant >= 63


def arity(op):
    return 2 if op == "pow" else 1


# -- a loop calling the generated function -----------------------------------------------------
def loop_module(op: str, dtype: str) -> str:
    """void kernel(i64 n, T* x[, T* y], T* out): out[i] = fg_<op>(x[i][, y[i]])."""
    module = ir.Module(name=f"{op}_{dtype}")
    function = VECTOR_MATH[(op, dtype)](module)
    n_args = arity(op)
    kernel_type = ir.FunctionType(ir.VoidType(), [I64] + [ir.PointerType()] * (n_args + 1))
    kernel = ir.Function(module, kernel_type, "kernel")
    n, *pointers = kernel.args
    for pointer in pointers:
        pointer.add_attribute("noalias")
    b = ir.IRBuilder(kernel.append_basic_block("entry"))
    entry, header = b.block, b.append_basic_block("header")
    body, done = b.append_basic_block("body"), b.append_basic_block("done")
    b.branch(header)
    b.position_at_end(header)
    i = b.phi(I64)
    i.add_incoming(ir.Constant(I64, 0), entry)
    b.cbranch(b.icmp_signed("<", i, n), body, done)
    b.position_at_end(body)
    element = IR_TYPES[dtype]

    def address(pointer):
        return b.gep(pointer, [i], inbounds=True, source_etype=element)

    args = [b.load(address(p), typ=element) for p in pointers[:-1]]
    b.store(b.call(function, args), address(pointers[-1]))
    i.add_incoming(b.add(i, ir.Constant(I64, 1)), body)
    b.branch(header)
    b.position_at_end(done)
    b.ret_void()
    return str(module)


@functools.lru_cache(maxsize=None)
def compiled(op: str, dtype: str):
    kernel = jit_compile(loop_module(op, dtype), "kernel")
    pointer = C_TYPES[dtype] + "*"
    signature = ", ".join(["int64_t"] + [pointer] * (arity(op) + 1))
    return kernel, ffi.cast(f"void(*)({signature})", kernel.address)


def call(function, dtype, *arrays):
    arrays = [np.ascontiguousarray(a, dtype) for a in np.broadcast_arrays(*arrays)]
    out = np.empty_like(arrays[0])
    buffers = [ffi.from_buffer(C_TYPES[dtype] + "[]", a) for a in [*arrays, out]]
    function(out.size, *buffers)
    return out


def apply(op, dtype, *arrays):
    return call(compiled(op, dtype)[1], dtype, *arrays)


# -- references and distances -------------------------------------------------------------------
def reference(op, dtype, *arrays, exact=False):
    """`op` in float64 NumPy, or long double (`exact`), rounded once to `dtype`."""
    wide = np.longdouble if exact or op == "logistic" else np.float64
    with np.errstate(all="ignore"):
        args = [np.asarray(a, dtype).astype(wide) for a in arrays]
        if op == "logistic":
            x = args[0]
            e = np.exp(-np.abs(x))
            result = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
        elif op == "pow":
            result = np.power(*args)
        else:
            result = getattr(np, op)(*args)
        return result.astype(dtype)


def ulp_distance(a, b) -> np.ndarray:
    """How many representable values lie between a and b: 0 when equal (±0 are equal, NaN
    equals NaN), 2^62 when only one is NaN."""
    a, b = np.asarray(a), np.asarray(b)
    int_type = np.int64 if a.dtype == np.float64 else np.int32

    def ordered(v):  # monotone in the value: negative floats count down from zero
        i = v.view(int_type).astype(np.int64)
        i = np.where(i < 0, np.iinfo(int_type).min - i, i)
        return (i.astype(np.uint64) + np.uint64(2**63)).astype(np.uint64)

    oa, ob = ordered(a), ordered(b)
    distance = np.maximum(oa, ob) - np.minimum(oa, ob)
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    distance = np.where(nan_a & nan_b, np.uint64(0), distance)
    return np.where(nan_a ^ nan_b, np.uint64(2**62), distance)


def test_ulp_distance():
    one = np.float64(1.0)
    assert ulp_distance(one, np.nextafter(one, 2)) == 1
    assert ulp_distance(np.float64(-0.0), np.float64(0.0)) == 0
    assert ulp_distance(-np.float64(5e-324), np.float64(5e-324)) == 2
    assert ulp_distance(np.float32(np.inf), np.finfo(np.float32).max) == 1
    assert ulp_distance(np.float64(np.nan), np.float64(np.nan)) == 0
    assert ulp_distance(np.float64(np.nan), one) == 2**62
    assert ulp_distance(np.finfo(np.float64).max, -np.finfo(np.float64).max) == 2**64 - 2**53 - 2


def assert_within(result, expected, max_ulp, inputs):
    """≤ max_ulp everywhere; NaN, ±inf and the sign of zero exactly as expected."""
    distance = ulp_distance(result, expected)
    same_class = (np.isnan(result) == np.isnan(expected)) & (
        np.isinf(result) == np.isinf(expected)
    )
    zero = expected == 0
    same_class &= ~zero | (np.signbit(result) == np.signbit(expected))
    bad = ~same_class | (distance > max_ulp)
    if bad.any():
        worst = np.flatnonzero(bad)[np.argmax(distance[bad])]
        at = ", ".join(repr(x.flat[worst]) for x in inputs)
        pytest.fail(
            f"{bad.sum()} of {bad.size} beyond {max_ulp} ulp; worst at ({at}): got "
            f"{result.flat[worst]!r}, expected {expected.flat[worst]!r} "
            f"({int(distance.flat[worst])} ulp)"
        )


# -- inputs ---------------------------------------------------------------------------------------
EDGES = [
    0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, -0.5, 2.0,
    5e-324, -5e-324, 2.2250738585072014e-308, 1e-310, -1e-310, 1.7976931348623157e308,
    -1.7976931348623157e308, 1.4e-45, 1.1754944e-38, 3.4028235e38, -3.4028235e38,
    709.78, 709.782712893384, 709.79, 709.8, 710.0, -708.39, -708.4, -745.13, -745.1332191019412,
    -745.14, -745.2, -746.0, -800.0, 800.0, 88.72, 88.7228, 88.73, -87.33, -103.27, -103.98,
    -104.0, 37.0, 37.5, 40.0, -36.0, -37.5, -38.0, -40.0, 19.0, 19.1, 20.0, 22.0, -20.0,
    2.0**-26, 2.0**-28, 2.0**-53, 2.0**-54, 2.0**-55, -2.0**-54, 1e-20, -1e-20,
    1.0 - 2.0**-53, 1.0 + 2.0**-52, -1.0 + 2.0**-53, -1.0 + 2.0**-24, 1.5707963267948966,
    3.141592653589793, 2.0**53, 2.0**63, 1e22, 1e300,
]


def sweep(dtype, n, rng, extra_range):
    """Random bit patterns, log-spaced magnitudes of both signs, uniform in `extra_range`."""
    float_type = np.dtype(dtype).type
    info = np.finfo(float_type)
    int_type = np.int64 if dtype == "float64" else np.int32
    limits = np.iinfo(int_type)
    patterns = rng.integers(limits.min, limits.max, n, dtype=int_type).view(float_type)
    exponents = rng.uniform(np.log(float(info.smallest_subnormal)), np.log(float(info.max)), n)
    signs = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    with np.errstate(over="ignore"):
        magnitudes = (signs * np.exp(exponents)).astype(dtype)
        edges = np.array(EDGES).astype(dtype)
    uniform = rng.uniform(*extra_range, n).astype(dtype)
    return np.concatenate([patterns, magnitudes, uniform, edges])


DENSE_RANGES = {
    "exp": (-750, 712), "log": (0, 4), "log1p": (-1, 4), "expm1": (-40, 712),
    "tanh": (-22, 22), "logistic": (-750, 750), "sin": (-40, 40), "cos": (-40, 40),
}


def dense_inputs(op, dtype, n=150_000):
    rng = np.random.default_rng(sorted(OPS).index(op) + 10 * DTYPES.index(dtype))
    if op != "pow":
        return [sweep(dtype, n, rng, DENSE_RANGES[op])]
    x = sweep(dtype, n, rng, (0, 4))
    y = np.concatenate([
        rng.uniform(-60, 60, x.size // 2),  # large and tiny results, near over/underflow
        np.round(rng.uniform(-40, 40, x.size // 4)),  # integers: signs of negative bases
        rng.permutation(sweep(dtype, n, rng, (-3, 3)))[: x.size - x.size // 2 - x.size // 4],
    ]).astype(dtype)
    moderate = np.exp(rng.uniform(-8, 8, n)).astype(dtype)  # y·log x across the exp range
    y_moderate = (rng.uniform(-1.05, 1.05, n) * 745 / np.abs(np.log(moderate))).astype(dtype)
    return [np.concatenate([x, moderate]), np.concatenate([rng.permutation(y), y_moderate])]


# -- accuracy -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OPS)
def test_dense_sweep_within_2_ulp_of_numpy(op, dtype):
    inputs = dense_inputs(op, dtype)
    result = apply(op, dtype, *inputs)
    assert_within(result, reference(op, dtype, *inputs), 2, inputs)
    if EXTENDED_LONG_DOUBLE:  # against a near-exact reference: 1 ulp
        assert_within(result, reference(op, dtype, *inputs, exact=True), 1, inputs)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OPS)
@given(data=st.data())
def test_random_arrays_within_2_ulp(op, dtype, data):
    width = 64 if dtype == "float64" else 32
    shape = data.draw(st.integers(1, 40))
    inputs = [
        data.draw(hnp.arrays(dtype, shape, elements=st.floats(width=width)))
        for _ in range(arity(op))
    ]
    assert_within(apply(op, dtype, *inputs), reference(op, dtype, *inputs), 2, inputs)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pow_special_cases_match_c99(dtype):
    values = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0, 2.5, -2.5, np.inf,
              -np.inf, np.nan, 1e-310, 1e308, 2.0**53, 2.0**53 + 2, 1 - 2.0**-53, -1075.0]
    x, y = (np.array(v, dtype) for v in zip(*[(a, c) for a in values for c in values]))
    assert_within(apply("pow", dtype, x, y), reference("pow", dtype, x, y), 1, [x, y])


def test_sin_cos_of_arguments_close_to_multiples_of_pi_over_2():
    # 6381956970095103·2^797 is the double closest to a multiple of π/2 (≈ 2^-61 away);
    # expected values from an exact reduction in rational arithmetic (glibc 2.36's cos is
    # 8 ulp off there)
    x = np.array([6381956970095103 * 2.0**797, 1.5707963267948966, 1e22, 1.7976931348623157e308])
    np.testing.assert_array_equal(
        apply("sin", "float64", x), [1.0, 1.0, -0.8522008497671888, 0.004961954789184062]
    )
    np.testing.assert_array_equal(
        apply("cos", "float64", x),
        [-4.687165924254628e-19, 6.123233995736766e-17, 0.523214785395139, -0.9999876894265599],
    )
    multiples = np.arange(1, 100_001) * (np.pi / 2)
    for op in ("sin", "cos"):
        assert_within(apply(op, "float64", multiples), reference(op, "float64", multiples), 1,
                      [multiples])


@pytest.mark.skipif(not EXTENDED_LONG_DOUBLE, reason="needs an 80-bit long double reference")
@pytest.mark.parametrize("dtype", DTYPES)
def test_tanh_across_reduction_boundaries_and_tiny_arguments(dtype):
    # tanh|x| = 1 − 2/(e^(2|x|) + 1): k = round(2|x|/ln2) changes at |x| = (j + ½)·ln2/2,
    # where the tail's error peaks; tiny x must come back as x (1 − q cancels exactly)
    rng = np.random.default_rng(3)
    edges = (np.arange(60) + 0.5) * np.log(2) / 2
    x = np.concatenate([
        (edges[:, None] + rng.uniform(-0.02, 0.02, (60, 2000))).ravel(),
        np.exp(rng.uniform(np.log(1e-320), np.log(0.2), 50_000)),
    ])
    x = np.concatenate([x, -x]).astype(dtype)
    assert_within(apply("tanh", dtype, x), reference("tanh", dtype, x, exact=True), 1, [x])
    # below 2^-27 the correctly rounded tanh x is x itself (|x|³/3 < ½ ulp)
    tiny = np.exp(rng.uniform(np.log(1e-320), np.log(2.0**-27), 200_000)).astype(dtype)
    tiny = np.concatenate([tiny, -tiny, 2.0 ** -np.arange(27, 70)]).astype(dtype)
    assert_within(apply("tanh", dtype, tiny), tiny, 0, [tiny])


SPECIAL_VALUES = [
    # (op, x, expected): the edges named in the issue, for both dtypes where they exist
    ("exp", 709.78, 1.7928227943945155e308), ("exp", 709.8, np.inf), ("exp", -745.2, 0.0),
    ("exp", -745.0, 5e-324), ("exp", -np.inf, 0.0), ("exp", np.nan, np.nan),
    ("log", 0.0, -np.inf), ("log", -0.0, -np.inf), ("log", -1.0, np.nan),
    ("log", np.inf, np.inf), ("log", 5e-324, -744.4400719213812), ("log", 1.0, 0.0),
    ("log1p", -0.0, -0.0), ("log1p", -1.0, -np.inf), ("log1p", -2.0, np.nan),
    ("log1p", 1e-300, 1e-300), ("log1p", 5e-324, 5e-324),
    ("expm1", -0.0, -0.0), ("expm1", 1e-300, 1e-300), ("expm1", -np.inf, -1.0),
    ("expm1", 709.8, np.inf), ("expm1", -40.0, -1.0),
    ("tanh", 30.0, 1.0), ("tanh", -1e300, -1.0), ("tanh", -0.0, -0.0), ("tanh", 1e-300, 1e-300),
    ("tanh", np.inf, 1.0), ("tanh", -5e-324, -5e-324),
    ("logistic", -800.0, 0.0), ("logistic", 40.0, 1.0), ("logistic", 1e300, 1.0),
    ("logistic", -np.inf, 0.0), ("logistic", 0.0, 0.5), ("logistic", np.nan, np.nan),
    ("sin", -0.0, -0.0), ("sin", np.inf, np.nan), ("sin", 5e-324, 5e-324),
    ("cos", -np.inf, np.nan), ("cos", 0.0, 1.0),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op, x, expected", SPECIAL_VALUES)
def test_special_values(op, x, expected, dtype):
    if dtype == "float32" and x != 0 and (abs(x) < 1e-38 or 88 < abs(x) < np.inf):
        expected = reference(op, dtype, np.array([x], dtype))[0]  # float32 over/underflow
    result = apply(op, dtype, np.array([x], dtype))
    assert_within(result, np.array([expected], dtype), 0, [np.array([x])])


# -- code generation --------------------------------------------------------------------------------
def test_exp_loop_is_vectorized():
    kernel, _ = compiled("exp", "float64")
    assert "<4 x double>" in kernel.llvm_ir or "<8 x double>" in kernel.llvm_ir
    assert "@exp(" not in kernel.llvm_ir and "@fg_exp_f64" not in kernel.llvm_ir  # inlined


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OPS)
def test_every_function_vectorizes_without_calls(op, dtype):
    kernel, _ = compiled(op, dtype)
    element = "double" if dtype == "float64" else "float"
    assert any(f"<{lanes} x {element}>" in kernel.llvm_ir for lanes in (2, 4, 8, 16))
    calls = {line.split("@")[1].split("(")[0] for line in kernel.llvm_ir.splitlines()
             if " call " in line}
    assert all(name.startswith("llvm.") for name in calls), calls


def test_functions_are_defined_once_internal_and_always_inlined():
    module = ir.Module()
    first = VECTOR_MATH[("sin", "float64")](module)
    assert VECTOR_MATH[("sin", "float64")](module) is first
    VECTOR_MATH[("cos", "float64")](module)
    assert first.name == "fg_sin_f64" and first.linkage == "internal"
    assert "alwaysinline" in first.attributes
    tables = [g for g in module.global_values if g.name.startswith("fg_two_over_pi")]
    assert [t.name for t in tables] == ["fg_two_over_pi_double"] and tables[0].global_constant
    assert set(VECTOR_MATH) == {(op, dtype) for op in OPS for dtype in DTYPES}


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 target")
@pytest.mark.parametrize("op", OPS)
def test_accurate_without_fma_hardware(op):
    # baseline x86-64 (SSE2) has no FMA: llvm.fmuladd is a multiply and an add, llvm.fma a
    # (correct, slower) call; results change by roundings only, within the same bounds
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target = llvm.Target.from_default_triple()

    def machine():
        return target.create_target_machine(cpu="x86-64", opt=3, codemodel="jitdefault", jit=True)

    module = llvm.parse_assembly(loop_module(op, "float64"))
    tm = machine()
    module.triple, module.data_layout = tm.triple, str(tm.target_data)
    options = llvm.create_pipeline_tuning_options(speed_level=3)
    options.loop_vectorization = options.slp_vectorization = True
    passes = llvm.create_pass_builder(tm, options)
    passes.getModulePassManager().run(module, passes)
    assert "vfmadd" not in machine().emit_assembly(module)
    engine = llvm.create_mcjit_compiler(module, tm)
    engine.finalize_object()
    signature = ", ".join(["int64_t"] + ["double*"] * (arity(op) + 1))
    function = ffi.cast(f"void(*)({signature})", engine.get_function_address("kernel"))
    inputs = [a[::8] for a in dense_inputs(op, "float64")]
    result = call(function, "float64", *inputs)
    assert_within(result, reference(op, "float64", *inputs), 2, inputs)
