"""Batching (vmap) as a graph-to-graph transform.

`fg.vmap(f)` traces `f` once for ONE example: each batched argument is stood in
for by a placeholder `param` node of the per-example shape. `batch` then rewrites
the per-example graph in topological order: a node that depends on a placeholder
becomes its batched version, with the batch axis first; the rest stays as it is
(computed once, shared by every example). Each op has one row in `BATCH`:

    BATCH[op](node, inputs, batched, size) -> batched node

`inputs` are the node's new inputs, `batched[k]` says whether input k carries the
batch axis (at axis 0, of extent `size`), and the rule builds the node's batched
version with `compiler.build`. Matrix products stay matrix products: a product
of a fixed matrix with a batch of vectors is one product with a matrix of them,
so a set of directions (the basis of a Jacobian) becomes one BLAS call, and with
the identity basis, no product at all (I·A = A in `build.matmul`).
"""

from __future__ import annotations

from . import build as B
from . import symbolic
from .errors import FusegradError
from .ir import Node, make, toposort
from .ops.elementwise import BINARY, COMPARE, LOGICAL, UNARY
from .ops.reduce import REDUCTIONS

BATCH: dict = {}


def batch(outputs, placeholders: dict[int, Node], size) -> list[tuple[Node, bool]]:
    """(node, batched?) for each output; `placeholders` maps the id of each placeholder
    param to the batched node (batch axis first) that it stands for."""
    values: dict[int, object] = dict(placeholders)  # node id → Node or _Scaled
    for node in toposort(outputs):
        if node.id in values or not any(i.id in values for i in node.inputs):
            continue
        flags = [i.id in values for i in node.inputs]
        scaled = _scaled_rule(node, [values.get(i.id, i) for i in node.inputs], flags, size)
        if scaled is not None:
            values[node.id] = scaled
            continue
        rule = BATCH.get(node.op)
        if rule is None:
            raise FusegradError(f"internal error: op {node.op!r} has no batching rule")
        inputs = [_materialize(values[i.id], size) if i.id in values else i for i in node.inputs]
        values[node.id] = rule(node, inputs, flags, size)
    return [(_materialize(values[o.id], size), True) if o.id in values else (o, False)
            for o in outputs]


# -- linear chains stay factored --------------------------------------------------------------
class _Scaled:
    """A batched value kept as base ⊙ scale: `base` batched, `scale` one example's worth
    (None for 1). Derivatives are linear in their seed, so the element-wise chain
    between a batched seed and the next product is such a scaling, e.g. for the
    logistic Hessian the rows of Xᵀ times s = σ(z)(1 − σ(z)): keeping it factored
    computes s once per row of X, not once per element of the batch, and the
    product that follows sees Xᵀ ⊙ s, i.e. Xᵀ diag(s)."""

    __slots__ = ("base", "scale")

    def __init__(self, base: Node, scale: Node | None):
        self.base, self.scale = base, scale


def _parts(value) -> tuple[Node, Node | None]:
    return (value.base, value.scale) if isinstance(value, _Scaled) else (value, None)


def _times_scale(a, b):
    if a is None:
        return b
    return a if b is None else B.mul(a, b)


def _scaled_rule(node, inputs, batched, size):
    """The node as a _Scaled value when it scales one batched input by unbatched ones;
    None when it needs the batched rule."""
    op = node.op
    if node.dtype not in ("float32", "float64"):
        return None
    if op in ("reshape", "transpose", "broadcast_to") and isinstance(inputs[0], _Scaled):
        c = B.const_value(inputs[0].scale) if inputs[0].scale is not None else 1.0
        if c is not None:  # a uniform scale commutes with moving elements around
            base = BATCH[op](node, [inputs[0].base], batched, size)
            return _Scaled(base, B.constant(c, node.dtype, node.shape))
    if op == "neg" and batched[0]:
        base, scale = _parts(inputs[0])
        return _Scaled(base, B.neg(scale) if scale is not None else B.constant(
            -1.0, node.dtype, node.shape))
    if op == "mul" and batched.count(True) == 1:
        k = batched.index(True)
        base, scale = _parts(inputs[k])
        return _Scaled(base, _times_scale(scale, inputs[1 - k]))
    if op == "div" and batched == [True, False]:
        base, scale = _parts(inputs[0])
        ones = scale if scale is not None else B.constant(1.0, node.dtype, node.shape)
        return _Scaled(base, B.div(ones, inputs[1]))
    if op in ("add", "sub") and all(batched):
        (base_a, scale_a), (base_b, scale_b) = _parts(inputs[0]), _parts(inputs[1])
        if base_a is base_b and base_a.dtype == node.dtype:
            one = B.constant(1.0, node.dtype, node.shape)
            a = scale_a if scale_a is not None else one
            b = scale_b if scale_b is not None else one
            return _Scaled(base_a, B.add(a, b) if op == "add" else B.sub(a, b))
    return None


