"""Bad input gets a clear error that names the argument and dim; never a crash."""

import numpy as np
import pytest

import fusegrad as fg


@fg.compile_grad
def loss(w, X, y):
    return np.sum(np.log1p(np.exp(-y * (X @ w))))


W, X, Y = np.ones(3), np.ones((4, 3)), np.ones(4)


def test_wrong_ndim_names_the_argument():
    @fg.compile_grad
    def annotated(w: fg.f64["n"], X: fg.f64["m", "n"], y: fg.f64["m"]):
        return np.sum(np.log1p(np.exp(-y * (X @ w))))

    with pytest.raises(fg.ShapeError, match=r"'X'.*2-D"):
        annotated(W, np.ones(12), Y)
    # Unannotated, a rank is traced as given: a 1-D X is a dot product that does not fit.
    with pytest.raises(fg.ShapeError, match=r"'X' has shape \(12,\)"):
        loss(W, np.ones(12), Y)
    with pytest.raises(fg.ShapeError, match="1-D and 2-D"):
        loss(W, np.ones((2, 4, 3)), Y)


def test_mismatched_dims_name_both_arguments_and_the_operation():
    with pytest.raises(fg.ShapeError) as info:
        loss(np.ones(5), X, Y)
    message = str(info.value)
    assert "'X'" in message and "'w'" in message and "matmul" in message
    with pytest.raises(fg.ShapeError, match=r"'y'.*dim 0 is 5"):
        loss(W, X, np.ones(5))


@pytest.mark.parametrize("transform", [fg.compile, fg.compile_grad, fg.compile_hessian])
def test_a_function_compiled_again_still_checks_its_dims(transform):
    # Tracing the same graph again used to find its nodes in the hash-consed table, skip
    # their shape rules and lose the merge of X's and w's inner dims: the second
    # compile of X @ w took a 4×5 X with a 3-vector w and read past the end of w.
    def f(w, X):
        return np.sum(np.tanh(X @ w))

    first, second = transform(f), transform(f)
    first(W, X)
    for compiled in (first, second):
        with pytest.raises(fg.ShapeError, match=r"'X' has shape \(4, 5\).*matmul"):
            compiled(W, np.ones((4, 5)))
    assert second.trace(W, X)[0].checks == first.trace(W, X)[0].checks
    assert second.trace(W, X)[0].digest == first.trace(W, X)[0].digest


def test_trace_time_shape_errors_name_the_dims():
    @fg.compile
    def bad(a, b):
        return a @ b

    with pytest.raises(fg.ShapeError, match="matmul"):
        bad(np.ones((2, 3)), np.ones((4, 2)))


@pytest.mark.parametrize(
    "value, kind",
    [
        (np.ones(3, dtype=complex), "complex"),
        (np.array(["a", "b", "c"]), "dtype"),
        (np.array([object(), object(), object()]), "dtype"),
    ],
)
def test_unsupported_dtypes_are_refused(value, kind):
    with pytest.raises(fg.DTypeError, match=kind):
        loss(value, X, Y)


def test_none_and_missing_arguments():
    with pytest.raises(fg.FusegradError, match="'w' is None"):
        loss(None, X, Y)
    with pytest.raises(TypeError, match="missing"):
        loss(W, X)
    with pytest.raises(TypeError, match="unexpected"):
        loss(W, X, Y, Z=1)


def test_integer_arrays_are_promoted_to_float64():
    value, grad = loss(np.ones(3, dtype=np.int64), X.astype(np.int32), Y.astype(np.int64))
    assert grad.dtype == np.float64
    assert value == pytest.approx(loss(W, X, Y)[0])


def test_zero_size_dims_give_the_mathematical_result():
    value, grad = loss(W, np.ones((0, 3)), np.ones(0))
    assert value == 0.0
    np.testing.assert_array_equal(grad, np.zeros(3))
    value, grad = loss(np.ones(0), np.ones((4, 0)), Y)
    assert value == pytest.approx(4 * np.log(2))
    assert grad.shape == (0,)

    @fg.compile
    def extremes(x):
        return x.max(), x.min(), x.mean(axis=0)

    top, bottom, mean = extremes(np.ones((0, 2)))
    assert top == -np.inf and bottom == np.inf
    assert np.all(np.isnan(mean))


def test_nan_and_inf_propagate():
    @fg.compile
    def f(x):
        return np.exp(x), x.sum(), x.max(), np.maximum(x, 0.0)

    x = np.array([1.0, np.nan, np.inf, -np.inf])
    e, s, m, r = f(x)
    np.testing.assert_array_equal(e, np.exp(x))
    assert np.isnan(s) and np.isnan(m)
    np.testing.assert_array_equal(r, np.maximum(x, 0.0))


def test_control_flow_on_traced_values_explains_fg_where():
    @fg.compile
    def branchy(x):
        if x.sum() > 0:
            return x
        return -x

    with pytest.raises(fg.TraceError, match="fg.where"):
        branchy(np.ones(3))


def test_unsupported_numpy_function_is_named():
    @fg.compile
    def spectral(x):
        return np.fft.fft(x)

    with pytest.raises(fg.TraceError, match=r"np\.fft\.fft is not supported"):
        spectral(np.ones(4))


def test_non_scalar_loss_is_refused_by_compile_grad():
    @fg.compile_grad
    def vector_valued(x):
        return x * 2

    with pytest.raises(fg.TraceError, match="scalar"):
        vector_valued(np.ones(3))


def test_wrt_that_names_no_parameter():
    with pytest.raises(fg.FusegradError, match="no parameter 'v'"):
        fg.compile_grad(lambda w, X: (X @ w).sum(), wrt="v")
