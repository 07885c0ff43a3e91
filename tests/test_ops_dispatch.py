"""NumPy dispatch, errors for what is not supported, NaN and infinity, and a check
that every public traced function is tested (see test_ops_reference.py for the
property every op is held to)."""

from __future__ import annotations

import operator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fusegrad as fg
from fusegrad.compiler.numpy_api import FUNCTIONS, UFUNCS
from reference import axes_for, reference
from test_ops_reference import BINARY, MATMUL_FORMS, REDUCTIONS, UNARY
from op_helpers import (
    DTYPES,
    special_values,
    dtypes,
    shapes,
    arrays,
    numpy_value,
    traced_value,
    magnitude,
    assert_matches,
    check_against_numpy,
)


# -- NumPy dispatch ---------------------------------------------------------------------------
def ufunc_arguments(ufunc):
    if ufunc is np.matmul:
        return np.linspace(0.5, 3.0, 6).reshape(2, 3), np.linspace(0.5, 2.0, 3)
    first = np.linspace(0.5, 3.0, 6).reshape(2, 3)
    second = np.array([2.0, 0.5, 1.5])
    return (first, second)[: ufunc.nin]


def with_arity(fn, n):
    """fn as a function of n named parameters (traced functions take no *args)."""
    return (lambda a: fn(a)) if n == 1 else (lambda a, b: fn(a, b))


@pytest.mark.parametrize("ufunc", list(UFUNCS), ids=lambda u: u.__name__)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_dispatched_ufunc_matches_numpy_and_its_fg_function(ufunc, dtype):
    args = tuple(a.astype(dtype) for a in ufunc_arguments(ufunc))
    via_numpy = traced_value(with_arity(ufunc, len(args)), *args)
    via_fg = traced_value(with_arity(UFUNCS[ufunc], len(args)), *args)
    np.testing.assert_array_equal(via_numpy, via_fg)
    assert via_numpy.dtype == via_fg.dtype
    assert_matches(via_numpy, numpy_value(ufunc, *args), magnitude(*args))


def test_np_exp_on_a_tracer_builds_the_same_graph_as_fg_exp():
    x = np.linspace(-2, 2, 7)
    np.testing.assert_array_equal(reference(np.exp, x), reference(fg.exp, x))
    graph_np = fg.compile(lambda x: np.exp(x)).lower(x)
    graph_fg = fg.compile(lambda x: fg.exp(x)).lower(x)
    assert [n.op for n in graph_np.nodes()] == [n.op for n in graph_fg.nodes()]


def test_float_power_computes_in_float64_like_numpy():
    x = np.array([1.5, 2.0], np.float32)
    assert_matches(reference(np.float_power, x, x), np.float_power(x, x))


@pytest.mark.parametrize("ufunc", [np.fmax, np.fmin], ids=lambda u: u.__name__)
def test_fmax_and_fmin_ignore_nans_like_numpy_or_are_refused(ufunc):
    # Never silently maximum/minimum, which propagate NaN where fmax/fmin ignore it.
    a, b = np.array([np.nan, 1.0, np.nan]), np.array([2.0, np.nan, np.nan])
    try:
        actual = reference(ufunc, a, b)
    except fg.TraceError as exc:
        assert ufunc.__name__ in str(exc)
        return
    assert_matches(actual, ufunc(a, b))


X23 = np.linspace(-1.0, 2.0, 6).reshape(2, 3)
C23 = np.array([[1.0, -1.0, 0.0], [2.0, 0.0, -3.0]])
# One call per entry of FUNCTIONS: (traced form, NumPy form).
FUNCTION_CASES = {
    np.sum: lambda x: np.sum(x, axis=1, keepdims=True),
    np.mean: lambda x: np.mean(x, axis=(0, 1)),
    np.max: lambda x: np.max(x, axis=-1),
    np.min: lambda x: np.min(x, axis=0),
    np.amax: lambda x: np.amax(x),
    np.amin: lambda x: np.amin(x, keepdims=True),
    np.where: lambda x: np.where(x > 0, x, -x),
    np.clip: lambda x: np.clip(x, -0.5, 0.5),
    np.dot: lambda x: np.dot(x, x.T),
    np.matmul: lambda x: np.matmul(x.T, x),
    np.transpose: lambda x: np.transpose(x),
    np.reshape: lambda x: np.reshape(x, (3, 2)),
    np.broadcast_to: lambda x: np.broadcast_to(x, (4, 2, 3)),
    np.expand_dims: lambda x: np.expand_dims(x, 1),
    np.squeeze: lambda x: np.squeeze(np.expand_dims(x, 0)),
    np.zeros_like: lambda x: np.zeros_like(x),
    np.ones_like: lambda x: np.ones_like(x),
    np.full_like: lambda x: np.full_like(x, 3.0),
    np.abs: lambda x: np.abs(x),
    np.square: lambda x: np.square(x),
}


