"""Every traced function computes what NumPy computes.

The property, for each op: `reference(f, *arrays)` (trace f, evaluate the graph
with the NumPy reference interpreter) equals `f(*arrays)` run directly on NumPy
arrays, in value (rtol 1e-12 for float64, 1e-5 for float32, NaNs equal), in
dtype (NumPy's promotion, Python numbers weak) and in shape. Shapes are drawn
with ranks 0–3 and dims 0–5, so size-0 and size-1 (specialized) dims occur.
For the fusegrad-only helpers (sigmoid, softplus, relu, logsumexp, softmax,
log_softmax) the NumPy side is the textbook formula.
"""

from __future__ import annotations

import math
import operator

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fusegrad as fg
from reference import axes_for, reference
from op_helpers import (
    MAX_SIDE,
    interval,
    REALS,
    MODERATE,
    POSITIVE,
    NONNEGATIVE,
    NONZERO,
    BASES,
    EXPONENTS,
    TIES,
    dtypes,
    shapes,
    arrays,
    numpy_value,
    magnitude,
    assert_matches,
    check_against_numpy,
    check_same_outcome,
    np_sigmoid,
    np_softplus,
    np_relu,
    np_logsumexp,
    np_log_softmax,
    np_softmax,
)


# -- element-wise: unary -------------------------------------------------------------------
# name, traced form, NumPy form, domain
UNARY = [
    ("exp", fg.exp, np.exp, MODERATE),
    ("log", fg.log, np.log, POSITIVE),
    ("log1p", fg.log1p, np.log1p, interval(-0.9, 1e3)),
    ("expm1", fg.expm1, np.expm1, MODERATE),
    ("sqrt", fg.sqrt, np.sqrt, NONNEGATIVE),
    ("square", fg.square, np.square, REALS),
    ("reciprocal", fg.reciprocal, np.reciprocal, NONZERO),
    ("tanh", fg.tanh, np.tanh, MODERATE),
    ("sin", fg.sin, np.sin, REALS),
    ("cos", fg.cos, np.cos, REALS),
    ("abs", fg.abs, np.abs, REALS),
    ("absolute", fg.absolute, np.absolute, REALS),
    ("negative", fg.negative, np.negative, REALS),
    ("sign", fg.sign, np.sign, TIES),
    ("sigmoid", fg.sigmoid, np_sigmoid, interval(-50, 50)),
    ("softplus", fg.softplus, np_softplus, interval(-50, 50)),
    ("relu", fg.relu, np_relu, TIES),
    ("relu of reals", fg.relu, np_relu, REALS),
    ("logical_not", fg.logical_not, np.logical_not, TIES),
    ("stop_gradient", fg.stop_gradient, lambda x: x, REALS),
    ("-x", operator.neg, operator.neg, REALS),
    ("+x", operator.pos, operator.pos, REALS),
    ("abs(x)", abs, abs, REALS),
    ("~(x > 0)", lambda x: ~(x > 0), lambda x: ~(x > 0), TIES),
]


@pytest.mark.parametrize("name, traced, numpy_form, domain", UNARY, ids=[r[0] for r in UNARY])
@given(data=st.data())
def test_unary_ops_match_numpy(name, traced, numpy_form, domain, data):
    dtype = data.draw(dtypes)
    x = arrays(data.draw, dtype, data.draw(shapes()), domain)
    check_against_numpy(traced, numpy_form, x)


