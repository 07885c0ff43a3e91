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
from .loop_walk import loads_of, replace_statement, walk
from .loopir import Buffer, Gemm, Loop, Program, Store
from .symmetric_products import row_scaling


def row_scaled_products(program: Program) -> Program:
    for k, stmt in enumerate(program.body):
        if isinstance(stmt, Gemm) and stmt.symmetric and stmt.row_scale is None:
            rewritten = _row_scaled(program, k, stmt)
            if rewritten is not None:
                program = rewritten
    return program


def _row_scaled(program: Program, at: int, gemm: Gemm) -> Program | None:
    a, b = gemm.a, gemm.b
    found = row_scaling(gemm, program)
    if found is None:
        return None
    store, column_var, factor = found
    values = [s.value for s in walk(program.body) if hasattr(s, "value")]
    read_elsewhere = any(load.buffer is a for load in loads_of(values)) or any(
        isinstance(s, Gemm) and s is not gemm and a in (s.a, s.b, s.c) for s in program.body)
    column = next((s for s in walk(program.body) if isinstance(s, Loop)
                   and s.var == column_var and s.body == [store]), None)
    if read_elsewhere or column is None:
        return None
    row_start = symbolic.substitute(store.index, {column_var: symbolic.as_dim(0)})
    row = _exact_quotient(symbolic.as_dim(row_start), symbolic.as_dim(gemm.n))
    if row is None:
        return None
    rows = Buffer(f"{a.name}_rows", a.dtype, (gemm.k,), "scratch")
    body = [replace_statement(s, column, Store(rows, row, factor)) for s in program.body]
    body[at] = replace(gemm, a=b, row_scale=rows)
    scratch = [s for s in program.scratch if s is not a] + [rows]
    return Program(program.name, program.dims, program.inputs, program.outputs, scratch, body)


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
