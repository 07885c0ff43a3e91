"""Constructors of graph nodes with NumPy semantics: promotion and broadcasting.

The tracer, the derivative rules and every IR-to-IR pass build nodes through
these functions, so that a derivative is an ordinary graph that can be
differentiated again. Arguments are nodes or Python numbers (weak scalars: they
take the dtype of the array they meet). Primitive nodes are always same-shape
and same-dtype; the broadcasts and casts that NumPy does implicitly are made
explicit here.
"""

from __future__ import annotations

from typing import Union

from . import shapes, symbolic
from .errors import DTypeError, ShapeError
from .ir import FLOAT_DTYPES, Node, make
from .symbolic import Dim, DimLike

Operand = Union[Node, float, int, bool]


# -- leaves -----------------------------------------------------------------
def constant(value, dtype: str = "float64", shape=()) -> Node:
    if dtype == "bool":
        node = make("const", value=float(bool(value)), dtype="bool")
    else:
        node = make("const", value=float(value), dtype=dtype)
    return broadcast_to(node, shape)


def zeros(shape, dtype: str) -> Node:
    return constant(0.0, dtype, shape)


def iota(shape, axis: int, dtype: str = "float64") -> Node:
    """out[i0, i1, ...] = i_axis."""
    shape = tuple(shapes.canonical(d) for d in shape)
    return make("iota", shape=shape, axis=int(axis), dtype=dtype)


def eye(n, dtype: str = "float64") -> Node:
    """The n × n identity matrix, (iota(n×n, 0) == iota(n×n, 1)) as numbers."""
    rows, cols = iota((n, n), 0, dtype), iota((n, n), 1, dtype)
    return cast(make("eq", [rows, cols]), dtype)


def is_eye(node: Node) -> bool:
    """Whether the node is an identity matrix built by `eye`."""
    if node.op != "cast" or node.ndim != 2 or node.inputs[0].op != "eq":
        return False
    a, b = node.inputs[0].inputs
    return (a.op == b.op == "iota" and {a.attr("axis"), b.attr("axis")} == {0, 1}
            and symbolic.dims_equal(node.shape[0], node.shape[1]))


def dim_value(dim: DimLike, dtype: str = "float64") -> Node:
    """A dim used as a number, e.g. the `n` in `sum(x) / n`."""
    dim = shapes.canonical(dim)
    if isinstance(dim, int):
        return constant(float(dim), dtype)
    return make("dim", dim=dim, dtype=dtype)


def const_value(node: Node):
    """The Python float of a (broadcast) constant node, else None."""
    while node.op == "broadcast_to":
        node = node.inputs[0]
    if node.op == "const":
        return node.attr("value")
    return None


# -- dtypes -------------------------------------------------------------------
def is_weak(node: Node) -> bool:
    """Whether a node is computed from Python numbers and dims alone (`0.5 / n`).

    Such values are weak like the Python scalars they come from: they take the
    dtype of the arrays they meet instead of promoting float32 to float64.
    """
    if node.op in ("const", "dim"):
        return True
    if node.op == "param" or not node.inputs:
        return False
    return all(is_weak(i) for i in node.inputs)


def result_dtype(operands) -> str:
    """NumPy promotion among nodes; Python scalars (and weak nodes) are weak."""
    nodes = [o for o in operands if isinstance(o, Node)]
    strong = [n for n in nodes if not is_weak(n)]
    dtypes = {n.dtype for n in (strong if strong else nodes)}
    if "float64" in dtypes:
        return "float64"
    if "float32" in dtypes:
        return "float32"
    if dtypes == {"bool"}:
        has_float = any(isinstance(o, float) for o in operands)
        has_int = any(isinstance(o, int) and not isinstance(o, bool) for o in operands)
        return "float64" if (has_float or has_int) else "bool"
    return "float64"


def cast(node: Node, dtype: str) -> Node:
    if node.dtype == dtype:
        return node
    if dtype not in FLOAT_DTYPES + ("bool",):
        raise DTypeError(f"fusegrad does not support dtype {dtype}")
    value = const_value(node)
    if value is not None:
        return constant(value, dtype, node.shape)
    return make("cast", [node], dtype=dtype)


def as_node(value: Operand, dtype: str) -> Node:
    if isinstance(value, Node):
        return cast(value, dtype)
    if isinstance(value, Dim):
        return dim_value(value, dtype)
    return constant(value, dtype)


def _float_operands(name: str, operands) -> list[Node]:
    """Promote operands to one float dtype and broadcast them to one shape."""
    dtype = result_dtype(operands)
    if dtype == "bool":
        dtype = "float64"
    nodes = [as_node(o, dtype) for o in operands]
    return _broadcast_all(name, nodes)


