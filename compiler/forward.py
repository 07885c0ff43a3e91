"""Forward-mode differentiation as a graph-to-graph transform.

`jvp(outputs, primal_inputs, tangents)` walks the graph from the inputs to the
outputs in topological order, applying each node's row of the `JVP` table:
for y = f(x₁, …, xₙ), ẏ = Σₖ ∂f/∂xₖ · ẋₖ. It is the sibling of `autodiff.vjp`:
tangents are graph nodes built with the same constructors user code uses, so
the result can be differentiated again, in either mode (a jvp of a gradient is
a Hessian-vector product), and fused with the primal computation. A missing
tangent is a symbolic zero (`None`), never a zeros array.

Only float nodes carry tangents: a mask, a comparison or a cast to bool has
none, and neither has `stop_gradient` (its derivative is zero by definition).
"""

from __future__ import annotations

from . import build as B
from .errors import FusegradError
from .ir import FLOAT_DTYPES, Node, toposort
from .ops import NOT_DIFFERENTIABLE
from .ops.tables import JVP, tangent_sum


def jvp(outputs, primal_inputs, tangents) -> list[Node | None]:
    """Tangents of `outputs` for the given input tangents (None entries are zero).

    Each tangent has its primal's shape; it is cast to the primal's dtype. Tangents of
    non-float inputs are ignored, and so are those of inputs the outputs do not read."""
    tangent: dict[int, Node] = {}
    for x, dot in zip(primal_inputs, tangents):
        if dot is not None and x.dtype in FLOAT_DTYPES:
            tangent[x.id] = tangent_sum(tangent.get(x.id), B.cast(dot, x.dtype))
    seeded = set(tangent)
    for node in toposort(outputs):
        if node.id in seeded or node.dtype not in FLOAT_DTYPES:
            continue
        input_tangents = [tangent.get(i.id) for i in node.inputs]
        if all(t is None for t in input_tangents):
            continue
        rule = JVP.get(node.op)
        if rule is None:
            raise FusegradError(f"internal error: op {node.op!r} has no forward derivative rule")
        if rule is NOT_DIFFERENTIABLE:
            continue
        dot = rule(input_tangents, node)
        if dot is not None:
            tangent[node.id] = B.cast(dot, node.dtype)
    return [tangent.get(out.id) for out in outputs]