# -- element-wise: binary, with broadcasting and mixed dtypes --------------------------------
# name, traced form, NumPy form, domain of a, domain of b
BINARY = [
    ("add", fg.add, np.add, REALS, REALS),
    ("subtract", fg.subtract, np.subtract, REALS, REALS),
    ("multiply", fg.multiply, np.multiply, REALS, REALS),
    ("divide", fg.divide, np.divide, REALS, NONZERO),
    ("power", fg.power, np.power, BASES, EXPONENTS),
    ("maximum", fg.maximum, np.maximum, TIES, TIES),
    ("minimum", fg.minimum, np.minimum, TIES, TIES),
    ("maximum of reals", fg.maximum, np.maximum, REALS, REALS),
    ("logaddexp", fg.logaddexp, np.logaddexp, REALS, REALS),
    ("less", fg.less, np.less, TIES, TIES),
    ("less_equal", fg.less_equal, np.less_equal, TIES, TIES),
    ("greater", fg.greater, np.greater, TIES, TIES),
    ("greater_equal", fg.greater_equal, np.greater_equal, TIES, TIES),
    ("equal", fg.equal, np.equal, TIES, TIES),
    ("not_equal", fg.not_equal, np.not_equal, TIES, TIES),
    ("logical_and", fg.logical_and, np.logical_and, TIES, TIES),
    ("logical_or", fg.logical_or, np.logical_or, TIES, TIES),
    ("a + b", operator.add, operator.add, REALS, REALS),
    ("a - b", operator.sub, operator.sub, REALS, REALS),
    ("a * b", operator.mul, operator.mul, REALS, REALS),
    ("a / b", operator.truediv, operator.truediv, REALS, NONZERO),
    ("a ** b", operator.pow, operator.pow, BASES, EXPONENTS),
    ("a < b", operator.lt, operator.lt, TIES, TIES),
    ("a <= b", operator.le, operator.le, TIES, TIES),
    ("a > b", operator.gt, operator.gt, TIES, TIES),
    ("a >= b", operator.ge, operator.ge, TIES, TIES),
    ("a == b", operator.eq, operator.eq, TIES, TIES),
    ("a != b", operator.ne, operator.ne, TIES, TIES),
    (
        "(a > 0) & (b > 0)",
        lambda a, b: (a > 0) & (b > 0),
        lambda a, b: (a > 0) & (b > 0),
        TIES,
        TIES,
    ),
    (
        "(a > 0) | (b > 0)",
        lambda a, b: (a > 0) | (b > 0),
        lambda a, b: (a > 0) | (b > 0),
        TIES,
        TIES,
    ),
]


@pytest.mark.parametrize(
    "name, traced, numpy_form, domain_a, domain_b", BINARY, ids=[r[0] for r in BINARY]
)
@given(data=st.data())
def test_binary_ops_broadcast_and_promote_like_numpy(
    name, traced, numpy_form, domain_a, domain_b, data
):
    shape_a, shape_b = data.draw(
        hnp.mutually_broadcastable_shapes(
            num_shapes=2, min_dims=0, max_dims=3, min_side=0, max_side=MAX_SIDE
        )
    ).input_shapes
    a = arrays(data.draw, data.draw(dtypes), shape_a, domain_a)
    b = arrays(data.draw, data.draw(dtypes), shape_b, domain_b)
    check_against_numpy(traced, numpy_form, a, b)


# name, f(array, python number); the number comes first or second
WITH_SCALAR = [
    ("x + s", lambda x, s: x + s),
    ("s + x", lambda x, s: s + x),
    ("x - s", lambda x, s: x - s),
    ("s - x", lambda x, s: s - x),
    ("x * s", lambda x, s: x * s),
    ("s * x", lambda x, s: s * x),
    ("x / s", lambda x, s: x / s),
    ("s / (x*x + 1)", lambda x, s: s / (x * x + 1)),
    ("maximum(x, s)", lambda x, s: np.maximum(x, s)),
    ("minimum(s, x)", lambda x, s: np.minimum(s, x)),
    ("x < s", lambda x, s: x < s),
    ("s <= x", lambda x, s: s <= x),
    ("x == s", lambda x, s: x == s),
    ("logaddexp(x, s)", lambda x, s: np.logaddexp(x, s)),
    ("where(x > s, x, s)", lambda x, s: np.where(x > s, x, s)),
]


@pytest.mark.parametrize("name, fn", WITH_SCALAR, ids=[r[0] for r in WITH_SCALAR])
@given(data=st.data())
def test_python_numbers_are_weak_scalars(name, fn, data):
    dtype = data.draw(dtypes)
    x = arrays(data.draw, dtype, data.draw(shapes()), REALS)
    s = data.draw(st.sampled_from([2.5, -1.0, 0.1, 3, -2, 0]))
    check_against_numpy(lambda x: fn(x, s), lambda x: fn(x, s), x)


