"""GPU loop pass: the serial combine of per-chunk partials becomes parallel work.

`parallelize` ends a chunked reduction with a serial loop over the chunks that adds
every partial in chunk order. On a CPU that loop is short work for one thread; on a GPU
one thread walking thousands of partials costs more than the whole reduction. The loop
is split by what it combines:

    for c in range(C):                           for c in range(C):          # serial
        acc += P_acc[c]                              acc += P_acc[c]
        for k in range(K):                 →     for k in range(K):          # parallel
            g[k] = g[k] + P_g[c·K + k]               s = 0
                                                     for c in range(C):
                                                         s += P_g[c·K + k]
                                                     g[k] = g[k] + s

The accumulator's loop stays a loop of accumulator updates only, which the renderer
runs as one block's tree reduction; each element of a combined buffer becomes a
reduction of its own over the chunks, which the renderer gives a block
(compiler/cuda/plan.py: a `ChunkReduction`). The partials are summed in a fixed
tree order instead of chunk order: the same bits on every run, though not the CPU's.
The split is legal because the statements of the body touch disjoint data: each
accumulator and each buffer is combined by one statement, and no statement reads what
another one writes.
"""

from __future__ import annotations

from ..loop_walk import ACCUMULATOR_OF, accumulation_op, effects_of, loads_in
from ..loopir import AccInit, Accumulator, AccRef, AccUpdate, Apply, Loop, Program, Store
from ..symbolic import dim_symbols


def split_combines(program: Program) -> Program:
    body = []
    for stmt in program.body:
        split = _split(stmt) if isinstance(stmt, Loop) and stmt.kind == "serial" else None
        body.extend(split if split is not None else [stmt])
    return Program(program.name, program.dims, program.inputs, program.outputs,
                   program.scratch, body)


def _split(loop: Loop):
    """The loop's statements as separate loops, or None when it is not a combine."""
    updates = [s for s in loop.body if isinstance(s, AccUpdate)]
    rows = [s for s in loop.body if isinstance(s, Loop)]
    if not rows or len(updates) + len(rows) != len(loop.body):
        return None
    if not all(_combines_a_row(row, loop.var) for row in rows):
        return None
    parts = [[u] for u in updates] + [[row] for row in rows]
    effects = [effects_of(part) for part in parts]
    for k, mine in enumerate(effects):
        others = [e for j, e in enumerate(effects) if j != k]
        if any(mine.depends_on(other) for other in others):
            return None
    result = [Loop(loop.var, loop.extent, updates, "serial")] if updates else []
    for row in rows:
        result.append(_element_reductions(row, loop))
    return result


def _element_reductions(row: Loop, loop: Loop) -> Loop:
    """for k: b[idx] = op(b[idx], v)  →  for k: s = id; for c: s op= v; b[idx] = op(b[idx], s)"""
    store = row.body[0]
    op = accumulation_op(store)
    partial = Accumulator(f"{store.buffer.name}_sum", ACCUMULATOR_OF[op], store.buffer.dtype)
    (value,) = store.value.args[1:]
    total = Apply(op, (store.value.args[0], AccRef(partial)), store.value.dtype)
    body = [
        AccInit(partial),
        Loop(loop.var, loop.extent, [AccUpdate(partial, value)], "serial"),
        Store(store.buffer, store.index, total),
    ]
    return Loop(row.var, row.extent, body, "parallel")


def _combines_a_row(row: Loop, chunk_var: str) -> bool:
    """for k: b[idx] = op(b[idx], …) with idx free of the chunk variable and b read
    nowhere else in the statement."""
    if len(row.body) != 1 or not isinstance(row.body[0], Store):
        return False
    store = row.body[0]
    symbols = dim_symbols([store.index])
    if accumulation_op(store) is None or chunk_var in symbols or row.var not in symbols:
        return False
    loads = list(loads_in(store.value))
    return sum(load.buffer is store.buffer for load in loads) == 1
