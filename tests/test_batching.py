"""vmap, jacobian, hessian and compile_hessian (compiler/batching.py, fusegrad/batched.py).

vmap is checked against a Python loop over the examples for every op family
(through the reference interpreter, and compiled), with the batch axis in every
position; Jacobians and Hessians against finite differences and closed forms;
the matrix-level structure (the logistic Hessian is ONE matrix product,
Xᵀ diag(s) X; the Jacobian of tanh(A x) is diag(1 − t²) A with no product at all)
on the loop IR.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import reference
from test_derivatives import LAYOUT, REDUCTIONS, SMOOTH, UNARY, layout_op, small_shapes

import fusegrad as fg
from fusegrad.batched import compile_hessian, hessian, jacobian, value_grad_hessian, vmap
from fusegrad.compiler import pipeline
from fusegrad.compiler.batching import BATCH
from fusegrad.compiler.loop_walk import walk
from fusegrad.compiler.loopir import (Apply, Buffer, DimValue, Gemm, Load, Loop, Program, Store,
                                      format_expr, format_program)
from fusegrad.compiler.symbolic import Dim
from fusegrad.compiler.symmetric_products import symmetric_products
from fusegrad.compiler.ops import all_ops

BATCH_SIZE = 3


def examples(draw, shape, elements, count=BATCH_SIZE):
    return np.stack([np.array(draw(st.lists(elements, min_size=int(np.prod(shape)),
                                            max_size=int(np.prod(shape)))),
                              dtype=np.float64).reshape(shape) for _ in range(count)])


def loop_over_examples(fn, batched_args, in_axes):
    """The meaning of vmap: fn of each example, stacked along axis 0."""
    size = next(a.shape[ax] for a, ax in zip(batched_args, in_axes) if ax is not None)
    results = []
    for e in range(size):
        args = [a if ax is None else np.take(a, e, axis=ax) for a, ax in zip(batched_args, in_axes)]
        results.append(np.asarray(reference(fn, *args)))
    return np.stack(results)


def check_vmap(fn, batched_args, in_axes, rtol=1e-13):
    expected = loop_over_examples(fn, batched_args, in_axes)
    got = reference(vmap(fn, in_axes=in_axes), *batched_args)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=1e-14)


def test_every_op_has_a_batching_rule():
    assert sorted(BATCH) == all_ops()


@pytest.mark.parametrize("name, op, elements", UNARY, ids=[r[0] for r in UNARY])
@given(data=st.data())
def test_vmap_of_unary_ops_is_the_loop_over_examples(name, op, elements, data):
    min_dims = 1 if name in ("softmax", "log_softmax", "x / x.shape[0]",
                             "x.sum() / x.shape[0]") else 0
    shape = data.draw(small_shapes(min_dims=min_dims, min_side=1))
    xs = examples(data.draw, shape, elements)
    axis = data.draw(st.integers(0, len(shape)))
    check_vmap(op, [np.moveaxis(xs, 0, axis)], (axis,))


@pytest.mark.parametrize("shared", [False, True], ids=["both-batched", "one-shared"])
@pytest.mark.parametrize("op", [np.add, np.multiply, np.divide, np.maximum, fg.logaddexp,
                                lambda a, b: fg.where(a > b, a * b, a - b)],
                         ids=["add", "mul", "div", "maximum", "logaddexp", "where"])
@given(data=st.data())
def test_vmap_of_binary_ops_broadcasts_shared_operands(op, shared, data):
    shape = data.draw(small_shapes(min_side=1))
    xs = examples(data.draw, shape, SMOOTH)
    bshape = shape[data.draw(st.integers(0, len(shape))):]  # a suffix: broadcasts against x
    bs = examples(data.draw, bshape, st.floats(0.5, 2.0))
    b = bs[0] if shared else bs
    check_vmap(op, [xs, b], (0, None if shared else 0))


@pytest.mark.parametrize("name, reduce", REDUCTIONS, ids=[r[0] for r in REDUCTIONS])
@given(data=st.data())
def test_vmap_of_reductions_keeps_the_examples_apart(name, reduce, data):
    shape = data.draw(small_shapes(min_dims=1, min_side=1))
    xs = examples(data.draw, shape, SMOOTH)
    axis = data.draw(st.sampled_from([None] + list(range(-len(shape), len(shape)))))
    keepdims = data.draw(st.booleans())
    check_vmap(lambda x: reduce(x, axis=axis, keepdims=keepdims), [xs], (0,))


@pytest.mark.parametrize("name", LAYOUT)
@given(data=st.data())
def test_vmap_of_layout_ops(name, data):
    shape = data.draw(small_shapes(min_side=1))
    op = layout_op(name, shape, data.draw)
    check_vmap(op, [examples(data.draw, shape, SMOOTH)], (0,))


def test_vmap_of_indexing_and_of_its_gradient():
    xs = np.arange(24.0).reshape(BATCH_SIZE, 8) / 7
    check_vmap(lambda x: x[1::2] * x[-1], [xs], (0,))
    check_vmap(fg.grad(lambda x: fg.sum(fg.sin(x[2:5]))), [xs], (0,))


@pytest.mark.parametrize("a_shape, b_shape", [((4, 3), (3, 2)), ((3,), (3, 2)), ((4, 3), (3,)),
                                              ((3,), (3,))])
@pytest.mark.parametrize("in_axes", [(0, None), (None, 0), (0, 0), (1, None), (None, 1)])
def test_vmap_of_matrix_products_in_every_combination(a_shape, b_shape, in_axes):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((BATCH_SIZE,) + a_shape) if in_axes[0] is not None else \
        rng.standard_normal(a_shape)
    b = rng.standard_normal((BATCH_SIZE,) + b_shape) if in_axes[1] is not None else \
        rng.standard_normal(b_shape)
    if in_axes[0] == 1:
        if a.ndim < 2:
            pytest.skip("no axis 1 to batch")
        a = np.moveaxis(a, 0, 1)
    if in_axes[1] == 1:
        if b.ndim < 2:
            pytest.skip("no axis 1 to batch")
        b = np.moveaxis(b, 0, 1)
    check_vmap(lambda a, b: a @ b, [a, b], in_axes, rtol=1e-12)
    compiled = fg.compile(vmap(lambda a, b: a @ b, in_axes=in_axes))
    np.testing.assert_allclose(compiled(a, b), loop_over_examples(lambda a, b: a @ b, [a, b],
                                                                  in_axes), rtol=1e-12)


def test_per_example_gradients_compile_into_one_kernel():
    def loss(w, x, y):
        return fg.sum(fg.log1p(fg.exp(-y * fg.dot(x, w))))

    rng = np.random.default_rng(1)
    w, X, y = rng.standard_normal(5), rng.standard_normal((40, 5)), np.sign(rng.standard_normal(40))
    per_example = fg.compile(vmap(fg.grad(loss), in_axes=(None, 0, 0)))
    expected = np.stack([reference(fg.grad(loss), w, X[i], y[i]) for i in range(40)])
    np.testing.assert_allclose(per_example(w, X, y), expected, rtol=1e-13)


def test_out_axes_and_nested_vmap():
    xs = np.arange(24.0).reshape(2, 3, 4) / 10

    def f(x):
        return fg.tanh(x) * x.sum()

    inner = vmap(f, in_axes=0)
    np.testing.assert_allclose(reference(vmap(inner, in_axes=0), xs),
                               np.stack([[np.tanh(r) * r.sum() for r in m] for m in xs]))
    moved = reference(vmap(f, in_axes=1, out_axes=1), xs)
    np.testing.assert_allclose(moved, np.stack([f_np(xs[:, j]) for j in range(3)], axis=1))


def f_np(x):
    return np.tanh(x) * x.sum()


def test_vmap_errors_name_the_argument_and_axis():
    x, y = np.ones((3, 2)), np.ones((4, 2))
    with pytest.raises(fg.FusegradError, match="in_axes for argument 0 is 2"):
        fg.compile(vmap(lambda x: x, in_axes=2))(x)
    with pytest.raises(fg.FusegradError, match="maps no argument"):
        fg.compile(vmap(lambda x: x, in_axes=None))(x)
    with pytest.raises(fg.ShapeError):
        fg.compile(vmap(lambda x, y: x + y))(x, y)
    with pytest.raises(fg.FusegradError, match="in_axes has 1 entries for 2 values"):
        fg.compile(vmap(lambda x, y: x + y, in_axes=(0,)))(x, x)


# -- Jacobians ---------------------------------------------------------------------------------
def numeric_jacobian(fn, args, wrt=0, eps=1e-6):
    args = [np.array(a, dtype=np.float64) for a in args]
    x = args[wrt]
    out = np.asarray(reference(fn, *args))
    jac = np.zeros(out.shape + x.shape)
    for k in np.ndindex(x.shape):
        plus = [a.copy() for a in args]
        minus = [a.copy() for a in args]
        plus[wrt][k] += eps
        minus[wrt][k] -= eps
        jac[(...,) + k] = (np.asarray(reference(fn, *plus)) - np.asarray(reference(fn, *minus))) / (2 * eps)
    return jac


JACOBIAN_CASES = [
    ("tanh(A x)", lambda x, A: fg.tanh(A @ x), [(4,), (3, 4)]),
    ("softmax", lambda x, A: fg.softmax(A * x, axis=-1), [(4,), (3, 4)]),
    ("outer", lambda x, A: fg.sin(x)[:, None] * A.T, [(4,), (3, 4)]),
    ("scalar", lambda x, A: fg.sum(A @ fg.exp(x)), [(4,), (3, 4)]),
    ("matrix arg", lambda x, A: fg.exp(A) @ x, [(4,), (3, 4)]),
]


@pytest.mark.parametrize("mode", ["reverse", "forward", "auto"])
@pytest.mark.parametrize("name, fn, shapes", JACOBIAN_CASES, ids=[c[0] for c in JACOBIAN_CASES])
@pytest.mark.parametrize("wrt", [0, 1])
def test_jacobian_matches_finite_differences(name, fn, shapes, mode, wrt):
    rng = np.random.default_rng(2)
    args = [rng.standard_normal(s) * 0.7 for s in shapes]
    expected = numeric_jacobian(fn, args, wrt)
    got = reference(jacobian(fn, wrt=wrt, mode=mode), *args)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8)
    compiled = fg.compile(jacobian(fn, wrt=wrt, mode=mode))(*args)
    np.testing.assert_allclose(compiled, got, rtol=1e-12, atol=1e-14)


def test_jacobian_of_tanh_of_a_product_is_a_scaled_copy_of_A():
    def f(x, A):
        return fg.tanh(A @ x)

    x, A = np.ones(4), np.ones((3, 4))
    program = pipeline.to_loop_ir(fg.compile(jacobian(f)).lower(x, A), blas=True)
    assert not any(isinstance(s, Gemm) for s in walk(program.body))  # diag(1 − t²) A


# -- Hessians ----------------------------------------------------------------------------------
def logistic(w, X, y):
    return fg.sum(fg.log1p(fg.exp(-y * (X @ w))))


def logistic_hessian_closed_form(w, X, y):
    s = 1 / (1 + np.exp(-y * (X @ w)))
    return X.T @ (X * (s * (1 - s))[:, None])


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 2e-4)])
def test_logistic_hessian_is_the_closed_form(dtype, rtol):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 6)).astype(dtype)
    y = np.sign(rng.standard_normal(300)).astype(dtype)
    w = (0.3 * rng.standard_normal(6)).astype(dtype)
    expected = logistic_hessian_closed_form(*(a.astype(np.float64) for a in (w, X, y)))
    H = fg.compile(hessian(logistic))(w, X, y)
    assert H.dtype == dtype and H.shape == (6, 6)
    np.testing.assert_allclose(H, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def test_logistic_hessian_is_one_matrix_product_and_no_identity_matrix():
    w, X, y = np.ones(3), np.ones((5, 3)), np.ones(5)
    program = pipeline.to_loop_ir(fg.compile(value_grad_hessian(logistic)).lower(w, X, y),
                                  blas=True)
    gemms = [s for s in walk(program.body) if isinstance(s, Gemm)]
    assert len(gemms) == 1  # H = Xᵀ diag(s) X
    assert gemms[0].trans_a and gemms[0].b.name == "X"

    def mentions_an_index(expr):
        if isinstance(expr, DimValue):
            return True
        return any(mentions_an_index(a) for a in getattr(expr, "args", ()))

    assert not any(mentions_an_index(s.value) for s in walk(program.body) if hasattr(s, "value"))


def test_compile_hessian_returns_value_gradient_and_hessian_from_one_kernel():
    rng = np.random.default_rng(4)
    X, y, w = rng.standard_normal((200, 5)), np.sign(rng.standard_normal(200)), np.zeros(5) + 0.1
    f = compile_hessian(logistic)
    value, grad, H = f(w, X, y)
    assert f.cache_size == 1
    np.testing.assert_allclose(value, reference(logistic, w, X, y), rtol=1e-13)
    np.testing.assert_allclose(grad, reference(fg.grad(logistic), w, X, y), rtol=1e-13)
    np.testing.assert_allclose(H, logistic_hessian_closed_form(w, X, y), rtol=1e-12)


@pytest.mark.parametrize("fn, shape", [
    (lambda x: fg.sum(fg.sin(x) * fg.exp(x[::-1])), (4,)),
    (lambda x: fg.logsumexp(x @ x.T), (2, 3)),
    (lambda x: fg.sum(fg.tanh(x) ** 3) / x.shape[0], (5,)),
], ids=["sin-exp", "matrix logsumexp", "tanh cubed"])
def test_hessian_is_the_jacobian_of_the_gradient_by_finite_differences(fn, shape):
    x = np.random.default_rng(5).standard_normal(shape) * 0.5
    numeric = numeric_jacobian(fg.grad(fn), [x])
    H = fg.compile(hessian(fn))(x)
    assert H.shape == shape + shape
    np.testing.assert_allclose(H, numeric, rtol=1e-6, atol=1e-7)
    flat = H.reshape(x.size, x.size)
    np.testing.assert_allclose(flat, flat.T, rtol=1e-12, atol=1e-14)


def test_hessian_needs_a_scalar_and_one_parameter():
    with pytest.raises(fg.TraceError, match="scalar"):
        fg.compile(hessian(lambda x: x * 2))(np.ones(3))
    with pytest.raises(fg.FusegradError, match="one parameter"):
        hessian(logistic, wrt=(0, 1))
    with pytest.raises(fg.FusegradError, match="one parameter"):
        compile_hessian(logistic, wrt=("w", "X"))


# -- symmetric products (compiler/symmetric_products.py) ----------------------------------------
def gemms_of(fn, *args):
    program = pipeline.to_loop_ir(fg.compile(fn).lower(*args), blas=True)
    return [s for s in walk(program.body) if isinstance(s, Gemm)]


def test_a_hessian_product_is_marked_symmetric_and_other_products_are_not():
    w, X, y = np.ones(3), np.ones((5, 3)), np.ones(5)
    (gemm,) = gemms_of(hessian(logistic), w, X, y)
    assert gemm.symmetric
    A, B = np.ones((5, 3)), np.ones((5, 3))
    (plain,) = gemms_of(lambda A, B: A.T @ B, A, B)
    assert not plain.symmetric
    s = np.ones(3)  # scaled by column: Aᵀ A diag(s)-like, not Aᵀ diag(s) A
    (by_column,) = gemms_of(lambda A, s: (A * fg.exp(s)).T @ A, A, s)
    assert not by_column.symmetric
    r = np.ones(5)
    (by_row,) = gemms_of(lambda A, r: (A * fg.exp(r)[:, None]).T @ A, A, r)
    assert by_row.symmetric


def sine_sum(w, X):
    return fg.sum(fg.sin(X @ w))  # row weight −sin(z): no sign


def negative_exp_sum(w, X):
    return fg.sum(-2.0 * fg.exp(X @ w))  # row weight −2eᶻ ≤ 0


def test_a_product_with_weights_of_one_sign_is_a_gram_product():
    w, X, y = np.ones(3), np.ones((5, 3)), np.ones(5)
    (gemm,) = gemms_of(hessian(logistic), w, X, y)  # y · σ(−u)σ(u) · y ≥ 0
    assert gemm.symmetric and gemm.gram == 1
    (gemm,) = gemms_of(hessian(sine_sum), w, X)
    assert gemm.symmetric and gemm.gram == 0
    (gemm,) = gemms_of(hessian(negative_exp_sum), w, X)
    assert gemm.symmetric and gemm.gram == -1
    # the simplifier moves a negation out of the sum: −H, H's weights ≥ 0
    (gemm,) = gemms_of(hessian(lambda w, X, y: -logistic(w, X, y)), w, X, y)
    assert gemm.gram == 1
    A, B, r = np.ones((5, 3)), np.ones((5, 3)), np.ones(5)
    (plain,) = gemms_of(lambda A, B: A.T @ B, A, B)
    (by_column,) = gemms_of(lambda A, s: (A * fg.exp(s)).T @ A, A, np.ones(3))
    assert plain.gram == 0 and by_column.gram == 0
    (by_row,) = gemms_of(lambda A, r: (A * fg.exp(r)[:, None]).T @ A, A, r)
    assert by_row.symmetric and by_row.gram == 1


def _row_scaled_program(weight_op):
    """a[i, j] = b[i, j] · e(i) for i < 4, j < 3; c = aᵀ b, by hand."""
    b = Buffer("b", "float64", (4, 3), "input")
    r = Buffer("r", "float64", (4,), "input")
    a = Buffer("a", "float64", (4, 3), "scratch")
    c = Buffer("c", "float64", (3, 3), "output")
    i, j = Dim.symbol("@i"), Dim.symbol("@j")
    weight = Apply(weight_op, (Load(r, i),), "float64")
    store = Store(a, 3 * i + j, Apply("mul", (Load(b, 3 * i + j), weight), "float64"))
    body = [Loop("@i", 4, [Loop("@j", 3, [store])]), Gemm(c, a, b, 3, 3, 4, trans_a=True)]
    return Program("p", [], [b, r], [c], [a], body), store, weight


@pytest.mark.parametrize("weight_op, gram, root", [
    ("exp", 1, "sqrt(exp(r[@i]))"),
    ("neg", 0, None),  # −r: r is an input, of no known sign
    ("logistic", 1, "sqrt(logistic(r[@i]))"),
])
def test_the_gram_rewrite_stores_rows_times_root_weights(weight_op, gram, root):
    program, store, weight = _row_scaled_program(weight_op)
    before = format_program(program)
    rewritten = symmetric_products(program)
    assert format_program(program) == before  # the input program is not changed
    (gemm,) = [s for s in rewritten.body if isinstance(s, Gemm)]
    assert gemm.symmetric and gemm.gram == gram
    (new_store,) = [s for s in walk(rewritten.body) if isinstance(s, Store)]
    if root is None:
        assert new_store is store
    else:
        assert format_expr(new_store.value) == f"mul(b[3*@i + @j], {root})"


def test_a_weight_of_no_positive_value_is_a_negative_gram_product():
    program, _, _ = _row_scaled_program("exp")
    (loop, gemm) = program.body
    (inner,) = loop.body
    (store,) = inner.body
    negative = Apply("neg", (store.value.args[1],), "float64")  # −eʳ ≤ 0
    body = [Loop("@i", 4, [Loop("@j", 3, [Store(store.buffer, store.index, Apply(
        "mul", (store.value.args[0], negative), "float64"))])]), gemm]
    rewritten = symmetric_products(Program("p", [], program.inputs, program.outputs,
                                           program.scratch, body))
    (gemm,) = [s for s in rewritten.body if isinstance(s, Gemm)]
    assert gemm.gram == -1
    (new_store,) = [s for s in walk(rewritten.body) if isinstance(s, Store)]
    assert format_expr(new_store.value) == "mul(b[3*@i + @j], sqrt(neg(neg(exp(r[@i])))))"


def test_only_the_cpu_pipeline_makes_gram_products():
    assert symmetric_products in pipeline.LOOP_PASSES
    assert symmetric_products not in pipeline.CUDA_LOOP_PASSES
    w, X, y = np.ones(3), np.ones((5, 3)), np.ones(5)
    program = pipeline.to_loop_ir(fg.compile(hessian(logistic)).lower(w, X, y), target="cuda")
    assert all(s.gram == 0 for s in walk(program.body) if isinstance(s, Gemm))


def _row_weighted_hessian(X, weights):
    return X.T @ (X * weights[:, None])


HESSIANS = {  # name: (function, its arguments from w, X, y; the closed form)
    "logistic": (logistic, lambda w, X, y: (w, X, y),
                 lambda w, X, y: _row_weighted_hessian(
                     X, y * y / (1 + np.exp(-y * (X @ w))) / (1 + np.exp(y * (X @ w))))),
    "sine": (sine_sum, lambda w, X, y: (w, X),
             lambda w, X, y: _row_weighted_hessian(X, -np.sin(X @ w))),
    "negative exp": (negative_exp_sum, lambda w, X, y: (w, X),
                     lambda w, X, y: _row_weighted_hessian(X, -2 * np.exp(X @ w))),
}


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
@pytest.mark.parametrize("rows, columns", [(1, 1), (0, 4), (300, 5), (300, 200)])
@pytest.mark.parametrize("name", sorted(HESSIANS))
def test_gram_and_symmetric_hessians_are_the_closed_form_and_exactly_symmetric(
        name, rows, columns, dtype, rtol):
    fn, arguments, closed_form = HESSIANS[name]
    rng = np.random.default_rng(rows + columns)
    X = rng.standard_normal((rows, columns)) / np.sqrt(columns)
    y = np.sign(rng.standard_normal(rows)) * rng.uniform(0.5, 2, rows)
    w = 0.5 * rng.standard_normal(columns)
    args = [a.astype(dtype) for a in arguments(w, X, y)]
    expected = closed_form(*(a.astype(np.float64) for a in (w, X, y)))
    H = fg.compile(hessian(fn))(*args)
    assert H.dtype == dtype and H.shape == (columns, columns)
    scale = np.abs(expected).max() if expected.size else 0.0
    np.testing.assert_allclose(H, expected, rtol=rtol, atol=rtol * scale)
    assert np.array_equal(H, H.T)


@pytest.mark.parametrize("columns", [5, 127, 128, 200])
def test_symmetric_products_on_both_sides_of_the_triangle_threshold(columns):
    rng = np.random.default_rng(columns)
    X = rng.standard_normal((300, columns)) / np.sqrt(columns)
    y = np.sign(rng.standard_normal(300))
    w = 0.5 * rng.standard_normal(columns)
    H = fg.compile(hessian(logistic))(w, X, y)
    expected = logistic_hessian_closed_form(w, X, y)
    np.testing.assert_allclose(H, expected, rtol=1e-11, atol=1e-13)
    assert np.array_equal(H, H.T)  # mirrored, not computed twice
