"""Loop fusion on the loop IR: consecutive loops over the same extent become one.

Lowering gives each materialized node a loop nest of its own. When those nests
walk the same outer extent and each iteration only needs what the earlier nests
computed *in the same iteration*, they are fused into one loop: for the
logistic loss, `z = X w`, the loss terms and the gradient accumulation `Xᵀ r`
all become one pass over the rows of X.

    fuse(stmts):  the first loop F; each later statement S is
      - fused into F if S is a loop over F's extent that reads what F writes only
        where F wrote it in this iteration: in the iteration's own row, or at the
        one element F stored in this iteration (a "row-local" value);
      - hoisted before F if S and F (and what is already placed after F) share
        no data, e.g. the zero-fill of a gradient buffer;
      - otherwise placed after F.

Afterwards a scratch buffer that is written and read only inside one fused
iteration, at the same index, is replaced by its value (scalar replacement):
it never touches memory.

Fusion applies at every depth: inside a loop body, an inner loop that reads what the
inner loop before it writes in the same iteration joins it (`t = x[i, :] + b` and
`m = max(t)` walk the row once). Fewer, longer loops also keep the native compile
short: LLVM's work grows with the number of loops it versions and vectorizes.
"""

from __future__ import annotations

from . import symbolic
from .loop_walk import Effects, effects_of, loads_in, rewrite, walk
from .loopir import LOOP_VAR_PREFIX, AccInit, Loop, Program, Store


def fuse_loops(program: Program) -> Program:
    body = _fuse_nested(unique_loop_vars(program.body))
    body, removed = _replace_row_local_buffers(body, program)
    scratch = [b for b in program.scratch if b not in removed]
    return Program(program.name, program.dims, program.inputs, program.outputs, scratch, body)


def _fuse(stmts: list, nested: bool = False) -> list:
    """`nested`: the statements are a loop body. There a statement moves only for a fusion,
    and only an accumulator's initialization or a loop moves: per-row statements keep
    their places, between the loops whose results they use."""
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
        movable = not nested or isinstance(stmt, (AccInit, Loop))
        if not blocked_by_after and _can_fuse(fused, fused_effects, stmt, nested):
            fused = _append(fused, stmt)
            fused_effects = fused_effects.union(effects)
        elif movable and not blocked_by_after and not (
            effects.depends_on(fused_effects) or fused_effects.depends_on(effects)
        ):
            before.append(stmt)
        else:
            after.append(stmt)
            after_effects = after_effects.union(effects)
    if nested and fused is stmts[first]:
        return prefix + [fused] + _fuse(stmts[first + 1:], nested)
    return prefix + _fuse(before, nested) + [fused] + _fuse(after, nested)


def _fuse_nested(stmts: list, nested: bool = False) -> list:
    """`_fuse` on the statements, then on the body of every loop it leaves."""
    result = []
    for stmt in _fuse(stmts, nested):
        if isinstance(stmt, Loop):
            stmt = Loop(stmt.var, stmt.extent, _fuse_nested(stmt.body, True), stmt.kind)
        result.append(stmt)
    return result


def _row_local_writes(loop: Loop) -> dict:
    """Buffers the loop writes once per iteration, at the top of its body: buffer → index."""
    writes = {}
    for stmt in loop.body:
        if isinstance(stmt, Store) and stmt.buffer not in writes:
            writes[stmt.buffer] = stmt.index
    return writes


def _can_fuse(fused: Loop, fused_effects: Effects, stmt, nested: bool = False) -> bool:
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
        return not nested  # in a loop body, a loop joins only the loop it reads from
    # Iteration i of `fused` must own the part of each shared buffer that iteration i of
    # `stmt` reads: every access is inside row i (see `_in_row`), or every access is
    # to the one element that iteration i stores (see `_same_element`).
    stores = [s for s in walk(fused.body) if isinstance(s, Store) and s.buffer in shared]
    loads = [
        load
        for inner in walk(renamed.body)
        if getattr(inner, "value", None) is not None
        for load in loads_in(inner.value)
        if load.buffer in shared
    ]
    inner_vars = _nested_loop_vars(fused) | _nested_loop_vars(renamed)
    for buffer in shared:
        indices = [s.index for s in stores if s.buffer is buffer]
        indices += [load.index for load in loads if load.buffer is buffer]
        in_row = all(_in_row(index, buffer, fused) for index in indices)
        if not in_row and not _same_element(indices, fused.var, inner_vars):
            return False
    return True


def _same_element(indices, var: str, inner_vars: set) -> bool:
    """Whether all indices are one element `c·var + r`, c ≠ 0, with r fixed while the loop
    over `var` runs (free of `var` and of the loops inside it): iteration i then touches
    that element only, and no other iteration does."""
    first = symbolic.as_dim(indices[0])
    if not all(symbolic.dims_equal(first, index) for index in indices[1:]):
        return False
    with_var = [(m, c) for m, c in first.terms if any(_mentions(a, var) for a in m)]
    if len(with_var) != 1 or with_var[0][0] != symbolic.Dim.symbol(var).terms[0][0]:
        return False
    return not (set(first.symbols()) & inner_vars)


def _mentions(atom, var: str) -> bool:
    return var in symbolic.Dim({(atom,): 1}).symbols()


def _nested_loop_vars(loop: Loop) -> set:
    return {inner.var for inner in walk(loop.body) if isinstance(inner, Loop)}


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
