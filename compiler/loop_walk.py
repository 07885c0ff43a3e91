"""Walking and rewriting loop-IR statements: what a statement reads and writes,
and rebuilding statements with indices or loads replaced. The loop passes
(`fuse_loops`, `parallelize`) are written with these."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import symbolic
from .loopir import (AccInit, AccRef, AccUpdate, Apply, Block, Const, DimValue, Gemm, Load,
                     Loop, Store)


@dataclass
class Effects:
    """Buffers and accumulators a statement list touches (by identity)."""

    reads: set = field(default_factory=set)  # buffers loaded
    writes: set = field(default_factory=set)  # buffers stored to
    acc_inits: set = field(default_factory=set)
    acc_updates: set = field(default_factory=set)
    acc_reads: set = field(default_factory=set)

    @property
    def accumulators(self) -> set:
        return self.acc_inits | self.acc_updates | self.acc_reads

    def union(self, other: Effects) -> Effects:
        return Effects(
            self.reads | other.reads,
            self.writes | other.writes,
            self.acc_inits | other.acc_inits,
            self.acc_updates | other.acc_updates,
            self.acc_reads | other.acc_reads,
        )

    def depends_on(self, earlier: "Effects") -> bool:
        """Whether these statements must stay after `earlier` (any shared data with a write)."""
        return bool(
            self.reads & earlier.writes
            or self.writes & (earlier.reads | earlier.writes)
            or self.accumulators & earlier.accumulators
        )


def expression_effects(expr, effects: Effects):
    if isinstance(expr, Load):
        effects.reads.add(expr.buffer)
    elif isinstance(expr, AccRef):
        effects.acc_reads.add(expr.acc)
    elif isinstance(expr, Apply):
        for arg in expr.args:
            expression_effects(arg, effects)


def effects_of(stmts) -> Effects:
    effects = Effects()
    for stmt in _walk(stmts):
        if isinstance(stmt, Store):
            effects.writes.add(stmt.buffer)
            expression_effects(stmt.value, effects)
        elif isinstance(stmt, AccInit):
            effects.acc_inits.add(stmt.acc)
        elif isinstance(stmt, AccUpdate):
            effects.acc_updates.add(stmt.acc)
            expression_effects(stmt.value, effects)
        elif isinstance(stmt, Gemm):
            effects.reads |= {stmt.a, stmt.b} | ({stmt.row_scale} - {None})
            effects.writes.add(stmt.c)
    return effects


def _walk(stmts):
    for stmt in stmts:
        yield stmt
        if isinstance(stmt, (Loop, Block)):
            yield from _walk(stmt.body)


def walk(stmts):
    """Every statement, nested ones included, in program order."""
    return _walk(stmts)


def replace_statement(stmt, target, by):
    """The statement with `target` (found by identity, at any depth) replaced by `by`;
    the loops and blocks on the way are new, so a statement shared with another
    program is untouched."""
    if stmt is target:
        return by
    if isinstance(stmt, Loop):
        return Loop(stmt.var, stmt.extent, [replace_statement(s, target, by) for s in stmt.body],
                    stmt.kind)
    if isinstance(stmt, Block):
        return Block([replace_statement(s, target, by) for s in stmt.body])
    return stmt


def loads_in(expr):
    return loads_of([expr])


def loads_of(exprs):
    """Every Load in the expressions, in order."""
    for expr in exprs:
        if isinstance(expr, Load):
            yield expr
        elif isinstance(expr, Apply):
            yield from loads_of(expr.args)


#: Ops a store may accumulate with across loop iterations, b[k] = op(b[k], …).
ACCUMULATING_OPS = frozenset({"add", "maximum", "minimum"})
#: The accumulator op (loopir.Accumulator.op) that does what each of them does.
ACCUMULATOR_OF = {"add": "add", "maximum": "max", "minimum": "min"}


def accumulation_op(stmt: Store) -> str | None:
    """The op when `stmt` is b[k] = op(b[k], …) with op in ACCUMULATING_OPS, else None."""
    value = stmt.value
    if not (isinstance(value, Apply) and value.op in ACCUMULATING_OPS):
        return None
    first = value.args[0]
    if isinstance(first, Load) and first.buffer is stmt.buffer and symbolic.dims_equal(
            first.index, stmt.index):
        return value.op
    return None


# -- rewriting ------------------------------------------------------------------------------
def _index(value, mapping):
    return symbolic.substitute(value, mapping) if mapping else value


def rewrite_expr(expr, mapping=None, load=None):
    """The expression with index symbols substituted and each Load passed through `load`."""
    if isinstance(expr, Load):
        rebuilt = Load(expr.buffer, _index(expr.index, mapping))
        return load(rebuilt) if load else rebuilt
    if isinstance(expr, Apply):
        return Apply(expr.op, tuple(rewrite_expr(a, mapping, load) for a in expr.args), expr.dtype)
    if isinstance(expr, DimValue):
        return DimValue(_index(expr.dim, mapping), expr.dtype)
    assert isinstance(expr, (Const, AccRef)), expr
    return expr


def rewrite(stmts, mapping=None, load=None, store=None, acc=None):
    """Rebuilt statements: indices substituted by `mapping` (symbol name → dim), loads
    passed through `load`, stores through `store` (may return None to drop it),
    accumulators renamed by the dict `acc`."""
    result = []
    for stmt in stmts:
        if isinstance(stmt, Loop):
            body = rewrite(stmt.body, mapping, load, store, acc)
            result.append(Loop(stmt.var, _index(stmt.extent, mapping), body, stmt.kind))
        elif isinstance(stmt, Block):
            result.append(Block(rewrite(stmt.body, mapping, load, store, acc)))
        elif isinstance(stmt, Store):
            rebuilt = Store(stmt.buffer, _index(stmt.index, mapping),
                            _rename_acc(rewrite_expr(stmt.value, mapping, load), acc))
            rebuilt = store(rebuilt) if store else rebuilt
            if rebuilt is not None:
                result.append(rebuilt)
        elif isinstance(stmt, AccInit):
            result.append(AccInit((acc or {}).get(stmt.acc, stmt.acc)))
        elif isinstance(stmt, AccUpdate):
            value = _rename_acc(rewrite_expr(stmt.value, mapping, load), acc)
            result.append(AccUpdate((acc or {}).get(stmt.acc, stmt.acc), value))
        elif isinstance(stmt, Gemm):
            result.append(stmt)  # whole buffers: nothing to substitute
        else:
            raise TypeError(f"unknown statement {stmt!r}")
    return result


def _rename_acc(expr, acc):
    if not acc:
        return expr
    if isinstance(expr, AccRef):
        return AccRef(acc.get(expr.acc, expr.acc))
    if isinstance(expr, Apply):
        return Apply(expr.op, tuple(_rename_acc(a, acc) for a in expr.args), expr.dtype)
    return expr
