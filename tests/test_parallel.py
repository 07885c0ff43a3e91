"""Parallel loops: the C runtime's thread pool (`fg_parallel_for`) and the LLVM renderer's
outlined bodies, on hand-built loop-IR programs.

A parallel loop gives the same bits as the same loop rendered serially, for any
thread count, any extent (0, 1, 10⁶) and concurrent calls from several threads.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cffi
import numpy as np
import pytest
from fusegrad.compiler import loopir as L
from fusegrad.compiler import symbolic
from fusegrad.compiler.errors import CompileError
from fusegrad.compiler.llvm.render import PARALLEL_GRAIN_WORK, render_program
from fusegrad.runtime import native
from fusegrad.runtime.jit import jit_compile

ffi = cffi.FFI()
C_TYPES = {"float64": "double", "float32": "float", "bool": "uint8_t"}
NP_TYPES = {"float64": np.float64, "float32": np.float32, "bool": np.bool_}
THREAD_COUNTS = (1, 2, 4)

n, m, K = symbolic.Dim.symbol("n"), symbolic.Dim.symbol("m"), symbolic.Dim.symbol("K")
i, j, k = L.loop_var(0), L.loop_var(1), L.loop_var(2)


def buf(name, dtype, shape, kind):
    return L.Buffer(name, dtype, tuple(shape), kind)


def f64(op, *args):
    return L.Apply(op, tuple(args), "float64")


def const(value):
    return L.Const(value, "float64")


class Compiled:
    """A program compiled once; call(dims, *inputs) returns its outputs."""

    def __init__(self, program):
        self.program = program
        self.llvm_ir = render_program(program)
        self.kernel = jit_compile(self.llvm_ir, program.name)
        buffers = program.inputs + program.outputs
        parameters = ["int64_t"] * len(program.dims) + [C_TYPES[b.dtype] + "*" for b in buffers]
        self.function = ffi.cast(f"int32_t(*)({', '.join(parameters)})", self.kernel.address)

    def __call__(self, dims, *inputs):
        program = self.program
        outputs = [
            np.full(tuple(max(symbolic.evaluate(d, dims), 0) for d in b.shape), np.nan,
                    NP_TYPES[b.dtype])
            for b in program.outputs
        ]
        arrays = [np.ascontiguousarray(a, NP_TYPES[b.dtype])
                  for a, b in zip(inputs, program.inputs)]
        pointers = [ffi.from_buffer(C_TYPES[b.dtype] + "[]", a)
                    for a, b in zip(arrays + outputs, program.inputs + program.outputs)]
        status = self.function(*[dims[name] for name in program.dims], *pointers)
        assert status == 0
        return outputs


def with_kind(stmts, kind):
    """The statements with every loop of kind "parallel" turned into `kind`."""
    result = []
    for s in stmts:
        if isinstance(s, L.Loop):
            result.append(L.Loop(s.var, s.extent, with_kind(s.body, kind),
                                 kind if s.kind == "parallel" else s.kind))
        elif isinstance(s, L.Block):
            result.append(L.Block(with_kind(s.body, kind)))
        else:
            result.append(s)
    return result


def serial_twin(program):
    return L.Program(program.name + "_serial", program.dims, program.inputs, program.outputs,
                     program.scratch, with_kind(program.body, "serial"))


@pytest.fixture
def threads():
    """Set the pool's thread count within a test; restored afterwards."""
    before = native.get_num_threads()
    yield native.set_num_threads
    native.set_num_threads(before)


