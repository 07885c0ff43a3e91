"""Parallel loops, with reductions that give the same bits for any thread count.

Each top-level loop of a program is examined:

- its iterations are independent (each writes only its own row of its outputs,
  and keeps its accumulators private): it becomes a `parallel` loop;
- it also reduces across iterations (a sum accumulated in a scalar that lives
  outside the loop, or a gradient accumulated into a buffer, `g[j] += r_i X[i, j]`):
  its iteration space is cut into chunks of `CHUNK` iterations (`CHUNK_ROWS` when
  each iteration runs loops of its own), a number that does not depend on the
  thread count. Chunks run in parallel, each reducing into
  a partial of its own; the partials are then combined in chunk order:

      for c in range(ceil(n / CHUNK)):            # parallel
          acc' = 0;  P_g[c, :] = 0
          for j in range(min(CHUNK, n − c·CHUNK)):  # the loop body, at i = c·CHUNK + j
              acc' += ...;  P_g[c, :] += ...
          P_acc[c] = acc'
      for c in range(ceil(n / CHUNK)):            # serial, in order
          acc += P_acc[c];  g[:] += P_g[c, :]

  so the result is the same whether one thread or sixteen ran the chunks.
- a fill (`b[i] = 0`) stays serial: LLVM turns it into a memset;
- anything else stays serial.
"""

from __future__ import annotations

from . import symbolic
from .fuse_loops import _in_row
from .loop_walk import ACCUMULATOR_OF, accumulation_op, effects_of, loads_of, rewrite, walk
from .loopir import (AccInit, Accumulator, AccRef, AccUpdate, Apply, Buffer, Const, Load, Loop,
                     Program, Store, loop_var)

CHUNK = 4096
CHUNK_ROWS = 64
#: A GPU wants many more threads in flight than a CPU has cores: where a chunk is
#: one thread's serial work (rows with inner loops), the CUDA pipeline cuts smaller
#: chunks (more partials to combine, which it combines in parallel).
GPU_CHUNK_ROWS = 16
_IDENTITY = {"add": 0.0, "max": float("-inf"), "min": float("inf")}


def parallelize(program: Program, chunk_rows: int = CHUNK_ROWS) -> Program:
    scratch = list(program.scratch)
    body = []
    for k, stmt in enumerate(program.body):
        if isinstance(stmt, Loop):
            rest = effects_of(program.body[:k] + program.body[k + 1:])
            rows = _row_private_buffers(stmt, set(program.scratch), rest)
            body.extend(_parallel_loop(stmt, scratch, k, rows, chunk_rows))
        else:
            body.append(stmt)
    return Program(program.name, program.dims, program.inputs, program.outputs, scratch, body)


def parallelize_for_gpu(program: Program) -> Program:
    """`parallelize` with the GPU's chunks of rows (GPU_CHUNK_ROWS)."""
    return parallelize(program, chunk_rows=GPU_CHUNK_ROWS)


def _row_private_buffers(loop: Loop, scratch: set, rest) -> set:
    """Scratch buffers used only by this loop, each iteration touching only its own row.

    In a chunked loop one row of such a buffer per chunk is enough: a chunk's rows run
    one after another on one thread, so the row is reused while it is still in cache
    (the exp(x − max) of a row-wise logsumexp never travels to memory)."""
    candidates = {b for b in scratch if b not in rest.reads and b not in rest.writes}
    for stmt in walk(loop.body):
        accesses = [stmt] if isinstance(stmt, Store) else []
        value = getattr(stmt, "value", None)
        accesses += list(loads_of([value])) if value is not None else []
        for access in accesses:
            if access.buffer in candidates and not _in_row(access.index, access.buffer, loop):
                candidates.discard(access.buffer)
    return candidates


def _accumulated_buffers(loop: Loop):
    """Buffers the loop reduces into across iterations (buffer → combining op), or None
    when some store is neither in its own row nor such an accumulation."""
    reduced = {}
    for stmt in walk(loop.body):
        if not isinstance(stmt, Store) or _in_row(stmt.index, stmt.buffer, loop):
            continue
        op = accumulation_op(stmt)
        if op is None or reduced.setdefault(stmt.buffer, op) != op:
            return None
    # A reduced buffer may only be read by its own accumulation.
    for stmt in walk(loop.body):
        value = getattr(stmt, "value", None)
        if value is None:
            continue
        own = isinstance(stmt, Store) and stmt.buffer in reduced
        for load in loads_of(value.args[1:] if own else [value]):
            if load.buffer in reduced:
                return None
    return reduced


