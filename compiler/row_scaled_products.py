"""Row-scaled products: the scaled copy of B in C = (r ⊙ B)ᵀ B is never stored.

A symmetric product (`symmetric_products`) reads a scratch matrix written by one store

    for i, j:  a[i, j] = b[i, j] · r(i)          (r free of the column j)
    c = aᵀ b   (or gram · aᵀ a)

which costs a write of k × n elements and a read of them again by the product: at
100,000 × 64 the 51 MB of a Newton step's Hessian went to memory and back. This pass
stores the row scales alone and hands them to the product:

    for i:  rows[i] = r(i)
    c = (rows ⊙ b)ᵀ b   (`Gemm.row_scale`; a is b itself)

and the runtime (csrc/fusegrad_products.c, `fg_row_scaled_product`) scales each block
of rows as it packs them for the product, in cache.

The store must be alone in its column loop, and `a` read by nothing but the product.
"""

from __future__ import annotations

from dataclasses import replace

from . import symbolic
from .loop_walk import walk
from .loopir import Apply, Block, Buffer, Gemm, Load, Loop, Program, Store


def row_scaled_products(program: Program) -> Program:
    for k, stmt in enumerate(program.body):
        if isinstance(stmt, Gemm) and stmt.symmetric and stmt.row_scale is None:
            rewritten = _row_scaled(program, k, stmt)
            if rewritten is not None:
                program = rewritten
    return program


def _row_scaled(program: Program, at: int, gemm: Gemm) -> Program | None:
    a, b = gemm.a, gemm.b
    if a.kind != "scratch" or a is b:
        return None
    stores = [s for s in walk(program.body) if isinstance(s, Store) and s.buffer is a]
    loads = [load for s in walk(program.body) for load in _loads(s) if load.buffer is a]
    others = [s for s in program.body if isinstance(s, Gemm) and s is not gemm
              and a in (s.a, s.b, s.c)]
    if len(stores) != 1 or loads or others:
        return None
    store = stores[0]
    column = _column_loop(program.body, store)
    scale = _row_factor(store, b, column)
    if column is None or scale is None:
        return None
    row = _exact_quotient(_at_zero(store.index, column.var), symbolic.as_dim(gemm.n))
    if row is None:
        return None
    rows = Buffer(f"{a.name}_rows", a.dtype, (gemm.k,), "scratch")
    body = [_replace_loop(s, column, Store(rows, row, scale)) for s in program.body]
    body[at] = replace(gemm, a=b, row_scale=rows)
    scratch = [s for s in program.scratch if s is not a] + [rows]
    return Program(program.name, program.dims, program.inputs, program.outputs, scratch, body)


def _loads(stmt):
    value = getattr(stmt, "value", None)
    stack = [value] if value is not None else []
    while stack:
        expr = stack.pop()
        if isinstance(expr, Load):
            yield expr
        elif isinstance(expr, Apply):
            stack.extend(expr.args)


def _column_loop(stmts, store: Store) -> Loop | None:
    """The loop whose body is exactly [store]."""
    for stmt in walk(stmts):
        if isinstance(stmt, Loop) and len(stmt.body) == 1 and stmt.body[0] is store:
            return stmt
    return None


def _row_factor(store: Store, b: Buffer, column: Loop | None):
    """r in a[idx] = b[idx] · r (either order), r free of the column variable."""
    value = store.value
    if column is None or not (isinstance(value, Apply) and value.op == "mul"):
        return None
    for own, other in (value.args, value.args[::-1]):
        if (isinstance(own, Load) and own.buffer is b
                and symbolic.dims_equal(own.index, store.index)
                and column.var not in _symbols(other)):
            return other
    return None


def _symbols(expr) -> set:
    found = set()
    stack = [expr]
    while stack:
        e = stack.pop()
        if isinstance(e, Load):
            found |= set(symbolic.as_dim(e.index).symbols())
        elif isinstance(e, Apply):
            stack.extend(e.args)
        elif hasattr(e, "dim"):
            found |= set(symbolic.as_dim(e.dim).symbols())
    return found


def _at_zero(index, var: str) -> symbolic.Dim:
    """The index with the loop variable `var` set to 0 (its terms dropped)."""
    dim = symbolic.as_dim(index)
    return symbolic.Dim({m: c for m, c in dim.terms
                         if not any(var in symbolic.Dim({(atom,): 1}).symbols() for atom in m)})


def _exact_quotient(dim: symbolic.Dim, divisor: symbolic.Dim) -> symbolic.Dim | None:
    """dim / divisor when every term divides exactly (divisor: a constant or one atom)."""
    if divisor.is_const:
        d = divisor.const_value
        if d <= 0 or any(c % d for _, c in dim.terms):
            return None
        return symbolic.Dim({m: c // d for m, c in dim.terms})
    if len(divisor.terms) != 1:
        return None
    (monomial, coeff), = divisor.terms
    if coeff != 1 or len(monomial) != 1:
        return None
    atom = monomial[0]
    terms = {}
    for m, c in dim.terms:
        if atom not in m:
            return None
        rest = list(m)
        rest.remove(atom)
        terms[tuple(rest)] = terms.get(tuple(rest), 0) + c
    return symbolic.Dim(terms)


def _replace_loop(stmt, target: Loop, by):
    """The statement with the loop `target` (by identity) replaced by `by`."""
    if stmt is target:
        return by
    if isinstance(stmt, Loop):
        return Loop(stmt.var, stmt.extent, [_replace_loop(s, target, by) for s in stmt.body],
                    stmt.kind)
    if isinstance(stmt, Block):
        return Block([_replace_loop(s, target, by) for s in stmt.body])
    return stmt
