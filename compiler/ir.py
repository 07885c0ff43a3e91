"""The graph IR: immutable, hash-consed nodes and the functions built from them.

A node is `(op, inputs, attrs)`; its dtype and shape follow from those by the
op's shape rule (`ops.tables.SHAPE`), run once when the node is built. Building
a node that already exists returns the existing one, so common subexpressions
are shared for free and every graph has a stable content hash.

While a function is traced, its nodes are its own: the table is keyed by the trace's
scope too (`shapes.DimUnifier.scope`). A shape rule merges dims or records run-time
checks in the trace's unifier; a node found from another trace would skip its rule,
and the trace would lose them (a second `fg.compile` of `X @ w` once compiled with no
check that `X.shape[1] == w.shape[0]`). A trace ends by building its graph again, with
canonical dims, into the process-wide scope 0 (`trace._substitute_dims`), where graphs
are shared.

dtypes are NumPy dtype names: "float32", "float64", "bool".
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import threading
import weakref
from dataclasses import dataclass, field

from . import shapes, symbolic
from .errors import FusegradError

FLOAT_DTYPES = ("float32", "float64")

_nodes: "weakref.WeakValueDictionary[tuple, Node]" = weakref.WeakValueDictionary()
_next_id = itertools.count()
_lock = threading.Lock()


class Node:
    __slots__ = ("op", "inputs", "attrs", "dtype", "shape", "id", "_digest", "__weakref__")

    def __init__(self, op, inputs, attrs, dtype, shape):
        self.op = op
        self.inputs = inputs
        self.attrs = attrs  # a tuple of (name, value), sorted by name
        self.dtype = dtype
        self.shape = shape
        self.id = next(_next_id)
        self._digest = None

    def attr(self, name, default=None):
        for key, value in self.attrs:
            if key == name:
                return value
        return default

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def digest(self) -> str:
        """Content hash: the same computation gives the same digest in any process."""
        if self._digest is None:
            for node in toposort([self]):
                if node._digest is None:
                    text = repr(
                        (
                            node.op,
                            node.dtype,
                            symbolic.format_shape(node.shape),
                            attr_text(node.attrs),
                            [i._digest for i in node.inputs],
                        )
                    )
                    node._digest = hashlib.sha256(text.encode()).hexdigest()[:32]
        return self._digest

    def __repr__(self):
        return f"<{self.op} {self.dtype}{symbolic.format_shape(self.shape)} #{self.id}>"


def _attr_key(value):
    # Floats are keyed by their bits so that 0.0 and -0.0 stay distinct and NaN is equal
    # to itself; Dims by their canonical key.
    if isinstance(value, float):
        return ("f", value.hex())
    if isinstance(value, tuple):
        return tuple(_attr_key(v) for v in value)
    if isinstance(value, symbolic.Dim):
        return ("d", value.key)
    return value


def attr_text(attrs) -> str:
    parts = []
    for key, value in attrs:
        parts.append(f"{key}={_format_attr(value)}")
    return ", ".join(parts)


def _format_attr(value):
    if isinstance(value, tuple):
        return "(" + ", ".join(_format_attr(v) for v in value) + ")"
    if isinstance(value, symbolic.Dim):
        return repr(value)
    if isinstance(value, float):
        return repr(value)
    return repr(value) if isinstance(value, str) else str(value)


@functools.cache
def _shape_rules() -> dict:
    # Imported at first use, not at the top: the ops' modules build nodes with `make`.
    from .ops import SHAPE

    return SHAPE


def make(op: str, inputs=(), **attrs) -> Node:
    """Build (or find) the node `op(inputs; attrs)`, running its shape rule."""
    inputs = tuple(inputs)
    attr_items = tuple(sorted(attrs.items()))
    key = _key(op, inputs, attr_items)
    with _lock:
        node = _nodes.get(key)
    if node is not None:
        return node
    rule = _shape_rules().get(op)
    if rule is None:
        raise FusegradError(f"internal error: unknown op {op!r}")
    dtype, shape = rule(inputs, attrs)
    return _add(key, op, inputs, attr_items, dtype, tuple(symbolic.simplify(d) for d in shape))


def _key(op: str, inputs: tuple, attr_items: tuple) -> tuple:
    return (
        shapes.node_scope(),
        op,
        tuple(i.id for i in inputs),
        tuple((k, _attr_key(v)) for k, v in attr_items),
    )


def _add(key: tuple, op: str, inputs: tuple, attr_items: tuple, dtype: str, shape: tuple) -> Node:
    """The node under `key`: the one another thread added meanwhile, or this new one."""
    with _lock:
        node = _nodes.get(key)
        if node is None:
            node = Node(op, inputs, attr_items, dtype, shape)
            _nodes[key] = node
    return node


def to_records(outputs) -> tuple:
    """The graph of `outputs` (nodes, or None) as plain data that `from_records` builds
    again in another process: one record `(op, input positions, attrs, dtype, shape)` per
    node, inputs first, then the position of each output."""
    order = toposort([node for node in outputs if node is not None])
    position = {node.id: k for k, node in enumerate(order)}
    records = tuple(
        (node.op, tuple(position[i.id] for i in node.inputs), node.attrs, node.dtype, node.shape)
        for node in order
    )
    return records, tuple(None if node is None else position[node.id] for node in outputs)


def from_records(data) -> list:
    """The output nodes of `to_records`' data, each found or built by `make_known`: only
    for records of a graph built by `make` with the same compiler and the same dims
    merged (the derivative cache's key says so), where each rule gives what was recorded."""
    records, outputs = data
    built: list[Node] = []
    for op, inputs, attrs, dtype, shape in records:
        built.append(make_known(op, tuple(built[k] for k in inputs), attrs, dtype, shape))
    return [None if k is None else built[k] for k in outputs]


def make_known(op: str, inputs: tuple, attr_items: tuple, dtype: str, shape: tuple) -> Node:
    """The node `op(inputs; attrs)` (attrs as `Node.attrs`: sorted pairs), found, or built
    with the dtype and shape given instead of its rule's: for callers that know them (a
    graph rebuilt with its dims renamed, a cache entry), when running the rule again would
    only repeat it (~2× the cost of a node)."""
    return _add(_key(op, inputs, attr_items), op, inputs, attr_items, dtype, shape)


def toposort(outputs) -> list[Node]:
    """Nodes reachable from `outputs`, inputs before users, in a deterministic order."""
    order: list[Node] = []
    seen: set[int] = set()
    for root in outputs:
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if node.id in seen:
                continue
            if expanded:
                seen.add(node.id)
                order.append(node)
                continue
            stack.append((node, True))
            for child in reversed(node.inputs):
                if child.id not in seen:
                    stack.append((child, False))
    return order


def users(nodes) -> dict[int, list[Node]]:
    """For each node id, the nodes among `nodes` that read it (with repetition)."""
    result: dict[int, list[Node]] = {n.id: [] for n in nodes}
    for node in nodes:
        for child in node.inputs:
            result.setdefault(child.id, []).append(node)
    return result


@dataclass(frozen=True)
class Param:
    """One traced argument: its name, and the dims it was traced with."""

    name: str
    node: Node


@dataclass(frozen=True)
class DimCheck:
    """A fact about the dims that the runtime verifies before the kernel runs:
    `left == right` (kind "eq") or `left >= right` (kind "ge")."""

    kind: str
    left: object
    right: object
    where: str


@dataclass(frozen=True)
class Function:
    """A traced function: parameter nodes in, output nodes out.

    `input_dims[k][axis]` is the dim (symbol, expression or int) that the runtime
    binds or checks against the shape of argument k.
    """

    name: str
    params: tuple[Param, ...]
    outputs: tuple[Node, ...]
    output_names: tuple[str, ...] = field(default=())
    checks: tuple["DimCheck", ...] = field(default=())
    dim_reasons: tuple = field(default=(), compare=False)  # (dim, why it was merged)

    @property
    def digest(self) -> str:
        text = repr(
            (
                self.name,
                [(p.name, p.node.digest) for p in self.params],
                [o.digest for o in self.outputs],
                self.output_names,
                [(c.kind, repr(c.left), repr(c.right)) for c in self.checks],
            )
        )
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def nodes(self) -> list[Node]:
        return toposort([p.node for p in self.params] + list(self.outputs))

    def dim_symbols(self) -> list[str]:
        """Free dim symbols, in order of first appearance in the parameters."""
        found: list[str] = []
        for param in self.params:
            for name in symbolic.dim_symbols(param.node.shape):
                if name not in found:
                    found.append(name)
        return found

    def __str__(self):
        return format_function(self)


def format_function(function: Function) -> str:
    """A readable listing: one line per node, `%k = op(inputs; attrs) : dtype shape`."""
    nodes = function.nodes()
    names: dict[int, str] = {}
    lines = []
    header = ", ".join(
        f"{p.name}: {p.node.dtype}{symbolic.format_shape(p.node.shape)}" for p in function.params
    )
    lines.append(f"def {function.name}({header}):")
    for param in function.params:
        names[param.node.id] = param.name
    counter = 0
    for node in nodes:
        if node.id in names:
            continue
        names[node.id] = f"%{counter}"
        counter += 1
        args = [names[i.id] for i in node.inputs]
        attrs = attr_text(node.attrs)
        inner = ", ".join(args + ([attrs] if attrs else []))
        lines.append(
            f"  {names[node.id]} = {node.op}({inner}) : "
            f"{node.dtype}{symbolic.format_shape(node.shape)}"
        )
    outs = ", ".join(names[o.id] for o in function.outputs)
    lines.append(f"  return {outs}")
    return "\n".join(lines)
