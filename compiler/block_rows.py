"""Row blocking: the per-row scalar work of a row loop runs in SIMD lanes.

A row loop whose iterations mix inner loops (the dot product of a row with w, the
axpy of a row into a gradient) with scalar work per row (the exp and log1p of a
logistic loss) vectorizes only its inner loops: the transcendentals run one row
at a time, and for short rows they cost more than the inner loops. Over a block of
`BLOCK` rows the loop is distributed into phases, each a loop over the block's rows:

    for i in range(n):                      for b in range(ceil(n / B)):
        z = 0                                   for r in range(min(B, n − B·b)):   # serial
        for j: z += X[i, j] w[j]                    z = 0
        s += log1p(exp(−y[i] z))       →            for j: z += X[B·b + r, j] w[j]
        for j: g[j] += X[i, j] t(y[i], z)           Z[r] = z
                                                for r in range(min(B, n − B·b)):   # vector
                                                    s += log1p(exp(−y[B·b + r] Z[r]))
                                                    T[r] = t(y[B·b + r], Z[r])
                                                for r in range(min(B, n − B·b)):   # serial
                                                    for j: g[j] += X[B·b + r, j] T[r]

- an inner loop's expensive sub-expressions that do not change along the inner loop
  (`t(y[i], z)` above) move into the scalar phase before it;
- a scalar an inner loop finishes (`z`) reaches later phases through a `local`
  buffer of B elements (`Z`): a stack array of the function that runs the loop, so
  each thread has its own;
- the scalar phases are flat loops the vectorizer turns into SIMD code with the
  transcendentals inlined; the B rows of the inner loops stay in L1 between phases.

Distribution reorders statements of different rows only. That is safe when every
store of the body goes to the iteration's own row (index = i·row size + terms free
of i) or is an accumulation `b[k] = op(b[k], …)` into a buffer the body reads
nowhere else; every load of a buffer the body writes reads the iteration's own row;
accumulators that live across iterations are only updated (the order of a sum
changes, but not with the thread count); an accumulator set up inside the body is
initialized and updated within one phase. Loops that are not worth it (no
transcendental or division in the per-row work, or no inner loop) are left alone.
"""

from __future__ import annotations

import itertools

from . import symbolic
from .loop_walk import accumulation_op, effects_of, loads_of, rewrite, rewrite_expr, walk
from .loopir import (AccInit, AccRef, AccUpdate, Apply, Block, Buffer, Const, DimValue, Load,
                     Loop, Program, Store)

#: Rows per block: 32 rows (8 KiB of a 32-column float64 matrix) keep the memory stream
#: busier than 64 between the phases' bursts of arithmetic: W1 1,000,000×32 ran 10–19 %
#: faster in three side-by-side runs; 100,000×256, 200×8, W4, W5, W6 within ±4 %. A
#: multiple of the row-dot groups (8 float64 rows with AVX-512, row_dots.py).
BLOCK = 32
#: Rows an axpy phase handles per step (see `_unrolled_and_jammed`).
JAM = 4
#: Ops worth moving into SIMD lanes: transcendentals and divisions.
EXPENSIVE_OPS = frozenset({"exp", "log", "log1p", "expm1", "tanh", "logistic", "sin", "cos",
                           "pow", "div", "sqrt", "logaddexp"})


def block_rows(program: Program) -> Program:
    body = _blocked_statements(program.body, itertools.count())
    return Program(program.name, program.dims, program.inputs, program.outputs,
                   program.scratch, body)


def _blocked_statements(stmts, namer) -> list:
    result = []
    for stmt in stmts:
        if isinstance(stmt, Loop):
            blocked = _blocked_loop(stmt, namer)
            if blocked is None:
                blocked = Loop(stmt.var, stmt.extent, _blocked_statements(stmt.body, namer),
                               stmt.kind)
            result.append(blocked)
        elif isinstance(stmt, Block):
            result.append(Block(_blocked_statements(stmt.body, namer)))
        else:
            result.append(stmt)
    return result


# -- which loops --------------------------------------------------------------------------
def _has_shape(loop: Loop) -> bool:
    """Statements and one level of inner loops over statements, at least one inner loop."""
    inner = [s for s in loop.body if isinstance(s, Loop)]
    if not inner or not all(isinstance(s, (Loop, Store, AccInit, AccUpdate)) for s in loop.body):
        return False
    return all(isinstance(s, (Store, AccInit, AccUpdate)) for m in inner for s in m.body)


