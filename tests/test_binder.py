"""The C binder (runtime/_binder, csrc/fusegrad_binder.c) makes the same call as the Python
caller: same results and types for the arguments it accepts, NotImplemented (and so the
Python path, its conversions and its errors) for every other argument, no leaks."""

import subprocess
import sys
import threading
import time
import tracemalloc

import numpy as np
import pytest

import fusegrad as fg
from fusegrad.compiler.llvm.packed_entry import packed_name
from fusegrad.runtime import _binder
from fusegrad.runtime.binder import native_layout
from fusegrad.runtime.jit import jit_compile


def logistic_loss(w, X, y):
    return np.sum(np.log1p(np.exp(-y * (X @ w))))


rng = np.random.default_rng(0)
W, X, Y = rng.normal(size=3), rng.normal(size=(4, 3)), np.sign(rng.normal(size=4))


def assert_same(a, b):
    """Equal structure, types, dtypes, shapes and bits."""
    assert type(a) is type(b)
    if isinstance(a, tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


def calls_through_the_binder(f, *args):
    """f(*args), checking that the C binder made the call."""
    kernel = f.kernel(*args)
    assert kernel.binder is not None
    before = kernel.binder.calls
    result = f(*args)
    assert kernel.binder.calls == before + 1
    return result, kernel


# -- the binder makes plain calls, with the Python caller's results ------------------------------
@fg.compile
def elementwise(x, y):
    return np.tanh(x) * y, (x * y).sum()


SHAPES = [
    ((), ()),
    ((5,), (5,)),
    ((4, 3), (4, 3)),
    ((1, 3), (4, 3)),
    ((4, 1), (4, 3)),
    ((1,), (5,)),
    ((1, 1), (1, 1)),
    ((0, 3), (0, 3)),
    ((7,), ()),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shapes", SHAPES)
def test_results_equal_the_python_callers(dtype, shapes):
    x, y = (rng.normal(size=s).astype(dtype) for s in shapes)
    result, kernel = calls_through_the_binder(elementwise, x, y)
    assert_same(result, kernel.call_arrays(x, y))
    assert result[0].dtype == dtype and isinstance(result[1], dtype)


def test_bool_inputs_and_outputs():
    @fg.compile
    def masked(m, x):
        return np.where(m, x, 0.0).sum(), x > 0, (x * 2,)

    m, x = np.array([True, False, True]), np.array([1.0, -2.0, 3.0])
    result, kernel = calls_through_the_binder(masked, m, x)
    assert_same(result, kernel.call_arrays(m, x))
    assert result[1].dtype == np.bool_ and isinstance(result[0], np.float64)


def test_gradients_and_nested_results():
    both = fg.compile_grad(logistic_loss, wrt=(0, 1))
    result, kernel = calls_through_the_binder(both, W, X, Y)
    assert_same(result, kernel.call_arrays(W, X, Y))
    value, (grad_w, grad_x) = result
    assert isinstance(value, np.float64) and grad_w.shape == (3,) and grad_x.shape == (4, 3)
    single = fg.compile(lambda x: np.exp(x))
    result, kernel = calls_through_the_binder(single, W)
    assert_same(result, kernel.call_arrays(W))
    scalar = fg.compile(lambda x: np.sum(x))
    result, kernel = calls_through_the_binder(scalar, W)
    assert_same(result, kernel.call_arrays(W))


def test_run_time_checks_are_made_in_c():
    @fg.compile
    def picks(a):
        return a[2] * a[0]

    result, kernel = calls_through_the_binder(picks, np.arange(4.0))
    assert result == 0.0 and kernel.function.checks
    assert kernel.binder(np.arange(2.0)) is NotImplemented
    with pytest.raises(fg.ShapeError, match="index 2 is out of bounds"):
        picks(np.arange(2.0))


def test_kernels_with_dim_expressions_keep_the_python_caller():
    @fg.compile
    def differences(x):
        return x[1:] - x[:-1]

    x = np.arange(5.0) ** 2
    np.testing.assert_array_equal(differences(x), np.diff(x))
    kernel = differences.kernel(x)
    assert kernel.binder is None and native_layout(kernel.function, kernel.program) is None
    np.testing.assert_array_equal(differences(x[:3]), np.diff(x[:3]))


def test_the_packed_entry_calls_the_entry_point():
    loss = fg.compile_grad(logistic_loss)
    kernel = loss.kernel(W, X, Y)
    assert f'define i32 @"{packed_name(kernel.program)}"(ptr' in kernel.llvm_ir_unoptimized
    assert_same(kernel.binder(W, X, Y), kernel.call_arrays(W, X, Y))


# -- anything else gets NotImplemented and the Python path ---------------------------------------
LOSS = fg.compile_grad(logistic_loss)


def big_endian(a):
    return a.astype(a.dtype.newbyteorder(">"))


def strided(a):
    wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],))
    wide[..., ::2] = a
    return wide[..., ::2]


