"""Lowering: graph IR → loop IR.

Each graph node is either *materialized* (it gets a buffer, written by a loop
nest of its own) or *inlined* (its scalar expression is computed where it is
read). A node is materialized when it is a parameter or an output, when its
computation has a loop structure of its own (reductions, matrix products,
embeddings), or when inlining it would repeat real work (it is read by several
consumers, or broadcast over a larger domain, or read by a matrix product).
Everything else, element-wise chains and layout changes included, is fused
into the loop nest of the node that reads it.

The rows of `ELEMENT` say how to read element `idx` of a node from its inputs.
"""

from __future__ import annotations

from . import symbolic
from .errors import FusegradError
from .ir import Function, Node, toposort, users
from .loopir import (AccInit, Accumulator, AccRef, AccUpdate, Apply, Buffer, Const, DimValue,
                     Gemm, Load, Loop, Program, Store, loop_var)
from .ops.elementwise import BINARY, COMPARE, LOGICAL, UNARY
from .ops.reduce import REDUCTIONS

ELEMENTWISE = set(UNARY + BINARY + COMPARE + LOGICAL + ("select", "cast"))
LAYOUT = {"broadcast_to", "reshape", "transpose", "slice", "stop_gradient"}
OWN_LOOPS = set(REDUCTIONS) | {"matmul", "embed"}
LEAVES = {"const", "dim", "iota"}


def linear_index(idx, shape):
    """Row-major offset of index `idx` in an array of `shape`."""
    offset, stride = symbolic.Dim.const(0), symbolic.Dim.const(1)
    for i, d in reversed(list(zip(idx, shape))):
        offset = offset + symbolic.as_dim(i) * stride
        stride = stride * symbolic.as_dim(d)
    return symbolic.simplify(offset)


def _is_one(d) -> bool:
    return d == 1


def _squeeze_like(x: Node, y: Node) -> bool:
    """Whether reshape x → y only inserts or removes size-1 axes."""
    a = [d for d in x.shape if not _is_one(d)]
    b = [d for d in y.shape if not _is_one(d)]
    return len(a) == len(b) and all(symbolic.dims_equal(p, q) for p, q in zip(a, b))


# -- which nodes get a buffer ------------------------------------------------------------
# Ops so cheap that recomputing them beats a round trip through memory.
CHEAP = {"neg", "abs", "cast"}


def _computes(node: Node, cache: dict[int, bool]) -> bool:
    """Whether reading one element of `node` (inlined) does real arithmetic."""
    if node.id not in cache:
        if node.op in CHEAP:
            cache[node.id] = _computes(node.inputs[0], cache)
        elif node.op in ELEMENTWISE:
            cache[node.id] = True
        elif node.op in LAYOUT:
            cache[node.id] = _computes(node.inputs[0], cache)
        else:
            cache[node.id] = False
    return cache[node.id]


def _computing_core(node: Node) -> Node:
    """The node under a chain of layout ops (transposes, reshapes, slices of it)."""
    while node.op in LAYOUT and node.op != "reshape":
        node = node.inputs[0]
    return node


def choose_materialized(function: Function) -> set[int]:
    nodes = function.nodes()
    readers = users(nodes)
    computes: dict[int, bool] = {}
    chosen = {p.node.id for p in function.params} | {o.id for o in function.outputs}
    for node in nodes:
        if node.op in OWN_LOOPS:
            chosen.add(node.id)
        if node.op == "reshape" and not _squeeze_like(node.inputs[0], node):
            chosen.add(node.inputs[0].id)
        # A product or a broadcast would recompute an inlined operand many times: store
        # the computation itself (not a layout view of it, which indexing gives for free).
        if node.op == "matmul":
            chosen.update(_computing_core(i).id for i in node.inputs if _computes(i, computes))
        if node.op == "broadcast_to" and _computes(node.inputs[0], computes):
            chosen.add(_computing_core(node.inputs[0]).id)
    for node in nodes:
        distinct = {r.id for r in readers.get(node.id, [])}
        if len(distinct) > 1 or len(readers.get(node.id, [])) > 1:
            if _computes(node, computes) and node.op in ELEMENTWISE:
                chosen.add(node.id)
    # A layout node over a materialized node is a free re-indexing, never a buffer
    # of its own unless it is an output.
    return chosen