def _broadcast_all(name: str, nodes: list[Node]) -> list[Node]:
    shape = shapes.broadcast_shapes([n.shape for n in nodes], f"{name}: operands could not be broadcast together")
    return [broadcast_to(n, shape) for n in nodes]


# -- element-wise ---------------------------------------------------------------
def unary(op: str, x: Operand) -> Node:
    (x,) = _float_operands(op, [x])
    return make(op, [x])


def binary(op: str, a: Operand, b: Operand) -> Node:
    a, b = _float_operands(op, [a, b])
    return make(op, [a, b])


# x + 0 = 0 + x = x − 0 = x·1 = 1·x = x/1 = x, where that keeps x's dtype and shape.
_RIGHT_IDENTITY = {"add": 0.0, "sub": 0.0, "mul": 1.0, "div": 1.0}
_LEFT_IDENTITY = {"add": 0.0, "mul": 1.0}


def _arithmetic(op: str, a: Operand, b: Operand) -> Node:
    if const_value_of(b) == _RIGHT_IDENTITY[op] and isinstance(a, Node) and _keeps(a, b):
        return a
    left = _LEFT_IDENTITY.get(op)
    if left is not None and const_value_of(a) == left and isinstance(b, Node) and _keeps(b, a):
        return b
    return binary(op, a, b)


def add(a: Operand, b: Operand) -> Node:
    return _arithmetic("add", a, b)


def sub(a: Operand, b: Operand) -> Node:
    return _arithmetic("sub", a, b)


def mul(a: Operand, b: Operand) -> Node:
    return _arithmetic("mul", a, b)


def div(a: Operand, b: Operand) -> Node:
    return _arithmetic("div", a, b)


def neg(x: Operand) -> Node:
    if isinstance(x, Node) and x.op == "neg":
        return x.inputs[0]
    return unary("neg", x)


