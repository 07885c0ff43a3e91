"""Scratch planning: buffers whose lifetimes do not overlap share one allocation.

A scratch buffer lives from the first top-level statement that touches it to
the last. Walking the statements in order, a buffer whose life has ended is
put on a free list, and a later buffer of the same dtype and the same
(symbolic) element count takes it over instead of allocating its own. Fewer,
reused allocations mean less memory touched per call.
"""

from __future__ import annotations

from dataclasses import replace

from . import symbolic
from .loop_walk import effects_of, rewrite
from .loopir import Gemm, Load, Program, Store


def plan_buffers(program: Program) -> Program:
    scratch = set(program.scratch)
    first, last = {}, {}
    for k, stmt in enumerate(program.body):
        effects = effects_of([stmt])
        for buffer in (effects.reads | effects.writes) & scratch:
            first.setdefault(buffer, k)
            last[buffer] = k
    replacement = {}
    free = []  # (buffer that is free after statement `last`, last)
    for buffer in sorted(first, key=lambda b: (first[b], b.name)):
        size = symbolic.product(buffer.shape)
        for slot, (candidate, ended) in enumerate(free):
            if (
                ended < first[buffer]
                and candidate.dtype == buffer.dtype
                and symbolic.dims_equal(symbolic.product(candidate.shape), size)
            ):
                replacement[buffer] = candidate
                free.pop(slot)
                break
        owner = replacement.get(buffer, buffer)
        free.append((owner, last[buffer]))
    if not replacement:
        return program

    def load(expr):
        return Load(replacement.get(expr.buffer, expr.buffer), expr.index)

    def store(stmt):
        return Store(replacement.get(stmt.buffer, stmt.buffer), stmt.index, stmt.value)

    body = []
    for stmt in program.body:
        if isinstance(stmt, Gemm):
            scale = stmt.row_scale
            body.append(replace(stmt, c=replacement.get(stmt.c, stmt.c),
                                a=replacement.get(stmt.a, stmt.a), b=replacement.get(stmt.b, stmt.b),
                                row_scale=replacement.get(scale, scale)))
        else:
            body.extend(rewrite([stmt], load=load, store=store))
    kept = [b for b in program.scratch if b not in replacement]
    return Program(program.name, program.dims, program.inputs, program.outputs, kept, body)