# -- lowering ------------------------------------------------------------------------------
class _Lowering:
    def __init__(self, function: Function, blas: bool):
        self.function = function
        self.blas = blas
        self.materialized = choose_materialized(function)
        self.buffers: dict[int, Buffer] = {}
        self.body: list = []
        self.scratch: list[Buffer] = []
        self.acc_count = 0

    def element(self, node: Node, idx: tuple):
        """The scalar expression of node[idx]."""
        if node.id in self.buffers:
            return Load(self.buffers[node.id], linear_index(idx, node.shape))
        rule = ELEMENT.get(node.op)
        if rule is None:
            raise FusegradError(f"internal error: cannot inline op {node.op!r}")
        return rule(self, node, idx)

    def accumulator(self, op: str, dtype: str) -> Accumulator:
        self.acc_count += 1
        return Accumulator(f"acc{self.acc_count}", op, dtype)

    def nest(self, shape, make_body, first_var: int = 0):
        """Loops over `shape` (row-major); make_body(idx) gives the innermost statements.
        An axis of size 1 needs no loop: its index is 0."""
        idx = tuple(
            0 if _is_one(d) else loop_var(first_var + k) for k, d in enumerate(shape)
        )
        stmts = make_body(idx)
        for k in reversed(range(len(shape))):
            if not _is_one(shape[k]):
                kind = "vector" if k == len(shape) - 1 else "serial"
                stmts = [Loop(idx[k].name, shape[k], stmts, kind)]
        return stmts

    def scratch_buffer(self, node: Node) -> Buffer:
        buffer = Buffer(f"t{len(self.scratch)}", node.dtype, node.shape, "scratch")
        self.scratch.append(buffer)
        return buffer

    def compute_into(self, node: Node, buffer: Buffer):
        emit = EMIT.get(node.op)
        if emit is not None:
            self.body.extend(emit(self, node, buffer))
            return
        self.body.extend(
            self.nest(node.shape, lambda idx: [
                Store(buffer, linear_index(idx, node.shape), self.element(node, idx))
            ])
        )

    def copy(self, source: Buffer, target: Buffer, shape):
        self.body.extend(
            self.nest(shape, lambda idx: [
                Store(target, linear_index(idx, shape), Load(source, linear_index(idx, shape)))
            ])
        )

    def run(self) -> Program:
        function = self.function
        inputs = []
        for param in function.params:
            buffer = Buffer(param.name, param.node.dtype, param.node.shape, "input")
            inputs.append(buffer)
            self.buffers.setdefault(param.node.id, buffer)
        outputs = [
            Buffer(f"out{k}", o.dtype, o.shape, "output") for k, o in enumerate(function.outputs)
        ]
        first_output = {}
        for node, buffer in zip(function.outputs, outputs):
            first_output.setdefault(node.id, buffer)
        for node in toposort(function.outputs):
            if node.id not in self.materialized or node.id in self.buffers:
                continue
            buffer = first_output.get(node.id) or self.scratch_buffer(node)
            self.compute_into(node, buffer)
            self.buffers[node.id] = buffer
        for node, buffer in zip(function.outputs, outputs):
            if self.buffers[node.id] is not buffer:
                self.copy(self.buffers[node.id], buffer, node.shape)
        return Program(
            name=function.name,
            dims=function.dim_symbols(),
            inputs=inputs,
            outputs=outputs,
            scratch=self.scratch,
            body=self.body,
        )


def lower(function: Function, blas: bool = False) -> Program:
    """The loop IR of a function; matrix–matrix products become `Gemm` calls if `blas`."""
    return _Lowering(function, blas).run()


# -- element rules: node[idx] from its inputs ----------------------------------------------
def _elementwise(low, node, idx):
    args = tuple(low.element(i, idx) for i in node.inputs)
    return Apply(node.op, args, node.dtype)


def _const(low, node, idx):
    return Const(node.attr("value"), node.dtype)


