"""Symmetric products: C = Aᵀ·B where A is B with each row scaled, C = Bᵀ diag(e) B.

Such a C is symmetric, and a library can compute one triangle of it for half the
work (BLAS `gemmt`) and mirror it. The pattern is what a Hessian of a sum of
per-row terms compiles to (the logistic loss: H = Xᵀ diag(σ(z)(1 − σ(z))) X), so it
is recognized on the loop IR, where it is plain: a `Gemm` reading `a` transposed
and `b` as it is, and `a` written by exactly one store

    a[index] = b[index] · e        (or e · b[index]),  e free of the column variable

(the column variable: the innermost loop around the store, which steps the index
by 1). The Gemm is marked `symmetric`; the renderer decides at run time whether
the triangle is worth it (it is not for small n, where `gemm` is faster).

When e provably has one sign (`value_bounds`: σ(z)(1 − σ(z)) ≥ 0, y · s · y with
s ≥ 0, −eᶻ ≤ 0), the product is a Gram matrix

    C = Bᵀ diag(e) B = ±(√|e| ⊙ B)ᵀ (√|e| ⊙ B)

so the store becomes a[index] = b[index] · √(±e) and the Gemm `gram = ±1`: BLAS
`syrk` does half the work of `gemm` and reads one matrix instead of two.
"""

from __future__ import annotations

from dataclasses import replace

from . import symbolic
from .loop_walk import replace_statement
from .loopir import Apply, Buffer, DimValue, Gemm, Load, Loop, Program, Store
from .value_bounds import value_bounds


def symmetric_products(program: Program) -> Program:
    for k, stmt in enumerate(program.body):
        if not isinstance(stmt, Gemm) or stmt.gram or stmt.row_scale is not None:
            continue
        found = row_scaling(stmt, program)
        if found is None:
            continue
        store, _, weight = found
        body = list(program.body)
        body[k] = replace(stmt, symmetric=True)
        lo, hi = value_bounds(weight, program)
        gram = 1 if lo >= 0 else -1 if hi <= 0 else 0
        if gram:
            # e = ±(√(±e))²: the store keeps b's row times √|e|, C = gram · aᵀa
            dtype = store.value.dtype
            magnitude = weight if gram > 0 else Apply("neg", (weight,), dtype)
            scaled = Apply("mul", (Load(stmt.b, store.index), Apply("sqrt", (magnitude,), dtype)),
                           dtype)
            body = [replace_statement(s, store, Store(store.buffer, store.index, scaled))
                    for s in body]
            body[k] = replace(stmt, symmetric=True, gram=gram)
        program = Program(program.name, program.dims, program.inputs, program.outputs,
                          program.scratch, body)
    return program


def row_scaling(gemm: Gemm, program: Program):
    """(the one store a[index] = b[index] · e, its column variable, e) when
    c = aᵀ b = bᵀ diag(e) b, else None."""
    if not gemm.trans_a or gemm.trans_b or gemm.a is gemm.b or gemm.a.kind != "scratch":
        return None
    if not symbolic.dims_equal(gemm.m, gemm.n):
        return None
    stores = list(_stores_with_column(program.body, gemm.a))
    if len(stores) != 1:
        return None
    store, column = stores[0]
    if column is None:
        return None
    value = store.value
    if not (isinstance(value, Apply) and value.op == "mul"):
        return None
    for own, other in (value.args, value.args[::-1]):
        if (isinstance(own, Load) and own.buffer is gemm.b
                and symbolic.dims_equal(own.index, store.index)
                and column not in _symbols(other)):
            return (store, column, other) if _steps_by_one(store.index, column) else None
    return None


def _stores_with_column(stmts, buffer: Buffer, column=None):
    """(store, innermost enclosing loop variable) for each store into `buffer`."""
    for stmt in stmts:
        if isinstance(stmt, Loop):
            yield from _stores_with_column(stmt.body, buffer, stmt.var)
        elif isinstance(stmt, Store) and stmt.buffer is buffer:
            yield stmt, column
        elif hasattr(stmt, "body"):
            yield from _stores_with_column(stmt.body, buffer, column)


def _steps_by_one(index, var: str) -> bool:
    step = symbolic.simplify(symbolic.substitute(index, {var: symbolic.as_dim(1)})
                             - symbolic.as_dim(symbolic.substitute(index, {var: symbolic.as_dim(0)})))
    return step == 1


def _symbols(expr) -> set:
    if isinstance(expr, Load):
        return set(symbolic.as_dim(expr.index).symbols())
    if isinstance(expr, DimValue):
        return set(symbolic.as_dim(expr.dim).symbols())
    if isinstance(expr, Apply):
        return set().union(*(_symbols(a) for a in expr.args)) if expr.args else set()
    return set()

