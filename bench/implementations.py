"""The kinds of workload, and each framework's implementation of each kind.

A kind says what a workload computes and how a result is checked against NumPy's:

    GRADIENT  (value, gradients)   a scalar loss and its gradient(s)
    HESSIAN   H                    the Hessian of a scalar loss
    NEWTON    w                    the minimizer, by Newton's method from w₀

and which frameworks compute it, as factories `(workload) -> Implementation` (None
where the framework is not installed). NumPy is the hand-written closed form and comes
first: it is the reference. A workload may add factories of its own (scikit-learn's
logistic regression fits one model only).
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import fusegrad as fg

#: Set in the fresh processes that time fusegrad's first call alone (harness.ProcessFirstCalls):
#: they import no other framework, whose objects would fill the heap that the first
#: call's garbage collections walk (a Hessian's trace took 5.1 ms there, 2.5 without).
FUSEGRAD_ONLY = os.environ.get("FUSEGRAD_BENCH_FUSEGRAD_ONLY") == "1"


def _optional(import_it):
    """The framework `import_it()` returns, or None where it is not installed or not wanted."""
    if FUSEGRAD_ONLY:
        return None
    try:
        return import_it()
    except ImportError:
        return None


def _import_jax():
    import jax
    import jax.numpy  # noqa: F401 - jax.numpy as jnp below

    jax.config.update("jax_enable_x64", True)
    return jax


def _import_torch():
    import torch
    import torch._inductor.config

    # Compile in this process: Inductor's pool of compile workers otherwise keeps both cores
    # of a small machine busy for seconds after each (re)compilation, during the timing.
    torch._inductor.config.compile_threads = 1
    return torch


def _import_sklearn():
    import sklearn
    import sklearn.linear_model  # noqa: F401

    return sklearn


def _import_statsmodels():
    import statsmodels
    import statsmodels.api  # noqa: F401

    return statsmodels


jax = _optional(_import_jax)
jnp = jax.numpy if jax is not None else None
torch = _optional(_import_torch)
sklearn = _optional(_import_sklearn)
statsmodels = _optional(_import_statsmodels)

NEWTON_TOL = 1e-8  # every Newton fit stops at ‖∇‖ < NEWTON_TOL ...
NEWTON_MAX_STEPS = 20  # ... or after this many steps


# -- kinds ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Output:
    """One result of a kind, checked as max|r − r_numpy| ≤ rtol · max|r_numpy|."""

    name: str
    rtol: float


@dataclass(frozen=True)
class Kind:
    name: str
    outputs: tuple[Output, ...]
    implementations: dict  # framework -> factory(workload) -> Implementation | None


@dataclass
class Implementation:
    """One framework's computation of one workload.

    `prepare(arrays)` converts NumPy inputs to the framework's arrays (outside timing);
    `call(*prepared)` computes and waits for the result; `to_numpy` converts each array
    of the result for the check. `eager`, where set, makes the same implementation without
    the framework's compiler: timed instead when compiling fails or is turned off.
    """

    name: str
    call: Callable
    prepare: Callable = tuple
    to_numpy: Callable = np.asarray
    note: str = ""
    eager: Callable | None = None

    def bind(self, arrays) -> Callable:
        """A no-argument callable for the timing loop."""
        return functools.partial(self.call, *self.prepare(arrays))

    def as_numpy(self, result):
        """The result with every array converted by `to_numpy`, tuples kept."""
        if isinstance(result, (tuple, list)):
            return tuple(self.as_numpy(part) for part in result)
        return self.to_numpy(result)


# -- shared by the kinds -------------------------------------------------------------------
def jax_implementation(jitted, note: str) -> Implementation:
    def call(*args):
        return jax.block_until_ready(jitted(*args))

    def prepare(arrays):
        return tuple(jax.block_until_ready(jnp.asarray(a)) for a in arrays)

    return Implementation("JAX", call, prepare, note=note + ", float64")


def torch_implementation(fn, note: str) -> Implementation:
    """`torch.compile(fn)`, with eager `fn` as its `eager`."""
    # Dynamo caches compiled code per code object, and the functions made here share theirs
    # between workloads: without a reset, workloads share their recompile limit.
    torch.compiler.reset()

    def prepare(arrays):
        return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)

    def to_numpy(tensor):
        return tensor.detach().numpy()

    def eager():
        return Implementation("PyTorch (eager)", fn, prepare, to_numpy, note=f"{note}, eager")

    compiled = Implementation(
        "PyTorch", torch.compile(fn), prepare, to_numpy, note=f"torch.compile({note})"
    )
    compiled.eager = eager
    return compiled


def numpy_closed_form(workload) -> Implementation:
    return Implementation("NumPy", workload.numpy_closed_form)


def argnums(workload) -> tuple:
    return workload.wrt if isinstance(workload.wrt, tuple) else (workload.wrt,)


# -- GRADIENT: (value, gradients) ----------------------------------------------------------
def fusegrad_gradient(workload) -> Implementation:
    """A fresh compiled function (it compiles on its first call)."""
    return Implementation("fusegrad", fg.compile_grad(workload.fusegrad_fn, wrt=workload.wrt))


def jax_gradient(workload) -> Implementation | None:
    if jax is None or workload.jax_fn is None:
        return None
    jitted = jax.jit(jax.value_and_grad(workload.jax_fn, argnums=argnums(workload)))
    return jax_implementation(jitted, "jax.jit(jax.value_and_grad(f))")


def torch_gradient(workload) -> Implementation | None:
    if torch is None or workload.torch_fn is None:
        return None
    grad_and_value = torch.func.grad_and_value(workload.torch_fn, argnums=argnums(workload))

    def value_and_grad(*args):
        grads, value = grad_and_value(*args)
        return value, grads

    return torch_implementation(value_and_grad, "torch.func.grad_and_value(f)")


GRADIENT = Kind(
    name="value and gradient",
    outputs=(Output("value", 1e-9), Output("gradient", 1e-7)),
    implementations={
        "NumPy": numpy_closed_form,
        "fusegrad": fusegrad_gradient,
        "JAX": jax_gradient,
        "PyTorch": torch_gradient,
    },
)


# -- HESSIAN: H ----------------------------------------------------------------------------
def fusegrad_hessian(workload) -> Implementation:
    compiled = fg.compile(fg.hessian(workload.fusegrad_fn, wrt=workload.wrt))
    return Implementation("fusegrad", compiled, note="fg.compile(fg.hessian(f))")


def jax_hessian(workload) -> Implementation | None:
    if jax is None or workload.jax_fn is None:
        return None
    jitted = jax.jit(jax.hessian(workload.jax_fn, argnums=workload.wrt))
    return jax_implementation(jitted, "jax.jit(jax.hessian(f))")


def torch_hessian(workload) -> Implementation | None:
    if torch is None or workload.torch_fn is None:
        return None
    hessian = torch.func.hessian(workload.torch_fn, argnums=workload.wrt)
    return torch_implementation(hessian, "torch.func.hessian(f)")


HESSIAN = Kind(
    name="Hessian",
    outputs=(Output("Hessian", 1e-7),),
    implementations={
        "NumPy": numpy_closed_form,
        "fusegrad": fusegrad_hessian,
        "JAX": jax_hessian,
        "PyTorch": torch_hessian,
    },
)


# -- NEWTON: the minimizer w of f(w, *data), from w₀ ----------------------------------------
def newton(value_grad_hessian, w, *data):
    """w ← w − H⁻¹ g until ‖g‖ < NEWTON_TOL: the loop of examples/newton_logistic.py."""
    for _ in range(NEWTON_MAX_STEPS):
        _, g, H = value_grad_hessian(w, *data)
        if np.linalg.norm(g) < NEWTON_TOL:
            return w
        w = w - np.linalg.solve(H, g)
    return w


def numpy_newton(workload) -> Implementation:
    fit = functools.partial(newton, workload.numpy_closed_form)
    return Implementation("NumPy", fit, note="Newton's method on the hand-written H and g")


def fusegrad_newton(workload) -> Implementation:
    kernel = fg.compile_hessian(workload.fusegrad_fn, wrt=workload.wrt)
    fit = functools.partial(newton, kernel)
    return Implementation("fusegrad", fit, note="Newton's method on fg.compile_hessian(f)")


def jax_newton(workload) -> Implementation | None:
    """The Newton loop as one jitted `lax.while_loop`."""
    if jax is None or workload.jax_fn is None:
        return None
    grad = jax.grad(workload.jax_fn)
    hessian = jax.hessian(workload.jax_fn)

    @jax.jit
    def fit(w, *data):
        def unconverged(state):
            _, g, _, steps = state
            return (jnp.linalg.norm(g) >= NEWTON_TOL) & (steps < NEWTON_MAX_STEPS)

        def step(state):
            w, g, H, steps = state
            w = w - jnp.linalg.solve(H, g)
            return w, grad(w, *data), hessian(w, *data), steps + 1

        start = (w, grad(w, *data), hessian(w, *data), 0)
        return jax.lax.while_loop(unconverged, step, start)[0]

    return jax_implementation(fit, "jax.jit of a lax.while_loop of Newton steps")


NEWTON = Kind(
    name="Newton fit",
    outputs=(Output("coefficients", 1e-6),),
    implementations={"NumPy": numpy_newton, "fusegrad": fusegrad_newton, "JAX": jax_newton},
)


# Logistic regression by other libraries: inputs (w₀, X, y), labels y ∈ {−1, +1} -----------
def zero_one_labels(arrays):
    _, X, y = arrays
    return X, (y + 1.0) / 2.0


def sklearn_logistic(workload) -> Implementation | None:
    """`LogisticRegression(penalty=None, solver="newton-cholesky")`, no intercept."""
    if sklearn is None:
        return None
    # scikit-learn 1.8 deprecated penalty=None for its equivalent C=inf.
    version = tuple(int(part) for part in sklearn.__version__.split(".")[:2])
    unpenalized = {"C": np.inf} if version >= (1, 8) else {"penalty": None}
    # tol bounds max|∇| of the mean loss: 1e-8 gives the coefficients to ~1e-7
    # (its default, 1e-4, stops a step early, 3e-4 away from the minimizer).
    options = {"solver": "newton-cholesky", "fit_intercept": False, "tol": 1e-8, "max_iter": 100}
    model = sklearn.linear_model.LogisticRegression(**unpenalized, **options)

    def fit(X, labels):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a convergence warning is an error here
            return model.fit(X, labels).coef_.ravel()

    arguments = ", ".join(f"{k}={v}" for k, v in {**unpenalized, **options}.items())
    return Implementation(
        "scikit-learn", fit, zero_one_labels, note=f"LogisticRegression({arguments})"
    )


def statsmodels_logit(workload) -> Implementation | None:
    """`Logit(y, X).fit(method="newton")`, no intercept."""
    if statsmodels is None:
        return None

    def fit(X, labels):
        result = statsmodels.api.Logit(labels, X).fit(method="newton", tol=1e-8, disp=False)
        if not result.mle_retvals["converged"]:
            raise RuntimeError("statsmodels' Newton fit did not converge")
        return np.asarray(result.params)

    note = 'Logit(y, X).fit(method="newton", tol=1e-8): stops when no coefficient moves 1e-8'
    return Implementation("statsmodels", fit, zero_one_labels, note=note)


def available_frameworks() -> dict[str, str | None]:
    """Version of each optional framework, None where it did not import."""
    return {
        "JAX": getattr(jax, "__version__", None),
        "PyTorch": getattr(torch, "__version__", None),
        "scikit-learn": getattr(sklearn, "__version__", None),
        "statsmodels": getattr(statsmodels, "__version__", None),
    }