def _dim(low, node, idx):
    return DimValue(node.attr("dim"), node.dtype)


def _broadcast(low, node, idx):
    x = node.inputs[0]
    lead = node.ndim - x.ndim
    inner = tuple(0 if _is_one(d) else idx[lead + k] for k, d in enumerate(x.shape))
    return low.element(x, inner)


def _transpose(low, node, idx):
    perm = node.attr("perm")
    inner = [None] * len(perm)
    for axis, source in enumerate(perm):
        inner[source] = idx[axis]
    return low.element(node.inputs[0], tuple(inner))


def _slice(low, node, idx):
    starts, steps = node.attr("starts"), node.attr("steps")
    inner = tuple(
        symbolic.simplify(symbolic.as_dim(s) + symbolic.as_dim(i) * st)
        for s, st, i in zip(starts, steps, idx)
    )
    return low.element(node.inputs[0], inner)


def _reshape(low, node, idx):
    x = node.inputs[0]
    if _squeeze_like(x, node):
        kept = iter([i for i, d in zip(idx, node.shape) if not _is_one(d)])
        inner = tuple(0 if _is_one(d) else next(kept) for d in x.shape)
        return low.element(x, inner)
    # x is materialized row-major, so both share the linear offset.
    return Load(low.buffers[x.id], linear_index(idx, node.shape))


ELEMENT = {op: _elementwise for op in ELEMENTWISE}
ELEMENT.update({
    "stop_gradient": lambda low, node, idx: low.element(node.inputs[0], idx),
    "const": _const, "dim": _dim, "broadcast_to": _broadcast, "transpose": _transpose,
    "slice": _slice, "reshape": _reshape,
    "iota": lambda low, node, idx: DimValue(idx[node.attr("axis")], node.dtype),
})


# -- nodes with loop structure of their own -------------------------------------------------
_ACC_OP = {"reduce_sum": "add", "reduce_max": "max", "reduce_min": "min"}


_COMBINE = {"add": "add", "max": "maximum", "min": "minimum"}
_IDENTITY = {"add": 0.0, "max": float("-inf"), "min": float("inf")}


def _accumulate_into(buffer, index, op, value, dtype):
    """buffer[index] = buffer[index] op value (an accumulation into memory)."""
    return Store(buffer, index, Apply(_COMBINE[op], (Load(buffer, index), value), dtype))


def _fill(low, buffer, shape, value):
    return low.nest(shape, lambda idx: [Store(buffer, linear_index(idx, shape), Const(value, buffer.dtype))])


def _emit_reduction(low, node, buffer):
    """A reduction over trailing axes keeps a scalar accumulator per output element
    (its inner loop reads x contiguously). Any other set of axes walks x in row-major
    order and accumulates into the output buffer, so x is still read contiguously."""
    x = node.inputs[0]
    axes = node.attr("axes")
    op = _ACC_OP[node.op]
    kept = [k for k in range(x.ndim) if k not in axes]
    if tuple(axes) != tuple(range(x.ndim - len(axes), x.ndim)):
        def update(idx):
            out_idx = tuple(idx[k] for k in kept)
            value = low.element(x, idx)
            return [_accumulate_into(buffer, linear_index(out_idx, node.shape), op, value, node.dtype)]

        return _fill(low, buffer, node.shape, _IDENTITY[op]) + low.nest(x.shape, update)
    acc = low.accumulator(op, node.dtype)

    def body(out_idx):
        red_shape = [x.shape[k] for k in axes]
        inner = low.nest(
            red_shape,
            lambda red_idx: [AccUpdate(acc, low.element(x, tuple(out_idx) + tuple(red_idx)))],
            first_var=len(kept),
        )
        return [AccInit(acc), *inner, Store(buffer, linear_index(out_idx, node.shape), AccRef(acc))]

    return low.nest(node.shape, body)


def _stride(expr, var) -> int | None:
    """The stride of loop variable `var` in a Load's index (None: not a plain load)."""
    if not isinstance(expr, Load) or isinstance(var, int):
        return None
    index = symbolic.as_dim(expr.index)
    for monomial, coeff in index.terms:
        if len(monomial) == 1 and monomial[0] == var.terms[0][0][0]:
            return coeff
    return 0


