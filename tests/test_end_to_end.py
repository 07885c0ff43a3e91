"""End to end: the public API on the workloads users write, against closed forms."""

import threading
import time

import numpy as np
import pytest

import fusegrad as fg
from reference import reference


def logistic_loss(w, X, y):
    return np.sum(np.log1p(np.exp(-y * (X @ w))))


def logistic_closed_form(w, X, y):
    z = X @ w
    value = np.sum(np.log1p(np.exp(-y * z)))
    sigma = 1 / (1 + np.exp(y * z))  # σ(−y ⊙ z)
    return value, -X.T @ (y * sigma)


def logistic_problem(m, n, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, n)).astype(dtype)
    y = np.where(rng.normal(size=m) > 0, 1.0, -1.0).astype(dtype)
    w = (0.3 * rng.normal(size=n)).astype(dtype)
    return w, X, y


LOSS = fg.compile_grad(logistic_loss)


@pytest.mark.parametrize(
    "m, n", [(1, 1), (1, 5), (5, 1), (2, 3), (17, 8), (1000, 32), (100_000, 4), (3, 100_000)]
)
def test_logistic_value_and_gradient_match_closed_form_for_every_size(m, n):
    w, X, y = logistic_problem(m, n, seed=m + n)
    value, grad = LOSS(w, X, y)
    expected_value, expected_grad = logistic_closed_form(w, X, y)
    assert isinstance(value, float)
    assert grad.shape == (n,) and grad.dtype == np.float64
    assert value == pytest.approx(expected_value, rel=1e-10)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-10, atol=1e-12 * np.abs(expected_grad).max())


def test_one_compiled_object_serves_every_size_without_recompiling():
    compiled = fg.compile_grad(logistic_loss)
    for m, n in [(10, 3), (1000, 32), (7, 200), (100_000, 2)]:
        compiled(*logistic_problem(m, n))
    assert compiled.cache_size == 1


def test_float32_kernel_gives_float32_results():
    w, X, y = logistic_problem(500, 16, dtype=np.float32)
    value, grad = LOSS(w, X, y)
    assert grad.dtype == np.float32 and np.asarray(value).dtype == np.float32
    expected_value, expected_grad = logistic_closed_form(*(a.astype(np.float64) for a in (w, X, y)))
    assert value == pytest.approx(expected_value, rel=1e-4)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-3, atol=1e-3)


def test_mixed_float32_and_float64_promote_to_float64():
    w, X, y = logistic_problem(50, 4)
    value, grad = LOSS(w.astype(np.float32), X, y)
    assert np.asarray(value).dtype == np.float64  # NumPy promotion: f32 with f64 is f64
    assert grad.dtype == np.float32  # a gradient has its parameter's dtype (as in JAX)
    assert value == pytest.approx(logistic_closed_form(w.astype(np.float32).astype(np.float64), X, y)[0])


def mlp_loss(W1, b1, W2, b2, X, Y):
    hidden = np.tanh(X @ W1 + b1)
    logits = hidden @ W2 + b2
    log_probs = fg.log_softmax(logits, axis=1)
    return -np.sum(Y * log_probs) / X.shape[0]


