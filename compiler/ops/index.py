"""Index ops: `iota`, the array whose elements are their own index along one axis.

    iota(shape, axis)[i0, i1, ...] = i_axis        (as a float)

A leaf: it reads nothing and has no derivative. Identity matrices and one-hot
bases are built from it (`build.eye`): I = (iota(n×n, 0) == iota(n×n, 1)), which
batching (vmap) uses as the basis of a Jacobian or Hessian, and which the
simplifications in `build` recognize (I·A = A).
"""

from __future__ import annotations

import numpy as np

from .. import symbolic
from .tables import EVALUATE, JVP, NOT_DIFFERENTIABLE, SHAPE, VJP


def _iota_rule(inputs, attrs):
    shape, axis = tuple(attrs["shape"]), attrs["axis"]
    if not 0 <= axis < len(shape):
        raise AssertionError(f"internal: iota axis {axis} of a rank-{len(shape)} array")
    return attrs["dtype"], shape


def _iota_evaluate(node, values, dims):
    shape = tuple(symbolic.evaluate(d, dims) for d in node.shape)
    axis = node.attr("axis")
    index = np.arange(shape[axis], dtype=node.dtype).reshape(
        [-1 if k == axis else 1 for k in range(len(shape))])
    return np.broadcast_to(index, shape)


SHAPE["iota"] = _iota_rule
EVALUATE["iota"] = _iota_evaluate
VJP["iota"] = NOT_DIFFERENTIABLE
JVP["iota"] = NOT_DIFFERENTIABLE
