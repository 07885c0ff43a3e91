"""Native kernels agree with the reference interpreter, values and gradients,
for random shapes (sizes 0 and 1 and broadcasting included) and values."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fusegrad as fg
from reference import reference

DTYPES = [np.float64, np.float32]
TOLERANCE = {np.float64: dict(rtol=1e-11, atol=1e-12), np.float32: dict(rtol=2e-5, atol=1e-5)}


def assert_close(actual, expected, dtype):
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assert_close(a, e, dtype)
        return
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    np.testing.assert_allclose(actual, expected, equal_nan=True, **TOLERANCE[dtype])


# Element-wise functions of one array (domains chosen so that values are finite).
UNARY = {
    "exp": lambda x: np.exp(x),
    "log": lambda x: np.log(np.abs(x) + 0.5),
    "log1p": lambda x: np.log1p(np.abs(x)),
    "expm1": lambda x: np.expm1(x),
    "sqrt": lambda x: np.sqrt(x * x + 0.1),
    "tanh": lambda x: np.tanh(x),
    "sin_cos": lambda x: np.sin(x) * np.cos(x),
    "sigmoid": lambda x: fg.sigmoid(x),
    "softplus": lambda x: fg.softplus(x),
    "relu_abs_sign": lambda x: fg.relu(x) + abs(x) * np.sign(x),
    "square_reciprocal": lambda x: np.square(x) + np.reciprocal(x * x + 1.0),
    "power": lambda x: (x * x + 1.0) ** 1.5 + x**3,
    "clip": lambda x: np.clip(x, -0.5, 0.7),
    "where": lambda x: np.where(x > 0.1, x, -2.0 * x),
    "masks": lambda x: np.where((x > -0.5) & ~(x > 0.5) | (x == 2.0), 1.0, 0.0) * x,
    "neg_div": lambda x: -x / (1.0 + x * x),
}

REDUCE = {
    "sum": lambda x: x.sum(),
    "sum0": lambda x: np.sum(x, axis=0),
    "sum_last_keep": lambda x: x.sum(axis=-1, keepdims=True) * x,
    "mean": lambda x: np.mean(x, axis=0),
    "max": lambda x: np.max(x, axis=-1),
    "min_keep": lambda x: x - x.min(axis=0, keepdims=True),
    "logsumexp": lambda x: fg.logsumexp(x, axis=-1),
    "softmax": lambda x: fg.softmax(x, axis=-1),
    "log_softmax": lambda x: fg.log_softmax(x, axis=0),
    "normalize": lambda x: x / x.shape[0],
}

LAYOUT = {
    "T": lambda x: x.T * 2.0,
    "reshape": lambda x: x.reshape(-1) + 1.0,
    "slices": lambda x: x[1:] - x[:-1],
    "reverse": lambda x: x[::-1] * x,
    "step": lambda x: x[::2] + 0.0,
    "first_column": lambda x: x[:, 0] if x.ndim == 2 else x[0],
    "newaxis": lambda x: x[None] * 2.0 + x[..., None].sum(axis=-1),
    "expand_squeeze": lambda x: np.squeeze(np.expand_dims(x, 0), 0) * 3.0,
    "broadcast_to": lambda x: np.broadcast_to(x, (2,) + x.shape) * 1.5,
}


def arrays(dtype, min_dims=1, max_dims=2, min_side=0, elements=None):
    elements = elements or st.floats(-3, 3, width=32)
    shapes = hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=5)
    return hnp.arrays(dtype, shapes, elements=elements)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(UNARY))
@given(data=st.data())
def test_elementwise_kernels_match_reference(name, dtype, data):
    fn = UNARY[name]
    x = data.draw(arrays(dtype, min_dims=0, max_dims=3))
    assert_close(fg.compile(fn)(x), reference(fn, x), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(REDUCE))
@given(data=st.data())
def test_reduction_kernels_match_reference(name, dtype, data):
    fn = REDUCE[name]
    x = data.draw(arrays(dtype, min_dims=1, max_dims=3, min_side=1))
    assert_close(fg.compile(fn)(x), reference(fn, x), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(LAYOUT))
@given(data=st.data())
def test_layout_kernels_match_reference(name, dtype, data):
    fn = LAYOUT[name]
    min_side = 1 if name == "first_column" else 0  # x[0] of an empty axis is an IndexError
    x = data.draw(arrays(dtype, min_dims=1, max_dims=2, min_side=min_side))
    assert_close(fg.compile(fn)(x), reference(fn, x), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_broadcasting_binary_kernels_match_reference(dtype, data):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4))
    a = data.draw(hnp.arrays(dtype, shapes.input_shapes[0], elements=st.floats(-3, 3, width=32)))
    b = data.draw(hnp.arrays(dtype, shapes.input_shapes[1], elements=st.floats(0.5, 3, width=32)))

    def fn(a, b):
        return (a + b, a - b, a * b, a / b, b**a, np.maximum(a, b), np.minimum(a, b),
                np.logaddexp(a, b), np.where(a < b, a, b))

    assert_close(fg.compile(fn)(a, b), reference(fn, a, b), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@given(m=st.integers(0, 5), k=st.integers(0, 5), n=st.integers(0, 5), seed=st.integers(0, 100))
def test_matmul_kernels_match_reference(dtype, m, k, n, seed):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(m, k)).astype(dtype)
    B = rng.normal(size=(k, n)).astype(dtype)
    v = rng.normal(size=k).astype(dtype)
    u = rng.normal(size=m).astype(dtype)

    def fn(A, B, v, u):
        return A @ B, A @ v, u @ A, v @ v, np.dot(A.T, u), np.matmul(B.T, A.T)

    assert_close(fg.compile(fn)(A, B, v, u), reference(fn, A, B, v, u), dtype)


@pytest.mark.parametrize("use_blas", ["1", "0"])
def test_matrix_products_with_and_without_blas(use_blas, monkeypatch):
    monkeypatch.setenv("FUSEGRAD_BLAS", use_blas)
    rng = np.random.default_rng(7)
    A, B = rng.normal(size=(6, 5)), rng.normal(size=(5, 4))

    def fn(A, B):
        return A @ B, A.T @ A, (A @ B).T @ A, np.tanh(A) @ np.exp(B)

    assert_close(fg.compile(fn)(A, B), reference(fn, A, B), np.float64)
    assert_close(fg.compile(fn)(A.astype(np.float32), B.astype(np.float32)),
                 reference(fn, A.astype(np.float32), B.astype(np.float32)), np.float32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matrix_product_over_an_empty_inner_dim_is_zero(dtype):
    product = fg.compile(lambda A, B: A @ B)
    for _ in range(20):  # outputs come from np.empty: garbage unless written
        junk = np.full((3, 4), np.nan, dtype)  # freed memory the output may reuse
        del junk
        result = product(np.ones((3, 0), dtype), np.ones((0, 4), dtype))
        np.testing.assert_array_equal(result, np.zeros((3, 4), dtype))


ALL = {**UNARY, **REDUCE, **LAYOUT}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(ALL))
@given(data=st.data())
def test_gradient_kernels_match_reference(name, dtype, data):
    fn = ALL[name]
    x = data.draw(arrays(dtype, min_dims=1, max_dims=2, min_side=1))
    c = data.draw(hnp.arrays(dtype, np.shape(reference(fn, x)), elements=st.floats(-2, 2, width=32)))

    def loss(x, c):
        return np.sum(fn(x) * c)

    both = fg.value_and_grad(loss)
    assert_close(fg.compile(both)(x, c), reference(both, x, c), dtype)


def test_second_derivative_kernel_matches_reference():
    inner = fg.grad(lambda x: np.sum(np.tanh(x) * x))
    outer = fg.grad(lambda x, v: np.sum(inner(x) * v))
    x = np.linspace(-1, 1, 7)
    v = np.cos(np.arange(7.0))
    assert_close(fg.compile(outer)(x, v), reference(outer, x, v), np.float64)
    # d²/dx² of tanh(x)·x is diagonal: 2 sech²x − 2 x tanh x sech²x
    sech2 = 1 - np.tanh(x) ** 2
    np.testing.assert_allclose(outer(x, v), v * (2 * sech2 - 2 * x * np.tanh(x) * sech2), rtol=1e-12)


# -- fg_alloc's per-thread cache of large blocks --------------------------------------------
MiB = 1 << 20


def _address(lib, ffi, block) -> int:
    return int(ffi.cast("uintptr_t", block))


def test_a_freed_large_block_serves_the_next_request_of_its_thread():
    from fusegrad.runtime import native

    lib, ffi = native.lib, native.ffi
    native.release_memory()  # blocks earlier tests left would also serve these requests
    first = lib.fg_alloc(5 * MiB)
    address = _address(lib, ffi, first)
    lib.fg_free(first)
    again = lib.fg_alloc(5 * MiB - 4096)  # a little smaller: the same block
    assert _address(lib, ffi, again) == address
    lib.fg_free(again)
    bigger = lib.fg_alloc(11 * MiB)  # more than the block holds: a new one
    assert _address(lib, ffi, bigger) != address
    lib.fg_free(bigger)
    small = lib.fg_alloc(1 * MiB)  # below the large-block size: never from the cache
    assert _address(lib, ffi, small) not in (address,)
    lib.fg_free(small)


def test_the_cache_keeps_at_most_four_blocks_the_most_recent():
    from fusegrad.runtime import native

    lib = native.lib
    native.release_memory()
    blocks = [lib.fg_alloc((6 + k) * MiB) for k in range(6)]  # 6, 7, …, 11 MiB
    for block in blocks:
        lib.fg_free(block)  # the last four freed stay: 8 + 9 + 10 + 11 = 38 MiB
    kept = native.release_memory()
    assert 38 * MiB <= kept < 45 * MiB  # any other four are less; five are ≥ 45
    assert native.release_memory() == 0


def test_smaller_blocks_are_kept_too_eight_and_16_mib_at_most():
    from fusegrad.runtime import native

    lib, ffi = native.lib, native.ffi
    native.release_memory()
    first = lib.fg_alloc(256)
    address = _address(lib, ffi, first)
    assert address % 64 == 0
    lib.fg_free(first)
    again = lib.fg_alloc(200)  # smaller, not under half: the same block
    assert _address(lib, ffi, again) == address
    lib.fg_free(again)
    tiny = lib.fg_alloc(16)  # under half of it: another block
    assert _address(lib, ffi, tiny) != address and _address(lib, ffi, tiny) % 64 == 0
    lib.fg_free(tiny)
    native.release_memory()
    blocks = [lib.fg_alloc(1000 + 100 * k) for k in range(10)]
    for block in blocks:
        lib.fg_free(block)  # the last eight freed stay
    kept = native.release_memory()
    assert sum(1200 + 100 * k for k in range(8)) <= kept < sum(1200 + 100 * k for k in range(9))
    assert native.release_memory() == 0
    blocks = [lib.fg_alloc(3 * MiB) for _ in range(8)]  # 24 MiB: over the shelf's 16
    for block in blocks:
        lib.fg_free(block)
    kept = native.release_memory()
    assert 5 * 3 * MiB <= kept < 6 * 3 * MiB


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("columns", [0, 1, 7, 8, 9, 31, 32, 33, 63, 64, 65, 100])
def test_row_reductions_of_every_length_around_the_vector_widths(columns, dtype):
    # rows shorter than a vector body (4-way interleaved: 32 doubles with AVX-512) run in
    # the scalar remainder, longer ones in the body and the remainder
    import fusegrad as fg

    rng = np.random.default_rng(columns)
    X = rng.standard_normal((150, columns)).astype(dtype)
    w = rng.standard_normal(columns).astype(dtype)
    y = np.sign(rng.standard_normal(150)).astype(dtype)
    value, grad = fg.compile_grad(lambda w, X, y: np.sum(np.log1p(np.exp(-y * (X @ w)))))(w, X, y)
    X64, w64, y64 = (a.astype(np.float64) for a in (X, w, y))
    z = -y64 * (X64 @ w64)
    tolerance = 1e-12 if dtype == "float64" else 2e-5
    np.testing.assert_allclose(value, np.sum(np.logaddexp(0.0, z)), rtol=tolerance)
    expected = -(X64.T @ (y64 / (1.0 + np.exp(-z))))
    np.testing.assert_allclose(grad, expected, rtol=tolerance * 10, atol=tolerance * 10)
    row_max = fg.compile(lambda X: np.max(X * X, axis=1))(X)
    np.testing.assert_array_equal(row_max, np.max(X * X, axis=1) if columns else row_max)


def test_repeated_calls_with_large_scratch_do_not_fault_its_pages_in_again():
    import resource

    import fusegrad as fg

    rng = np.random.default_rng(0)
    X, y, w = rng.standard_normal((10_000, 64)), np.sign(rng.standard_normal(10_000)), np.zeros(64)
    hessian = fg.compile_hessian(lambda w, X, y: np.sum(np.log1p(np.exp(-y * (X @ w)))))
    for _ in range(3):
        hessian(w, X, y)  # its 5 MB scratch: X scaled by rows
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        hessian(w, X, y)
    per_call = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20
    assert per_call < 30  # 230 when each call's scratch came fresh from the system


def test_kernels_with_large_scratch_give_the_same_results_on_many_threads():
    import concurrent.futures

    import fusegrad as fg

    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((10_000, 64)), np.sign(rng.standard_normal(10_000))
    hessian = fg.compile_hessian(lambda w, X, y: np.sum(np.log1p(np.exp(-y * (X @ w)))))
    points = [0.01 * rng.standard_normal(64) for _ in range(8)]
    expected = [hessian(w, X, y)[2] for w in points]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda w: hessian(w, X, y)[2], points * 3))
    for k, result in enumerate(results):
        np.testing.assert_array_equal(result, expected[k % len(points)])
