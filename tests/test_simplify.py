"""Graph simplification (compiler/simplify.py): smaller derivative graphs, same values.

Node counts of a few derivative graphs are pinned, so that a regression in
simplification (or a derivative rule that grows the graph) shows here.
"""

import numpy as np
import pytest
from reference import reference

import fusegrad as fg
from fusegrad.compiler.interpret import evaluate
from fusegrad.compiler.ir import toposort
from fusegrad.compiler.simplify import simplify


def logistic(w, X, y):
    return fg.sum(fg.log1p(fg.exp(-y * (X @ w))))


def graph(fn, *args):
    return fg.compile(fn).lower(*args)


def counts(fn, *args):
    function = graph(fn, *args)
    return len(function.nodes()), len(simplify(function).nodes())


def ops(function):
    return [n.op for n in toposort(list(function.outputs))]


W, X, Y = np.ones(3), np.ones((4, 3)), np.ones(4)


@pytest.mark.parametrize("fn, args, expected", [
    (fg.value_and_grad(logistic), (W, X, Y), 18),
    (fg.value_grad_hessian(logistic), (W, X, Y), 28),
    (fg.grad(lambda x: fg.sum(fg.tanh(x) * fg.exp(-x * x) + fg.log1p(x * x))), (np.ones(5),), 20),
], ids=["logistic gradient", "logistic hessian", "W2 chain gradient"])
def test_derivative_graph_sizes(fn, args, expected):
    before, after = counts(fn, *args)
    assert after <= before
    assert after == expected, f"{before} nodes before simplification, {after} after"


def test_logistic_gradient_is_minus_xt_y_sigma():
    simplified = simplify(graph(fg.grad(logistic), W, X, Y))
    found = ops(simplified)
    assert found.count("logistic") == 1 and "div" not in found and "exp" not in found
    assert simplified.outputs[0].op == "neg"  # −Xᵀ(y ⊙ σ(−y ⊙ X w))


def test_simplified_gradients_stay_finite_where_the_rule_by_rule_form_overflows():
    # log1p(eᵘ) at u = 800: the rule-by-rule derivative is eᵘ/(eᵘ + 1) = inf/inf.
    w, X, y = np.array([1.0]), np.array([[800.0], [-800.0]]), np.array([-1.0, 1.0])
    value, grad = fg.compile(fg.value_and_grad(logistic))(w, X, y)
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(grad, [1600.0], rtol=1e-15)


@pytest.mark.parametrize("fn", [
    lambda x: fg.exp(x) / (fg.exp(x) + 1.0),
    lambda x: 1.0 / (1.0 + fg.exp(x)),
    lambda x: (1.0 / (x * x + 1.0)) * fg.sin(x),
    lambda x: -(-x) + x + x,
    lambda x: 1.0 - fg.sigmoid(x),
    lambda x: (x / 2.0) / (x * x + 3.0),
    lambda x: fg.exp(-x) * fg.sigmoid(x),
    lambda x: (-x).T * fg.cos(x),
    lambda x: fg.transpose(x) * fg.sum(x, axis=1),
], ids=["exp ratio", "reciprocal", "reciprocal times", "negations", "one minus sigma",
        "quotient of quotient", "sigma times exp", "negated transpose", "scaled transpose"])
def test_simplified_graphs_compute_the_same_values(fn):
    x = np.linspace(-3, 3, 9).reshape(3, 3) + 0.1
    expected = reference(fn, x)
    function = graph(fn, x)
    simplified = simplify(function)
    np.testing.assert_allclose(evaluate(simplified, [x])[0], expected, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(fg.compile(fn)(x), expected, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("fn, shape", [
    (lambda x: fg.sum(fg.broadcast_to(x, (4,) + x.shape), axis=0), (3,)),
    (lambda x: fg.sum(fg.broadcast_to(x, (2, 3)), axis=1), (2, 1)),
    (lambda x: fg.sum(fg.broadcast_to(x, (2, 3))), ()),
    (lambda x: fg.sum(x * fg.ones_like(x)[:, None], axis=1), (3,)),
], ids=["new axis", "size-1 axis", "scalar", "mixed"])
def test_sums_of_broadcasts_are_products(fn, shape):
    x = np.linspace(0.5, 2.0, int(np.prod(shape))).reshape(shape)
    expected = reference(fn, x)
    simplified = simplify(graph(fn, x))
    np.testing.assert_allclose(evaluate(simplified, [x])[0], expected, rtol=1e-15)
    np.testing.assert_allclose(fg.compile(fn)(x), expected, rtol=1e-15)


def test_second_derivative_of_softplus_is_accurate_where_sigma_is_one():
    # d²/dx² softplus(x) = σ(x)(1 − σ(x)): at x = 24 that is 3.8e-11, which the
    # difference form x − x·e^(a − y) of the raw derivative loses to cancellation.
    x = np.array([-30.0, -24.0, 0.0, 24.0, 30.0])
    H = fg.compile(fg.hessian(lambda x: fg.sum(fg.softplus(x))))(x)
    exact = 1.0 / (1.0 + np.exp(-x)) / (1.0 + np.exp(x))  # σ(x)σ(−x), no cancellation
    np.testing.assert_allclose(np.diag(H), exact, rtol=1e-13)