# x ** p with a constant exponent (several are rewritten: x*x, sqrt, 1/x, x)
@pytest.mark.parametrize("p", [0, 1, 2, 3, -1, -2, 2.0, 0.5, 1.5, -0.5, 1.0, 0.0])
@given(data=st.data())
def test_power_with_a_scalar_exponent(p, data):
    dtype = data.draw(dtypes)
    integral = float(p).is_integer()
    domain = REALS if integral and p >= 0 else (NONZERO if integral else POSITIVE)
    x = arrays(data.draw, dtype, data.draw(shapes()), domain)
    scale = magnitude(numpy_value(lambda x: np.abs(x) ** p, x))
    check_against_numpy(lambda x: x**p, lambda x: x**p, x, scale=scale)
    check_against_numpy(lambda x: fg.power(x, p), lambda x: np.power(x, p), x, scale=scale)
    check_against_numpy(lambda x: np.power(x, p), lambda x: np.power(x, p), x, scale=scale)


@given(data=st.data())
def test_a_number_to_an_array_power(data):
    dtype = data.draw(dtypes)
    x = arrays(data.draw, dtype, data.draw(shapes()), EXPONENTS)
    check_against_numpy(lambda x: 2.0**x, lambda x: 2.0**x, x)
    check_against_numpy(lambda x: 0.5**x, lambda x: 0.5**x, x)


# -- where and clip ----------------------------------------------------------------------
@given(data=st.data())
def test_where_broadcasts_three_operands_like_numpy(data):
    shape_c, shape_a, shape_b = data.draw(
        hnp.mutually_broadcastable_shapes(
            num_shapes=3, min_dims=0, max_dims=3, min_side=0, max_side=MAX_SIDE
        )
    ).input_shapes
    c = arrays(data.draw, data.draw(dtypes), shape_c, TIES)
    a = arrays(data.draw, data.draw(dtypes), shape_a, REALS)
    b = arrays(data.draw, data.draw(dtypes), shape_b, REALS)
    check_against_numpy(
        lambda c, a, b: fg.where(c > 0, a, b), lambda c, a, b: np.where(c > 0, a, b), c, a, b
    )
    check_against_numpy(
        lambda c, a, b: np.where(c > 0, a, b), lambda c, a, b: np.where(c > 0, a, b), c, a, b
    )
    # A float condition means "is nonzero".
    check_against_numpy(
        lambda c, a, b: fg.where(c, a, b), lambda c, a, b: np.where(c, a, b), c, a, b
    )
    check_against_numpy(
        lambda c, a, b: fg.where(c > 0, a, 0.0), lambda c, a, b: np.where(c > 0, a, 0.0), c, a, b
    )


@given(data=st.data())
def test_clip_matches_numpy(data):
    dtype = data.draw(dtypes)
    x = arrays(data.draw, dtype, data.draw(shapes()), TIES)
    lo = data.draw(st.sampled_from([None, -2.0, -0.5, 0, 1.0]))
    hi = data.draw(st.sampled_from([None, -1.0, 0.5, 2.0, 3]))
    assume(lo is not None or hi is not None)
    check_against_numpy(lambda x: fg.clip(x, lo, hi), lambda x: np.clip(x, lo, hi), x)
    check_against_numpy(lambda x: np.clip(x, lo, hi), lambda x: np.clip(x, lo, hi), x)
    check_against_numpy(lambda x: x.clip(lo, hi), lambda x: x.clip(lo, hi), x)


@given(data=st.data())
def test_clip_with_array_bounds_matches_numpy(data):
    shape_x, shape_lo, shape_hi = data.draw(
        hnp.mutually_broadcastable_shapes(
            num_shapes=3, min_dims=0, max_dims=3, min_side=0, max_side=MAX_SIDE
        )
    ).input_shapes
    dtype = data.draw(dtypes)
    x = arrays(data.draw, dtype, shape_x, TIES)
    lo = arrays(data.draw, dtype, shape_lo, TIES)
    hi = arrays(data.draw, dtype, shape_hi, TIES)
    check_against_numpy(fg.clip, np.clip, x, lo, hi)


# -- reductions ----------------------------------------------------------------------------
# Max and min of an empty set are the identities ∓inf (NumPy raises there; fusegrad
# documents the identity in compiler/ops/reduce.py), which is NumPy's `initial=`.
def np_max(x, axis=None, keepdims=False):
    return np.max(x, axis=axis, keepdims=keepdims, initial=-np.inf)


