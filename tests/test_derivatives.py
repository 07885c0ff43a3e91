"""Every differentiable op's reverse-mode gradient equals central differences.

The property, for each op: the gradient that `fg.grad` builds (traced and run
through the reference interpreter) of `sum(op(x, ...) * c)`, with a random
weight array `c` so that every element's derivative counts, agrees with central
finite differences of the same function through the reference interpreter in
float64 (1e-6), and the float32 gradient agrees with the float64 one (1e-3).
Values are drawn away from kinks (abs, relu, clip at their corners; maximum,
minimum and max/min reductions away from ties) and from the edges of domains.
Arrays have at most 12 elements, so that finite differences stay cheap.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fusegrad as fg
from reference import axes_for, finite_difference_grad, reference

MAX_SIZE = 12
MAX_SIDE = 4


# -- strategies: values representable in float32, so both precisions see the same point --
def f32(value: float) -> float:
    return float(np.float32(value))


def interval(lo, hi):
    return st.floats(f32(lo), f32(hi), width=32, allow_nan=False, allow_infinity=False)


def away_from_zero(lo, hi):
    return interval(lo, hi) | interval(-hi, -lo)


def grid(offset):
    """Multiples of 1/8 shifted by `offset`: two grids with different offsets never tie,
    and stay ≥ |offset difference| apart (a kink is never within reach of ε)."""
    return st.integers(-24, 24).map(lambda k: f32(k / 8 + offset))


SMOOTH = interval(-3, 3)
POSITIVE = interval(0.2, 5)
NONZERO = away_from_zero(0.3, 3)
WEIGHTS = away_from_zero(0.25, 1)


@st.composite
def small_shapes(draw, min_dims=0, max_dims=3, min_side=0):
    """Shapes of rank min_dims..max_dims with at most MAX_SIZE elements."""
    ndim = draw(st.integers(min_dims, max_dims))
    shape = []
    for _ in range(ndim):
        room = MAX_SIZE // max(1, math.prod(shape))
        shape.append(draw(st.integers(min_side, max(min_side, min(MAX_SIDE, room)))))
    return tuple(shape)


@st.composite
def broadcast_operands(draw, count, min_side=0):
    """`count` shapes that broadcast together to a shape of at most MAX_SIZE elements."""
    target = draw(small_shapes(min_side=min_side))
    result = []
    for _ in range(count):
        kept = draw(st.integers(0, len(target)))
        result.append(tuple(1 if draw(st.booleans()) else d for d in target[len(target) - kept :]))
    return result


def array(draw, shape, elements, unique=False):
    return draw(hnp.arrays(np.float64, shape, elements=elements, unique=unique))


def weights_for(draw, shape):
    return array(draw, shape, WEIGHTS)


# -- the check -----------------------------------------------------------------------------
def check_gradients(f, args, wrt):
    """fg.grad(f, wrt) equals central differences (float64), and in float32 equals the
    float64 gradient."""
    wrt = tuple(wrt)
    args = [np.asarray(a, dtype=np.float64) for a in args]
    grads = reference(fg.grad(f, wrt=wrt), *args)
    assert isinstance(grads, tuple) and len(grads) == len(wrt)
    for k, g in zip(wrt, grads):
        assert g.dtype == np.float64 and g.shape == args[k].shape
        expected = finite_difference_grad(f, args, wrt=k)
        scale = 1.0 + (np.abs(expected).max() if expected.size else 0.0)
        np.testing.assert_allclose(
            g,
            expected,
            rtol=1e-6,
            atol=1e-6 * scale,
            err_msg=f"gradient with respect to argument {k}",
        )
    grads32 = reference(fg.grad(f, wrt=wrt), *[a.astype(np.float32) for a in args])
    for k, g32, g in zip(wrt, grads32, grads):
        assert g32.dtype == np.float32 and g32.shape == args[k].shape
        scale = 1.0 + (np.abs(g).max() if g.size else 0.0)
        np.testing.assert_allclose(
            g32,
            g,
            rtol=1e-3,
            atol=1e-3 * scale,
            err_msg=f"float32 gradient with respect to argument {k}",
        )


def output_shape(fn, *args):
    return np.asarray(reference(fn, *args)).shape


# -- element-wise: unary ------------------------------------------------------------------------
UNARY = [
    ("exp", fg.exp, SMOOTH),
    ("log", fg.log, POSITIVE),
    ("log1p", fg.log1p, interval(-0.8, 5)),
    ("expm1", fg.expm1, SMOOTH),
    ("sqrt", fg.sqrt, POSITIVE),
    ("square", fg.square, SMOOTH),
    ("reciprocal", fg.reciprocal, NONZERO),
    ("tanh", fg.tanh, SMOOTH),
    ("sin", fg.sin, SMOOTH),
    ("cos", fg.cos, SMOOTH),
    ("abs", fg.abs, away_from_zero(0.05, 3)),
    ("negative", fg.negative, SMOOTH),
    ("sign", fg.sign, away_from_zero(0.05, 3)),
    ("sigmoid", fg.sigmoid, interval(-6, 6)),
    ("softplus", fg.softplus, interval(-6, 6)),
    ("relu", fg.relu, away_from_zero(0.05, 3)),
    ("np.exp", np.exp, SMOOTH),
    ("-x", lambda x: -x, SMOOTH),
    ("x ** 0", lambda x: x**0, NONZERO),
    ("x ** 1", lambda x: x**1, SMOOTH),
    ("x ** 2", lambda x: x**2, SMOOTH),
    ("x ** 3", lambda x: x**3, SMOOTH),
    ("x ** 0.5", lambda x: x**0.5, POSITIVE),
    ("x ** -1", lambda x: x**-1, NONZERO),
    ("x ** 1.5", lambda x: x**1.5, POSITIVE),
    ("x ** -2.5", lambda x: x**-2.5, POSITIVE),
    ("2.0 ** x", lambda x: 2.0**x, SMOOTH),
    ("clip(x, -0.5, 1)", lambda x: fg.clip(x, -0.5, 1.0), grid(0.03)),
    ("clip(x, None, 0.25)", lambda x: np.clip(x, None, 0.25), grid(0.03)),
    ("where(x > 0, x, 2x)", lambda x: fg.where(x > 0, x, 2 * x), away_from_zero(0.05, 3)),
    ("logsumexp", fg.logsumexp, SMOOTH),
    ("softmax", fg.softmax, SMOOTH),
    ("log_softmax", fg.log_softmax, SMOOTH),
    ("x / x.shape[0]", lambda x: x / x.shape[0], SMOOTH),
    ("x.sum() / x.shape[0]", lambda x: x.sum() / x.shape[0], SMOOTH),
    ("x * x", lambda x: x * x, SMOOTH),
    ("x / (1 + x * x)", lambda x: x / (1 + x * x), SMOOTH),
]
NEEDS_RANK = {"softmax", "log_softmax", "x / x.shape[0]", "x.sum() / x.shape[0]"}


@pytest.mark.parametrize("name, op, elements", UNARY, ids=[r[0] for r in UNARY])
@given(data=st.data())
def test_unary_gradients_match_finite_differences(name, op, elements, data):
    x = array(data.draw, data.draw(small_shapes(min_dims=1 if name in NEEDS_RANK else 0)), elements)
    c = weights_for(data.draw, output_shape(op, x))
    check_gradients(lambda x, c: fg.sum(op(x) * c), [x, c], wrt=[0])


# -- element-wise: binary, with broadcasting ------------------------------------------------
BINARY = [
    ("add", fg.add, SMOOTH, SMOOTH),
    ("subtract", fg.subtract, SMOOTH, SMOOTH),
    ("multiply", fg.multiply, SMOOTH, SMOOTH),
    ("divide", fg.divide, SMOOTH, NONZERO),
    ("power", fg.power, POSITIVE, interval(-2, 2)),
    ("maximum", fg.maximum, grid(0.03), grid(0.07)),
    ("minimum", fg.minimum, grid(0.03), grid(0.07)),
    ("logaddexp", fg.logaddexp, SMOOTH, SMOOTH),
    ("a ** b", lambda a, b: a**b, POSITIVE, interval(-2, 2)),
    ("a / b", lambda a, b: a / b, SMOOTH, NONZERO),
    ("a - b", lambda a, b: a - b, SMOOTH, SMOOTH),
    ("np.maximum", np.maximum, grid(0.03), grid(0.07)),
    ("where(a > b, a, b)", lambda a, b: fg.where(a > b, a, b), grid(0.03), grid(0.07)),
    ("dot", fg.dot, SMOOTH, SMOOTH),  # a 0-d operand: multiplication
]


@pytest.mark.parametrize("name, op, elements_a, elements_b", BINARY, ids=[r[0] for r in BINARY])
@given(data=st.data())
def test_binary_gradients_are_summed_back_to_broadcast_operands(
    name, op, elements_a, elements_b, data
):
    if name == "dot":
        shape_a, shape_b = (), data.draw(small_shapes())
    else:
        shape_a, shape_b = data.draw(broadcast_operands(2))
    a = array(data.draw, shape_a, elements_a)
    b = array(data.draw, shape_b, elements_b)
    c = weights_for(data.draw, output_shape(op, a, b))
    check_gradients(lambda a, b, c: fg.sum(op(a, b) * c), [a, b, c], wrt=[0, 1])


def test_broadcast_gradient_of_a_column_times_a_row_is_its_closed_form():
    x = np.array([[1.0], [2.0], [3.0]])
    y = np.array([0.5, -1.0, 2.0, 4.0])
    c = np.arange(12.0).reshape(3, 4) / 10
    gx, gy = reference(fg.grad(lambda x, y, c: fg.sum(x * y * c), wrt=(0, 1)), x, y, c)
    assert gx.shape == (3, 1) and gy.shape == (4,)
    np.testing.assert_allclose(gx, (c * y).sum(axis=1, keepdims=True), rtol=1e-14)
    np.testing.assert_allclose(gy, (c * x).sum(axis=0), rtol=1e-14)


@given(data=st.data())
def test_where_gradient_flows_to_the_selected_branch_only(data):
    cond_shape, a_shape, b_shape = data.draw(broadcast_operands(3))
    selector = array(data.draw, cond_shape, grid(0.05))
    a = array(data.draw, a_shape, SMOOTH)
    b = array(data.draw, b_shape, SMOOTH)
    c = weights_for(data.draw, np.broadcast_shapes(cond_shape, a_shape, b_shape))

    def f(s, a, b, c):
        return fg.sum(fg.where(s > 0, fg.sin(a), b * b) * c)

    check_gradients(f, [selector, a, b, c], wrt=[1, 2])
    ga, gb, gs = reference(fg.grad(f, wrt=("a", "b", "s")), selector, a, b, c)
    assert not gs.any()  # the condition is not differentiable
    # Same-shape operands: each element's cotangent goes to exactly one branch.
    full = np.broadcast_shapes(cond_shape, a_shape, b_shape)
    s, a, b = (np.broadcast_to(v, full).copy() for v in (selector, a, b))
    ga, gb = reference(fg.grad(f, wrt=("a", "b")), s, a, b, c)
    np.testing.assert_array_equal(ga[s <= 0], 0.0)
    np.testing.assert_array_equal(gb[s > 0], 0.0)
    np.testing.assert_allclose(ga[s > 0], (np.cos(a) * c)[s > 0], rtol=1e-14)
    np.testing.assert_allclose(gb[s <= 0], (2 * b * c)[s <= 0], rtol=1e-14)


@given(data=st.data())
def test_clip_gradient_reaches_the_array_and_both_bounds(data):
    x_shape, lo_shape, hi_shape = data.draw(broadcast_operands(3))
    x = array(data.draw, x_shape, grid(0.03))
    lo = array(data.draw, lo_shape, grid(0.01))
    hi = array(data.draw, hi_shape, grid(0.06))
    c = weights_for(data.draw, np.broadcast_shapes(x_shape, lo_shape, hi_shape))
    check_gradients(
        lambda x, lo, hi, c: fg.sum(fg.clip(x, lo, hi) * c), [x, lo, hi, c], wrt=[0, 1, 2]
    )


def test_ties_share_the_cotangent_evenly():
    # The documented subgradient at a tie: maximum/minimum and max/min reductions split it.
    x = np.array([1.0, 3.0, 3.0, 2.0])
    np.testing.assert_allclose(reference(fg.grad(lambda x: fg.max(x)), x), [0, 0.5, 0.5, 0])
    np.testing.assert_allclose(reference(fg.grad(lambda x: fg.min(-x)), x), [0, -0.5, -0.5, 0])
    g = reference(fg.grad(lambda a, b: fg.sum(fg.maximum(a, b)), wrt=(0, 1)), x, x[::-1].copy())
    np.testing.assert_allclose(g[0], [0, 0.5, 0.5, 1])
    np.testing.assert_allclose(g[1], [1, 0.5, 0.5, 0])


# -- reductions ------------------------------------------------------------------------------
REDUCTIONS = [
    ("sum", fg.sum),
    ("mean", fg.mean),
    ("max", fg.max),
    ("min", fg.min),
    ("logsumexp", fg.logsumexp),
    ("np.sum", np.sum),
    ("np.max", np.max),
]


@pytest.mark.parametrize("name, reduce", REDUCTIONS, ids=[r[0] for r in REDUCTIONS])
@given(data=st.data())
def test_reduction_gradients_for_every_axis_and_keepdims(name, reduce, data):
    shape = data.draw(small_shapes(min_side=1))
    # Distinct values: the max and min are attained once, and ε never changes which.
    x = array(data.draw, shape, grid(0.0), unique=True)
    axis = data.draw(axes_for(len(shape)))
    keepdims = data.draw(st.booleans())

    def op(x):
        return reduce(x, axis=axis, keepdims=keepdims)

    c = weights_for(data.draw, output_shape(op, x))
    check_gradients(lambda x, c: fg.sum(op(x) * c), [x, c], wrt=[0])


@given(data=st.data())
def test_softmax_and_log_softmax_gradients_along_any_axis(data):
    shape = data.draw(small_shapes(min_dims=1, min_side=1))
    x = array(data.draw, shape, SMOOTH)
    axis = data.draw(st.sampled_from([None] + list(range(-len(shape), len(shape)))))
    c = weights_for(data.draw, shape)
    check_gradients(lambda x, c: fg.sum(fg.softmax(x, axis=axis) * c), [x, c], wrt=[0])
    check_gradients(lambda x, c: fg.sum(fg.log_softmax(x, axis=axis) * c), [x, c], wrt=[0])


# -- linear algebra ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "left, right",
    [("k", "k"), ("mk", "k"), ("k", "kn"), ("mk", "kn")],
    ids=["vec@vec", "mat@vec", "vec@mat", "mat@mat"],
)
@pytest.mark.parametrize("form", ["@", "dot"])
@given(data=st.data())
def test_matmul_gradients_for_vectors_and_matrices(left, right, form, data):
    sizes = {name: data.draw(st.integers(1, 3)) for name in "mkn"}
    a = array(data.draw, tuple(sizes[d] for d in left), SMOOTH)
    b = array(data.draw, tuple(sizes[d] for d in right), SMOOTH)
    op = (lambda a, b: a @ b) if form == "@" else fg.dot
    c = weights_for(data.draw, output_shape(op, a, b))
    check_gradients(lambda a, b, c: fg.sum(op(a, b) * c), [a, b, c], wrt=[0, 1])


def test_matmul_gradient_is_its_closed_form():
    a = np.arange(6.0).reshape(2, 3) / 5
    b = np.arange(12.0).reshape(3, 4) / 7 - 1
    c = np.linspace(-1, 1, 8).reshape(2, 4)
    ga, gb = reference(fg.grad(lambda a, b, c: fg.sum((a @ b) * c), wrt=(0, 1)), a, b, c)
    np.testing.assert_allclose(ga, c @ b.T, rtol=1e-14)
    np.testing.assert_allclose(gb, a.T @ c, rtol=1e-14)


# -- layout and indexing --------------------------------------------------------------------------
def reshape_targets(shape):
    size = math.prod(shape)
    targets = [(-1,), (size,), shape + (1,), (1,) + shape]
    if shape:
        targets += [(shape[0], -1), (-1, shape[-1])]
    if len(shape) >= 2:
        targets.append(shape[:-2] + (shape[-2] * shape[-1],))
    return [t for t in targets if not (-1 in t and 0 in t)]  # NumPy refuses those too


LAYOUT = [".T", "transpose(axes)", "reshape", "broadcast_to", "expand_dims", "squeeze"]


def layout_op(name, shape, draw):
    ndim = len(shape)
    if name == ".T":
        return lambda x: x.T
    if name == "transpose(axes)":
        perm = draw(st.permutations(range(ndim)))
        return lambda x: fg.transpose(x, perm)
    if name == "reshape":
        target = draw(st.sampled_from(reshape_targets(shape)))
        return lambda x: x.reshape(target)
    if name == "broadcast_to":
        return lambda x: fg.broadcast_to(x, (2,) + shape)  # size-1 dims of x stretch too
    if name == "expand_dims":
        axis = draw(st.integers(-ndim - 1, ndim))
        return lambda x: fg.expand_dims(x, axis)
    return lambda x: fg.squeeze(x[None, ..., None])


@pytest.mark.parametrize("name", LAYOUT)
@given(data=st.data())
def test_layout_gradients_move_cotangents_back(name, data):
    shape = data.draw(small_shapes())
    x = array(data.draw, shape, SMOOTH)
    op = layout_op(name, shape, data.draw)
    c = weights_for(data.draw, output_shape(op, x))
    check_gradients(lambda x, c: fg.sum(fg.sin(op(x)) * c), [x, c], wrt=[0])


@given(data=st.data())
def test_indexing_gradients_embed_the_cotangent(data):
    shape = data.draw(small_shapes())
    x = array(data.draw, shape, SMOOTH)
    key = data.draw(hnp.basic_indices(shape, min_dims=0, allow_newaxis=True, allow_ellipsis=True))
    c = weights_for(data.draw, np.shape(x[key]))
    check_gradients(lambda x, c: fg.sum(fg.exp(x[key]) * c), [x, c], wrt=[0])


NAMED_KEYS = [
    (slice(None), 0),
    slice(1, None),
    (slice(None), slice(1, None)),
    slice(None, None, -1),
    -1,
    slice(None, None, 2),
    None,
    (Ellipsis, 1),
]


@pytest.mark.parametrize("key", NAMED_KEYS, ids=repr)
def test_gradient_of_a_slice_is_the_cotangent_embedded_in_zeros(key):
    x = np.arange(12.0).reshape(4, 3) / 4
    c = np.linspace(0.5, 2.0, x[key].size).reshape(x[key].shape)
    g = reference(fg.grad(lambda x, c: fg.sum(x[key] * c)), x, c)
    expected = np.zeros_like(x)
    expected[key] = c
    np.testing.assert_array_equal(g, expected)


def test_derivative_of_x_to_the_zeroth_power_is_zero_at_zero():
    x = np.array([0.0, 2.0])
    np.testing.assert_array_equal(reference(fg.grad(lambda x: fg.sum(x**0)), x), [0.0, 0.0])
    p = np.zeros(2)
    g = reference(fg.grad(lambda x, p: fg.sum(x**p)), x, p)
    np.testing.assert_array_equal(g, [0.0, 0.0])


def test_stop_gradient_is_a_constant_for_differentiation():
    x = np.array([[0.5, -1.25], [2.0, 3.0]])
    c = np.array([1.0, -2.0])
    g = reference(fg.grad(lambda x, c: fg.sum(fg.stop_gradient(x) * fg.sin(x) * c)), x, c)
    np.testing.assert_allclose(g, x * np.cos(x) * c, rtol=1e-14)
    g = reference(fg.grad(lambda x: fg.sum(fg.stop_gradient(x * x))), x)
    assert g.shape == x.shape and not g.any()


# -- dtype casts -----------------------------------------------------------------------------
def test_gradient_through_astype_comes_back_in_the_parameter_dtype():
    x = np.array([0.5, -1.25, 2.0])
    c = np.array([1.0, 2.0, -3.0], np.float32)
    g = reference(fg.grad(lambda x, c: fg.sum(x.astype(np.float32) * c)), x, c)
    assert g.dtype == np.float64
    np.testing.assert_array_equal(g, c.astype(np.float64))
    g = reference(fg.grad(lambda x: fg.sum((x > 0).astype(np.float64) * x)), x)
    np.testing.assert_array_equal(g, (x > 0).astype(np.float64))  # the mask has no gradient


# -- wrt, value_and_grad, unused parameters ----------------------------------------------------------
def loss(w, X, y):
    return fg.sum(fg.softplus(-y * (X @ w))) + 0.5 * fg.sum(w * w)


W = np.array([0.5, -0.25, 1.0])
XM = np.arange(12.0).reshape(4, 3) / 6 - 1
Y = np.array([1.0, -1.0, 1.0, -1.0])


def test_wrt_by_name_and_by_position_agree():
    by_name = reference(fg.grad(loss, wrt="X"), W, XM, Y)
    by_position = reference(fg.grad(loss, wrt=1), W, XM, Y)
    by_negative_position = reference(fg.grad(loss, wrt=-2), W, XM, Y)
    np.testing.assert_array_equal(by_name, by_position)
    np.testing.assert_array_equal(by_name, by_negative_position)
    np.testing.assert_allclose(
        by_name, finite_difference_grad(loss, [W, XM, Y], wrt=1), rtol=1e-6, atol=1e-8
    )
    assert by_name.shape == XM.shape


def test_tuple_wrt_gives_a_tuple_of_gradients():
    single = reference(fg.grad(loss, wrt=("w",)), W, XM, Y)
    assert isinstance(single, tuple) and len(single) == 1
    pair = reference(fg.grad(loss, wrt=("w", 2)), W, XM, Y)
    assert isinstance(pair, tuple) and [g.shape for g in pair] == [W.shape, Y.shape]
    np.testing.assert_array_equal(pair[0], single[0])
    np.testing.assert_array_equal(pair[0], reference(fg.grad(loss, wrt=0), W, XM, Y))
    np.testing.assert_allclose(
        pair[1], finite_difference_grad(loss, [W, XM, Y], wrt=2), rtol=1e-6, atol=1e-8
    )


def test_value_and_grad_gives_the_value_and_the_gradient():
    value, grads = reference(fg.value_and_grad(loss, wrt=("w", "X")), W, XM, Y)
    assert float(value) == pytest.approx(float(reference(loss, W, XM, Y)), rel=1e-15)
    np.testing.assert_array_equal(grads[0], reference(fg.grad(loss), W, XM, Y))
    np.testing.assert_array_equal(grads[1], reference(fg.grad(loss, wrt="X"), W, XM, Y))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_parameter_the_output_does_not_depend_on_gets_zeros(dtype):
    def f(x, unused, masked):
        return fg.sum(fg.where(masked > 0, x, 0.0) * x)

    x, unused, masked = (np.ones((2, 3), dtype), np.ones(4, dtype), np.ones(3, dtype))
    gx, gu, gm = reference(fg.grad(f, wrt=(0, 1, 2)), x, unused, masked)
    np.testing.assert_array_equal(gx, 2 * x)
    for g, like in ((gu, unused), (gm, masked)):
        assert g.shape == like.shape and g.dtype == like.dtype
        assert not g.any()


def test_gradient_of_a_non_scalar_is_refused():
    with pytest.raises(fg.TraceError, match="scalar"):
        reference(fg.grad(lambda x: x * 2), np.ones(3))
    with pytest.raises(fg.FusegradError, match="nothing"):
        reference(fg.grad(lambda x: fg.sum(x), wrt="nothing"), np.ones(3))


# -- higher order ---------------------------------------------------------------------------------
def test_grad_of_grad_is_the_second_derivative():
    g = fg.grad(lambda x: (fg.sin(x) * x).sum())  # sin x + x cos x

    def g_dot_v(x, v):
        return (g(x) * v).sum()

    x = np.linspace(-2.0, 2.0, 7)
    v = np.linspace(0.5, 1.5, 7)
    h = reference(fg.grad(g_dot_v), x, v)
    np.testing.assert_allclose(h, v * (2 * np.cos(x) - x * np.sin(x)), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h, finite_difference_grad(g_dot_v, [x, v]), rtol=1e-6, atol=1e-8)


def test_third_derivative_of_sin_is_minus_cos():
    d1 = fg.grad(lambda x: fg.sum(fg.sin(x)))
    d2 = fg.grad(lambda x: fg.sum(d1(x)))
    d3 = fg.grad(lambda x: fg.sum(d2(x)))
    x = np.linspace(-3.0, 3.0, 5)
    np.testing.assert_allclose(reference(d3, x), -np.cos(x), rtol=1e-12, atol=1e-14)


# softplus at 0 and logaddexp at a = b: test_softplus_and_logaddexp_second_derivatives_at_ties.
AWAY_FROM_TIES = {"softplus": away_from_zero(0.05, 6), "logaddexp": grid(0.03)}
UNARY_NAMES = {row[0] for row in UNARY}
SECOND_OPERAND = {name: elements_b for name, _, _, elements_b in BINARY}
SECOND_OPERAND["logaddexp"] = grid(0.07)
SECOND_ORDER = [
    (name, op, AWAY_FROM_TIES.get(name, elements))
    for name, op, elements in UNARY
    if name not in NEEDS_RANK
] + [
    (name, op, AWAY_FROM_TIES.get(name, elements_a))
    for name, op, elements_a, _ in BINARY
    if name in ("multiply", "divide", "power", "maximum", "logaddexp")
]


@pytest.mark.parametrize("name, op, elements", SECOND_ORDER, ids=[r[0] for r in SECOND_ORDER])
@given(data=st.data())
def test_gradients_are_differentiable_again(name, op, elements, data):
    # Every VJP rule is built from traced ops, so its own gradient (a Hessian-vector
    # product) must equal finite differences of the first gradient.
    shape = data.draw(small_shapes())
    x = array(data.draw, shape, elements)
    c = weights_for(data.draw, output_shape(op, x) if name in UNARY_NAMES else shape)
    v = weights_for(data.draw, shape)
    if name in UNARY_NAMES:
        first = fg.grad(lambda x, c: fg.sum(op(x) * c))

        def hvp(x, c, v):
            return fg.sum(first(x, c) * v)

        check_gradients(hvp, [x, c, v], wrt=[0])
        return
    y = array(data.draw, shape, SECOND_OPERAND[name])
    first = fg.grad(lambda x, y, c: fg.sum(op(x, y) * c))  # with respect to x

    def hvp(x, y, c, v):
        return fg.sum(first(x, y, c) * v)

    check_gradients(hvp, [x, y, c, v], wrt=[0, 1])  # ∂²/∂x² and the mixed ∂²/∂x∂y


def test_softplus_and_logaddexp_second_derivatives_at_ties():
    d1 = fg.grad(lambda x: fg.sum(fg.softplus(x)))
    d2 = fg.grad(lambda x: fg.sum(d1(x)))
    x = np.array([0.0, 1.0])
    sigma = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(reference(d1, x), sigma, rtol=1e-14)
    np.testing.assert_allclose(reference(d2, x), sigma * (1 - sigma), rtol=1e-12)
