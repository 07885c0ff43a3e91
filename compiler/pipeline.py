"""The compiler as a flat list of passes, each a pure function from IR to IR.

    traced graph ─ simplify (algebra: σ(u) for eᵘ/(eᵘ+1), negations outwards, …)
        ─ verify ─ lower (choose buffers, fuse element-wise work)
        ─ fuse_loops (one pass over shared extents, scalar replacement)
        ─ parallelize (parallel loops, deterministic chunked reductions)
        ─ block_rows (per-row scalar work of row loops in SIMD lanes)
        ─ symmetric_products (Bᵀ diag(s) B: one triangle, mirrored)
        ─ row_scaled_products (s ⊙ B made a block at a time, never stored)
        ─ plan_buffers (scratch with disjoint lifetimes shares memory) ─ loop IR

The CUDA target (compiler/cuda) takes the same graph passes and its own loop passes:
no row blocking (SIMD lanes are a CPU matter), smaller chunks of rows, and the serial
combine of chunk partials split so that a GPU runs it in parallel. Its matrix–matrix
products are always `Gemm` statements, which the CUDA renderer makes tiled kernels.

Later passes (simplification, fusion across reductions, BLAS calls) slot into
these lists; a reader sees the whole compiler here.
"""

from __future__ import annotations

from .block_rows import block_rows
from .cuda.combines import split_combines
from .fuse_loops import fuse_loops
from .ir import Function
from .loopir import Program
from .lower import lower
from .parallelize import parallelize, parallelize_for_gpu
from .plan_buffers import plan_buffers
from .row_scaled_products import row_scaled_products
from .simplify import simplify
from .symmetric_products import symmetric_products
from .verify import verify

GRAPH_PASSES = [simplify, verify]
LOOP_PASSES = [fuse_loops, parallelize, block_rows, symmetric_products, row_scaled_products,
               plan_buffers]
CUDA_LOOP_PASSES = [fuse_loops, parallelize_for_gpu, split_combines, plan_buffers]
TARGETS = {"cpu": LOOP_PASSES, "cuda": CUDA_LOOP_PASSES}


def optimize_graph(function: Function) -> Function:
    for graph_pass in GRAPH_PASSES:
        function = graph_pass(function)
    return function


def to_loop_ir(function: Function, blas: bool = False, target: str = "cpu") -> Program:
    """The loop IR of a traced function for `target` ("cpu" or "cuda"); `blas`:
    matrix–matrix products are `Gemm` statements (BLAS calls) on the CPU."""
    program = lower(optimize_graph(function), blas=blas or target == "cuda")
    for loop_pass in TARGETS[target]:
        program = loop_pass(program)
    return program