def np_min(x, axis=None, keepdims=False):
    return np.min(x, axis=axis, keepdims=keepdims, initial=np.inf)


REDUCTIONS = [
    ("sum", fg.sum, np.sum, np.sum),
    ("mean", fg.mean, np.mean, np.mean),
    ("max", fg.max, np.max, np_max),
    ("min", fg.min, np.min, np_min),
    ("amax", fg.amax, np.amax, np_max),
    ("amin", fg.amin, np.amin, np_min),
]


@pytest.mark.parametrize(
    "name, traced, dispatched, numpy_form", REDUCTIONS, ids=[r[0] for r in REDUCTIONS]
)
@given(data=st.data())
def test_reductions_match_numpy_for_every_axis_and_keepdims(
    name, traced, dispatched, numpy_form, data
):
    dtype = data.draw(dtypes)
    x = arrays(data.draw, dtype, data.draw(shapes()), REALS)
    axis = data.draw(axes_for(x.ndim))
    keepdims = data.draw(st.booleans())
    scale = magnitude(np.abs(x).sum())
    expected = lambda x: numpy_form(x, axis=axis, keepdims=keepdims)
    check_against_numpy(lambda x: traced(x, axis=axis, keepdims=keepdims), expected, x, scale=scale)
    check_against_numpy(
        lambda x: dispatched(x, axis=axis, keepdims=keepdims), expected, x, scale=scale
    )
    if name in ("sum", "mean", "max", "min"):
        method = lambda x: getattr(x, name)(axis=axis, keepdims=keepdims)
        check_against_numpy(method, expected, x, scale=scale)


def test_reductions_of_zero_size_arrays_give_numpy_results():
    empty = np.zeros((0, 3))
    assert float(reference(lambda x: x.sum(), empty)) == 0.0
    assert np.isnan(reference(lambda x: x.mean(), empty))
    np.testing.assert_array_equal(reference(lambda x: x.sum(axis=0), empty), np.zeros(3))
    assert np.isnan(reference(lambda x: x.mean(axis=0), empty)).all()
    assert reference(lambda x: x.mean(axis=1), empty).shape == (0,)
    assert reference(lambda x: x.max(axis=1), empty).shape == (0,)
    assert float(reference(lambda x: fg.sum(x * 2.0 + 1.0), np.zeros(0, np.float32))) == 0.0


def test_numpy_integer_axes_are_accepted():
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(reference(lambda x: x.sum(axis=np.int64(1)), x), x.sum(axis=1))
    np.testing.assert_array_equal(reference(lambda x: x.max(axis=(np.int32(0),)), x), x.max(axis=0))


# -- linear algebra ------------------------------------------------------------------------
@st.composite
def matmul_operands(draw):
    m, k, n = (draw(st.integers(0, MAX_SIDE)) for _ in range(3))
    left = draw(st.sampled_from([(k,), (m, k)]))
    right = draw(st.sampled_from([(k,), (k, n)]))
    a = arrays(draw, draw(dtypes), left, REALS)
    b = arrays(draw, draw(dtypes), right, REALS)
    return a, b


MATMUL_FORMS = [
    ("a @ b", operator.matmul, operator.matmul),
    ("fg.matmul", fg.matmul, np.matmul),
    ("np.matmul", np.matmul, np.matmul),
    ("fg.dot", fg.dot, np.dot),
    ("np.dot", np.dot, np.dot),
    ("a.dot(b)", lambda a, b: a.dot(b), lambda a, b: a.dot(b)),
]


@pytest.mark.parametrize("name, traced, numpy_form", MATMUL_FORMS, ids=[r[0] for r in MATMUL_FORMS])
@given(operands=matmul_operands())
def test_matmul_of_vectors_and_matrices_matches_numpy(name, traced, numpy_form, operands):
    a, b = operands
    scale = magnitude(a) * magnitude(b) * MAX_SIDE
    check_against_numpy(traced, numpy_form, a, b, scale=scale)


