"""The benchmark workloads as data: sizes, targets, the functions each framework traces.

A workload is one kind of computation (`implementations.py`: a loss and its gradient, a
Hessian, a Newton fit) on one function: fusegrad traces the NumPy-style function, the
NumPy baseline is the closed form a careful user writes by hand, JAX and PyTorch get the
same function in their own array libraries and join when they import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from implementations import (
    GRADIENT,
    HESSIAN,
    NEWTON,
    Kind,
    sklearn_logistic,
    statsmodels_logit,
)

import fusegrad as fg

from implementations import jax, jnp, torch  # None where not installed (or not wanted)

FIRST_CALL_TARGET_MS = 150.0  # trace + compile + one run, unless a workload says otherwise


# -- targets -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """`speedup`: baseline time / fusegrad time ≥ value. `max_us`: fusegrad time ≤ value µs.

    The baseline is an implementation's name, NumPy unless said otherwise.
    """

    kind: str
    value: float
    baseline: str = "NumPy"

    def describe(self) -> str:
        if self.kind == "speedup":
            return f"≥ {self.value:g}× {self.baseline}"
        return f"≤ {self.value:g} µs"

    def measure(self, fusegrad_s: float, baseline_s: float) -> str:
        if self.kind == "speedup":
            return f"{baseline_s / fusegrad_s:.2f}× {self.baseline}"
        return f"{fusegrad_s * 1e6:.1f} µs"

    def is_met(self, fusegrad_s: float, baseline_s: float) -> bool:
        if self.kind == "speedup":
            return baseline_s / fusegrad_s >= self.value
        return fusegrad_s * 1e6 <= self.value

    def shortfall(self, fusegrad_s: float, baseline_s: float) -> str:
        """How far the measurement is from the target, in words."""
        measured = self.measure(fusegrad_s, baseline_s)
        if self.kind == "speedup":
            factor = self.value * fusegrad_s / baseline_s
            return f"{measured}: {factor:.1f}× short of {self.describe()}"
        return f"{measured}: {fusegrad_s * 1e6 / self.value:.1f}× over {self.describe()}"


def speedup(value: float, over: str = "NumPy") -> Target:
    return Target("speedup", value, over)


def max_us(value: float) -> Target:
    return Target("max_us", value)


# -- workloads -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    label: str
    sizes: dict
    targets: tuple[Target, ...] = ()


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    formula: str
    kind: Kind  # what is computed and checked, and the frameworks that compute it
    make_inputs: Callable  # (rng, **sizes) -> tuple of float64 arrays
    wrt: int | tuple  # differentiated argument(s), as `fg.compile_grad(wrt=...)`
    fusegrad_fn: Callable  # NumPy-style code, traced by fusegrad
    numpy_closed_form: Callable  # what the kind needs, derived and written by hand
    jax_fn: Callable | None  # the function in jax.numpy
    torch_fn: Callable | None  # the function in torch
    cases: list[Case]
    quick_cases: list[Case] = field(default_factory=list)
    extra_implementations: dict = field(default_factory=dict)  # framework -> factory
    first_call_ms: float = FIRST_CALL_TARGET_MS

    @property
    def implementations(self) -> dict:
        """framework -> factory(workload), NumPy's first."""
        return {**self.kind.implementations, **self.extra_implementations}


def stable_sigmoid(z):
    # σ(z) = 1/(1+e^−z) for z ≥ 0 and e^z/(1+e^z) for z < 0: no exp overflows.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


# W1: logistic loss ------------------------------------------------------------------------
def w1_inputs(rng, m, n):
    X = rng.standard_normal((m, n))
    w = 0.1 * rng.standard_normal(n)
    y = np.where(rng.standard_normal(m) > 0, 1.0, -1.0)
    return w, X, y


def w1_fusegrad(w, X, y):
    return np.sum(np.log1p(np.exp(-y * (X @ w))))