def _row_base(index, buffer: Buffer, var: str, inner_vars: set):
    """For an access `buffer[index]` with index = var·(row size) + base + (terms in the
    inner loops' variables), the base; None when the index has another form. Accesses of
    one buffer with the same base touch row `var` only (inner terms stay inside a row in
    every access the lowering makes), so different iterations touch different rows."""
    if not buffer.shape:
        return None
    row_size = symbolic.as_dim(symbolic.product(buffer.shape[1:]))
    index = symbolic.as_dim(index)
    with_var = symbolic.Dim({m: c for m, c in index.terms if _mentions(m, {var})})
    if with_var != symbolic.Dim.symbol(var) * row_size:
        return None
    return symbolic.Dim({m: c for m, c in index.terms
                         if not _mentions(m, {var}) and not _mentions(m, inner_vars)})


def _mentions(monomial, names: set) -> bool:
    return any(names & set(symbolic.Dim({(atom,): 1}).symbols()) for atom in monomial)


def _is_legal(loop: Loop) -> bool:
    var = loop.var
    inner_vars = {s.var for s in walk(loop.body) if isinstance(s, Loop)}
    effects = effects_of(loop.body)
    inside = {s.acc for s in walk(loop.body) if isinstance(s, AccInit)}
    if (effects.acc_reads - inside) & effects.acc_updates:
        return False  # a running total read across iterations: a recurrence
    accumulated = {s.buffer for s in walk(loop.body) if isinstance(s, Store)
                   and _row_base(s.index, s.buffer, var, inner_vars) is None}
    bases: dict[Buffer, set] = {}
    for stmt in walk(loop.body):
        value = getattr(stmt, "value", None)
        if value is None:
            continue
        if isinstance(stmt, Store) and stmt.buffer in accumulated:
            if accumulation_op(stmt) is None:
                return False
            accesses = list(loads_of(value.args[1:]))  # all but its own b[k]
        else:
            accesses = list(loads_of([value])) + ([stmt] if isinstance(stmt, Store) else [])
        for access in accesses:
            if access.buffer in accumulated:
                return False  # a reduced buffer read by more than its own accumulation
            if access.buffer in effects.writes:
                base = _row_base(access.index, access.buffer, var, inner_vars)
                if base is None:
                    return False
                bases.setdefault(access.buffer, set()).add(base)
    return all(len(found) == 1 for found in bases.values())


def _is_expensive(expr) -> bool:
    if isinstance(expr, Apply):
        return expr.op in EXPENSIVE_OPS or any(_is_expensive(a) for a in expr.args)
    return False


# -- the transform --------------------------------------------------------------------------
class _Phases:
    """The body cut into phases: ("loop", stmts) for an inner loop and the accumulator
    initializations before it, ("scalar", stmts) for a run of per-row statements."""

    def __init__(self):
        self.phases: list[tuple[str, list]] = []
        self.pending: list = []  # AccInits waiting for the statement they belong to

    def scalar(self, stmts):
        if self.phases and self.phases[-1][0] == "scalar":
            self.phases[-1][1].extend(self.pending + stmts)
        else:
            self.phases.append(("scalar", self.pending + stmts))
        self.pending = []

    def loop(self, stmt):
        self.phases.append(("loop", self.pending + [stmt]))
        self.pending = []

    def finish(self) -> list[tuple[str, list]]:
        if self.pending:
            if not self.phases:
                return []
            self.phases[-1][1].extend(self.pending)
        return self.phases


def _blocked_loop(loop: Loop, namer) -> Loop | None:
    if not _has_shape(loop) or not _is_legal(loop):
        return None
    number = next(namer)
    row = symbolic.Dim.symbol(f"@r{number}")
    locals_: list[Buffer] = []

    def new_local(dtype: str) -> Buffer:
        buffer = Buffer(f"blk{number}_{len(locals_)}", dtype, (BLOCK,), "local")
        locals_.append(buffer)
        return buffer

    phases = _Phases()
    for stmt in loop.body:
        if isinstance(stmt, AccInit):
            phases.pending.append(stmt)
        elif isinstance(stmt, Loop):
            hoisted, inner = _hoist_invariants(stmt, row, new_local)
            if hoisted:
                initialized = {s.acc for s in phases.pending}
                if any(_acc_refs(s.value) & initialized for s in hoisted):
                    return None
                pending, phases.pending = phases.pending, []
                phases.scalar(hoisted)
                phases.pending = pending
            phases.loop(inner)
        else:
            phases.scalar([stmt])
    cut = phases.finish()
    if not any(kind == "scalar" and any(_is_expensive(s.value) for s in stmts)
               for kind, stmts in cut):
        return None
    cut = _pass_accumulators(cut, row, new_local)
    if cut is None:
        return None
    return _emit(loop, cut, row, number)


