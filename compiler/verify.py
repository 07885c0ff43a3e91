"""The graph verifier: checks the invariants every pass must keep.

Each node's dtype and shape must be what its op's shape rule gives for its
inputs and attrs, every node must be hash-consed (the table returns it), and
every op must have rows in the tables. Returns the function unchanged, so it
can sit in the pass list.
"""

from __future__ import annotations

from . import shapes, symbolic
from .errors import FusegradError
from .ir import Function, make
from .ops import EVALUATE, SHAPE, VJP


def verify(function: Function) -> Function:
    params = {p.node.id for p in function.params}
    # Shape rules rerun with the function's own dims: no two symbols may merge now,
    # and any equality they still need must be one of the run-time checks.
    unifier = shapes.DimUnifier(set(function.dim_symbols()))
    with unifier, unifier.shared_nodes():
        _verify_nodes(function, params)
    known = {(c.kind, repr(c.left), repr(c.right)) for c in function.checks}
    for c in unifier.constraints:
        if (c.kind, repr(c.left), repr(c.right)) not in known and (
            c.kind, repr(c.right), repr(c.left)) not in known:
            raise FusegradError(f"verify: {c.where} is not among the function's dim checks")
    return function


def _verify_nodes(function, params):
    for node in function.nodes():
        if node.op not in SHAPE or node.op not in EVALUATE or node.op not in VJP:
            raise FusegradError(f"verify: op {node.op!r} is missing from a rule table")
        if node.op == "param" and node.id not in params:
            raise FusegradError(f"verify: parameter {node.attr('name')!r} is not an argument")
        rebuilt = make(node.op, node.inputs, **dict(node.attrs))
        if rebuilt is not node:
            raise FusegradError(f"verify: {node!r} is not hash-consed")
        # `make` found the node, so its rule did not run: run it here.
        dtype, shape = SHAPE[node.op](node.inputs, dict(node.attrs))
        shape = tuple(symbolic.simplify(d) for d in shape)
        if dtype != node.dtype or len(shape) != len(node.shape) or not all(
            symbolic.dims_equal(a, b) for a, b in zip(shape, node.shape)
        ):
            raise FusegradError(
                f"verify: {node!r} has shape {symbolic.format_shape(node.shape)}, but its "
                f"rule gives {dtype}{symbolic.format_shape(shape)}"
            )
        for dim in node.shape:
            if isinstance(dim, symbolic.Dim):
                unknown = set(dim.symbols()) - set(function.dim_symbols())
                if unknown:
                    raise FusegradError(f"verify: {node!r} uses unbound dims {sorted(unknown)}")