def w1_numpy(w, X, y):
    margins = -y * (X @ w)
    value = np.sum(np.log1p(np.exp(margins)))
    grad = -(X.T @ (y * stable_sigmoid(margins)))  # ∇ = −Xᵀ (y ⊙ σ(−y ⊙ Xw))
    return value, (grad,)


def w1_jax(w, X, y):
    return jnp.sum(jnp.log1p(jnp.exp(-y * (X @ w))))


def w1_torch(w, X, y):
    return torch.sum(torch.log1p(torch.exp(-y * (X @ w))))


W1 = Workload(
    name="W1",
    title="logistic loss + gradient",
    formula="sum(log1p(exp(-y * (X @ w)))), gradient w.r.t. w",
    kind=GRADIENT,
    make_inputs=w1_inputs,
    wrt=0,
    fusegrad_fn=w1_fusegrad,
    numpy_closed_form=w1_numpy,
    jax_fn=w1_jax,
    torch_fn=w1_torch,
    cases=[
        Case("1,000,000×32", {"m": 1_000_000, "n": 32}, (speedup(4),)),
        Case("100,000×256", {"m": 100_000, "n": 256}),
        Case("200×8", {"m": 200, "n": 8}, (max_us(3),)),
    ],
    quick_cases=[
        Case("10,000×32", {"m": 10_000, "n": 32}),
        Case("200×8", {"m": 200, "n": 8}, (max_us(3),)),
    ],
)


# W2: element-wise chain -------------------------------------------------------------------
def w2_inputs(rng, n):
    return (rng.standard_normal(n),)


def w2_fusegrad(x):
    return np.sum(np.tanh(x) * np.exp(-x * x) + np.log1p(x * x))


def w2_numpy(x):
    t = np.tanh(x)
    g = np.exp(-x * x)
    x2 = x * x
    value = np.sum(t * g + np.log1p(x2))
    # d/dx [tanh(x) e^(−x²) + log(1 + x²)] = (1 − t² − 2x t) e^(−x²) + 2x / (1 + x²)
    grad = (1.0 - t * t - 2.0 * x * t) * g + 2.0 * x / (1.0 + x2)
    return value, (grad,)


def w2_jax(x):
    return jnp.sum(jnp.tanh(x) * jnp.exp(-x * x) + jnp.log1p(x * x))


def w2_torch(x):
    return torch.sum(torch.tanh(x) * torch.exp(-x * x) + torch.log1p(x * x))


W2 = Workload(
    name="W2",
    title="element-wise chain",
    formula="sum(tanh(x) * exp(-x*x) + log1p(x*x)), gradient w.r.t. x",
    kind=GRADIENT,
    make_inputs=w2_inputs,
    wrt=0,
    fusegrad_fn=w2_fusegrad,
    numpy_closed_form=w2_numpy,
    jax_fn=w2_jax,
    torch_fn=w2_torch,
    cases=[
        Case("n=10⁷", {"n": 10_000_000}, (speedup(10),)),
        Case("n=10⁵", {"n": 100_000}),
        Case("n=16", {"n": 16}, (max_us(2),)),
    ],
    quick_cases=[
        Case("n=10⁵", {"n": 100_000}),
        Case("n=16", {"n": 16}, (max_us(2),)),
    ],
)


# W3: 2-layer tanh MLP, softmax cross-entropy ----------------------------------------------
def w3_inputs(rng, batch, inputs, hidden, outputs):
    W1 = rng.standard_normal((inputs, hidden)) / np.sqrt(inputs)
    b1 = 0.1 * rng.standard_normal(hidden)
    W2 = rng.standard_normal((hidden, outputs)) / np.sqrt(hidden)
    b2 = 0.1 * rng.standard_normal(outputs)
    X = rng.standard_normal((batch, inputs))
    Y = np.eye(outputs)[rng.integers(0, outputs, batch)]  # one-hot labels
    return W1, b1, W2, b2, X, Y


