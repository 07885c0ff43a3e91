"""Logistic regression fitted by Newton's method with a compiled value/gradient/Hessian kernel.

    loss(w) = Σᵢ log(1 + exp(−yᵢ · xᵢᵀw))          labels yᵢ ∈ {−1, +1}
    ∇loss   = −Xᵀ (y ⊙ σ(−y ⊙ Xw))
    ∇²loss  = Xᵀ diag(σ(z) ⊙ (1 − σ(z))) X,  z = y ⊙ Xw

Nobody derives the Hessian here: `fg.compile_hessian` builds it from the loss and
compiles value, gradient and Hessian into one kernel (one pass over X for the
value, the gradient and the row weights, then one symmetric matrix product).
The fit is checked against a hand-written NumPy Newton's method.

    python examples/newton_logistic.py [--rows 100000] [--cols 64]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fusegrad as fg


@fg.compile_hessian
def logistic_loss(w, X, y):
    return np.sum(np.log1p(np.exp(-y * (X @ w))))


def newton(value_grad_hessian, w, X, y, tol=1e-8, max_iter=20):
    """Newton's method, w ← w − H⁻¹ g, until ‖g‖ < tol. Returns (w, Newton steps, ‖g‖)."""
    for steps in range(max_iter + 1):
        _, g, H = value_grad_hessian(w, X, y)
        norm = np.linalg.norm(g)
        if norm < tol or steps == max_iter:
            return w, steps, norm
        w = w - np.linalg.solve(H, g)


def numpy_value_grad_hessian(w, X, y):
    """The closed forms a careful user derives and writes by hand."""
    margins = -y * (X @ w)
    value = np.sum(np.logaddexp(0.0, margins))
    s = 1.0 / (1.0 + np.exp(-margins))  # σ(−y ⊙ Xw)
    grad = -(X.T @ (y * s))
    hess = X.T @ (X * (s * (1.0 - s))[:, None])
    return value, grad, hess


def synthetic_problem(rows, cols, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, cols))
    w_true = rng.standard_normal(cols) / np.sqrt(cols)
    y = np.where(X @ w_true + 0.5 * rng.standard_normal(rows) > 0, 1.0, -1.0)
    return X, y


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--cols", type=int, default=64)
    args = parser.parse_args(argv)
    X, y = synthetic_problem(args.rows, args.cols)
    w0 = np.zeros(args.cols)

    start = time.perf_counter()
    logistic_loss(w0, X, y)  # trace + compile once
    compile_ms = (time.perf_counter() - start) * 1e3

    start = time.perf_counter()
    w, iterations, grad_norm = newton(logistic_loss, w0, X, y)
    fit_ms = (time.perf_counter() - start) * 1e3

    start = time.perf_counter()
    w_numpy, numpy_iterations, _ = newton(numpy_value_grad_hessian, w0, X, y)
    numpy_ms = (time.perf_counter() - start) * 1e3

    print(f"{args.rows} × {args.cols}: converged in {iterations} Newton iterations, "
          f"‖g‖ = {grad_norm:.2e}")
    print(f"fusegrad: compile {compile_ms:.0f} ms, fit {fit_ms:.1f} ms")
    print(f"NumPy (hand-derived Hessian): fit {numpy_ms:.1f} ms in {numpy_iterations} iterations")
    difference = np.max(np.abs(w - w_numpy))
    print(f"max |w − w_numpy| = {difference:.2e}")
    assert grad_norm < 1e-8 and iterations <= 10, "Newton's method did not converge"
    assert difference < 1e-8, "fusegrad and NumPy disagree"


if __name__ == "__main__":
    main()
