"""A nonlinear least-squares fit by SciPy's trust-region method, with compiled derivatives.

The model is a damped oscillation with five parameters θ = (a, k, ω, φ, c),

    m(t; θ) = a · exp(−k t) · cos(ω t + φ) + c
    loss(θ) = ½ Σᵢ (m(tᵢ; θ) − yᵢ)²

whose Hessian is not positive definite away from the fit (the phase and frequency make the
loss non-convex), which is what `method="trust-exact"` is for: it solves each trust-region
subproblem with the exact Hessian. Nobody derives a derivative here: `fg.compile_grad`
gives SciPy `fun` and `jac` from one kernel (`jac=True`), and `fg.compile(fg.hessian(...))`
gives `hess`. The fit is checked against SciPy's own `least_squares`, which knows nothing
of these kernels (Levenberg–Marquardt with a finite-difference Jacobian).

    python examples/scipy_trust_exact.py [--points 2000] [--noise 0.05]

Needs SciPy (`pip install fusegrad[scipy]`).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.optimize import least_squares, minimize

import fusegrad as fg


def damped_oscillation(theta, t):
    a, k, omega, phi, c = theta[0], theta[1], theta[2], theta[3], theta[4]
    return a * np.exp(-k * t) * np.cos(omega * t + phi) + c


def loss(theta, t, y):
    residual = damped_oscillation(theta, t) - y
    return 0.5 * np.sum(residual * residual)


loss_and_gradient = fg.compile_grad(loss)  # θ, t, y -> (loss, ∇loss): SciPy's jac=True
hessian = fg.compile(fg.hessian(loss))  # θ, t, y -> ∇²loss


def synthetic_data(points, noise, seed=0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 10.0, points)
    theta_true = np.array([2.0, 0.3, 1.7, 0.4, 0.5])
    y = damped_oscillation(theta_true, t) + noise * rng.standard_normal(points)
    return t, y, theta_true


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--noise", type=float, default=0.05)
    args = parser.parse_args(argv)
    t, y, theta_true = synthetic_data(args.points, args.noise)
    theta0 = np.array([1.0, 0.1, 1.5, 0.0, 0.0])  # a rough guess: frequency within 15%

    start = time.perf_counter()
    loss_and_gradient(theta0, t, y)  # trace + compile both kernels once
    hessian(theta0, t, y)
    compile_ms = (time.perf_counter() - start) * 1e3

    start = time.perf_counter()
    fit = minimize(
        loss_and_gradient, theta0, args=(t, y), jac=True, hess=hessian, method="trust-exact"
    )
    fit_ms = (time.perf_counter() - start) * 1e3

    def residuals(theta):
        return damped_oscillation(theta, t) - y

    reference = least_squares(residuals, theta0, method="lm", xtol=1e-15, ftol=1e-15)

    gradient_norm = np.linalg.norm(fit.jac)
    difference = np.max(np.abs(fit.x - reference.x))
    eigenvalues = np.linalg.eigvalsh(hessian(fit.x, t, y))
    print(
        f"trust-exact: {fit.message} in {fit.nit} iterations "
        f"({fit.nfev} loss/gradient and {fit.nhev} Hessian calls), ‖∇‖ = {gradient_norm:.2e}"
    )
    print(f"fusegrad: compile {compile_ms:.0f} ms, fit {fit_ms:.1f} ms")
    print("θ fitted (a, k, ω, φ, c):", np.array2string(fit.x, precision=4))
    print("θ true                  :", np.array2string(theta_true, precision=4))
    print(f"max |θ − θ_least_squares| = {difference:.2e}")
    assert fit.success and gradient_norm < 1e-6, "trust-exact did not converge"
    assert eigenvalues[0] > 0, "the fit is not a minimum (the Hessian there is not definite)"
    assert difference < 1e-6, "trust-exact and least_squares disagree"
    assert np.max(np.abs(fit.x - theta_true)) < 10 * args.noise, "the fit missed the model"


if __name__ == "__main__":
    main()