@given(data=st.data())
def test_dot_with_a_scalar_operand_is_multiplication(data):
    x = arrays(data.draw, data.draw(dtypes), data.draw(shapes()), REALS)
    s = arrays(data.draw, data.draw(dtypes), (), REALS)
    check_against_numpy(fg.dot, np.dot, s, x)
    check_against_numpy(fg.dot, np.dot, x, s)


def test_matmul_refuses_scalars_like_numpy():
    with pytest.raises(fg.ShapeError):
        reference(lambda a, b: a @ b, np.float64(2.0), np.ones(3))


# -- layout --------------------------------------------------------------------------------
@given(data=st.data())
def test_transpose_matches_numpy(data):
    x = arrays(data.draw, data.draw(dtypes), data.draw(shapes()), REALS)
    perm = data.draw(st.permutations(range(x.ndim)))
    negative = tuple(p - x.ndim if data.draw(st.booleans()) else p for p in perm)
    check_against_numpy(lambda x: x.T, lambda x: x.T, x)
    check_against_numpy(lambda x: fg.transpose(x), np.transpose, x)
    check_against_numpy(lambda x: fg.transpose(x, negative), lambda x: np.transpose(x, perm), x)
    check_against_numpy(lambda x: np.transpose(x, perm), lambda x: np.transpose(x, perm), x)
    check_against_numpy(lambda x: x.transpose(perm), lambda x: x.transpose(perm), x)
    check_against_numpy(lambda x: x.transpose(*perm), lambda x: x.transpose(*perm), x)