def test_every_dispatched_function_has_a_case_here():
    assert set(FUNCTIONS) <= set(FUNCTION_CASES)


@pytest.mark.parametrize("func", list(FUNCTION_CASES), ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_dispatched_function_matches_numpy(func, dtype):
    fn = FUNCTION_CASES[func]
    check_against_numpy(fn, fn, X23.astype(dtype))


UNSUPPORTED = [
    ("np.fft.fft", lambda x: np.fft.fft(x)),
    ("np.cumsum", lambda x: np.cumsum(x)),
    ("np.sort", lambda x: np.sort(x)),
    ("np.add.reduce", lambda x: np.add.reduce(x)),
    ("np.add.accumulate", lambda x: np.add.accumulate(x)),
    ("np.multiply.outer", lambda x: np.multiply.outer(x, x)),
    ("np.arctan", lambda x: np.arctan(x)),
    ("np.floor", lambda x: np.floor(x)),
    ("np.median", lambda x: np.median(x)),
    ("np.linalg.norm", lambda x: np.linalg.norm(x)),
    ("np.concatenate", lambda x: np.concatenate([x, x])),
    ("np.einsum", lambda x: np.einsum("ij->i", x)),
]


@pytest.mark.parametrize("name, fn", UNSUPPORTED, ids=[r[0] for r in UNSUPPORTED])
def test_unsupported_numpy_functions_raise_a_trace_error_naming_them(name, fn):
    with pytest.raises(fg.TraceError, match=name.replace(".", r"\.")):
        reference(fn, X23)


def test_unsupported_ufunc_arguments_raise_a_trace_error():
    with pytest.raises(fg.TraceError, match="dtype"):
        reference(lambda x: np.exp(x, dtype=np.float32), X23)
    with pytest.raises(fg.TraceError, match="out"):
        reference(lambda x: np.sum(x, out=np.zeros(())), X23)


def branch_on_value(x):
    if x.sum() > 0:
        return x
    return -x


def loop_on_value(x):
    while x.max() > 1:
        x = x / 2
    return x


def short_circuit(x):
    return (x.sum() > 0 and x) or -x


@pytest.mark.parametrize("fn", [branch_on_value, loop_on_value, short_circuit])
def test_python_control_flow_on_values_raises_a_trace_error_pointing_to_where(fn):
    with pytest.raises(fg.TraceError, match=r"fg\.where"):
        reference(fn, X23)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: float(x.sum()),
        lambda x: int(x[0, 0]),
        lambda x: np.asarray(x),
        lambda x: np.array(x) + 1,
    ],
)
def test_concrete_values_are_refused_while_tracing(fn):
    with pytest.raises(fg.TraceError):
        reference(fn, X23)


ARRAY_CONSTANTS = [
    ("x + ones", lambda x: x + np.ones(3)),
    ("ones * x", lambda x: np.ones(3) * x),
    ("maximum(x, zeros)", lambda x: fg.maximum(x, np.zeros((2, 3)))),
    ("where(x > 0, ones, x)", lambda x: fg.where(x > 0, np.ones(3), x)),
    ("x @ eye", lambda x: x @ np.eye(3)),
    ("eye @ x.T", lambda x: np.eye(3) @ x.T),
    ("clip(x, zeros, 1)", lambda x: fg.clip(x, np.zeros(3), 1.0)),
]


@pytest.mark.parametrize("name, fn", ARRAY_CONSTANTS, ids=[r[0] for r in ARRAY_CONSTANTS])
def test_array_constants_raise_a_trace_error(name, fn):
    with pytest.raises(fg.TraceError, match="constant"):
        reference(fn, X23)


def test_zero_dimensional_array_constants_are_numbers():
    np.testing.assert_allclose(reference(lambda x: x * np.array(2.0), X23), X23 * 2.0)


