"""Helpers the tests share: run a function through the reference interpreter,
and central finite differences through it."""

from __future__ import annotations

import numpy as np

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
