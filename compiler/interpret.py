"""The reference interpreter: evaluates a graph with NumPy, node by node.

It is the oracle: every backend is tested against it, and derivatives are
tested against finite differences computed through it.
"""

from __future__ import annotations

import numpy as np

from .binding import bind_dims
from .ir import Function, Node, toposort
from .ops import EVALUATE


def evaluate(function: Function, args) -> list[np.ndarray]:
    """The function's outputs for NumPy arguments (cast to the traced dtypes)."""
    arrays = [np.asarray(a, dtype=p.node.dtype) for p, a in zip(function.params, args)]
    dims = bind_dims(function, [a.shape for a in arrays])
    bound = {p.node.id: a for p, a in zip(function.params, arrays)}
    return evaluate_nodes(function.outputs, bound, dims)


def evaluate_nodes(outputs, bound: dict[int, np.ndarray], dims: dict[str, int]):
    values: dict[int, np.ndarray] = dict(bound)
    for node in toposort(outputs):
        if node.id in values:
            continue
        if node.op == "param":
            raise KeyError(f"unbound parameter {node.attr('name')!r}")
        inputs = [values[i.id] for i in node.inputs]
        values[node.id] = np.asarray(EVALUATE[node.op](node, inputs, dims))
    return [np.array(values[o.id], dtype=o.dtype) for o in outputs]


def evaluate_node(node: Node, bound, dims) -> np.ndarray:
    return evaluate_nodes([node], bound, dims)[0]