def assert_same_bits(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.shape == e.shape and a.dtype == e.dtype
        assert a.tobytes() == e.tobytes()


# -- programs ---------------------------------------------------------------------------------
def elementwise_2d():
    """out[i, j] = tanh(x[i, j]) · b[j] + exp(−x[i, j]²), rows in parallel."""
    x, b = buf("x", "float64", (n, m), "input"), buf("b", "float64", (m,), "input")
    out = buf("out", "float64", (n, m), "output")
    xij = L.Load(x, i * m + j)
    value = f64("add", f64("mul", f64("tanh", xij), L.Load(b, j)),
                f64("exp", f64("neg", f64("mul", xij, xij))))
    body = [L.Loop(i.name, n, [L.Loop(j.name, m, [L.Store(out, i * m + j, value)], "vector")],
                   "parallel")]
    return L.Program("par_ew", ["n", "m"], [x, b], [out], body=body)


def row_reductions():
    """sums[i] = Σ_j x[i, j]², maxs[i] = max_j x[i, j]; accumulators private to a row."""
    x = buf("x", "float64", (n, m), "input")
    sums, maxs = buf("sums", "float64", (n,), "output"), buf("maxs", "float64", (n,), "output")
    total, largest = L.Accumulator("total", "add", "float64"), L.Accumulator("largest", "max",
                                                                             "float64")
    xij = L.Load(x, i * m + j)
    body = [L.Loop(i.name, n, [
        L.AccInit(total), L.AccInit(largest),
        L.Loop(j.name, m, [L.AccUpdate(total, f64("mul", xij, xij)), L.AccUpdate(largest, xij)]),
        L.Store(sums, i, L.AccRef(total)),
        L.Store(maxs, i, L.AccRef(largest)),
    ], "parallel")]
    return L.Program("par_rows", ["n", "m"], [x], [sums, maxs], body=body)


def chunked_sum(chunk=4096):
    """total = Σ x[i] the way `parallelize` cuts it: parallel chunks into partials, then
    the partials combined in chunk order (so the same bits for any thread count)."""
    x, out = buf("x", "float64", (n,), "input"), buf("out", "float64", (1,), "output")
    chunks = (symbolic.as_dim(n) + (chunk - 1)) // chunk
    partials = buf("partials", "float64", (chunks,), "scratch")
    part, total = L.Accumulator("part", "add", "float64"), L.Accumulator("total", "add", "float64")
    start = symbolic.as_dim(i) * chunk
    body = [
        L.Loop(i.name, chunks, [
            L.AccInit(part),
            L.Loop(j.name, symbolic.dim_min(chunk, symbolic.as_dim(n) - start), [
                L.AccUpdate(part, f64("sin", L.Load(x, start + j))),
            ]),
            L.Store(partials, i, L.AccRef(part)),
        ], "parallel"),
        L.AccInit(total),
        L.Loop(i.name, chunks, [L.AccUpdate(total, L.Load(partials, i))]),
        L.Store(out, 0, L.AccRef(total)),
    ]
    return L.Program("par_chunked", ["n"], [x], [out], scratch=[partials], body=body)


# -- the renderer -------------------------------------------------------------------------------
SHAPES_2D = [(0, 5), (5, 0), (1, 1), (1, 300), (300, 1), (7, 13), (257, 129), (3000, 17)]


def test_elementwise_2d_matches_serial_bit_for_bit(threads):
    parallel, serial = Compiled(elementwise_2d()), Compiled(serial_twin(elementwise_2d()))
    rng = np.random.default_rng(0)
    for rows, cols in SHAPES_2D:
        x, b = rng.normal(size=(rows, cols)), rng.normal(size=cols)
        dims = {"n": rows, "m": cols}
        expected = serial(dims, x, b)
        np.testing.assert_allclose(expected[0], np.tanh(x) * b + np.exp(-x * x), rtol=1e-13,
                                   atol=1e-15)
        for count in THREAD_COUNTS:
            threads(count)
            assert_same_bits(parallel(dims, x, b), expected)


def test_rendering_outlines_the_body_and_keeps_it_vectorized():
    compiled = Compiled(elementwise_2d())
    text = compiled.llvm_ir
    signature = 'define internal void @"par_ew_par0"(ptr %"ctx", i64 %"begin", i64 %"end")'
    assert signature in text
    assert "call void @\"fg_parallel_for\"" in text
    # pointers reach the body as noalias parameters: after inlining the loop still vectorizes
    optimized = compiled.kernel.llvm_ir
    body = optimized[optimized.index("@par_ew_par0("):]
    assert "<4 x double>" in body or "<8 x double>" in body
    # a program without parallel loops declares no pool
    assert "fg_parallel_for" not in render_program(serial_twin(elementwise_2d()))


def test_per_row_reductions_with_private_accumulators(threads):
    parallel, serial = Compiled(row_reductions()), Compiled(serial_twin(row_reductions()))
    rng = np.random.default_rng(1)
    for rows, cols in [(0, 3), (1, 1), (4, 0), (33, 1000), (20000, 3)]:
        x = rng.normal(size=(rows, cols))
        dims = {"n": rows, "m": cols}
        expected = serial(dims, x)
        np.testing.assert_allclose(expected[0], (x * x).sum(axis=1), rtol=1e-12)
        np.testing.assert_array_equal(expected[1], x.max(axis=1, initial=-np.inf))
        for count in THREAD_COUNTS:
            threads(count)
            assert_same_bits(parallel(dims, x), expected)


def test_scratch_buffers_inside_parallel_bodies(threads):
    # t = exp(x) into a scratch buffer (parallel); out[i] = Σ_j t[i, j] · w[i, j] (parallel,
    # with a per-row scratch row r[i, :] = t · 2 written and read in the same iteration)
    x = buf("x", "float64", (n, m), "input")
    out = buf("out", "float64", (n,), "output")
    t, r = buf("t", "float64", (n, m), "scratch"), buf("r", "float64", (n, m), "scratch")
    acc = L.Accumulator("acc", "add", "float64")
    ij = i * m + j
    body = [
        L.Loop(i.name, n * m, [L.Store(t, i, f64("exp", L.Load(x, i)))], "parallel"),
        L.Loop(i.name, n, [
            L.Loop(j.name, m, [L.Store(r, ij, f64("mul", L.Load(t, ij), const(2.0)))]),
            L.AccInit(acc),
            L.Loop(j.name, m, [L.AccUpdate(acc, f64("mul", L.Load(r, ij), L.Load(x, ij)))]),
            L.Store(out, i, L.AccRef(acc)),
        ], "parallel"),
    ]
    program = L.Program("par_scratch", ["n", "m"], [x], [out], scratch=[t, r], body=body)
    parallel, serial = Compiled(program), Compiled(serial_twin(program))
    rng = np.random.default_rng(2)
    for rows, cols in [(0, 4), (3, 4), (4000, 50)]:
        x_value = rng.normal(size=(rows, cols))
        dims = {"n": rows, "m": cols}
        expected = serial(dims, x_value)
        np.testing.assert_allclose(expected[0], (2 * np.exp(x_value) * x_value).sum(axis=1),
                                   rtol=1e-12)
        for count in THREAD_COUNTS:
            threads(count)
            assert_same_bits(parallel(dims, x_value), expected)


def test_dims_and_enclosing_loop_variables_are_captured(threads):
    # for k < K (serial): for i < k·n + 1 (parallel, extent from the enclosing variable):
    #     out[k, i] = x[min(i, n − 1)] · k + m + i // 3
    x = buf("x", "float64", (n,), "input")
    width = K * n + 1
    out = buf("out", "float64", (K, width), "output")
    fill = L.Loop(i.name, width, [L.Store(out, k * width + i, const(-1.0))])
    value = f64("add", f64("mul", L.Load(x, symbolic.dim_min(i, symbolic.as_dim(n) - 1)),
                           L.DimValue(k, "float64")),
                f64("add", L.DimValue(m, "float64"), L.DimValue(i // 3, "float64")))
    body = [L.Loop(k.name, K, [
        fill,
        L.Loop(i.name, k * n + 1, [L.Store(out, k * width + i, value)], "parallel"),
    ])]
    program = L.Program("par_capture", ["n", "m", "K"], [x], [out], body=body)
    parallel, serial = Compiled(program), Compiled(serial_twin(program))
    rng = np.random.default_rng(3)
    for count in THREAD_COUNTS:
        threads(count)
        for size, repeats in [(1, 1), (5, 3), (30000, 4)]:
            x_value = rng.normal(size=size)
            dims = {"n": size, "m": 7, "K": repeats}
            expected = serial(dims, x_value)
            assert_same_bits(parallel(dims, x_value), expected)
            grid = np.arange(repeats * size + 1)
            row = repeats - 1
            np.testing.assert_array_equal(
                expected[0][row, : row * size + 1],
                x_value[np.minimum(grid, size - 1)][: row * size + 1] * row
                + (7 + grid[: row * size + 1] // 3))


@pytest.mark.parametrize("size", [0, 1, 2, PARALLEL_GRAIN_WORK + 1, 10**6])
def test_extents_zero_one_and_large(size, threads):
    x, out = buf("x", "float64", (n,), "input"), buf("out", "float64", (n,), "output")
    body = [L.Loop(i.name, n, [L.Store(out, i, f64("log1p", f64("abs", L.Load(x, i))))],
                   "parallel")]
    program = L.Program("par_1d", ["n"], [x], [out], body=body)
    parallel = Compiled(program)
    x_value = np.random.default_rng(4).normal(size=size)
    expected = np.log1p(np.abs(x_value))
    for count in THREAD_COUNTS:
        threads(count)
        (result,) = parallel({"n": size}, x_value)
        np.testing.assert_allclose(result, expected, rtol=1e-15)


def test_chunked_reduction_gives_the_same_bits_for_1_2_4_threads(threads):
    parallel = Compiled(chunked_sum())
    x = np.random.default_rng(5).normal(size=10**6 + 3)
    results = []
    for count in THREAD_COUNTS:
        threads(count)
        results.append(parallel({"n": x.size}, x))
    for result in results[1:]:
        assert_same_bits(result, results[0])
    np.testing.assert_allclose(results[0][0][0], np.sin(x).sum(), rtol=1e-10)


def test_concurrent_calls_of_one_kernel_from_4_threads(threads):
    threads(2)
    parallel = Compiled(row_reductions())
    rng = np.random.default_rng(6)
    inputs = [rng.normal(size=(2000 + 37 * t, 300)) for t in range(4)]

    def call(x):
        results = []
        for _ in range(10):
            results.append(parallel({"n": x.shape[0], "m": x.shape[1]}, x))
        return results

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(call, inputs))
    for x, results in zip(inputs, outcomes):
        for sums, maxs in results:
            np.testing.assert_allclose(sums, (x * x).sum(axis=1), rtol=1e-12)
            np.testing.assert_array_equal(maxs, x.max(axis=1))
            assert_same_bits([sums, maxs], results[0])


def test_nested_parallel_loops_run_serially_inside():
    x, out = buf("x", "float64", (n, m), "input"), buf("out", "float64", (n, m), "output")
    inner = L.Loop(j.name, m, [L.Store(out, i * m + j, f64("sqrt", L.Load(x, i * m + j)))],
                   "parallel")
    program = L.Program("par_nested", ["n", "m"], [x], [out],
                        body=[L.Loop(i.name, n, [inner], "parallel")])
    compiled = Compiled(program)
    assert compiled.llvm_ir.count("call void @\"fg_parallel_for\"") == 1
    x_value = np.random.default_rng(7).random((300, 200))
    (result,) = compiled({"n": 300, "m": 200}, x_value)
    np.testing.assert_array_equal(result, np.sqrt(x_value))


def test_accumulator_read_inside_a_parallel_loop_is_passed_by_value(threads):
    # s = Σ x (serial); out[i] = x[i] / s (parallel): the body only reads s
    x, out = buf("x", "float64", (n,), "input"), buf("out", "float64", (n,), "output")
    s = L.Accumulator("s", "add", "float64")
    body = [
        L.AccInit(s),
        L.Loop(i.name, n, [L.AccUpdate(s, L.Load(x, i))]),
        L.Loop(i.name, n, [L.Store(out, i, f64("div", L.Load(x, i), L.AccRef(s)))], "parallel"),
    ]
    compiled = Compiled(L.Program("par_shared_acc", ["n"], [x], [out], body=body))
    x_value = np.random.default_rng(8).random(100000)
    threads(2)
    (result,) = compiled({"n": x_value.size}, x_value)
    np.testing.assert_allclose(result, x_value / x_value.sum(), rtol=1e-12)


def test_accumulator_crossing_the_parallel_boundary_is_a_compile_error():
    x, out = buf("x", "float64", (n,), "input"), buf("out", "float64", (1,), "output")
    acc = L.Accumulator("acc", "add", "float64")
    # initialized outside, updated inside: a reduction across parallel iterations
    body = [
        L.AccInit(acc),
        L.Loop(i.name, n, [L.AccUpdate(acc, L.Load(x, i))], "parallel"),
        L.Store(out, 0, L.AccRef(acc)),
    ]
    with pytest.raises(CompileError, match="acc is updated inside parallel loop @i0"):
        render_program(L.Program("bad_sum", ["n"], [x], [out], body=body))
    # initialized inside, but read after the loop
    body = [
        L.Loop(i.name, n, [L.AccInit(acc), L.AccUpdate(acc, L.Load(x, i))], "parallel"),
        L.Store(out, 0, L.AccRef(acc)),
    ]
    with pytest.raises(CompileError, match="used outside it"):
        render_program(L.Program("bad_escape", ["n"], [x], [out], body=body))
    # read before it is initialized in the iteration: the previous iteration's value
    body = [L.Loop(i.name, n, [
        L.Store(out, 0, L.AccRef(acc)), L.AccInit(acc), L.AccUpdate(acc, L.Load(x, i)),
    ], "parallel")]
    with pytest.raises(CompileError, match="acc is read inside parallel loop"):
        render_program(L.Program("bad_carry", ["n"], [x], [out], body=body))


# -- the runtime ----------------------------------------------------------------------------------
def _record_blocks(size, grain, nested=None, wait_for=1):
    """Blocks fg_parallel_for hands a Python callback: (begin, end, thread id). With a
    list `nested`, each block also records (its thread id, the blocks of a nested call).
    The first block waits (up to 10 s) until `wait_for` blocks have started, so that the
    caller does not claim every block before a worker wakes up."""
    lib, cffi_ffi = native.lib, native.ffi
    blocks, lock = [], threading.Lock()

    @cffi_ffi.callback("void(void *, int64_t, int64_t)")
    def body(ctx, begin, end):
        with lock:
            blocks.append((begin, end, threading.get_ident()))
        deadline = time.monotonic() + 10
        while begin == 0 and len(blocks) < wait_for and time.monotonic() < deadline:
            time.sleep(0.0005)
        if nested is not None:
            inner = _record_blocks(100, 1)
            with lock:
                nested.append((threading.get_ident(), inner))

    lib.fg_parallel_for(size, grain, body, cffi_ffi.NULL)
    return sorted(blocks)


BLOCKS_PER_THREAD = 4  # FG_BLOCKS_PER_THREAD in csrc/fusegrad_pool.c


def test_parallel_for_blocks_cover_the_range(threads):
    threads(4)
    assert _record_blocks(0, 1) == [] and _record_blocks(-5, 1) == []
    caller = threading.get_ident()
    assert _record_blocks(10, 10) == [(0, 10, caller)]  # n ≤ grain: on the calling thread
    for size, grain in [(2, 1), (10, 3), (1000, 1), (1001, 400), (7, 0)]:
        blocks = _record_blocks(size, grain)
        assert len(blocks) <= 4 * BLOCKS_PER_THREAD
        assert blocks[0][0] == 0 and blocks[-1][1] == size
        assert all(a[1] == b[0] for a, b in itertools.pairwise(blocks))
        assert all(end - begin >= max(grain, 1) for begin, end, _ in blocks)
        sizes = {end - begin for begin, end, _ in blocks}
        assert max(sizes) - min(sizes) <= 1
    threads(2)
    blocks = _record_blocks(1000, 1, wait_for=2)  # block 0 waits until another started
    assert [(b, e) for b, e, _ in blocks] == [(k * 125, k * 125 + 125) for k in range(8)]
    assert len({thread for _, _, thread in blocks}) == 2  # the caller and a worker
    threads(1)
    assert _record_blocks(1000, 1) == [(0, 1000, caller)]


def test_a_slow_thread_does_not_hold_the_call_up(threads):
    # A core slowed by the host (a busy sibling hyperthread) runs fewer blocks: the
    # others are claimed by the threads that are free. With one block per thread the
    # caller would have waited for the slow worker's half of the range.
    threads(2)
    lib, cffi_ffi = native.lib, native.ffi
    caller, started, lock, ran = threading.get_ident(), threading.Event(), threading.Lock(), []

    @cffi_ffi.callback("void(void *, int64_t, int64_t)")
    def body(ctx, begin, end):
        with lock:
            ran.append((begin, end, threading.get_ident()))
        if threading.get_ident() != caller:
            started.set()
            time.sleep(0.3)  # the slow core's block
        else:
            started.wait(10)  # until a worker holds a block

    lib.fg_parallel_for(1000, 1, body, cffi_ffi.NULL)
    by_worker = [block for block in ran if block[2] != caller]
    assert len(ran) == 2 * BLOCKS_PER_THREAD and len(by_worker) == 1
    assert sorted((b, e) for b, e, _ in ran) == [(k * 125, k * 125 + 125) for k in range(8)]


def test_parallel_for_nested_calls_run_serially(threads):
    threads(2)
    nested = []
    blocks = _record_blocks(4, 1, nested, wait_for=2)
    assert [(b, e) for b, e, _ in blocks] == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert len(nested) == 4
    for thread, inner in nested:  # the whole inner range, on the thread that called it
        assert inner == [(0, 100, thread)]


def test_num_threads_setting_and_environment(threads):
    threads(3)
    assert native.get_num_threads() == 3
    with pytest.raises(ValueError):
        native.set_num_threads(0)
    code = "from fusegrad.runtime import native; print(native.get_num_threads())"

    def run_with(value):
        env = dict(os.environ, FUSEGRAD_NUM_THREADS=value)
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=120, check=True)
        return int(done.stdout)

    assert run_with("3") == 3
    assert run_with("not a number") == os.cpu_count()
    assert "fg_parallel_for" in native.JIT_SYMBOLS


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_parallel_kernel_works_in_a_forked_child(threads):
    threads(2)
    compiled = Compiled(elementwise_2d())
    x, b = np.random.default_rng(9).normal(size=(500, 300)), np.ones(300)
    expected = compiled({"n": 500, "m": 300}, x, b)  # the parent's pool is running
    pid = os.fork()
    if pid == 0:  # the child: fresh workers on first use, same bits
        ok = compiled({"n": 500, "m": 300}, x, b)[0].tobytes() == expected[0].tobytes()
        os._exit(0 if ok else 1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.01)
    os.kill(pid, 9)
    pytest.fail("the forked child hung in a parallel kernel")


# -- measurements (printed, not asserted) ---------------------------------------------------------
class _RoundTrips:
    """bench(R): R calls of fg_parallel_for(extent, 1, body), in native code, where the
    body does `spins` volatile stores per iteration (0: an empty body)."""

    def __init__(self, extent, spins):
        text = _ROUND_TRIPS.format(extent=extent, spins=spins)
        self.kernel = jit_compile(text, "bench", opt_level=0)  # the spin loop as written
        self.bench = ffi.cast("void(*)(int64_t)", self.kernel.address)

    def __call__(self, count):
        self.bench(count)


_ROUND_TRIPS = """
declare void @fg_parallel_for(i64, i64, ptr, ptr)
define internal void @body(ptr %ctx, i64 %begin, i64 %end) {{
entry:
  %slot = alloca i64
  %iterations = sub i64 %end, %begin
  %total = mul i64 %iterations, {spins}
  br label %test
test:
  %s = phi i64 [0, %entry], [%s.next, %spin]
  %more = icmp slt i64 %s, %total
  br i1 %more, label %spin, label %done
spin:
  store volatile i64 %s, ptr %slot
  %s.next = add i64 %s, 1
  br label %test
done:
  ret void
}}
define void @bench(i64 %count) {{
entry:
  br label %loop
loop:
  %r = phi i64 [0, %entry], [%next, %loop]
  call void @fg_parallel_for(i64 {extent}, i64 1, ptr @body, ptr null)
  %next = add i64 %r, 1
  %more = icmp slt i64 %next, %count
  br i1 %more, label %loop, label %done
done:
  ret void
}}
"""


def test_measure_dispatch_latency_and_tanh_speedup(threads, capsys):
    lines = []
    # an empty body: the caller often runs both blocks itself before the worker has
    # noticed its job, so this is the floor of a call, not the hand-off
    empty = _RoundTrips(64, 0)
    # two blocks of a few microseconds each: 2 threads take half the time, plus the hand-off
    busy = _RoundTrips(2, 3000)
    for count in (1, 2):
        threads(count)
        empty(1000)
        busy(1000)
        best_empty = min(_timed(empty, 20000) for _ in range(5)) / 20000
        best_busy = min(_timed(busy, 2000) for _ in range(5)) / 2000
        lines.append(f"{count} thread(s): fg_parallel_for round trip, empty body "
                     f"{best_empty * 1e6:.2f} us; two busy blocks {best_busy * 1e6:.2f} us")
    asleep = []
    for _ in range(50):  # workers asleep on their condition variables after 2 ms idle
        time.sleep(0.002)
        asleep.append(_timed(busy, 1))
    lines.append(f"2 threads, two busy blocks after 2 ms idle (workers asleep): median "
                 f"{np.median(asleep) * 1e6:.1f} us (includes the cffi call)")

    x = np.random.default_rng(10).normal(size=(4000, 4000))
    tanh_2d = _tanh_program()
    compiled = Compiled(tanh_2d)
    seconds = {}
    for count in (1, 2):
        threads(count)
        compiled({"n": 4000, "m": 4000}, x)
        seconds[count] = min(_timed(compiled, {"n": 4000, "m": 4000}, x)
                             for _ in range(3))
    (result,) = compiled({"n": 4000, "m": 4000}, x)
    np.testing.assert_allclose(result, np.tanh(x), rtol=1e-14)
    lines.append(f"tanh 4000x4000 float64: 1 thread {seconds[1] * 1e3:.1f} ms, 2 threads "
                 f"{seconds[2] * 1e3:.1f} ms, speedup {seconds[1] / seconds[2]:.2f}x "
                 f"({os.cpu_count()} CPUs)")
    with capsys.disabled():
        print("\n" + "\n".join(lines))


def _tanh_program():
    x, out = buf("x", "float64", (n, m), "input"), buf("out", "float64", (n, m), "output")
    body = [L.Loop(i.name, n, [
        L.Loop(j.name, m, [L.Store(out, i * m + j, f64("tanh", L.Load(x, i * m + j)))], "vector"),
    ], "parallel")]
    return L.Program("par_tanh", ["n", "m"], [x], [out], body=body)


def _timed(function, *args):
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start
