"""Reductions over a set of axes (the axes are removed; keepdims is a reshape).

The max/min of an empty set is the identity of the reduction (−inf / +inf), the
sum of an empty set is 0. Compiled max/min reductions follow IEEE 754-2019
maximum/minimum: a NaN anywhere gives NaN (as in NumPy), and +0 counts as larger
than −0 (where NumPy's answer depends on the order of the elements).
"""

from __future__ import annotations

import numpy as np

from .. import build as B
from .. import symbolic
from ..errors import DTypeError
from ..ir import FLOAT_DTYPES
from .tables import EVALUATE, JVP, SHAPE, VJP

REDUCTIONS = ("reduce_sum", "reduce_max", "reduce_min")
IDENTITY = {"reduce_sum": 0.0, "reduce_max": -np.inf, "reduce_min": np.inf}


def _reduce_rule(inputs, attrs):
    (x,) = inputs
    if x.dtype not in FLOAT_DTYPES:
        raise DTypeError("internal: reductions take float operands")
    axes = attrs["axes"]
    return x.dtype, tuple(d for k, d in enumerate(x.shape) if k not in axes)


def _numpy_reduction(function, op):
    def rule(node, values, dims):
        (x,) = values
        axes = node.attr("axes")
        if x.size == 0:  # NumPy refuses max/min of nothing; the identity is the answer
            shape = tuple(symbolic.evaluate(d, dims) for d in node.shape)
            return np.full(shape, IDENTITY[op], dtype=node.dtype)
        return np.asarray(function(x, axis=axes), dtype=node.dtype)

    return rule


for _op, _fn in zip(REDUCTIONS, (np.sum, np.max, np.min)):
    SHAPE[_op] = _reduce_rule
    EVALUATE[_op] = _numpy_reduction(_fn, _op)


def _sum_vjp(ct, y):
    x = y.inputs[0]
    return (B.broadcast_to(B.expand_axes(ct, y.attr("axes"), x.ndim), x.shape),)


def _extremum_vjp(ct, y):
    # The cotangent is shared evenly by the elements that attain the extremum.
    x = y.inputs[0]
    axes = y.attr("axes")

    def back(v):
        return B.broadcast_to(B.expand_axes(v, axes, x.ndim), x.shape)

    hits = B.cast(B.compare("eq", x, back(y)), x.dtype)
    count = B.reduce("reduce_sum", hits, axes)
    return (B.mul(back(B.div(ct, count)), hits),)


VJP["reduce_sum"] = _sum_vjp
VJP["reduce_max"] = _extremum_vjp
VJP["reduce_min"] = _extremum_vjp


def _extremum_jvp(ts, y):
    # ẏ = the mean of ẋ over the elements that attain the extremum (as the VJP shares ȳ).
    x = y.inputs[0]
    axes = y.attr("axes")
    hits = B.cast(B.compare("eq", x, B.broadcast_to(B.expand_axes(y, axes, x.ndim), x.shape)),
                  x.dtype)
    count = B.reduce("reduce_sum", hits, axes)
    return B.div(B.reduce("reduce_sum", B.mul(ts[0], hits), axes), count)


JVP["reduce_sum"] = lambda ts, y: B.reduce("reduce_sum", ts[0], y.attr("axes"))
JVP["reduce_max"] = _extremum_jvp
JVP["reduce_min"] = _extremum_jvp