class Subclass(np.ndarray):
    pass


CONVERTED = {
    "fortran order": (W, np.asfortranarray(X), Y),
    "strided": (W, strided(X), Y),
    "int64": (W.astype(np.int64), X, Y),
    "float32 among float64": (W.astype(np.float32), X, Y),
    "big-endian": (big_endian(W), X, Y),
    "list": (list(W), X, Y),
    "python float": (W, X, 1.0),
    "subclass": (W.view(Subclass), X, Y),
    "size-1 dim": (W, X[:1], Y[:1]),
}


@pytest.mark.parametrize("case", CONVERTED)
def test_other_arguments_fall_back_and_are_converted(case):
    args = CONVERTED[case]
    LOSS(W, X, Y)
    binder = LOSS.kernel(W, X, Y).binder
    assert binder(*args) is NotImplemented
    reference = fg.compile_grad(logistic_loss)(*[np.asarray(a, np.float64) for a in args])
    value, grad = LOSS(*args)
    rtol = 1e-6 if grad.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(value, reference[0], rtol=rtol)
    np.testing.assert_allclose(grad, reference[1], rtol=rtol)


MISMATCHES = {
    "dims": ((np.ones(5), X, Y), r"'X'.*'w'.*matmul|'w'.*'X'"),
    "second dim": ((W, X, np.ones(5)), r"'y'.*dim 0 is 5"),
    "rank": ((W, np.ones((2, 4, 3)), Y), "1-D and 2-D"),
    "complex": ((W.astype(complex), X, Y), "complex"),
    "None": ((None, X, Y), "'w' is None"),
}


@pytest.mark.parametrize("case", MISMATCHES)
def test_mismatches_fall_back_to_todays_errors(case):
    args, message = MISMATCHES[case]
    LOSS(W, X, Y)
    kernel = LOSS.kernel(W, X, Y)
    assert kernel.binder(*args) is NotImplemented
    with pytest.raises(fg.FusegradError, match=message) as info:
        LOSS(*args)
    if case in ("dims", "second dim"):  # same specialization: the Python caller's own error
        with pytest.raises(fg.ShapeError) as python:
            kernel.call_arrays(*args)
        assert str(info.value) == str(python.value)


def test_argument_counts_and_keywords_fall_back():
    LOSS(W, X, Y)
    binder = LOSS.kernel(W, X, Y).binder
    assert binder(W, X) is NotImplemented
    assert binder(W, X, Y, Y) is NotImplemented
    assert binder(W, X, y=Y) is NotImplemented
    with pytest.raises(TypeError, match="missing"):
        LOSS(W, X)
    assert_same(LOSS(W, X, y=Y), LOSS(W, X, Y))


def test_annotated_sizes_are_checked():
    @fg.compile
    def fixed(x: fg.f64[3], y: fg.f64["n", 3]):  # noqa: F821
        return y @ x

    x, y = np.ones(3), np.ones((2, 3))
    result, kernel = calls_through_the_binder(fixed, x, y)
    np.testing.assert_array_equal(result, [3.0, 3.0])
    assert kernel.binder(np.ones(4), np.ones((2, 4))) is NotImplemented
    with pytest.raises(fg.ShapeError):
        fixed(np.ones(4), np.ones((2, 4)))


def test_a_size_1_argument_is_another_specialization():
    f = fg.compile(lambda x: x * 2.0)
    calls_through_the_binder(f, np.ones(3))
    assert f.kernel(np.ones(3)).binder(np.ones(1)) is NotImplemented
    np.testing.assert_array_equal(f(np.ones(1)), [2.0])
    assert f.cache_size == 2