def _hoist_invariants(inner: Loop, row, new_local):
    """(stores of the inner loop's expensive invariant sub-expressions into locals, the
    loop reading the locals instead)."""
    effects = effects_of([inner])
    variant_accs = effects.acc_updates | effects.acc_inits
    hoisted: dict = {}  # structural key → (Load of the local, Store)

    def invariant(expr) -> bool:
        if isinstance(expr, Load):
            return inner.var not in symbolic.as_dim(expr.index).symbols() and \
                expr.buffer not in effects.writes
        if isinstance(expr, DimValue):
            return inner.var not in symbolic.as_dim(expr.dim).symbols()
        if isinstance(expr, AccRef):
            return expr.acc not in variant_accs
        if isinstance(expr, Const):
            return True
        return all(invariant(a) for a in expr.args)

    def replace(expr):
        if isinstance(expr, Apply):
            if _is_expensive(expr) and invariant(expr):
                key = _key(expr)
                if key not in hoisted:
                    local = new_local(expr.dtype)
                    hoisted[key] = (Load(local, row), Store(local, row, expr))
                return hoisted[key][0]
            return Apply(expr.op, tuple(replace(a) for a in expr.args), expr.dtype)
        return expr

    body = []
    for stmt in inner.body:
        if isinstance(stmt, Store):
            body.append(Store(stmt.buffer, stmt.index, replace(stmt.value)))
        elif isinstance(stmt, AccUpdate):
            body.append(AccUpdate(stmt.acc, replace(stmt.value)))
        else:
            body.append(stmt)
    return [store for _, store in hoisted.values()], Loop(inner.var, inner.extent, body,
                                                          inner.kind)


def _key(expr):
    """A structural key of an expression (equal keys compute equal values)."""
    if isinstance(expr, Load):
        return ("load", id(expr.buffer), symbolic.as_dim(expr.index))
    if isinstance(expr, Const):
        return ("const", expr.value, expr.dtype)
    if isinstance(expr, DimValue):
        return ("dim", symbolic.as_dim(expr.dim), expr.dtype)
    if isinstance(expr, AccRef):
        return ("acc", id(expr.acc))
    return (expr.op, expr.dtype) + tuple(_key(a) for a in expr.args)


def _acc_refs(expr) -> set:
    if isinstance(expr, AccRef):
        return {expr.acc}
    if isinstance(expr, Apply):
        return set().union(*(_acc_refs(a) for a in expr.args)) if expr.args else set()
    return set()


def _pass_accumulators(cut, row, new_local):
    """Accumulators computed in one phase and read in later ones travel through a local:
    `Z[r] = acc` ends the phase that computes it, and later phases load `Z[r]`."""
    home = {}
    for k, (_, stmts) in enumerate(cut):
        for stmt in walk(stmts):
            moved = isinstance(stmt, (AccInit, AccUpdate)) and home.setdefault(stmt.acc, k) != k
            if moved and (isinstance(stmt, AccInit) or stmt.acc in _initialized(cut)):
                return None  # set up in one phase, changed in another
    inside = _initialized(cut)
    carried = {}
    for k, (_, stmts) in enumerate(cut):
        for stmt in walk(stmts):
            value = getattr(stmt, "value", None)
            for acc in _acc_refs(value) if value is not None else ():
                if acc in inside and home[acc] != k:
                    if home[acc] > k:
                        return None  # read before it is computed
                    carried.setdefault(acc, None)
    if not carried:
        return cut
    locals_ = {acc: new_local(acc.dtype) for acc in carried}
    result = []
    for k, (kind, stmts) in enumerate(cut):
        own = {acc for acc in carried if home[acc] == k}
        mapping = {acc: Load(locals_[acc], row) for acc in carried if home[acc] != k}
        stmts = [_replace_acc_refs(s, mapping) for s in stmts]
        stmts += [Store(locals_[acc], row, AccRef(acc)) for acc in own]
        result.append((kind, stmts))
    return result


def _initialized(cut) -> set:
    return {s.acc for _, stmts in cut for s in walk(stmts) if isinstance(s, AccInit)}


def _replace_acc_refs(stmt, mapping):
    def expr(e):
        if isinstance(e, AccRef) and e.acc in mapping:
            return mapping[e.acc]
        if isinstance(e, Apply):
            return Apply(e.op, tuple(expr(a) for a in e.args), e.dtype)
        return e

    if not mapping:
        return stmt
    if isinstance(stmt, Loop):
        return Loop(stmt.var, stmt.extent, [_replace_acc_refs(s, mapping) for s in stmt.body],
                    stmt.kind)
    if isinstance(stmt, Store):
        return Store(stmt.buffer, stmt.index, expr(stmt.value))
    if isinstance(stmt, AccUpdate):
        return AccUpdate(stmt.acc, expr(stmt.value))
    return stmt


