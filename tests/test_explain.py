"""`CompiledFunction.explain`: derivatives in matrix notation, from the simplified graph."""

import numpy as np

import fusegrad as fg


def logistic(w, X, y):
    return np.sum(np.log1p(np.exp(-y * (X @ w))))


ARGS = (np.ones(3), np.ones((4, 3)), np.ones(4))


def test_logistic_gradient_reads_as_its_closed_form():
    text = fg.compile_grad(logistic).explain(*ARGS)
    assert text.splitlines() == [
        "logistic = Σ log1p(exp(u))",
        "∇_w      = −Xᵀ (σ(u) ⊙ y)",
        "where",
        "  u = −(y ⊙ X w)",
    ]


def test_logistic_hessian_is_xt_diag_x():
    text = fg.compile_hessian(logistic).explain(*ARGS)
    hessian = next(line for line in text.splitlines() if line.startswith("∇²_w"))
    assert hessian.endswith("= Xᵀ diag(y ⊙ s ⊙ σ(u) ⊙ y) X")
    assert "  s = σ(v)" in text and "  v = −u" in text


def test_jacobian_of_tanh_of_a_product():
    def f(x, A):
        return np.tanh(A @ x)

    text = fg.compile(fg.jacobian(f)).explain(np.ones(4), np.ones((3, 4)))
    assert text.splitlines() == ["∂/∂x = diag(1 − u ⊙ u) A", "where", "  u = tanh(A x)"]


def test_latex_uses_the_same_structure():
    text = fg.compile_hessian(logistic).explain(*ARGS, latex=True)
    assert text.startswith("\\begin{aligned}") and text.endswith("\\end{aligned}")
    assert "\\nabla_{w} &= -X^\\top" in text
    assert "\\nabla^2_{w} &= X^\\top \\, \\operatorname{diag}(" in text
    assert "s &= \\sigma(v)" in text


def test_plain_functions_and_several_outputs_are_labelled():
    def two(x):
        return np.exp(x) * 2.0, np.sum(x / x.shape[0])

    text = fg.compile(two).explain(np.ones(5))
    assert text.splitlines() == ["out0 = 2 exp(x)", "out1 = Σ (x / x_0)"]
    assert fg.compile(lambda x: x.T @ x).explain(np.ones((3, 2))) == "f = xᵀ x"


def test_explain_shows_the_gradients_of_each_parameter():
    def mlp(W, b, X):
        return np.sum(np.tanh(X @ W + b))

    text = fg.compile_grad(mlp, wrt=("W", "b")).explain(np.ones((3, 2)), np.ones(2), np.ones((4, 3)))
    lines = text.splitlines()
    assert lines[1].startswith("∇_W = Xᵀ") and lines[2].startswith("∇_b = sum(")