# -- nonzero status ------------------------------------------------------------------------------
STATUS_IR = """
define i32 @"status_packed"(ptr %dims, ptr %buffers) {
entry:
  %n = load i64, ptr %dims
  %status = trunc i64 %n to i32
  ret i32 %status
}
"""


def status_binder(fail):
    """A binder whose kernel returns the size of its argument as the status."""
    jit = jit_compile(STATUS_IR, "status_packed")
    vector = (np.dtype(np.float64).num, ((_binder.AXIS_BIND, 0),))
    output = (np.dtype(np.float64).num, ((_binder.AXIS_SAME, 0),))
    return _binder.Binder(jit.address, (vector,), (output,), (), (0,), 0, fail, jit)


def test_a_nonzero_status_raises_the_kernels_error():
    kernel = LOSS.kernel(W, X, Y)
    binder = status_binder(kernel.fail)
    assert binder(np.ones(0)).shape == (0,)
    with pytest.raises(fg.ShapeError, match="returned status 3"):
        binder(np.ones(3))
    with pytest.raises(fg.FusegradError, match="returned status 2"):
        binder(np.ones(2))
    quiet = status_binder(lambda status: None)
    with pytest.raises(SystemError, match="status 5"):
        quiet(np.ones(5))


def test_bad_descriptions_are_refused():
    jit = jit_compile(STATUS_IR, "status_packed")
    f64 = np.dtype(np.float64).num
    bind, same = (_binder.AXIS_BIND, 0), (_binder.AXIS_SAME, 0)
    good = {
        "packed_address": jit.address,
        "params": ((f64, (bind,)),),
        "outputs": ((f64, (same,)),),
        "checks": (),
        "entry_dims": (0,),
        "structure": 0,
        "fail": print,
        "owner": jit,
    }
    _binder.Binder(**good)
    bad = [
        {"packed_address": 0},
        {"params": ((f64, (same,)),)},  # used before bound
        {"params": ((f64, (bind, bind)),)},  # bound twice
        {"outputs": ((f64, (bind,)),)},  # outputs bind nothing
        {"outputs": ((f64, ((_binder.AXIS_CONST, -1),)),)},
        {"outputs": ((f64, ((7, 0),)),)},
        {"entry_dims": (1,)},
        {"structure": 1},
        {"structure": (0, [0])},
        {"checks": ((9, same, same),)},
        {"params": (f64,)},
        {"fail": None},
    ]
    for change in bad:
        with pytest.raises((TypeError, ValueError)):
            _binder.Binder(**{**good, **change})


# -- threads, the GIL, leaks ---------------------------------------------------------------------
def test_concurrent_calls_of_two_specializations():
    f = fg.compile(lambda x, y: (np.tanh(x) * y, np.sum(x * y)))
    inputs = [
        (rng.normal(size=(10 + k, 3)).astype(dtype), rng.normal(size=(10 + k, 3)).astype(dtype))
        for k in range(8)
        for dtype in (np.float32, np.float64)
    ]
    expected = [f.kernel(*args).call_arrays(*args) for args in inputs]
    errors = []

    def worker(k):
        try:
            for _ in range(200):
                for j in (2 * k, 2 * k + 1):
                    assert_same(f(*inputs[j]), expected[j])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and f.cache_size == 2


def test_the_gil_is_released_during_the_binders_call():
    heavy = fg.compile(lambda x: np.sum(np.tanh(x) * np.exp(-x * x) + np.log1p(x * x)))
    x = np.linspace(-3, 3, 4_000_000)
    _, kernel = calls_through_the_binder(heavy, x)

    def count_while(running):
        ticks = 0
        while running():
            ticks += 1
        return ticks

    start = time.perf_counter()
    free_rate = count_while(lambda: time.perf_counter() - start < 0.05) / 0.05
    done = threading.Event()
    worker = threading.Thread(target=lambda: (kernel.binder(x), kernel.binder(x), done.set()))
    start = time.perf_counter()
    worker.start()
    ticks = count_while(lambda: not done.is_set())
    elapsed = time.perf_counter() - start
    worker.join()
    assert ticks > 0.25 * free_rate * elapsed


