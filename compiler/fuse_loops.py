"""Loop fusion on the loop IR: consecutive loops over the same extent become one.

Lowering gives each materialized node a loop nest of its own. When those nests
walk the same outer extent and each iteration only needs what the earlier nests
computed *in the same iteration*, they are fused into one loop: for the
logistic loss, `z = X w`, the loss terms and the gradient accumulation `Xᵀ r`
all become one pass over the rows of X.

    fuse(stmts):  the first loop F; each later statement S is
      - fused into F if S is a loop over F's extent that reads what F writes only
        at the index F wrote it in this iteration (a "row-local" value);
      - hoisted before F if S and F (and what is already placed after F) share
        no data, e.g. the zero-fill of a gradient buffer;
      - otherwise placed after F.

Afterwards a scratch buffer that is written and read only inside one fused
iteration, at the same index, is replaced by its value (scalar replacement):
it never touches memory.
"""

from __future__ import annotations

from . import symbolic
from .loop_walk import Effects, effects_of, loads_in, rewrite, walk
from .loopir import LOOP_VAR_PREFIX, Loop, Program, Store


def fuse_loops(program: Program) -> Program:
    body = _fuse(unique_loop_vars(program.body))
    body, removed = _replace_row_local_buffers(body, program)
    scratch = [b for b in program.scratch if b not in removed]
    return Program(program.name, program.dims, program.inputs, program.outputs, scratch, body)


def _fuse(stmts: list) -> list:
    first = next((k for k, s in enumerate(stmts) if isinstance(s, Loop)), None)
    if first is None:
        return list(stmts)
    prefix, fused = list(stmts[:first]), stmts[first]
    before, after = [], []
    fused_effects = effects_of([fused])
    after_effects = Effects()
    for stmt in stmts[first + 1:]:
        effects = effects_of([stmt])
        blocked_by_after = effects.depends_on(after_effects) or after_effects.depends_on(effects)
        if not blocked_by_after and _can_fuse(fused, fused_effects, stmt):
            fused = _append(fused, stmt)
            fused_effects = effects_of([fused])
        elif not blocked_by_after and not (
            effects.depends_on(fused_effects) or fused_effects.depends_on(effects)
        ):
            before.append(stmt)
        else:
            after.append(stmt)
            after_effects = effects_of(after)
    return prefix + _fuse(before) + [fused] + _fuse(after)


def _row_local_writes(loop: Loop) -> dict:
    """Buffers the loop writes once per iteration, at the top of its body: buffer → index."""
    writes = {}
    for stmt in loop.body:
        if isinstance(stmt, Store) and stmt.buffer not in writes:
            writes[stmt.buffer] = stmt.index
    return writes


def _can_fuse(fused: Loop, fused_effects: Effects, stmt) -> bool:
    if not isinstance(stmt, Loop) or not symbolic.dims_equal(fused.extent, stmt.extent):
        return False
    renamed = _renamed(stmt, fused.var)
    effects = effects_of([renamed])
    if effects.acc_reads & fused_effects.acc_updates or effects.acc_updates & fused_effects.accumulators:
        return False
    if effects.writes & (fused_effects.reads | fused_effects.writes):
        return False
    shared = effects.reads & fused_effects.writes
    if not shared:
        return True
    # Iteration i of `fused` must own the part of each shared buffer that iteration i of
    # `stmt` reads: every access is inside row i (see `_in_row`).
    for inner in walk(fused.body):
        if isinstance(inner, Store) and inner.buffer in shared:
            if not _in_row(inner.index, inner.buffer, fused):
                return False
    for inner in walk(renamed.body):
        value = getattr(inner, "value", None)
        for load in loads_in(value) if value is not None else ():
            if load.buffer in shared and not _in_row(load.index, load.buffer, fused):
                return False
    return True


def _in_row(index, buffer, loop: Loop) -> bool:
    """Whether `buffer[index]` lies in row `loop.var` of the buffer: its first axis is
    the loop's extent, and the index is var·(row size) plus terms free of var (which
    index within the row, as every in-bounds access of the lowering does)."""
    shape = _without_leading_ones(buffer.shape)
    if not shape or not symbolic.dims_equal(shape[0], loop.extent):
        return False
    row_size = symbolic.as_dim(symbolic.product(shape[1:]))
    var = symbolic.Dim.symbol(loop.var)
    index = symbolic.as_dim(index)
    with_var = symbolic.Dim({m: c for m, c in index.terms if var.terms[0][0][0] in m})
    if with_var != var * row_size:
        return False
    rest = index - with_var
    return loop.var not in rest.symbols()


def _without_leading_ones(shape) -> tuple:
    """The shape without leading axes of size 1 (a (1, n) buffer has rows of one element)."""
    shape = tuple(shape)
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape


def _renamed(loop: Loop, var: str) -> Loop:
    if loop.var == var:
        return loop
    mapping = {loop.var: symbolic.Dim.symbol(var)}
    return Loop(var, loop.extent, rewrite(loop.body, mapping), loop.kind)


def _append(fused: Loop, stmt: Loop) -> Loop:
    renamed = _renamed(stmt, fused.var)
    kind = fused.kind if fused.kind == renamed.kind else "serial"
    return Loop(fused.var, fused.extent, fused.body + renamed.body, kind)


def unique_loop_vars(stmts, counter=None) -> list:
    """The statements with every loop's variable renamed to a name used by no other
    loop, so that loops can be merged without capturing each other's variables."""
    counter = counter if counter is not None else [0]
    result = []
    for stmt in stmts:
        if isinstance(stmt, Loop):
            name = f"{LOOP_VAR_PREFIX}v{counter[0]}"
            counter[0] += 1
            body = rewrite(stmt.body, {stmt.var: symbolic.Dim.symbol(name)})
            result.append(Loop(name, stmt.extent, unique_loop_vars(body, counter), stmt.kind))
        else:
            result.append(stmt)
    return result


# -- scalar replacement -----------------------------------------------------------------------
def _replace_row_local_buffers(body, program):
    removed = set()
    scratch = set(program.scratch)
    result = []
    for stmt in body:
        if isinstance(stmt, Loop):
            stmt, gone = _scalarize(stmt, scratch, body)
            removed |= gone
        result.append(stmt)
    return result, removed


def _scalarize(loop: Loop, scratch: set, program_body) -> tuple[Loop, set]:
    row_local = {b: i for b, i in _row_local_writes(loop).items() if b in scratch}
    if not row_local:
        return loop, set()
    outside = effects_of([s for s in program_body if s is not loop])
    candidates = {b for b in row_local if b not in outside.reads and b not in outside.writes}
    for inner in walk(loop.body):
        if isinstance(inner, Store) and inner.buffer in candidates and inner not in loop.body:
            candidates.discard(inner.buffer)
        value = getattr(inner, "value", None)
        if value is not None:
            for load in loads_in(value):
                if load.buffer in candidates and not symbolic.dims_equal(
                    load.index, row_local[load.buffer]
                ):
                    candidates.discard(load.buffer)
    if not candidates:
        return loop, set()
    values = {}

    def load(expr):
        return values.get(expr.buffer, expr)

    def store(stmt):
        if stmt.buffer in candidates:
            values[stmt.buffer] = stmt.value
            return None
        return stmt

    new_body = []
    for stmt in loop.body:
        new_body.extend(rewrite([stmt], load=load, store=store))
    return Loop(loop.var, loop.extent, new_body, loop.kind), candidates
