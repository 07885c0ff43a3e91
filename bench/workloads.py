"""The benchmark workloads as data: sizes, targets and one implementation per framework.

Every workload is a scalar loss and its gradient. fusegrad traces the NumPy-style
function; the NumPy baseline is the closed form a careful user writes by hand;
JAX (`jax.jit(jax.value_and_grad(f))`, float64) and PyTorch (`torch.compile` of
`torch.func.grad_and_value(f)`) join when they import. Every implementation
returns `(value, grads)` with `grads` a tuple, one array per differentiated argument.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

import fusegrad as fg

try:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
except ImportError:
    jax = None

try:
    import torch
    import torch._inductor.config

    # Compile in this process: Inductor's pool of compile workers otherwise keeps both cores
    # of a small machine busy for seconds after each (re)compilation, during the timing.
    torch._inductor.config.compile_threads = 1
except ImportError:
    torch = None

FIRST_CALL_TARGET_MS = 150.0


# -- targets -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """`speedup`: NumPy time / fusegrad time ≥ value. `max_us`: fusegrad time ≤ value µs."""

    kind: str
    value: float

    def describe(self) -> str:
        if self.kind == "speedup":
            return f"≥ {self.value:g}× NumPy"
        return f"≤ {self.value:g} µs"

    def is_met(self, fusegrad_s: float, numpy_s: float) -> bool:
        if self.kind == "speedup":
            return numpy_s / fusegrad_s >= self.value
        return fusegrad_s * 1e6 <= self.value

    def shortfall(self, fusegrad_s: float, numpy_s: float) -> str:
        """How far the measurement is from the target, in words."""
        if self.kind == "speedup":
            speedup = numpy_s / fusegrad_s
            return f"{speedup:.2f}× NumPy: {self.value / speedup:.1f}× short of {self.describe()}"
        micros = fusegrad_s * 1e6
        return f"{micros:.1f} µs: {micros / self.value:.1f}× over {self.describe()}"


def speedup(value: float) -> Target:
    return Target("speedup", value)


def max_us(value: float) -> Target:
    return Target("max_us", value)


# -- workloads -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    label: str
    sizes: dict
    target: Target | None = None


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    formula: str
    make_inputs: Callable  # (rng, **sizes) -> tuple of float64 arrays
    wrt: int | tuple  # differentiated argument(s), as `fg.compile_grad(wrt=...)`
    fusegrad_fn: Callable  # NumPy-style code, traced by fusegrad
    numpy_value_and_grad: Callable  # hand-written closed form: (value, grads tuple)
    jax_fn: Callable | None  # the loss in jax.numpy
    torch_fn: Callable | None  # the loss in torch
    cases: list[Case]
    quick_cases: list[Case] = field(default_factory=list)

    @property
    def argnums(self) -> tuple:
        return self.wrt if isinstance(self.wrt, tuple) else (self.wrt,)


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
    make_inputs=w1_inputs,
    wrt=0,
    fusegrad_fn=w1_fusegrad,
    numpy_value_and_grad=w1_numpy,
    jax_fn=w1_jax,
    torch_fn=w1_torch,
    cases=[
        Case("1,000,000×32", {"m": 1_000_000, "n": 32}, speedup(4)),
        Case("100,000×256", {"m": 100_000, "n": 256}),
        Case("200×8", {"m": 200, "n": 8}, max_us(3)),
    ],
    quick_cases=[
        Case("10,000×32", {"m": 10_000, "n": 32}),
        Case("200×8", {"m": 200, "n": 8}, max_us(3)),
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
    make_inputs=w2_inputs,
    wrt=0,
    fusegrad_fn=w2_fusegrad,
    numpy_value_and_grad=w2_numpy,
    jax_fn=w2_jax,
    torch_fn=w2_torch,
    cases=[
        Case("n=10⁷", {"n": 10_000_000}, speedup(10)),
        Case("n=10⁵", {"n": 100_000}),
        Case("n=16", {"n": 16}, max_us(2)),
    ],
    quick_cases=[
        Case("n=10⁵", {"n": 100_000}),
        Case("n=16", {"n": 16}, max_us(2)),
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
    make_inputs=w3_inputs,
    wrt=(0, 1, 2, 3),
    fusegrad_fn=w3_fusegrad,
    numpy_value_and_grad=w3_numpy,
    jax_fn=w3_jax,
    torch_fn=w3_torch,
    cases=[
        Case("batch 256, hidden 256", _mlp(256, 256), speedup(1.3)),
        Case("batch 16, hidden 32", _mlp(16, 32)),
    ],
    quick_cases=[
        Case("batch 256, hidden 256", _mlp(256, 256), speedup(1.3)),
        Case("batch 16, hidden 32", _mlp(16, 32)),
    ],
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
    make_inputs=w6_inputs,
    wrt=0,
    fusegrad_fn=w6_fusegrad,
    numpy_value_and_grad=w6_numpy,
    jax_fn=w6_jax,
    torch_fn=w6_torch,
    cases=[
        Case("4096×1024", {"rows": 4096, "cols": 1024}, speedup(4)),
        Case("64×16", {"rows": 64, "cols": 16}),
    ],
    quick_cases=[
        Case("256×128", {"rows": 256, "cols": 128}),
        Case("64×16", {"rows": 64, "cols": 16}),
    ],
)

WORKLOADS = [W1, W2, W3, W6]


# -- implementations -----------------------------------------------------------------------
@dataclass
class Implementation:
    """One framework's value-and-gradient function for one workload.

    `prepare(arrays)` converts NumPy inputs to the framework's arrays (outside timing);
    `call(prepared)` computes and waits for `(value, grads)`; `to_numpy` converts the
    result for the correctness check.
    """

    name: str
    call: Callable
    prepare: Callable = tuple
    to_numpy: Callable = None
    note: str = ""

    def bind(self, arrays) -> Callable:
        """A no-argument callable for the timing loop."""
        return functools.partial(self.call, *self.prepare(arrays))

    def as_numpy(self, result) -> tuple:
        """`(float value, tuple of NumPy gradients)` from what `call` returned."""
        value, grads = result
        return (self.to_numpy or _numpy_result)(value, grads)


def _numpy_result(value, grads):
    return float(value), tuple(np.asarray(g) for g in grads)


def numpy_implementation(workload: Workload) -> Implementation:
    return Implementation("NumPy", workload.numpy_value_and_grad)


def fusegrad_implementation(workload: Workload) -> Implementation:
    """A fresh compiled function (it compiles on its first call)."""
    compiled = fg.compile_grad(workload.fusegrad_fn, wrt=workload.wrt)
    if isinstance(workload.wrt, tuple):
        return Implementation("fusegrad", compiled)
    return Implementation("fusegrad", compiled, to_numpy=lambda v, g: _numpy_result(v, (g,)))


def jax_implementation(workload: Workload) -> Implementation | None:
    if jax is None or workload.jax_fn is None:
        return None
    jitted = jax.jit(jax.value_and_grad(workload.jax_fn, argnums=workload.argnums))

    def call(*args):
        return jax.block_until_ready(jitted(*args))

    def prepare(arrays):
        return tuple(jax.block_until_ready(jnp.asarray(a)) for a in arrays)

    return Implementation("JAX", call, prepare, note="jax.jit(jax.value_and_grad(f)), float64")


def torch_implementation(workload: Workload, compile: bool = True) -> Implementation | None:
    """`torch.compile` of `torch.func.grad_and_value`; eager when `compile` is False."""
    if torch is None or workload.torch_fn is None:
        return None
    # Dynamo caches compiled code per code object, and `value_and_grad` below is one code
    # object for every workload: without a reset, workloads share its recompile limit.
    torch.compiler.reset()
    grad_and_value = torch.func.grad_and_value(workload.torch_fn, argnums=workload.argnums)

    def value_and_grad(*args):
        grads, value = grad_and_value(*args)
        return value, grads

    def prepare(arrays):
        return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)

    def to_numpy(value, grads):
        return float(value.item()), tuple(g.detach().numpy() for g in grads)

    if compile:
        compiled = torch.compile(value_and_grad)
        return Implementation(
            "PyTorch",
            compiled,
            prepare,
            to_numpy,
            note="torch.compile(torch.func.grad_and_value(f))",
        )
    return Implementation(
        "PyTorch (eager)",
        value_and_grad,
        prepare,
        to_numpy,
        note="torch.func.grad_and_value(f), eager",
    )


def available_frameworks() -> dict[str, str | None]:
    """Version of each optional framework, None where it did not import."""
    return {
        "JAX": getattr(jax, "__version__", None),
        "PyTorch": getattr(torch, "__version__", None),
    }
