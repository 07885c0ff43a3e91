"""Reverse-mode differentiation as a graph-to-graph transform.

`vjp(outputs, cotangents, wrt)` walks the graph from the outputs back to the
inputs in reverse topological order, applying each node's row of the `VJP`
table. Cotangents are graph nodes built with the same constructors user code
uses, so the result can be differentiated again (a Hessian is a derivative of
a derivative) and fused with the forward pass. A missing cotangent is a
symbolic zero (`None`), never a zeros array; zeros are materialized only where
a caller asks for a gradient that is identically zero.

Forward mode (jvp) and batching (vmap) are siblings of this pass: tables keyed
by op next to `VJP`, applied by a walk in topological order.
"""

from __future__ import annotations

from . import build as B
from .errors import FusegradError
from .ir import FLOAT_DTYPES, Node, toposort
from .ops import NOT_DIFFERENTIABLE, VJP


def add_cotangents(a: Node | None, b: Node | None) -> Node | None:
    if a is None:
        return b
    if b is None:
        return a
    return B.add(a, b)


def vjp(outputs, cotangents, wrt) -> list[Node | None]:
    """Cotangents of `wrt` for the given output cotangents (None entries are zero)."""
    ct: dict[int, Node] = {}
    for out, bar in zip(outputs, cotangents):
        if bar is not None:
            ct[out.id] = add_cotangents(ct.get(out.id), bar)
    needed = _nodes_depending_on(outputs, wrt)
    for node in reversed(toposort(outputs)):
        bar = ct.get(node.id)
        if bar is None or node.id not in needed or not node.inputs:
            continue
        rule = VJP.get(node.op)
        if rule is None:
            raise FusegradError(f"internal error: op {node.op!r} has no derivative rule")
        if rule is NOT_DIFFERENTIABLE:
            continue
        for child, child_bar in zip(node.inputs, rule(bar, node)):
            if child_bar is None or child.dtype not in FLOAT_DTYPES:
                continue
            ct[child.id] = add_cotangents(ct.get(child.id), child_bar)
    return [ct.get(w.id) for w in wrt]


def grad(output: Node, wrt) -> list[Node]:
    """Gradients of a scalar output: dense nodes, zeros where the output does not depend."""
    if output.shape != ():
        raise FusegradError(
            f"grad needs a scalar output, got an array of shape {output.shape}; "
            "reduce it (e.g. with .sum()) or use fg.vjp"
        )
    seed = B.constant(1.0, output.dtype)
    results = vjp([output], [seed], wrt)
    return [
        B.zeros(w.shape, w.dtype) if g is None else B.cast(g, w.dtype)
        for g, w in zip(results, wrt)
    ]


def _nodes_depending_on(outputs, wrt) -> set[int]:
    """Ids of nodes on some path from `wrt` to `outputs` (where cotangents matter)."""
    depends: set[int] = {w.id for w in wrt}
    for node in toposort(outputs):
        if any(i.id in depends for i in node.inputs):
            depends.add(node.id)
    return depends
