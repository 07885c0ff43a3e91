"""Symmetric products: C = Aᵀ·B where A is B with each row scaled, C = Bᵀ diag(s) B.

Such a C is symmetric, and a library can compute one triangle of it for half the
work (BLAS `gemmt`) and mirror it. The pattern is what a Hessian of a sum of
per-row terms compiles to (the logistic loss: H = Xᵀ diag(σ(z)(1 − σ(z))) X), so it
is recognized on the loop IR, where it is plain: a `Gemm` reading `a` transposed
and `b` as it is, and `a` written by exactly one store

    a[index] = b[index] · e        (or e · b[index]),  e free of the column variable

(the column variable: the innermost loop around the store, which steps the index
by 1). The Gemm is marked `symmetric`; the renderer decides at run time whether
the triangle is worth it (it is not for small n, where `gemm` is faster).
"""

from __future__ import annotations

from dataclasses import replace

from . import symbolic
from .loopir import Apply, Buffer, DimValue, Gemm, Load, Loop, Program, Store


def symmetric_products(program: Program) -> Program:
    gemms = [s for s in program.body if isinstance(s, Gemm)]
    if not gemms:
        return program
    body = [replace(s, symmetric=True) if isinstance(s, Gemm) and _is_symmetric(s, program)
            else s for s in program.body]
    return Program(program.name, program.dims, program.inputs, program.outputs,
                   program.scratch, body)


def _is_symmetric(gemm: Gemm, program: Program) -> bool:
    if not gemm.trans_a or gemm.trans_b or gemm.a is gemm.b or gemm.a.kind != "scratch":
        return False
    if not symbolic.dims_equal(gemm.m, gemm.n):
        return False
    stores = list(_stores_with_column(program.body, gemm.a))
    if len(stores) != 1:
        return False
    store, column = stores[0]
    if column is None:
        return False
    value = store.value
    if not (isinstance(value, Apply) and value.op == "mul"):
        return False
    for own, other in (value.args, value.args[::-1]):
        if (isinstance(own, Load) and own.buffer is gemm.b
                and symbolic.dims_equal(own.index, store.index)
                and column not in _symbols(other)):
            return _steps_by_one(store.index, column)
    return False


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