def _parallel_loop(loop: Loop, scratch: list, number: int, rows: set, chunk_rows: int) -> list:
    if _is_fill(loop):
        return [loop]  # LLVM makes it a memset: faster to compile and to run than a region
    effects = effects_of([loop])
    inside = {s.acc for s in walk(loop.body) if isinstance(s, AccInit)}
    crossing = effects.acc_updates - inside
    if (effects.acc_reads - inside) & crossing:
        return [loop]  # reads a running total across iterations: a true recurrence
    reduced = _accumulated_buffers(loop)
    if reduced is None:
        return [loop]
    if not crossing and not reduced:
        return [Loop(loop.var, loop.extent, loop.body, "parallel")]
    crossing = sorted(crossing, key=lambda a: a.name)
    return _chunked(loop, crossing, reduced, scratch, number, rows, chunk_rows)


def _is_fill(loop: Loop) -> bool:
    """for i: b[i] = constant (the zero fill of a gradient before it accumulates)."""
    return all(isinstance(s, Store) and isinstance(s.value, Const) for s in loop.body)


def _chunked(loop, crossing, reduced, scratch, number, rows, chunk_rows):
    size = chunk_rows if any(isinstance(s, Loop) for s in walk(loop.body)) else CHUNK
    chunks = symbolic.simplify((symbolic.as_dim(loop.extent) + (size - 1)) // size)
    c = loop_var(1000 + 2 * number)
    j = loop_var(1001 + 2 * number)
    start = symbolic.as_dim(c) * size
    private = {a: Accumulator(f"{a.name}_c", a.op, a.dtype) for a in crossing}
    acc_partials = {}
    for a in crossing:
        acc_partials[a] = Buffer(f"p_{a.name}", a.dtype, (chunks,), "scratch")
        scratch.append(acc_partials[a])
    buf_partials = {}
    for b in reduced:
        buf_partials[b] = Buffer(f"p_{b.name}", b.dtype, (chunks,) + tuple(b.shape), "scratch")
        scratch.append(buf_partials[b])
    row = {b: symbolic.as_dim(symbolic.product(b.shape)) for b in reduced}
    # Row-private buffers shrink to one row per chunk: row i → row c.
    chunk_rows = {}
    for b in rows:
        chunk_rows[b] = Buffer(b.name, b.dtype, (chunks,) + tuple(b.shape[1:]), "scratch")
        scratch[scratch.index(b)] = chunk_rows[b]
    row_size = {b: symbolic.as_dim(symbolic.product(b.shape[1:])) for b in rows}

    def moved(buffer, index):
        if buffer in reduced:
            return buf_partials[buffer], symbolic.as_dim(c) * row[buffer] + index
        if buffer in chunk_rows:
            shift = (symbolic.as_dim(c) - start - j) * row_size[buffer]
            return chunk_rows[buffer], symbolic.simplify(symbolic.as_dim(index) + shift)
        return buffer, index

    def load(expr):
        return Load(*moved(expr.buffer, expr.index))

    def store(stmt):
        return Store(*moved(stmt.buffer, stmt.index), stmt.value)

    body = rewrite(loop.body, {loop.var: start + j}, load=load, store=store, acc=private)
    extent = symbolic.dim_min(size, symbolic.as_dim(loop.extent) - start)
    chunk_body = [AccInit(private[a]) for a in crossing]
    k = loop_var(2000 + number)
    for b, op in reduced.items():
        fill = Const(_IDENTITY[ACCUMULATOR_OF[op]], b.dtype)
        index = symbolic.as_dim(c) * row[b] + k
        chunk_body.append(Loop(k.name, row[b], [Store(buf_partials[b], index, fill)], "vector"))
    chunk_body.append(Loop(j.name, extent, body, loop.kind))
    chunk_body += [Store(acc_partials[a], c, AccRef(private[a])) for a in crossing]

    combine = [AccUpdate(a, Load(acc_partials[a], c)) for a in crossing]
    for b, op in reduced.items():
        index = symbolic.as_dim(c) * row[b] + k
        combine.append(Loop(k.name, row[b], [
            Store(b, k, Apply(op, (Load(b, k), Load(buf_partials[b], index)), b.dtype))
        ], "vector"))
    return [
        Loop(c.name, chunks, chunk_body, "parallel"),
        Loop(c.name, chunks, combine, "serial"),
    ]