# -- NaN and infinity ---------------------------------------------------------------------------
# pow(−inf, 0.5) has no single NumPy answer: its scalar-exponent loop takes sqrt (NaN),
# its general loop C's pow (inf).
SPECIAL_UNARY = UNARY
SPECIAL_BINARY = [row for row in BINARY if row[0] not in ("power", "a ** b")]


@pytest.mark.parametrize(
    "name, traced, numpy_form, domain", SPECIAL_UNARY, ids=[r[0] for r in SPECIAL_UNARY]
)
@given(data=st.data())
def test_nan_and_inf_propagate_through_unary_ops_like_numpy(name, traced, numpy_form, domain, data):
    x = arrays(data.draw, data.draw(dtypes), data.draw(shapes(min_side=1)), special_values)
    check_against_numpy(traced, numpy_form, x)


@pytest.mark.parametrize(
    "name, traced, numpy_form, domain_a, domain_b",
    SPECIAL_BINARY,
    ids=[r[0] for r in SPECIAL_BINARY],
)
@given(data=st.data())
def test_nan_and_inf_propagate_through_binary_ops_like_numpy(
    name, traced, numpy_form, domain_a, domain_b, data
):
    shape_a, shape_b = data.draw(
        hnp.mutually_broadcastable_shapes(
            num_shapes=2, min_dims=0, max_dims=2, min_side=1, max_side=3
        )
    ).input_shapes
    a = arrays(data.draw, data.draw(dtypes), shape_a, special_values)
    b = arrays(data.draw, data.draw(dtypes), shape_b, special_values)
    check_against_numpy(traced, numpy_form, a, b)


@pytest.mark.parametrize(
    "name, traced, dispatched, numpy_form", REDUCTIONS, ids=[r[0] for r in REDUCTIONS]
)
@given(data=st.data())
def test_nan_and_inf_propagate_through_reductions_like_numpy(
    name, traced, dispatched, numpy_form, data
):
    x = arrays(data.draw, data.draw(dtypes), data.draw(shapes(min_side=1)), special_values)
    axis = data.draw(axes_for(x.ndim))
    check_against_numpy(lambda x: traced(x, axis=axis), lambda x: numpy_form(x, axis=axis), x)


@given(data=st.data())
def test_nan_and_inf_propagate_through_matmul_like_numpy(data):
    a = arrays(data.draw, np.float64, (2, 3), special_values)
    b = arrays(data.draw, np.float64, (3,), special_values)
    check_against_numpy(operator.matmul, operator.matmul, a, b)


def test_logaddexp_of_infinities_is_numpys():
    a = np.array([np.inf, -np.inf, np.inf, 1.0])
    b = np.array([np.inf, -np.inf, -np.inf, -np.inf])
    assert_matches(reference(fg.logaddexp, a, b), numpy_value(np.logaddexp, a, b))


def test_logsumexp_of_infinite_rows_is_infinite():
    x = np.array([[-np.inf, -np.inf], [np.inf, 1.0], [0.0, -np.inf]])
    np.testing.assert_array_equal(
        reference(lambda x: fg.logsumexp(x, axis=1), x), [-np.inf, np.inf, 0.0]
    )


# -- coverage of the public API ------------------------------------------------------------------
def test_every_public_traced_function_is_checked_here():
    api = {
        "compile",
        "compile_grad",
        "grad",
        "value_and_grad",
        "jvp",
        "vjp",
        "hvp",
        "check_grad",
        "vmap",
        "jacobian",
        "hessian",
        "value_grad_hessian",
        "compile_hessian",
        "CompiledFunction",
        "f32",
        "f64",
        "FusegradError",
        "ShapeError",
        "DTypeError",
        "TraceError",
        "CompileError",
    }
    checked = {row[1] for row in UNARY + BINARY + REDUCTIONS + MATMUL_FORMS}
    checked |= {
        fg.where,
        fg.clip,
        fg.power,
        fg.transpose,
        fg.reshape,
        fg.broadcast_to,
        fg.expand_dims,
        fg.squeeze,
        fg.logsumexp,
        fg.softmax,
        fg.log_softmax,
        fg.astype,
        fg.zeros_like,
        fg.ones_like,
        fg.full_like,
    }
    public = {getattr(fg, name) for name in fg.__all__ if name not in api}
    assert public <= checked, sorted(f.__name__ for f in public - checked)