def _emit(loop: Loop, cut, row, number) -> Loop | Block:
    """The block loop (or, when the loop runs at most BLOCK rows, its phases alone)."""
    if _at_most(loop.extent, BLOCK):
        rows, first = loop.extent, symbolic.as_dim(0)
    else:
        block = symbolic.Dim.symbol(f"@b{number}")
        first = block * BLOCK
        rows = symbolic.dim_min(BLOCK, symbolic.as_dim(loop.extent) - first)
    mapping = {loop.var: symbolic.simplify(first + row)}
    phases = []
    for kind, stmts in cut:
        inner = _accumulating_loop(stmts, loop.var) if kind == "loop" else None
        if inner is not None:
            phases += _unrolled_and_jammed(inner, loop.var, first, rows, row, number)
        else:
            phases.append(Loop(row.name, rows, rewrite(stmts, mapping),
                               "vector" if kind == "scalar" else "serial"))
    if _at_most(loop.extent, BLOCK):
        return Block(phases)
    blocks = symbolic.simplify((symbolic.as_dim(loop.extent) + (BLOCK - 1)) // BLOCK)
    return Loop(f"@b{number}", blocks, phases, loop.kind)


def _accumulating_loop(stmts, var: str):
    """The inner loop when the phase is only `for j: b[k(j)] = b[k(j)] + e(i, j)` with k free
    of the row variable: an axpy of every row into one partial (a gradient)."""
    if len(stmts) != 1 or not isinstance(stmts[0], Loop):
        return None
    inner = stmts[0]
    for stmt in inner.body:
        if not (isinstance(stmt, Store) and accumulation_op(stmt) == "add"):
            return None
        if var in symbolic.as_dim(stmt.index).symbols():
            return None
        if any(load.buffer is stmt.buffer for load in loads_of(stmt.value.args[1:])):
            return None
    return inner


def _unrolled_and_jammed(inner: Loop, var: str, first, rows, row, number) -> list:
    """for r in rows: for j: b[k] += e(r, j)  →  for q in rows // U: for j: b[k] += (e(U·q, j)
    + e(U·q + 1, j)) + (…), then the rows left over one at a time: one load and store of
    b[k] per U rows instead of per row (the store-to-load chain through b bounds an axpy
    over short rows). The sum's order is fixed by the shapes, as every reduction's."""
    q = symbolic.Dim.symbol(f"@q{number}")
    groups = symbolic.simplify(symbolic.as_dim(rows) // JAM)
    body = []
    for stmt in inner.body:
        # the row r = U·q + k: its index in the rows (var) and in the block's locals (row)
        terms = [rewrite_expr(stmt.value.args[1], {var: symbolic.simplify(first + q * JAM + k),
                                                   row.name: symbolic.simplify(q * JAM + k)})
                 for k in range(JAM)]
        while len(terms) > 1:  # pairwise: (e0 + e1) + (e2 + e3)
            terms = [Apply("add", tuple(terms[k:k + 2]), stmt.buffer.dtype) if k + 1 < len(terms)
                     else terms[k] for k in range(0, len(terms), 2)]
        own = Load(stmt.buffer, stmt.index)
        body.append(Store(stmt.buffer, stmt.index, Apply("add", (own, terms[0]), stmt.buffer.dtype)))
    jammed = Loop(q.name, groups, [Loop(inner.var, inner.extent, body, inner.kind)], "serial")
    done = symbolic.simplify(groups * JAM)
    rest = {var: symbolic.simplify(first + done + row), row.name: symbolic.simplify(done + row)}
    left_over = Loop(row.name, symbolic.simplify(symbolic.as_dim(rows) - done),
                     rewrite([inner], rest), "serial")
    return [jammed, left_over]


def _at_most(extent, bound: int) -> bool:
    """Whether the extent is provably ≤ bound: a constant, or min(c, …) with c ≤ bound."""
    if isinstance(extent, int):
        return extent <= bound
    terms = symbolic.as_dim(extent).terms
    if len(terms) != 1:
        return False
    (monomial, coeff), = terms
    if coeff != 1 or len(monomial) != 1 or monomial[0].kind != "min":
        return False
    return any(a.is_const and a.const_value <= bound for a in monomial[0].args)