def _emit_matmul(low, node, buffer):
    """C = A B with the loop order that reads the operands along their rows:
    - A[i, :] contiguous: C[i, j] = Σ_k A[i, k] B[k, j] as dot products (`ijk`) when
      B is a column or B[:, j] is contiguous, else rows of C updated by `ikj`;
    - A stored transposed (Aᵀ row-major, the `Xᵀ r` of a gradient): `kij`, one
      streaming pass over the rows of Aᵀ accumulating outer products into C."""
    a, b = node.inputs
    if low.blas and not _is_one(a.shape[0]) and not _is_one(b.shape[1]):
        return _emit_gemm(low, node, buffer)
    i, k, j = (loop_var(n) for n in range(3))
    a_k = _stride(low.element(a, (i, k)), k)
    a_i = _stride(low.element(a, (i, k)), i)
    b_j = _stride(low.element(b, (k, j)), j)
    m, inner, n = a.shape[0], a.shape[1], b.shape[1]

    def product(ii, kk, jj):
        return Apply("mul", (low.element(a, (ii, kk)), low.element(b, (kk, jj))), node.dtype)

    if a_k != 1 and a_i == 1 and not _is_one(m):
        def update(idx):
            kk, ii, jj = idx
            return [_accumulate_into(buffer, linear_index((ii, jj), node.shape), "add",
                                     product(ii, kk, jj), node.dtype)]

        return _fill(low, buffer, node.shape, 0.0) + low.nest((inner, m, n), update)
    if b_j == 1 and not _is_one(n):
        def update(idx):
            ii, kk, jj = idx
            return [_accumulate_into(buffer, linear_index((ii, jj), node.shape), "add",
                                     product(ii, kk, jj), node.dtype)]

        return _fill(low, buffer, node.shape, 0.0) + low.nest((m, inner, n), update)
    acc = low.accumulator("add", node.dtype)

    def body(idx):
        ii, jj = idx
        update = low.nest((inner,), lambda kk: [AccUpdate(acc, product(ii, kk[0], jj))], first_var=2)
        return [AccInit(acc), *update, Store(buffer, linear_index(idx, node.shape), AccRef(acc))]

    return low.nest(node.shape, body)


def _gemm_operand(low, node: Node) -> tuple[Buffer, bool]:
    """A row-major buffer holding `node`, or its transpose; computed into scratch if
    the node has no buffer of its own."""
    if node.id in low.buffers:
        return low.buffers[node.id], False
    if node.op == "transpose" and node.inputs[0].id in low.buffers:
        return low.buffers[node.inputs[0].id], True
    buffer = low.scratch_buffer(node)
    low.compute_into(node, buffer)
    return buffer, False


def _emit_gemm(low, node, buffer):
    a, b = node.inputs
    a_buffer, trans_a = _gemm_operand(low, a)
    b_buffer, trans_b = _gemm_operand(low, b)
    m, k, n = a.shape[0], a.shape[1], b.shape[1]
    # With beta = 0, gemm writes C = 0 when k = 0 (tests/test_native.py checks it).
    return [Gemm(buffer, a_buffer, b_buffer, m, n, k, trans_a, trans_b)]


def _emit_embed(low, node, buffer):
    x = node.inputs[0]
    zero = Const(0.0, node.dtype)
    fill = low.nest(node.shape, lambda idx: [Store(buffer, linear_index(idx, node.shape), zero)])
    starts, steps = node.attr("starts"), node.attr("steps")

    def scatter(idx):
        target = tuple(
            symbolic.simplify(symbolic.as_dim(s) + symbolic.as_dim(i) * st)
            for s, st, i in zip(starts, steps, idx)
        )
        return [Store(buffer, linear_index(target, node.shape), low.element(x, idx))]

    return fill + low.nest(x.shape, scatter)


EMIT = {op: _emit_reduction for op in REDUCTIONS}
EMIT.update({"matmul": _emit_matmul, "embed": _emit_embed})