def _materialize(value, size) -> Node:
    if not isinstance(value, _Scaled):
        return value
    base, scale = value.base, value.scale
    if scale is None:
        return base
    scale = with_batch_axis(scale, size)
    if base.op == "transpose":
        # Scale in the layout of the transposed array, so the product of a transposed
        # operand reads it in place (Xᵀ diag(s) is stored as diag(s) X, read transposed).
        perm = base.attr("perm")
        inverse = tuple(perm.index(k) for k in range(len(perm)))
        return B.transpose(B.mul(base.inputs[0], B.transpose(scale, inverse)), perm)
    return B.mul(base, scale)


def with_batch_axis(x: Node, size) -> Node:
    """An unbatched value repeated along a new leading batch axis (a broadcast: free)."""
    return B.broadcast_to(B.reshape(x, (1,) + tuple(x.shape)), (size,) + tuple(x.shape))


def move_axis(x: Node, source: int, destination: int) -> Node:
    perm = [k for k in range(x.ndim) if k != source]
    perm.insert(destination, source)
    return B.transpose(x, perm)


# -- element-wise: every operand gets the batch axis -----------------------------------------
def _elementwise(node, inputs, batched, size):
    full = [x if b else with_batch_axis(x, size) for x, b in zip(inputs, batched)]
    return make(node.op, full, **dict(node.attrs))


for _op in UNARY + BINARY + COMPARE + LOGICAL + ("select", "cast", "stop_gradient"):
    BATCH[_op] = _elementwise


# -- layout: the same op, one axis more in front ----------------------------------------------
def _broadcast(node, inputs, batched, size):
    (x,) = inputs
    lead = node.ndim - (x.ndim - 1)  # axes the broadcast adds in front of x's own
    x = B.reshape(x, (size,) + (1,) * lead + tuple(x.shape[1:]))
    return B.broadcast_to(x, (size,) + tuple(node.shape))


BATCH["broadcast_to"] = _broadcast
BATCH["reshape"] = lambda node, inputs, batched, size: B.reshape(
    inputs[0], (size,) + tuple(node.shape))
BATCH["transpose"] = lambda node, inputs, batched, size: B.transpose(
    inputs[0], (0,) + tuple(p + 1 for p in node.attr("perm")))
BATCH["slice"] = lambda node, inputs, batched, size: B.slice_axes(
    inputs[0], (0,) + node.attr("starts"), (1,) + node.attr("steps"),
    (size,) + node.attr("sizes"))
BATCH["embed"] = lambda node, inputs, batched, size: B.embed(
    inputs[0], (0,) + node.attr("starts"), (1,) + node.attr("steps"),
    (size,) + node.attr("shape"))


# -- reductions: the same axes, one further right ----------------------------------------------
def _reduction(node, inputs, batched, size):
    return B.reduce(node.op, inputs[0], tuple(a + 1 for a in node.attr("axes")))


for _op in REDUCTIONS:
    BATCH[_op] = _reduction


# -- matrix products ---------------------------------------------------------------------------
def _matmul(node, inputs, batched, size):
    """Per example C = A·B (2-D). A batch of A against one B is one product of the
    stacked rows; one A against a batch of B is one product with Aᵀ on the right:
    (A·Bₑ)ᵀ = Bₑᵀ·Aᵀ. Two batches multiply element-wise and sum over k."""
    a, b = inputs
    m, n = node.shape
    if batched[0] and not batched[1]:
        k = a.shape[2]
        stacked = B.matmul(B.reshape(a, (_times(size, m), k)), b)
        return B.reshape(stacked, (size, m, n))
    if batched[1] and not batched[0]:
        k = b.shape[1]
        if n == 1:  # a batch of column vectors is a matrix of rows: no data moves
            return B.reshape(B.matmul(B.reshape(b, (size, k)), B.transpose(a, (1, 0))),
                             (size, m, 1))
        rows = B.reshape(move_axis(b, 2, 1), (_times(size, n), k))  # (e, n) × k
        product = B.matmul(rows, B.transpose(a, (1, 0)))  # (e, n) × m
        return move_axis(B.reshape(product, (size, n, m)), 2, 1)
    # both batched: C[e, i, j] = Σ_k A[e, i, k]·B[e, k, j]
    a4 = B.reshape(a, tuple(a.shape) + (1,))
    b4 = B.reshape(b, (b.shape[0], 1) + tuple(b.shape[1:]))
    return B.reduce("reduce_sum", B.mul(a4, b4), (2,))


BATCH["matmul"] = _matmul


def _times(a, b):
    return symbolic.simplify(symbolic.as_dim(a) * symbolic.as_dim(b))


def _never_batched(node, inputs, batched, size):
    raise FusegradError(f"internal error: leaf op {node.op!r} has no inputs to batch")


for _op in ("const", "dim", "param", "iota"):
    BATCH[_op] = _never_batched
