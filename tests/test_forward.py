"""Forward mode and the user-facing transforms jvp, vjp, hvp and check_grad.

The properties, for every differentiable op (each case below exercises one op of
the `JVP` table; a test checks that together they cover all of it):

- the tangent that `fg.jvp` builds (traced, run through the reference interpreter)
  equals central finite differences along the same direction, in float64 (1e-6),
  and the float32 tangent equals the float64 one (1e-3);
- forward and reverse mode describe the same linear map: ⟨ȳ, J ẋ⟩ = ⟨Jᵀ ȳ, ẋ⟩.

Then the transforms themselves: compiled kernels against the reference
interpreter, Hessian-vector products against the closed form of the logistic
loss, derivatives of derivatives in both modes, errors, and check_grad.
Values are float32-representable, so both precisions see the same point, and
arrays have at most 12 elements.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fusegrad as fg
from fusegrad.compiler.ops import NOT_DIFFERENTIABLE
from fusegrad.compiler.ops.tables import JVP
from op_helpers import away_from_zero, interval
from reference import axes_for, reference

MAX_SIZE = 12
MAX_SIDE = 4
EPS = 1e-6


# -- strategies -----------------------------------------------------------------------------
def values(lo, hi):
    return interval(lo, hi)(np.float32)


def grid(offset):
    """Multiples of 1/8 shifted by `offset`: grids with different offsets never tie."""
    return st.integers(-24, 24).map(lambda k: float(np.float32(k / 8 + offset)))


SMOOTH = values(-3, 3)
POSITIVE = values(0.2, 5)
NONZERO = away_from_zero(0.3, 3)(np.float32)
WEIGHTS = away_from_zero(0.25, 1)(np.float32)


@st.composite
def small_shapes(draw, min_dims=0, max_dims=3, min_side=0):
    ndim = draw(st.integers(min_dims, max_dims))
    shape = []
    for _ in range(ndim):
        room = MAX_SIZE // max(1, math.prod(shape))
        shape.append(draw(st.integers(min_side, max(min_side, min(MAX_SIDE, room)))))
    return tuple(shape)


@st.composite
def broadcast_operands(draw, count):
    target = draw(small_shapes())
    result = []
    for _ in range(count):
        kept = draw(st.integers(0, len(target)))
        result.append(tuple(1 if draw(st.booleans()) else d for d in target[len(target) - kept:]))
    return result


def array(draw, shape, elements, unique=False):
    return draw(hnp.arrays(np.float64, shape, elements=elements, unique=unique))


# -- one case per op: draw -> (function, arguments) -----------------------------------------
def unary(op, elements):
    return lambda draw: (op, [array(draw, draw(small_shapes()), elements)])


def binary(op, elements_a, elements_b):
    def case(draw):
        shape_a, shape_b = draw(broadcast_operands(2))
        return op, [array(draw, shape_a, elements_a), array(draw, shape_b, elements_b)]

    return case


def select_case(draw):
    shapes = draw(broadcast_operands(3))
    args = [array(draw, s, e) for s, e in zip(shapes, (grid(0.05), SMOOTH, SMOOTH))]
    return (lambda s, a, b: fg.where(s > 0, fg.sin(a), b * b)), args


def cast_case(draw):
    # float32 → float64 in the float32 run; the bool mask's cast has no tangent.
    x = array(draw, draw(small_shapes()), away_from_zero(0.05, 3)(np.float32))
    return (lambda x: fg.sin(x.astype(np.float64)) * (x > 0).astype(np.float64) + x), [x]


def layout_case(name):
    def case(draw):
        shape = draw(small_shapes())
        x = array(draw, shape, SMOOTH)
        if name == "broadcast_to":
            return (lambda x: fg.sin(fg.broadcast_to(x, (2,) + shape))), [x]
        if name == "reshape":
            return (lambda x: fg.sin(x.reshape(-1) if 0 not in shape else x.reshape(0))), [x]
        if name == "transpose":
            perm = draw(st.permutations(range(len(shape))))
            return (lambda x: fg.sin(fg.transpose(x, perm))), [x]
        key = draw(hnp.basic_indices(shape, min_dims=0, allow_newaxis=True))
        return (lambda x: fg.exp(x[key])), [x]

    return case


def embed_case(draw):
    # The transpose of a slice only appears in derivatives: the gradient of Σ c ⊙ x[k]
    # is c embedded in zeros, linear in c.
    shape = draw(small_shapes(min_dims=1))
    key = draw(hnp.basic_indices(shape, min_dims=0))
    x = array(draw, shape, SMOOTH)
    c = array(draw, np.shape(x[key]), SMOOTH)
    gradient = fg.grad(lambda x, c: fg.sum(fg.sin(x[key]) * c))
    return gradient, [x, c]


def reduction_case(reduce):
    def case(draw):
        shape = draw(small_shapes(min_side=1))
        x = array(draw, shape, grid(0.0), unique=True)  # one extremum, never a tie
        axis, keepdims = draw(axes_for(len(shape))), draw(st.booleans())
        return (lambda x: reduce(x, axis=axis, keepdims=keepdims)), [x]

    return case


def matmul_case(draw):
    left, right = draw(st.sampled_from([("mk", "kn"), ("mk", "k"), ("k", "kn"), ("k", "k")]))
    sizes = {name: draw(st.integers(1, 3)) for name in "mkn"}
    a = array(draw, tuple(sizes[d] for d in left), SMOOTH)
    b = array(draw, tuple(sizes[d] for d in right), SMOOTH)
    return (lambda a, b: a @ b), [a, b]


CASES = {
    "neg": unary(fg.negative, SMOOTH),
    "abs": unary(fg.abs, away_from_zero(0.05, 3)(np.float32)),
    "exp": unary(fg.exp, SMOOTH),
    "log": unary(fg.log, POSITIVE),
    "log1p": unary(fg.log1p, values(-0.8, 5)),
    "expm1": unary(fg.expm1, SMOOTH),
    "sqrt": unary(fg.sqrt, POSITIVE),
    "tanh": unary(fg.tanh, SMOOTH),
    "sin": unary(fg.sin, SMOOTH),
    "cos": unary(fg.cos, SMOOTH),
    "logistic": unary(fg.sigmoid, values(-6, 6)),
    "add": binary(fg.add, SMOOTH, SMOOTH),
    "sub": binary(fg.subtract, SMOOTH, SMOOTH),
    "mul": binary(fg.multiply, SMOOTH, SMOOTH),
    "div": binary(fg.divide, SMOOTH, NONZERO),
    "pow": binary(fg.power, POSITIVE, values(-2, 2)),
    "maximum": binary(fg.maximum, grid(0.03), grid(0.07)),
    "minimum": binary(fg.minimum, grid(0.03), grid(0.07)),
    "logaddexp": binary(fg.logaddexp, SMOOTH, SMOOTH),
    "select": select_case,
    "cast": cast_case,
    "broadcast_to": layout_case("broadcast_to"),
    "reshape": layout_case("reshape"),
    "transpose": layout_case("transpose"),
    "slice": layout_case("slice"),
    "embed": embed_case,
    "reduce_sum": reduction_case(fg.sum),
    "reduce_max": reduction_case(fg.max),
    "reduce_min": reduction_case(fg.min),
    "matmul": matmul_case,
}


# -- the checks -----------------------------------------------------------------------------
def with_parameters(fn, count):
    """fn(*args) with a signature of `count` named parameters (what fg.compile traces)."""
    fn.__signature__ = inspect.Signature(
        [inspect.Parameter(f"a{k}", inspect.Parameter.POSITIONAL_OR_KEYWORD)
         for k in range(count)])
    return fn


def jvp_of(fn, count):
    """(*primals, *tangents) -> fg.jvp(fn, primals, tangents), for the reference interpreter."""
    return with_parameters(lambda *args: fg.jvp(fn, args[:count], args[count:]), 2 * count)


def pullback_of(fn, count):
    """(*primals, cotangent) -> the cotangents of fg.vjp(fn, *primals)."""

    def pulled(*args):
        _, vjp_fn = fg.vjp(fn, *args[:count])
        return vjp_fn(args[count])

    return with_parameters(pulled, count + 1)


def central_difference(fn, args, tangents):
    plus = [a + EPS * t for a, t in zip(args, tangents)]
    minus = [a - EPS * t for a, t in zip(args, tangents)]
    return (np.asarray(reference(fn, *plus)) - np.asarray(reference(fn, *minus))) / (2 * EPS)


def scale_of(a) -> float:
    a = np.asarray(a)
    return 1.0 + (float(np.abs(a).max()) if a.size else 0.0)


def check_forward_mode(fn, args, draw):
    count = len(args)
    args = [np.asarray(a, np.float64) for a in args]
    tangents = [array(draw, a.shape, WEIGHTS) for a in args]
    value, tangent = reference(jvp_of(fn, count), *args, *tangents)
    np.testing.assert_array_equal(value, reference(fn, *args))
    expected = central_difference(fn, args, tangents)
    assert tangent.dtype == np.float64 and tangent.shape == expected.shape
    np.testing.assert_allclose(tangent, expected, rtol=1e-6, atol=1e-6 * scale_of(expected))

    args32 = [a.astype(np.float32) for a in args]
    value32, tangent32 = reference(jvp_of(fn, count), *args32, *[t.astype(np.float32)
                                                                   for t in tangents])
    assert tangent32.dtype == value32.dtype and tangent32.shape == tangent.shape
    np.testing.assert_allclose(tangent32, tangent, rtol=1e-3, atol=1e-3 * scale_of(tangent))

    # ⟨ȳ, J ẋ⟩ = ⟨Jᵀ ȳ, ẋ⟩: both modes are the same linear map.
    cotangent = array(draw, tangent.shape, WEIGHTS)
    bars = reference(pullback_of(fn, count), *args, cotangent)
    assert [b.shape for b in bars] == [a.shape for a in args]
    forward_side = float(np.sum(cotangent * tangent))
    reverse_side = sum(float(np.sum(b * t)) for b, t in zip(bars, tangents))
    assert forward_side == pytest.approx(reverse_side, rel=1e-10, abs=1e-10 * scale_of(tangent))


@pytest.mark.parametrize("op", sorted(CASES))
@given(data=st.data())
def test_jvp_matches_finite_differences_and_the_vjp(op, data):
    fn, args = CASES[op](data.draw)
    check_forward_mode(fn, args, data.draw)


def ops_in(fn, args) -> set[str]:
    compiled = fg.compile(fn)
    ops = set()
    for dtype in (np.float64, np.float32):
        function, _ = compiled.trace(*[np.asarray(a, dtype) for a in args])
        ops |= {node.op for node in function.nodes()}
    return ops


def test_every_op_with_a_forward_rule_has_a_case_that_uses_it():
    differentiable = {op for op, rule in JVP.items() if rule is not NOT_DIFFERENTIABLE}
    assert differentiable == set(CASES), (differentiable ^ set(CASES))
    search = settings(max_examples=100, phases=[Phase.generate], database=None)
    for op, case in CASES.items():
        # Some draws leave the op out (the transpose of a vector is the vector itself).
        find(st.composite(case)(), lambda drawn, op=op: op in ops_in(*drawn), settings=search)


# -- ops without a derivative ---------------------------------------------------------------
def test_masks_sign_and_stop_gradient_have_zero_tangents():
    x = np.array([-1.5, 0.25, 2.0])
    v = np.array([1.0, -2.0, 0.5])

    def f(x):
        return fg.sign(x) + fg.stop_gradient(x * x) + (x > 0).astype(np.float64) + x.shape[0]

    _, tangent = reference(jvp_of(f, 1), x, v)
    np.testing.assert_array_equal(tangent, np.zeros(3))
    _, tangent = reference(jvp_of(lambda x: fg.stop_gradient(x) * x, 1), x, v)
    np.testing.assert_array_equal(tangent, x * v)  # the stopped factor is a constant


def test_a_bool_output_has_an_all_false_tangent_and_an_unused_input_none():
    x = np.array([-1.5, 0.25, 2.0])
    mask, tangent = fg.jvp(lambda x: x > 0, (x,), (np.ones(3),))
    np.testing.assert_array_equal(mask, x > 0)
    assert tangent.dtype == np.bool_ and not tangent.any()
    _, tangent = fg.jvp(lambda x, y: fg.sin(x) * y, (x, x), (None, np.ones(3)))
    np.testing.assert_allclose(tangent, np.sin(x), rtol=1e-15)


def test_the_tangent_at_a_tie_is_the_mean_like_the_vjp_shares():
    x = np.array([1.0, 3.0, 3.0, 2.0])
    v = np.array([1.0, 2.0, 4.0, 8.0])
    assert float(fg.jvp(lambda x: fg.max(x), (x,), (v,))[1]) == 3.0
    # maximum([1, 3, 3, 2], [2, 3, 3, 1]) with tangents v and 2v
    tangent = fg.jvp(lambda a, b: fg.maximum(a, b), (x, x[::-1].copy()), (v, 2 * v))[1]
    np.testing.assert_array_equal(tangent, [2.0, 3.0, 6.0, 8.0])


# -- fg.jvp and fg.vjp on NumPy arrays: compiled kernels ---------------------------------------
def model(w, X, y):
    z = X @ w
    return (fg.sum(fg.softplus(-y * z)), (fg.tanh(z), z[:2] * w[0]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_jvp_and_vjp_equal_the_reference(dtype):
    rng = np.random.default_rng(0)
    w, X, y = (rng.standard_normal(3), rng.standard_normal((5, 3)), np.sign(rng.normal(size=5)))
    w, X, y = (a.astype(dtype) for a in (w, X, y))
    tangents = tuple(rng.standard_normal(a.shape).astype(dtype) for a in (w, X, y))
    rtol = 1e-4 if dtype == np.float32 else 1e-12

    value, tangent = fg.jvp(model, (w, X, y), tangents)
    expected_value, expected_tangent = reference(jvp_of(model, 3), w, X, y, *tangents)
    for got, want in zip(_leaves(value, tangent), _leaves(expected_value, expected_tangent)):
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)

    out, vjp_fn = fg.vjp(model, w, X, y)
    for got, want in zip(_leaves(out), _leaves(expected_value)):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)
    cotangent = (dtype(2.0), (np.ones(5, dtype), np.arange(2, dtype=dtype)))
    bars = vjp_fn(cotangent)
    expected = reference(lambda w, X, y, a, b, c: pullback_of(model, 3)(w, X, y, (a, (b, c))),
                         w, X, y, *_leaves(cotangent))
    assert isinstance(bars, tuple) and len(bars) == 3
    for got, want, primal in zip(bars, expected, (w, X, y)):
        assert got.dtype == dtype and got.shape == primal.shape
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)


def _leaves(*trees):
    found = []
    for tree in trees:
        if isinstance(tree, tuple):
            found.extend(_leaves(*tree))
        else:
            found.append(np.asarray(tree))
    return found


def test_jvp_and_vjp_inside_a_compiled_function():
    def directional(x, v, c):
        value, tangent = fg.jvp(lambda x: fg.sin(x) * x, (x,), (v,))
        _, vjp_fn = fg.vjp(lambda x: fg.sin(x) * x, x)
        (bar,) = vjp_fn(c)
        return value, tangent, bar

    x, v, c = np.linspace(-2, 2, 6), np.linspace(0.5, 1, 6), np.linspace(1, -1, 6)
    value, tangent, bar = fg.compile(directional)(x, v, c)
    slope = np.sin(x) + x * np.cos(x)
    np.testing.assert_allclose(value, np.sin(x) * x, rtol=1e-15)
    np.testing.assert_allclose(tangent, slope * v, rtol=1e-14)
    np.testing.assert_allclose(bar, slope * c, rtol=1e-14)


def test_a_closed_over_value_is_a_constant_even_when_it_is_the_primal():
    # d/dy (y·x) at y = x is x, not 2x: the primal is a fresh variable inside fg.jvp.
    x, v = np.array([1.0, -2.0, 3.0]), np.array([0.5, 1.0, 2.0])
    tangent = reference(lambda x, v: fg.jvp(lambda y: y * x, (x,), (v,))[1], x, v)
    np.testing.assert_array_equal(tangent, x * v)
    bar = reference(lambda x, c: fg.vjp(lambda y: y * x, x)[1](c)[0], x, v)
    np.testing.assert_array_equal(bar, x * v)


# -- Hessian-vector products ------------------------------------------------------------------
def logistic_loss(w, X, y):
    return fg.sum(fg.softplus(-y * (X @ w)))


def logistic_data(dtype, m=40, n=6, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, n)).astype(dtype)
    y = np.sign(rng.standard_normal(m)).astype(dtype)
    w = (rng.standard_normal(n) / 2).astype(dtype)
    v = rng.standard_normal(n).astype(dtype)
    return w, X, y, v


def logistic_hvp(w, X, y, v):
    """Xᵀ diag(σ(z)(1 − σ(z))) X v with z = −y ⊙ Xw, in float64."""
    w, X, y, v = (np.asarray(a, np.float64) for a in (w, X, y, v))
    z = -y * (X @ w)
    s = np.exp(-np.logaddexp(0, -z)) * np.exp(-np.logaddexp(0, z))  # σ(z)σ(−z) = σ(1 − σ)
    return X.T @ (s * (X @ v))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hvp_of_the_logistic_loss_is_its_closed_form(dtype):
    w, X, y, v = logistic_data(dtype)
    expected = logistic_hvp(w, X, y, v)
    rtol = 1e-4 if dtype == np.float32 else 1e-12
    compiled = fg.compile(fg.hvp(logistic_loss))
    for result in (compiled(w, X, y, v), fg.hvp(logistic_loss, wrt="w")(w, X, y, v),
                   reference(fg.hvp(logistic_loss), w, X, y, v)):
        assert result.dtype == dtype and result.shape == w.shape
        np.testing.assert_allclose(result, expected, rtol=rtol, atol=rtol * scale_of(expected))


def test_hvp_differentiates_the_simplified_gradient_so_overflow_is_no_nan():
    # Two rows with X w = ±1000, where eᵘ overflows: the gradient of log1p(eᵘ) as built,
    # eᵘ/(eᵘ + 1), is inf/inf there; fg.jvp differentiates the simplified σ(u) instead.
    def loss(w, X, y):
        return np.sum(np.log1p(np.exp(-y * (X @ w))))

    w, X, y, v = logistic_data(np.float64)
    X[0] = 1000 * w / (w @ w)
    X[1] = -X[0]
    y[:2] = 1.0
    expected = logistic_hvp(w, X, y, v)
    for result in (fg.hvp(loss)(w, X, y, v),
                   fg.jvp(fg.grad(loss), (w, X, y), (v, None, None))[1]):
        assert np.isfinite(result).all()
        np.testing.assert_allclose(result, expected, rtol=1e-10, atol=1e-12)


def test_hvp_with_respect_to_another_parameter_and_its_signature():
    w, X, y, _ = logistic_data(np.float64, m=4, n=3)
    hvp = fg.hvp(logistic_loss, wrt="X")
    assert list(inspect.signature(hvp).parameters) == ["w", "X", "y", "v"]
    V = np.linspace(-1, 1, X.size).reshape(X.shape)
    # ∇_X f = −(y ⊙ σ(z)) wᵀ is linear in σ(z): H V = −(y ⊙ σ'(z) ⊙ (−y ⊙ V w)) wᵀ
    z = -y * (X @ w)
    s = 1 / (1 + np.exp(-z))
    expected = np.outer(s * (1 - s) * (V @ w), w)
    np.testing.assert_allclose(hvp(w, X, y, V), expected, rtol=1e-12, atol=1e-14)


# -- higher order -----------------------------------------------------------------------------
def cubic(x):
    return fg.sum(fg.sin(x) * x * x)


def cubic_hessian(x):
    # f = Σ x² sin x:  f'' = 2 sin x + 4x cos x − x² sin x (diagonal)
    return np.diag(2 * np.sin(x) + 4 * x * np.cos(x) - x * x * np.sin(x))


def test_second_derivatives_agree_in_every_mode():
    x = np.linspace(-2.0, 2.0, 5)
    v = np.linspace(0.5, 1.5, 5)
    u = np.linspace(1.0, -1.0, 5)
    H = cubic_hessian(x)

    def jvp_of_jvp(x, u, v):  # uᵀ H v
        return fg.jvp(lambda x: fg.jvp(cubic, (x,), (v,))[1], (x,), (u,))[1]

    def grad_of_jvp(x, v):  # ∇(∇f·v) = H v
        return fg.grad(lambda x: fg.jvp(cubic, (x,), (v,))[1])(x)

    def jvp_of_grad(x, v):  # H v, forward over reverse
        return fg.jvp(fg.grad(cubic), (x,), (v,))[1]

    np.testing.assert_allclose(reference(jvp_of_jvp, x, u, v), u @ H @ v, rtol=1e-12)
    for f in (grad_of_jvp, jvp_of_grad, fg.hvp(cubic)):
        np.testing.assert_allclose(reference(f, x, v), H @ v, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(fg.compile(f)(x, v), H @ v, rtol=1e-12, atol=1e-14)


def test_third_derivative_of_sin_by_forward_mode_is_minus_cos():
    x = np.linspace(-3.0, 3.0, 5)

    def d1(x):
        return fg.jvp(fg.sin, (x,), (1.0,))[1]  # a number fills the primal's shape

    def d2(x):
        return fg.jvp(d1, (x,), (1.0,))[1]

    def d3(x):
        return fg.jvp(d2, (x,), (1.0,))[1]

    np.testing.assert_allclose(reference(d3, x), -np.cos(x), rtol=1e-12, atol=1e-14)
    # reverse over forward over reverse
    g = fg.grad(lambda x: fg.sum(d2(x)))
    np.testing.assert_allclose(reference(g, x), -np.cos(x), rtol=1e-12, atol=1e-14)


# -- errors -------------------------------------------------------------------------------------
def test_tangents_of_the_wrong_shape_or_dtype_are_named():
    w, X, y, _ = logistic_data(np.float64, m=4, n=3)
    zeros = (np.zeros(3), np.zeros((4, 3)), np.zeros(4))
    with pytest.raises(fg.ShapeError, match=r"tangent for argument 'X'.*\(4, 3\)"):
        fg.jvp(logistic_loss, (w, X, y), (zeros[0], np.zeros((3, 4)), zeros[2]))
    with pytest.raises(fg.DTypeError, match=r"tangent for argument 'w'.*float32.*float64"):
        fg.jvp(logistic_loss, (w, X, y), (zeros[0].astype(np.float32),) + zeros[1:])
    with pytest.raises(fg.ShapeError, match=r"tangent for argument 'w'.*expected \(w_0,\)"):
        fg.compile(lambda w, X, y, t: fg.jvp(logistic_loss, (w, X, y), (t, None, None))[1])(
            w, X, y, np.zeros((3, 1)))
    with pytest.raises(fg.FusegradError, match="tuple"):
        fg.jvp(fg.sin, w, w)
    with pytest.raises(fg.FusegradError, match="2 primals but 1 tangents"):
        fg.jvp(fg.multiply, (w, w), (w,))
    with pytest.raises(fg.ShapeError, match=r"v \(a direction for 'w'\).*\(3,\)"):
        fg.hvp(logistic_loss)(w, X, y, np.zeros(4))


def test_cotangents_must_match_the_output():
    w, X, y, _ = logistic_data(np.float64, m=4, n=3)
    _, vjp_fn = fg.vjp(model, w, X, y)
    with pytest.raises(fg.FusegradError, match="structure"):
        vjp_fn(np.ones(4))
    with pytest.raises(fg.ShapeError, match=r"cotangent of output 1 has shape \(3,\)"):
        vjp_fn((1.0, (np.ones(3), np.ones(2))))
    zeros = vjp_fn((1.0, (None, None)))
    np.testing.assert_allclose(zeros[0], reference(fg.grad(logistic_loss), w, X, y), rtol=1e-12)


# -- check_grad -----------------------------------------------------------------------------------
def test_check_grad_passes_a_correct_gradient_and_flags_a_wrong_one():
    w, X, y, _ = logistic_data(np.float64)
    assert fg.check_grad(logistic_loss, w, X, y) < 1e-6
    assert fg.check_grad(logistic_loss, w, X, y, wrt=("w", "X"), directions=2) < 1e-6
    assert fg.check_grad(cubic, np.linspace(-2, 2, 7)) < 1e-6
    w32, X32, y32 = (a.astype(np.float32) for a in (w, X, y))
    assert fg.check_grad(logistic_loss, w32, X32, y32) < 1e-2

    def wrong(x):  # stop_gradient drops half of the derivative of Σ x²
        return fg.sum(fg.stop_gradient(x) * x)

    assert fg.check_grad(wrong, np.linspace(0.5, 2, 4)) > 0.1
    error = fg.check_grad(wrong, np.linspace(0.5, 2, 4), directions=1, seed=3)
    assert error == pytest.approx(0.5, rel=1e-6)  # |g·d − 2g·d| / |2g·d|


def test_check_grad_of_a_nan_gradient_is_nan_and_refuses_non_scalars():
    assert math.isnan(fg.check_grad(lambda x: fg.sum(fg.sqrt(x)), np.array([-1.0, 1.0])))
    with pytest.raises(fg.FusegradError, match="scalar"):
        fg.check_grad(lambda x: x * 2, np.ones(3))
