"""Layout ops: broadcast_to, reshape, transpose, slice and its transpose, embed.

None of them computes anything; their derivatives move cotangents back into
the input's layout: a broadcast is undone by summation, a slice by embedding
into zeros. They are linear, so a tangent moves forward by the op itself.
"""

from __future__ import annotations

import numpy as np

from .. import build as B
from .. import shapes, symbolic
from ..errors import ShapeError
from .tables import EVALUATE, JVP, SHAPE, VJP


# -- shape rules ----------------------------------------------------------------
def _broadcast_rule(inputs, attrs):
    (x,) = inputs
    shape = tuple(attrs["shape"])
    lead = len(shape) - x.ndim
    if lead < 0:
        raise ShapeError(f"broadcast_to: cannot broadcast rank {x.ndim} to rank {len(shape)}")
    result = list(shape)
    for k, d in enumerate(x.shape):
        if not shapes.is_one(d):
            where = (
                f"broadcast_to: input shape {symbolic.format_shape(x.shape)} "
                f"does not broadcast to {symbolic.format_shape(shape)}"
            )
            result[lead + k] = shapes.require_equal(shape[lead + k], d, where)
    return x.dtype, tuple(result)


def _reshape_rule(inputs, attrs):
    (x,) = inputs
    shape = tuple(attrs["shape"])
    where = (
        f"reshape: cannot reshape an array of shape {symbolic.format_shape(x.shape)} "
        f"into shape {symbolic.format_shape(shape)}"
    )
    shapes.require_equal(symbolic.product(x.shape), symbolic.product(shape), where)
    return x.dtype, shape


def _transpose_rule(inputs, attrs):
    (x,) = inputs
    perm = attrs["perm"]
    if sorted(perm) != list(range(x.ndim)):
        raise ShapeError(f"transpose: axes {perm} are not a permutation of {x.ndim} axes")
    return x.dtype, tuple(x.shape[p] for p in perm)


SHAPE["broadcast_to"] = _broadcast_rule
SHAPE["reshape"] = _reshape_rule
SHAPE["transpose"] = _transpose_rule
SHAPE["slice"] = lambda inputs, attrs: (inputs[0].dtype, tuple(attrs["sizes"]))
SHAPE["embed"] = lambda inputs, attrs: (inputs[0].dtype, tuple(attrs["shape"]))


# -- reference interpreter --------------------------------------------------------------
def _shape(dims_tuple, dims):
    return tuple(symbolic.evaluate(d, dims) for d in dims_tuple)


def _lattice(node, dims, sizes):
    """Index arrays start + step·i along each axis (for slice and embed)."""
    axes = []
    for start, step, size in zip(node.attr("starts"), node.attr("steps"), sizes):
        start = symbolic.evaluate(start, dims)
        axes.append(start + step * np.arange(symbolic.evaluate(size, dims), dtype=np.int64))
    return np.ix_(*axes) if axes else ()


def _evaluate_slice(node, values, dims):
    return np.asarray(values[0][_lattice(node, dims, node.attr("sizes"))])


def _evaluate_embed(node, values, dims):
    out = np.zeros(_shape(node.attr("shape"), dims), dtype=node.dtype)
    out[_lattice(node, dims, node.inputs[0].shape)] = values[0]
    return out


EVALUATE["broadcast_to"] = lambda node, values, dims: np.broadcast_to(
    values[0], _shape(node.shape, dims)
)
EVALUATE["reshape"] = lambda node, values, dims: values[0].reshape(_shape(node.shape, dims))
EVALUATE["transpose"] = lambda node, values, dims: values[0].transpose(node.attr("perm"))
EVALUATE["slice"] = _evaluate_slice
EVALUATE["embed"] = _evaluate_embed


# -- derivative rules -------------------------------------------------------------------
def _transpose_vjp(ct, y):
    inverse = tuple(int(k) for k in np.argsort(y.attr("perm")))
    return (B.transpose(ct, inverse),)


VJP["broadcast_to"] = lambda ct, y: (B.sum_to_shape(ct, y.inputs[0].shape),)
VJP["reshape"] = lambda ct, y: (B.reshape(ct, y.inputs[0].shape),)
VJP["transpose"] = _transpose_vjp
VJP["slice"] = lambda ct, y: (
    B.embed(ct, y.attr("starts"), y.attr("steps"), y.inputs[0].shape),
)
VJP["embed"] = lambda ct, y: (
    B.slice_axes(ct, y.attr("starts"), y.attr("steps"), y.inputs[0].shape),
)

# Linear ops are their own forward derivative: ẏ = op(ẋ).
JVP["broadcast_to"] = lambda ts, y: B.broadcast_to(ts[0], y.shape)
JVP["reshape"] = lambda ts, y: B.reshape(ts[0], y.shape)
JVP["transpose"] = lambda ts, y: B.transpose(ts[0], y.attr("perm"))
JVP["slice"] = lambda ts, y: B.slice_axes(
    ts[0], y.attr("starts"), y.attr("steps"), y.attr("sizes")
)
JVP["embed"] = lambda ts, y: B.embed(ts[0], y.attr("starts"), y.attr("steps"), y.attr("shape"))
