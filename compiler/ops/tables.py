"""The per-op rule tables. Each op family module adds one row per op to each.

- SHAPE[op](inputs, attrs) -> (dtype, shape): run when a node is built.
- EVALUATE[op](node, values, dims) -> ndarray: the NumPy reference interpreter.
- VJP[op](cotangent, node) -> one cotangent (a node, or None for a symbolic
  zero) per input: reverse-mode derivative rules, built from `compiler.build`.
- JVP[op](tangents, node) -> the tangent of the node (or None for a symbolic
  zero), given one tangent (a node or None) per input: forward-mode derivative
  rules, built from `compiler.build`. A rule is only called when some input has
  a tangent and the node is a float.

Lowering to the loop IR and rendering have tables of their own next to the
passes that use them (`compiler/lower.py`, `compiler/llvm/`).
"""

from .. import build as B

SHAPE: dict = {}
EVALUATE: dict = {}
VJP: dict = {}
JVP: dict = {}

# Ops with no derivative at all (masks, leaves): their VJP and JVP rows say so explicitly.
NOT_DIFFERENTIABLE = object()


def tangent_sum(*terms):
    """The sum of the terms that are not symbolic zeros (None); None when all are."""
    total = None
    for term in terms:
        if term is not None:
            total = term if total is None else B.add(total, term)
    return total


def all_ops() -> list[str]:
    from . import elementwise, index, layout, linalg, reduce  # noqa: F401  (registers rows)

    return sorted(SHAPE)