def reshape_targets(shape):
    size = math.prod(shape)
    targets = [(-1,), (size,), shape + (1,), (1,) + shape, (1, -1, 1)]
    if size == 1:
        targets.append(())
    if shape:
        targets += [(shape[0], -1), (-1, shape[-1]), (-1,) + shape[1:]]
    if len(shape) >= 2:
        targets.append(shape[:-2] + (shape[-2] * shape[-1],))
    for k, d in enumerate(shape):
        for p in (2, 3):
            if d % p == 0 and d > p:
                targets.append(shape[:k] + (p, d // p) + shape[k + 1 :])
    return targets


@given(data=st.data())
def test_reshape_matches_numpy(data):
    x = arrays(data.draw, data.draw(dtypes), data.draw(shapes()), REALS)
    target = data.draw(st.sampled_from(reshape_targets(x.shape)))
    expected = lambda x: x.reshape(target)
    check_same_outcome(lambda x: x.reshape(target), expected, x)
    check_same_outcome(lambda x: x.reshape(*target), expected, x)
    check_same_outcome(lambda x: fg.reshape(x, target), expected, x)
    check_same_outcome(lambda x: np.reshape(x, target), expected, x)


def test_reshape_takes_numpy_integers():
    x = np.arange(6.0)
    target = (np.int64(3), -1)
    np.testing.assert_array_equal(reference(lambda x: x.reshape(target), x), x.reshape(target))


@st.composite
def broadcast_pairs(draw):
    """(shape, target): `shape` broadcasts to `target`."""
    target = draw(shapes())
    kept = draw(st.integers(0, len(target)))
    shape = tuple(1 if draw(st.booleans()) else d for d in target[len(target) - kept :])
    return shape, target


@given(data=st.data())
def test_broadcast_to_matches_numpy(data):
    shape, target = data.draw(broadcast_pairs())
    x = arrays(data.draw, data.draw(dtypes), shape, REALS)
    expected = lambda x: np.broadcast_to(x, target)
    check_against_numpy(lambda x: fg.broadcast_to(x, target), expected, x)
    check_against_numpy(lambda x: np.broadcast_to(x, target), expected, x)


@given(data=st.data())
def test_expand_dims_matches_numpy(data):
    x = arrays(data.draw, data.draw(dtypes), data.draw(shapes()), REALS)
    out_ndim = x.ndim + data.draw(st.integers(1, 2))
    positions = data.draw(
        st.lists(
            st.integers(0, out_ndim - 1),
            min_size=out_ndim - x.ndim,
            max_size=out_ndim - x.ndim,
            unique=True,
        )
    )
    axis = tuple(p - out_ndim if data.draw(st.booleans()) else p for p in positions)
    if len(axis) == 1 and data.draw(st.booleans()):
        axis = axis[0]
    expected = lambda x: np.expand_dims(x, axis)
    check_against_numpy(lambda x: fg.expand_dims(x, axis), expected, x)
    check_against_numpy(lambda x: np.expand_dims(x, axis), expected, x)


@given(data=st.data())
def test_squeeze_matches_numpy(data):
    shape = data.draw(shapes())
    shape = tuple(1 if data.draw(st.booleans()) else d for d in shape)
    x = arrays(data.draw, data.draw(dtypes), shape, REALS)
    ones = [k for k, d in enumerate(shape) if d == 1]
    axis = data.draw(
        st.sampled_from(
            [None] + [tuple(ones)] + [k - len(shape) for k in ones] + list(range(len(shape)))
        )
    )
    expected = lambda x: np.squeeze(x, axis)
    check_same_outcome(lambda x: fg.squeeze(x, axis), expected, x)
    check_same_outcome(lambda x: np.squeeze(x, axis), expected, x)
    check_same_outcome(lambda x: x.squeeze(axis), expected, x)


# -- indexing ------------------------------------------------------------------------------
NAMED_KEYS = [
    (slice(None), 0),
    slice(1, None),
    (slice(None), slice(1, None)),
    slice(None, None, -1),
    -1,
    slice(None, None, 2),
    None,
    (Ellipsis, 1),
    0,
    (0, 0),
    (-1, Ellipsis, None),
    slice(1, -1),
    slice(-2, None),
    slice(None, 3),
    slice(None, None, -2),
    slice(2, None, 3),
    slice(3, 0, -1),
    slice(-1, None, -1),
    slice(None, -2, -1),
    (None, slice(None), None),
    (Ellipsis,),
    (),
    (slice(None), None, -1),
    slice(10, None),
    slice(None, -10),
]


@pytest.mark.parametrize("key", NAMED_KEYS, ids=repr)
@given(data=st.data())
def test_basic_indexing_matches_numpy(key, data):
    x = arrays(data.draw, data.draw(dtypes), data.draw(shapes()), REALS)
    check_same_outcome(lambda x: x[key], lambda x: x[key], x)


@given(data=st.data())
def test_any_valid_basic_index_matches_numpy(data):
    x = arrays(data.draw, data.draw(dtypes), data.draw(shapes()), REALS)
    key = data.draw(hnp.basic_indices(x.shape, min_dims=0, allow_newaxis=True, allow_ellipsis=True))
    check_against_numpy(lambda x: x[key], lambda x: x[key], x)


def indexer(key):
    return lambda x: x[key]


def test_negative_step_slice_with_a_stop_before_the_start_of_the_array():
    x = np.arange(3.0)  # a dim other than 1: symbolic, clamped with dim_max/dim_min
    for key in (slice(None, -5, -1), slice(-1, -7, -2), slice(5, -5, -1)):
        np.testing.assert_array_equal(reference(indexer(key), x), x[key])


@pytest.mark.parametrize("key", [True, False, (slice(None), True)], ids=repr)
def test_a_boolean_index_is_numpys_mask_or_refused(key):
    x = np.arange(6.0).reshape(2, 3)
    try:
        actual = reference(indexer(key), x)
    except fg.TraceError:
        return
    assert_matches(actual, x[key])


def test_out_of_bounds_integer_indices_raise_a_shape_error():
    x = np.ones((2, 3))
    for key in (2, -3, (slice(None), 3), (0, -4)):
        with pytest.raises(fg.ShapeError, match="out of bounds"):
            reference(indexer(key), x)


# -- logsumexp, softmax, log_softmax ----------------------------------------------------------
@given(data=st.data())
def test_logsumexp_matches_its_formula_for_every_axis(data):
    dtype = data.draw(dtypes)
    x = arrays(data.draw, dtype, data.draw(shapes()), REALS)
    axis = data.draw(axes_for(x.ndim))
    keepdims = data.draw(st.booleans())
    check_against_numpy(
        lambda x: fg.logsumexp(x, axis=axis, keepdims=keepdims),
        lambda x: np_logsumexp(x, axis=axis, keepdims=keepdims),
        x,
    )


@given(data=st.data())
def test_softmax_and_log_softmax_match_their_formulas(data):
    dtype = data.draw(dtypes)
    x = arrays(data.draw, dtype, data.draw(shapes()), REALS)
    axis = data.draw(st.sampled_from([None] + list(range(-x.ndim, x.ndim))))
    check_against_numpy(lambda x: fg.softmax(x, axis=axis), lambda x: np_softmax(x, axis=axis), x)
    check_against_numpy(
        lambda x: fg.log_softmax(x, axis=axis), lambda x: np_log_softmax(x, axis=axis), x
    )
    if x.ndim:
        check_against_numpy(fg.softmax, np_softmax, x)  # default axis=-1
        check_against_numpy(fg.log_softmax, np_log_softmax, x)


# -- dims in arithmetic, astype, *_like ------------------------------------------------------
# Dims combined with ints stay dims; a dim meeting an array is a weak number.
DIM_EXPRESSIONS = [
    ("x.sum() / x.shape[0]", lambda x: x.sum() / x.shape[0]),
    ("x * x.shape[-1]", lambda x: x * x.shape[-1]),
    ("x.shape[0] * x", lambda x: x.shape[0] * x),
    (
        "x.sum(axis=0) / (x.shape[0] * x.shape[1])",
        lambda x: x.sum(axis=0) / (x.shape[0] * x.shape[1]),
    ),
    ("x / x.size", lambda x: x / x.size),
    ("x - x.shape[1]", lambda x: x - x.shape[1]),
    ("(x.shape[0] - 1) * x", lambda x: (x.shape[0] - 1) * x),
    ("x.shape[1] - x", lambda x: x.shape[1] - x),
    ("np.sum(x) / len(x.shape)", lambda x: np.sum(x) / len(x.shape)),
]
# A dim meeting a Python float (`n * 0.5`, `n / 2`, `n ** 2`) is, in NumPy, a Python
# number: weak, so float32 stays float32.
DIM_FLOAT_EXPRESSIONS = [
    ("x + x.shape[0] * 0.5", lambda x: x + x.shape[0] * 0.5),
    ("x / x.shape[0] ** 2", lambda x: x / x.shape[0] ** 2),
    ("x - x.shape[1] / 2", lambda x: x - x.shape[1] / 2),
]


@pytest.mark.parametrize(
    "name, fn",
    DIM_EXPRESSIONS + DIM_FLOAT_EXPRESSIONS,
    ids=[r[0] for r in DIM_EXPRESSIONS + DIM_FLOAT_EXPRESSIONS],
)
@given(data=st.data())
def test_dims_used_in_arithmetic_are_the_runtime_sizes(name, fn, data):
    dtype = data.draw(dtypes)
    x = arrays(data.draw, dtype, data.draw(shapes(min_dims=2)), REALS)
    check_against_numpy(fn, fn, x, scale=magnitude(np.abs(x).sum() * 25))


@pytest.mark.parametrize(
    "name, fn", DIM_FLOAT_EXPRESSIONS, ids=[r[0] for r in DIM_FLOAT_EXPRESSIONS]
)
def test_dim_float_arithmetic_keeps_float32(name, fn):
    x = np.ones((3, 2), np.float32)  # dims other than 1 are symbolic
    assert reference(fn, x).dtype == fn(x).dtype == np.float32


def caster(target):
    """x.astype(target) and fg.astype(x, target)."""
    return (lambda x: x.astype(target)), (lambda x: fg.astype(x, target))


@given(data=st.data())
def test_astype_matches_numpy(data):
    x = arrays(data.draw, data.draw(dtypes), data.draw(shapes()), TIES)
    for target in (np.float32, np.float64, bool, "float32", np.dtype("float64")):
        method, function = caster(target)
        check_against_numpy(method, method, x)
        check_against_numpy(function, method, x)
    check_against_numpy(
        lambda x: (x > 0).astype(np.float32), lambda x: (x > 0).astype(np.float32), x
    )
    big = arrays(data.draw, np.float64, data.draw(shapes()), interval(-1e300, 1e300))
    check_against_numpy(
        lambda x: x.astype(np.float32), lambda x: x.astype(np.float32), big, scale=1.0
    )


def test_astype_refuses_integer_dtypes():
    with pytest.raises(fg.DTypeError):
        reference(lambda x: x.astype(np.int32), np.ones(3))


@given(data=st.data())
def test_like_constructors_match_numpy(data):
    x = arrays(data.draw, data.draw(dtypes), data.draw(shapes()), REALS)
    for traced, numpy_form in [
        (fg.zeros_like, np.zeros_like),
        (fg.ones_like, np.ones_like),
        (lambda x: fg.full_like(x, 2.5), lambda x: np.full_like(x, 2.5)),
        (lambda x: fg.ones_like(x, dtype=np.float32), lambda x: np.ones_like(x, np.float32)),
        (lambda x: np.zeros_like(x) + x, lambda x: np.zeros_like(x) + x),
        (lambda x: np.full_like(x, -1.0), lambda x: np.full_like(x, -1.0)),
    ]:
        check_against_numpy(traced, numpy_form, x)


# -- dtype promotion --------------------------------------------------------------------------
F32, F64 = np.ones((2, 3), np.float32), np.ones((2, 3), np.float64)
SAME = None  # the NumPy form is the traced form itself
PROMOTIONS = [
    ("f32 + f32", lambda a, b: a + b, SAME, F32, F32, "float32"),
    ("f32 * f64", lambda a, b: a * b, SAME, F32, F64, "float64"),
    ("f64 / f32", lambda a, b: a / b, SAME, F64, F32, "float64"),
    ("f32 + 1.5", lambda a, b: a + 1.5, SAME, F32, F32, "float32"),
    ("2 * f32", lambda a, b: 2 * a, SAME, F32, F32, "float32"),
    ("f32 ** 3", lambda a, b: a**3, SAME, F32, F32, "float32"),
    ("maximum(f32, f64)", lambda a, b: np.maximum(a, b), SAME, F32, F64, "float64"),
    ("where(f32 > 0, f32, 0.0)", lambda a, b: np.where(a > 0, a, 0.0), SAME, F32, F32, "float32"),
    ("where(f32 > 0, f32, f64)", lambda a, b: np.where(a > 0, a, b), SAME, F32, F64, "float64"),
    ("f32 < f64", lambda a, b: a < b, SAME, F32, F64, "bool"),
    ("exp(f32)", lambda a, b: np.exp(a), SAME, F32, F32, "float32"),
    ("sigmoid(f32)", lambda a, b: fg.sigmoid(a), lambda a, b: np_sigmoid(a), F32, F32, "float32"),
    (
        "softplus(f32)",
        lambda a, b: fg.softplus(a),
        lambda a, b: np_softplus(a),
        F32,
        F32,
        "float32",
    ),
    ("relu(f32)", lambda a, b: fg.relu(a), lambda a, b: np_relu(a), F32, F32, "float32"),
    ("sum(f32)", lambda a, b: np.sum(a), SAME, F32, F32, "float32"),
    ("mean(f32, axis=0)", lambda a, b: np.mean(a, axis=0), SAME, F32, F32, "float32"),
    (
        "logsumexp(f32)",
        lambda a, b: fg.logsumexp(a),
        lambda a, b: np_logsumexp(a),
        F32,
        F32,
        "float32",
    ),
    ("f32 @ f64.T", lambda a, b: a @ b.T, SAME, F32, F64, "float64"),
    ("f32 @ f32.T", lambda a, b: a @ b.T, SAME, F32, F32, "float32"),
    (
        "sum(f32 > 0, dtype=f64)",
        lambda a, b: np.sum(a > 0, dtype=np.float64),
        SAME,
        F32,
        F32,
        "float64",
    ),
    ("(f32 > 0) * 1.0", lambda a, b: (a > 0) * 1.0, SAME, F32, F32, "float64"),
    ("(f32 > 0) * f32", lambda a, b: (a > 0) * a, SAME, F32, F32, "float32"),
]


@pytest.mark.parametrize(
    "name, traced, numpy_form, a, b, dtype", PROMOTIONS, ids=[r[0] for r in PROMOTIONS]
)
def test_result_dtypes_follow_numpy_promotion(name, traced, numpy_form, a, b, dtype):
    assert reference(traced, a, b).dtype == np.dtype(dtype)
    expected = numpy_value(numpy_form or traced, a, b)
    assert expected.dtype == np.dtype(dtype)  # what NumPy itself says