def traced_growth(call, count: int) -> int:
    for _ in range(1000):
        call()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(count):
        call()
    growth = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return growth


def test_no_reference_or_memory_leaks():
    loss = fg.compile_grad(logistic_loss, wrt=(0, 1))
    args = (W, X, Y)
    loss(*args)
    kernel = loss.kernel(*args)
    counts = [sys.getrefcount(a) for a in args]
    before = kernel.binder.calls
    assert traced_growth(lambda: loss(*args), 100_000) < 64 * 1024
    assert kernel.binder.calls == before + 101_000
    assert [sys.getrefcount(a) for a in args] == counts
    value, (grad_w, grad_x) = loss(*args)
    assert sys.getrefcount(value) == sys.getrefcount(grad_w) == sys.getrefcount(grad_x) == 2

    strided = (W, np.asfortranarray(X), Y)  # NotImplemented, then the Python caller
    assert traced_growth(lambda: loss(*strided), 10_000) < 64 * 1024
    failing = status_binder(kernel.fail)

    def fail():
        with pytest.raises(fg.ShapeError):
            failing(np.ones(3))

    assert traced_growth(fail, 10_000) < 64 * 1024


# -- large outputs: memory from the runtime's fg_alloc, recycled after the array dies -------
def _large(dtype="float64"):
    @fg.compile_grad
    def f(x):
        return np.sum(np.tanh(x) * x)

    return f, np.linspace(-2, 2, 1_200_000).astype(dtype)  # a 9.6 MB (4.8 MB) gradient


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_large_output_is_an_ordinary_writeable_array(dtype):
    f, x = _large(dtype)
    value, grad = f(x)
    assert type(grad) is np.ndarray and grad.dtype == dtype and grad.shape == x.shape
    assert grad.flags.c_contiguous and grad.flags.writeable and grad.flags.aligned
    assert type(grad.base).__name__ == "PyCapsule"  # the block goes back to fg_free
    t = np.tanh(x.astype(np.float64))
    np.testing.assert_allclose(grad, t + x * (1 - t * t), rtol=1e-5 if dtype == "float32" else 1e-12)
    grad[:] = 1.0  # the user owns it
    assert grad.sum() == x.size


def test_live_outputs_never_share_memory_and_a_dead_ones_block_is_reused():
    f, x = _large()
    first = f(x)[1]
    expected = first.copy()
    second = f(x)[1]
    assert not np.shares_memory(first, second)
    second[:] = -1.0
    np.testing.assert_array_equal(first, expected)  # untouched by the later call
    address = first.ctypes.data
    del first
    third = f(x)[1]  # the block of the array that died
    assert third.ctypes.data == address
    np.testing.assert_array_equal(third, expected)


def test_large_outputs_survive_the_kernel_and_other_threads():
    f, x = _large()
    results = []
    threads = [threading.Thread(target=lambda: results.append(f(x)[1])) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    del f  # the arrays do not depend on the compiled function
    reference = results[0].copy()
    for result in results:
        np.testing.assert_array_equal(result, reference)
    results.clear()  # blocks freed on this thread: kept by its cache, or freed


def test_a_large_output_returned_in_a_loop_does_not_fault_its_pages_in_again():
    import resource

    f, x = _large()
    for _ in range(3):
        f(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        f(x)  # each result dies before the next call
    per_call = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20
    assert per_call < 30  # a fresh 9.6 MB array from the system: ~5–2,400 faults


def test_compiling_and_calling_imports_no_slow_module():
    # A process's start: cffi's C parser (pycparser, ~15–20 ms to import) is not needed,
    # as the BLAS is loaded with ctypes and the Python caller's FFI is made at its first
    # use; the OpenBLAS wheel's package (15–19 ms: importlib.metadata) is not imported,
    # its library file is found by the wheel's layout.
    code = (
        "import sys, numpy as np, fusegrad as fg\n"
        "f = fg.compile_hessian(lambda w, X: np.sum(np.log1p(np.exp(X @ w))))\n"
        "f(np.zeros(3), np.ones((5, 3)))\n"
        "print(sorted({'pycparser', 'scipy_openblas32'} & set(sys.modules)))\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               timeout=120, check=True)
    assert completed.stdout.strip() == "[]"