def w3_fusegrad(W1, b1, W2, b2, X, Y):
    hidden = np.tanh(X @ W1 + b1)
    logits = hidden @ W2 + b2
    return -np.mean(np.sum(Y * fg.log_softmax(logits, axis=1), axis=1))


def w3_numpy(W1, b1, W2, b2, X, Y):
    batch = X.shape[0]
    hidden = np.tanh(X @ W1 + b1)
    logits = hidden @ W2 + b2
    shifted = logits - logits.max(axis=1, keepdims=True)
    exps = np.exp(shifted)
    sums = exps.sum(axis=1, keepdims=True)
    log_probs = shifted - np.log(sums)
    value = -np.sum(Y * log_probs) / batch
    d_logits = (exps / sums - Y) / batch  # softmax − Y for one-hot rows, over the mean
    g_W2 = hidden.T @ d_logits
    g_b2 = d_logits.sum(axis=0)
    d_pre = (d_logits @ W2.T) * (1.0 - hidden * hidden)  # tanh' = 1 − tanh²
    g_W1 = X.T @ d_pre
    g_b1 = d_pre.sum(axis=0)
    return value, (g_W1, g_b1, g_W2, g_b2)


def w3_jax(W1, b1, W2, b2, X, Y):
    hidden = jnp.tanh(X @ W1 + b1)
    logits = hidden @ W2 + b2
    return -jnp.mean(jnp.sum(Y * jax.nn.log_softmax(logits, axis=1), axis=1))


def w3_torch(W1, b1, W2, b2, X, Y):
    hidden = torch.tanh(X @ W1 + b1)
    logits = hidden @ W2 + b2
    return -torch.mean(torch.sum(Y * torch.log_softmax(logits, dim=1), dim=1))


def _mlp(batch, hidden):
    return {"batch": batch, "inputs": 64, "hidden": hidden, "outputs": 10}


W3 = Workload(
    name="W3",
    title="2-layer tanh MLP, softmax cross-entropy",
    formula="-mean(sum(Y * log_softmax(tanh(X @ W1 + b1) @ W2 + b2), axis=1)), "
    "gradients w.r.t. W1, b1, W2, b2 (in 64, out 10, one-hot Y)",
    kind=GRADIENT,
    make_inputs=w3_inputs,
    wrt=(0, 1, 2, 3),
    fusegrad_fn=w3_fusegrad,
    numpy_closed_form=w3_numpy,
    jax_fn=w3_jax,
    torch_fn=w3_torch,
    cases=[
        Case("batch 256, hidden 256", _mlp(256, 256), (speedup(1.3),)),
        Case("batch 16, hidden 32", _mlp(16, 32)),
    ],
    quick_cases=[
        Case("batch 256, hidden 256", _mlp(256, 256), (speedup(1.3),)),
        Case("batch 16, hidden 32", _mlp(16, 32)),
    ],
)


# W4: Hessian of the logistic loss ---------------------------------------------------------
def w4_numpy(w, X, y):
    p = stable_sigmoid(y * (X @ w))
    s = p * (1.0 - p)  # σ(z)(1 − σ(z)), z = y ⊙ Xw (even in z, so the label's sign drops)
    return X.T @ (X * s[:, None])  # H = Xᵀ diag(s) X


W4 = Workload(
    name="W4",
    title="logistic loss Hessian",
    formula="sum(log1p(exp(-y * (X @ w)))), Hessian w.r.t. w",
    kind=HESSIAN,
    make_inputs=w1_inputs,
    wrt=0,
    fusegrad_fn=w1_fusegrad,
    numpy_closed_form=w4_numpy,
    jax_fn=w1_jax,
    torch_fn=w1_torch,
    cases=[
        Case("10,000×64", {"m": 10_000, "n": 64}, (speedup(2),)),
        Case("10,000×512", {"m": 10_000, "n": 512}, (speedup(1.2),)),
    ],
    quick_cases=[
        Case("1,000×16", {"m": 1_000, "n": 16}),
        Case("200×8", {"m": 200, "n": 8}),
    ],
    first_call_ms=300.0,
)