def mlp_problem(batch=8, inputs=5, hidden=7, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    params = [
        rng.normal(size=(inputs, hidden)) / np.sqrt(inputs),
        0.1 * rng.normal(size=hidden),
        rng.normal(size=(hidden, classes)) / np.sqrt(hidden),
        0.1 * rng.normal(size=classes),
    ]
    X = rng.normal(size=(batch, inputs))
    Y = np.eye(classes)[rng.integers(0, classes, size=batch)]
    return params, X, Y


def test_mlp_gradients_match_finite_differences():
    params, X, Y = mlp_problem()
    compiled = fg.compile_grad(mlp_loss, wrt=("W1", "b1", "W2", "b2"))
    value, grads = compiled(*params, X, Y)
    assert value == pytest.approx(float(reference(mlp_loss, *params, X, Y)), rel=1e-12)
    rng = np.random.default_rng(1)
    for k, (param, grad) in enumerate(zip(params, grads)):
        assert grad.shape == param.shape
        for _ in range(3):
            direction = rng.normal(size=param.shape)
            eps = 1e-6
            plus = list(params)
            minus = list(params)
            plus[k] = param + eps * direction
            minus[k] = param - eps * direction
            numeric = (compiled(*plus, X, Y)[0] - compiled(*minus, X, Y)[0]) / (2 * eps)
            assert np.sum(grad * direction) == pytest.approx(numeric, rel=1e-6, abs=1e-8)


def test_mlp_kernel_matches_reference_interpreter():
    params, X, Y = mlp_problem(batch=33, inputs=9, hidden=16, classes=4, seed=3)
    both = fg.value_and_grad(mlp_loss, wrt=(0, 1, 2, 3))
    value, grads = fg.compile(both)(*params, X, Y)
    ref_value, ref_grads = reference(both, *params, X, Y)
    assert value == pytest.approx(float(ref_value), rel=1e-12)
    for grad, ref in zip(grads, ref_grads):
        np.testing.assert_allclose(grad, ref, rtol=1e-10, atol=1e-13)


def test_wrt_by_name_position_and_tuple():
    w, X, y = logistic_problem(20, 3)
    _, g_w = fg.compile_grad(logistic_loss, wrt="w")(w, X, y)
    _, g_pos = fg.compile_grad(logistic_loss, wrt=0)(w, X, y)
    _, (g_w2, g_X) = fg.compile_grad(logistic_loss, wrt=("w", 1))(w, X, y)
    np.testing.assert_allclose(g_w, g_pos)
    np.testing.assert_allclose(g_w, g_w2)
    assert g_X.shape == X.shape
    np.testing.assert_allclose(g_X, -np.outer(y / (1 + np.exp(y * (X @ w))), w), rtol=1e-10)


def test_grad_and_value_and_grad_run_eagerly_on_arrays():
    w, X, y = logistic_problem(30, 4)
    expected_value, expected_grad = logistic_closed_form(w, X, y)
    np.testing.assert_allclose(fg.grad(logistic_loss)(w, X, y), expected_grad, rtol=1e-10)
    value, grad = fg.value_and_grad(logistic_loss)(w, X, y)
    assert value == pytest.approx(expected_value)


def test_compile_returns_tuples_and_keyword_arguments_work():
    @fg.compile
    def stats(x, scale=2.0):
        return x.sum() * scale, np.exp(x), x.T

    x = np.arange(6.0).reshape(2, 3)
    total, expx, xt = stats(x=x)
    assert total == pytest.approx(30.0)
    np.testing.assert_allclose(expx, np.exp(x))
    np.testing.assert_array_equal(xt, x.T)


def test_annotations_name_dims_and_check_dtypes():
    @fg.compile_grad
    def loss(w: fg.f64["n"], X: fg.f64["m", "n"], y: fg.f64["m"]):
        return np.sum(np.log1p(np.exp(-y * (X @ w))))

    w, X, y = logistic_problem(10, 3)
    value, grad = loss(w, X, y)
    np.testing.assert_allclose(grad, logistic_closed_form(w, X, y)[1], rtol=1e-10)
    with pytest.raises(fg.DTypeError, match="'w'"):
        loss(w.astype(np.float32), X, y)
    with pytest.raises(fg.ShapeError, match="'X'"):
        loss(w, X[:, :2], y)

    @fg.compile
    def mismatched(a: fg.f64["n"], b: fg.f64["k"]):
        return a + b

    with pytest.raises(fg.ShapeError, match="named differently"):
        mismatched(np.ones(3), np.ones(3))


def test_non_contiguous_inputs_give_correct_results():
    w, X, y = logistic_problem(40, 6)
    Xf = np.asfortranarray(X)
    strided_y = np.repeat(y, 2)[::2]
    value, grad = LOSS(w, Xf, strided_y)
    expected_value, expected_grad = logistic_closed_form(w, X, y)
    assert value == pytest.approx(expected_value, rel=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-10)
    value_t, _ = LOSS(w, np.ascontiguousarray(X.T).T, y)
    assert value_t == pytest.approx(expected_value, rel=1e-12)


def test_concurrent_calls_from_threads_are_safe():
    problems = [logistic_problem(300 + 10 * k, 5, seed=k) for k in range(8)]
    expected = [logistic_closed_form(*p) for p in problems]
    compiled = fg.compile_grad(logistic_loss)
    errors = []

    def worker(k):
        try:
            for _ in range(20):
                value, grad = compiled(*problems[k])
                assert value == pytest.approx(expected[k][0], rel=1e-12)
                np.testing.assert_allclose(grad, expected[k][1], rtol=1e-10)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert compiled.cache_size == 1


def test_the_gil_is_released_during_the_native_call():
    @fg.compile
    def heavy(x):
        return np.sum(np.tanh(x) * np.exp(-x * x) + np.log1p(x * x))

    x = np.linspace(-3, 3, 4_000_000)
    heavy(x)  # compile first

    def count_while(running):
        ticks = 0
        while running():
            ticks += 1
        return ticks

    start = time.perf_counter()
    free_rate = count_while(lambda: time.perf_counter() - start < 0.05) / 0.05

    done = threading.Event()
    worker = threading.Thread(target=lambda: (heavy(x), heavy(x), done.set()))
    start = time.perf_counter()
    worker.start()
    ticks = count_while(lambda: not done.is_set())
    elapsed = time.perf_counter() - start
    worker.join()
    # Holding the GIL for the call would starve this thread for most of `elapsed`.
    assert ticks > 0.25 * free_rate * elapsed


def test_results_are_bitwise_identical_for_any_thread_count():
    from fusegrad.runtime import native

    w, X, y = logistic_problem(20_000, 16, seed=5)

    def lse(X):
        return np.sum(fg.logsumexp(X, axis=1))

    lse_grad = fg.compile_grad(lse)
    before = native.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            native.set_num_threads(threads)
            value, grad = LOSS(w, X, y)
            value6, grad6 = lse_grad(X)
            results.append((value, grad.tobytes(), value6, grad6.tobytes()))
    finally:
        native.set_num_threads(before)
    assert results[0] == results[1] == results[2]


def test_openblas_runs_one_thread_whatever_fusegrads_thread_count():
    # fusegrad's pool runs the products, one single-threaded BLAS call per piece
    from fusegrad.runtime import blas, native

    if not blas.available():
        pytest.skip("scipy-openblas32 is not installed")
    before = native.get_num_threads()
    try:
        for count in (1, 2, 3):
            native.set_num_threads(count)
            assert blas.get_num_threads() == 1
    finally:
        native.set_num_threads(before)


def test_read_only_byte_swapped_and_float16_inputs():
    w, X, y = logistic_problem(12, 3)
    expected_value, expected_grad = logistic_closed_form(w, X, y)
    frozen = X.copy()
    frozen.flags.writeable = False
    for args in [(w, frozen, y), (w.astype(">f8"), X.astype(">f8"), y), (w, X, y.astype(">f8"))]:
        for _ in range(2):  # the first call traces, the second takes the fast path
            value, grad = LOSS(*args)
            assert value == pytest.approx(expected_value, rel=1e-12)
            np.testing.assert_allclose(grad, expected_grad, rtol=1e-10)
    value, _ = LOSS(w.astype(np.float16), X, y)
    assert value == pytest.approx(logistic_closed_form(w.astype(np.float16).astype(float), X, y)[0])


def test_functions_of_no_arguments_and_nested_outputs():
    assert fg.compile(lambda: 1.0)() == 1.0
    x, (double, total) = fg.compile(lambda x: (x, (x * 2, x.sum())))(np.ones(2))
    np.testing.assert_array_equal(double, [2.0, 2.0])
    assert total == 2.0
    # a gradient through a dim only: zero
    _, g = fg.compile_grad(lambda x, y: (x * y.shape[0]).sum(), wrt=1)(np.ones(3), np.ones(4))
    np.testing.assert_array_equal(g, np.zeros(4))
