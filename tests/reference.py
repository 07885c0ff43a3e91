"""Helpers the tests share: run a function through the reference interpreter,
and central finite differences through it."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import fusegrad as fg
from fusegrad.compiler.interpret import evaluate


def reference(fn, *args):
    """fn(*args) computed by tracing fn and evaluating its graph with NumPy."""
    compiled = fg.compile(fn)
    function, tree = compiled.trace(*args)
    arrays = compiled._as_arrays(args)
    return tree.unflatten(evaluate(function, arrays))


def finite_difference_grad(fn, args, wrt=0, eps=None):
    """Central differences of the scalar fn at args with respect to args[wrt]."""
    args = [np.array(a, dtype=np.float64) for a in args]
    x = args[wrt]
    eps = eps or 1e-6
    grad = np.zeros_like(x)
    for k in np.ndindex(x.shape):
        plus = [a.copy() for a in args]
        minus = [a.copy() for a in args]
        plus[wrt][k] += eps
        minus[wrt][k] -= eps
        grad[k] = (float(reference(fn, *plus)) - float(reference(fn, *minus))) / (2 * eps)
    return grad


def directional_difference(fn, args, wrt, direction, eps=1e-6):
    """(f(x + εv) − f(x − εv)) / 2ε through the reference interpreter, in float64."""
    args = [np.array(a, dtype=np.float64) for a in args]
    plus = list(args)
    minus = list(args)
    plus[wrt] = args[wrt] + eps * direction
    minus[wrt] = args[wrt] - eps * direction
    return (float(reference(fn, *plus)) - float(reference(fn, *minus))) / (2 * eps)


@st.composite
def axes_for(draw, ndim):
    """None, an int (maybe negative) or a tuple of distinct axes (maybe negative)."""
    kinds = ["none", "int", "tuple"] if ndim else ["none", "tuple"]
    kind = draw(st.sampled_from(kinds))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    chosen = draw(st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim)) if ndim else []
    return tuple(a - ndim if draw(st.booleans()) else a for a in chosen)
