"""Matrix products. The primitive is the 2-D product (m, k) @ (k, n); the tracer
turns vector operands into 1-row or 1-column matrices and back."""

from __future__ import annotations

import numpy as np

from .. import build as B
from .. import shapes, symbolic
from ..errors import ShapeError
from .tables import EVALUATE, JVP, SHAPE, VJP, tangent_sum


def _matmul_rule(inputs, attrs):
    a, b = inputs
    if a.ndim != 2 or b.ndim != 2:
        raise ShapeError("internal: matmul takes 2-D operands")
    where = (
        f"matmul: the inner dims of {symbolic.format_shape(a.shape)} @ "
        f"{symbolic.format_shape(b.shape)} do not match"
    )
    shapes.require_equal(a.shape[1], b.shape[0], where)
    return a.dtype, (a.shape[0], b.shape[1])


SHAPE["matmul"] = _matmul_rule
EVALUATE["matmul"] = lambda node, values, dims: np.asarray(
    values[0] @ values[1], dtype=node.dtype
)
# C = A B:  Ā = C̄ Bᵀ,  B̄ = Aᵀ C̄
VJP["matmul"] = lambda ct, y: (
    B.matmul(ct, B.transpose(y.inputs[1], (1, 0))),
    B.matmul(B.transpose(y.inputs[0], (1, 0)), ct),
)

# C = A B:  Ċ = Ȧ B + A Ḃ
JVP["matmul"] = lambda ts, y: tangent_sum(
    None if ts[0] is None else B.matmul(ts[0], y.inputs[1]),
    None if ts[1] is None else B.matmul(y.inputs[0], ts[1]),
)