def const_value_of(value: Operand):
    if isinstance(value, Node):
        return const_value(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _keeps(node: Node, other: Operand) -> bool:
    """Whether `node op other` has node's own dtype and shape (so it may be returned)."""
    if node.dtype == "bool":
        return False
    if not isinstance(other, Node):
        return True
    if other.dtype != node.dtype and result_dtype([node, other]) != node.dtype:
        return False
    if len(other.shape) > len(node.shape):
        return False
    offset = len(node.shape) - len(other.shape)
    return all(
        shapes.is_one(d) or symbolic.dims_equal(shapes.canonical(d), shapes.canonical(node.shape[offset + k]))
        for k, d in enumerate(other.shape)
    )


def power(x: Operand, p: Operand) -> Node:
    exponent = const_value_of(p)
    if exponent is not None and isinstance(x, Node):
        x = cast(x, result_dtype([x, p]))
        if exponent == 0.0:
            return constant(1.0, x.dtype, x.shape)
        if exponent == 1.0:
            return x
        if exponent == 2.0:
            return mul(x, x)
        if exponent == 0.5:
            return unary("sqrt", x)
        if exponent == -1.0:
            return div(1.0, x)
    return binary("pow", x, p)


def compare(op: str, a: Operand, b: Operand) -> Node:
    """lt, le, gt, ge, eq, ne: a bool mask."""
    a, b = _float_operands(op, [a, b])
    return make(op, [a, b])


def logical(op: str, *operands: Operand) -> Node:
    """logical_and, logical_or, logical_not on masks (numbers are != 0)."""
    nodes = []
    for o in operands:
        node = o if isinstance(o, Node) else constant(bool(o), "bool")
        if node.dtype != "bool":
            node = compare("ne", node, 0.0)
        nodes.append(node)
    return make(op, _broadcast_all(op, nodes))


def select(cond: Operand, a: Operand, b: Operand) -> Node:
    """where(cond, a, b)."""
    cond_node = cond if isinstance(cond, Node) else constant(bool(cond), "bool")
    if cond_node.dtype != "bool":
        cond_node = compare("ne", cond_node, 0.0)
    dtype = result_dtype([a, b])
    if dtype == "bool":
        dtype = "float64"
    nodes = _broadcast_all("where", [cond_node, as_node(a, dtype), as_node(b, dtype)])
    return make("select", nodes)


def stop_gradient(x: Node) -> Node:
    if x.op in ("const", "dim", "stop_gradient"):
        return x
    return make("stop_gradient", [x])


# -- layout -----------------------------------------------------------------------
def broadcast_to(x: Node, shape) -> Node:
    shape = tuple(shapes.canonical(d) for d in shape)
    if len(shape) == len(x.shape) and all(
        symbolic.dims_equal(shapes.canonical(a), b) for a, b in zip(x.shape, shape)
    ):
        return x
    if x.op == "broadcast_to":  # broadcast of a broadcast
        return broadcast_to(x.inputs[0], shape)
    return make("broadcast_to", [x], shape=shape)


def reshape(x: Node, shape) -> Node:
    shape = tuple(shapes.canonical(d) for d in shape)
    if len(shape) == len(x.shape) and all(
        symbolic.dims_equal(shapes.canonical(a), b) for a, b in zip(x.shape, shape)
    ):
        return x
    if x.op == "reshape":
        return reshape(x.inputs[0], shape)
    value = const_value(x)
    if value is not None:
        return constant(value, x.dtype, shape)
    return make("reshape", [x], shape=shape)


def transpose(x: Node, perm) -> Node:
    perm = tuple(int(p) for p in perm)
    if perm == tuple(range(x.ndim)) or is_eye(x):  # Iᵀ = I
        return x
    if x.op == "transpose":  # (x^T)^T = x, and compositions in general
        inner = x.attr("perm")
        return transpose(x.inputs[0], tuple(inner[p] for p in perm))
    return make("transpose", [x], perm=perm)


def slice_axes(x: Node, starts, steps, sizes) -> Node:
    """out[i0, i1, ...] = x[starts[0] + steps[0]*i0, ...]."""
    if all(s == 0 for s in starts) and all(s == 1 for s in steps) and all(
        symbolic.dims_equal(a, b) for a, b in zip(sizes, x.shape)
    ):
        return x
    return make("slice", [x], starts=tuple(starts), steps=tuple(steps), sizes=tuple(sizes))


def embed(x: Node, starts, steps, shape) -> Node:
    """The transpose of slice: zeros of `shape` with x written at the sliced positions."""
    return make("embed", [x], starts=tuple(starts), steps=tuple(steps), shape=tuple(shape))


def expand_axes(x: Node, axes, ndim: int) -> Node:
    """Insert size-1 axes so that x (the result of reducing `axes`) has rank ndim."""
    shape = list(x.shape)
    for axis in sorted(axes):
        shape.insert(axis, 1)
    assert len(shape) == ndim
    return reshape(x, shape)


# -- reductions ------------------------------------------------------------------
def reduce(op: str, x: Node, axes) -> Node:
    """reduce_sum, reduce_max, reduce_min over `axes` (the axes are removed)."""
    axes = tuple(sorted(axes))
    if not axes:
        return x
    if x.dtype == "bool":
        x = cast(x, "float64")
    return make(op, [x], axes=axes)


def sum_to_shape(x: Node, shape) -> Node:
    """Undo a NumPy broadcast from `shape` to x.shape by summation."""
    lead = x.ndim - len(shape)
    if lead < 0:
        raise ShapeError(f"internal: cannot sum {x.shape} to {shape}")
    axes = list(range(lead))
    for k, d in enumerate(shape):
        if shapes.is_one(d) and not shapes.is_one(x.shape[lead + k]):
            axes.append(lead + k)
    summed = reduce("reduce_sum", x, axes)
    return reshape(summed, shape)


# -- linear algebra ----------------------------------------------------------------
def matmul(a: Node, b: Node) -> Node:
    """(m, k) @ (k, n) on 2-D operands."""
    a, b = _float_operands_no_broadcast([a, b])
    if is_eye(a) and a.dtype == b.dtype:  # I·B = B (a Jacobian's basis meets a product)
        return b
    if is_eye(b) and a.dtype == b.dtype:
        return a
    d = diagonal_of(a)
    if d is not None and d.dtype == b.dtype:  # diag(d)·B = d[:, None] ⊙ B
        return mul(reshape(d, (d.shape[0], 1)), b)
    d = diagonal_of(b)
    if d is not None and d.dtype == a.dtype:  # A·diag(d) = A ⊙ d[None, :]
        return mul(a, reshape(d, (1, d.shape[0])))
    return make("matmul", [a, b])


def diagonal_of(node: Node) -> Node | None:
    """d when the node is diag(d) = I ⊙ (d broadcast along rows or columns), else None."""
    if node.op != "mul" or node.ndim != 2:
        return None
    for eye_side, other in (node.inputs, node.inputs[::-1]):
        if not is_eye(eye_side):
            continue
        c = const_value(other)
        if c is not None:  # c·I
            return constant(c, node.dtype, (node.shape[0],))
        if other.op != "broadcast_to":
            continue
        source = other.inputs[0]
        if source.op == "reshape" and source.ndim == 2 and 1 in (
                source.shape[0], source.shape[1]) and source.inputs[0].ndim == 1:
            return source.inputs[0]
    return None


def _float_operands_no_broadcast(operands) -> list[Node]:
    dtype = result_dtype(operands)
    if dtype == "bool":
        dtype = "float64"
    return [as_node(o, dtype) for o in operands]