# W5: logistic regression by Newton's method -----------------------------------------------
def w5_inputs(rng, m, n):
    X = rng.standard_normal((m, n))
    w_true = rng.standard_normal(n) / np.sqrt(n)
    y = np.where(X @ w_true + 0.5 * rng.standard_normal(m) > 0, 1.0, -1.0)
    return np.zeros(n), X, y  # w₀ = 0


def w5_numpy(w, X, y):
    """Value, gradient and Hessian as in examples/newton_logistic.py."""
    margins = -y * (X @ w)
    value = np.sum(np.logaddexp(0.0, margins))
    s = stable_sigmoid(margins)  # σ(−y ⊙ Xw)
    grad = -(X.T @ (y * s))
    hess = X.T @ (X * (s * (1.0 - s))[:, None])
    return value, grad, hess


W5 = Workload(
    name="W5",
    title="logistic regression by Newton's method",
    formula="argmin_w sum(log1p(exp(-y * (X @ w)))) from w = 0, Newton steps until ‖∇‖ < 1e-8",
    kind=NEWTON,
    make_inputs=w5_inputs,
    wrt=0,
    fusegrad_fn=w1_fusegrad,
    numpy_closed_form=w5_numpy,
    jax_fn=w1_jax,
    torch_fn=None,
    cases=[
        Case("100,000×64", {"m": 100_000, "n": 64}, (speedup(3), speedup(4, "scikit-learn"))),
        Case("10,000×16", {"m": 10_000, "n": 16}),
    ],
    quick_cases=[Case("2,000×16", {"m": 2_000, "n": 16})],
    extra_implementations={"scikit-learn": sklearn_logistic, "statsmodels": statsmodels_logit},
    first_call_ms=300.0,
)


# W6: row-wise logsumexp -------------------------------------------------------------------
def w6_inputs(rng, rows, cols):
    X = 2.0 * rng.standard_normal((rows, cols))
    T = rng.random((rows, cols))
    T /= T.sum(axis=1, keepdims=True)  # each row a distribution
    return X, T


def w6_fusegrad(X, T):
    return np.sum(fg.logsumexp(X, axis=1)) - np.sum(X * T)


def w6_numpy(X, T):
    peak = X.max(axis=1, keepdims=True)
    exps = np.exp(X - peak)
    sums = exps.sum(axis=1, keepdims=True)
    value = np.sum(peak + np.log(sums)) - np.sum(X * T)
    grad = exps / sums - T  # ∂/∂X logsumexp = softmax(X)
    return value, (grad,)


def w6_jax(X, T):
    return jnp.sum(jax.nn.logsumexp(X, axis=1)) - jnp.sum(X * T)


def w6_torch(X, T):
    return torch.sum(torch.logsumexp(X, dim=1)) - torch.sum(X * T)


W6 = Workload(
    name="W6",
    title="row-wise logsumexp",
    formula="sum(logsumexp(X, axis=1)) - sum(X * T), gradient w.r.t. X",
    kind=GRADIENT,
    make_inputs=w6_inputs,
    wrt=0,
    fusegrad_fn=w6_fusegrad,
    numpy_closed_form=w6_numpy,
    jax_fn=w6_jax,
    torch_fn=w6_torch,
    cases=[
        Case("4096×1024", {"rows": 4096, "cols": 1024}, (speedup(4),)),
        Case("64×16", {"rows": 64, "cols": 16}),
    ],
    quick_cases=[
        Case("256×128", {"rows": 256, "cols": 128}),
        Case("64×16", {"rows": 64, "cols": 16}),
    ],
)

WORKLOADS = [W1, W2, W3, W4, W5, W6]
