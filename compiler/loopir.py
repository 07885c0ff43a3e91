"""The loop IR: the backend-neutral contract between scheduling and the renderers.

A compiled function lowers to one `Program`:

- `dims`: the names of its `int64` dim parameters, in ABI order;
- `inputs`, `outputs`: buffers given by the caller (C-contiguous, row-major);
- `scratch`: buffers the program allocates (`fg_alloc`) and frees itself;
  `local` buffers (small, constant size) are not listed: a renderer gives each a
  stack array in the function that uses it;
- `body`: statements.

Statements: `Loop` (for var in range(extent)), `Store` (buffer[index] = value),
`AccInit` / `AccUpdate` (scalar accumulators for reductions), `Gemm` (a matrix
product by a library) and `Block`.
Scalar expressions: `Const`, `DimValue`, `Load`, `AccRef`, and `Apply` of an
element-wise op of the op table (neg, exp, add, select, cast, lt, ...).

Indices are `symbolic.Dim` polynomials whose symbols are loop variables (names
start with `@`) or dims of the program; a buffer index is the *linear* element
offset. Extents are dims. Nothing here names LLVM or CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from .symbolic import Dim, DimLike

LOOP_VAR_PREFIX = "@"
#: Bytes per element of a buffer of each dtype (a bool is one byte, 0 or 1).
ITEM_BYTES = {"float64": 8, "float32": 4, "bool": 1}


def loop_var(k: int) -> Dim:
    return Dim.symbol(f"{LOOP_VAR_PREFIX}i{k}")


def is_loop_var(name: str) -> bool:
    return name.startswith(LOOP_VAR_PREFIX)


@dataclass(frozen=True, eq=False)
class Buffer:
    name: str
    dtype: str  # "float32", "float64" or "bool" (one byte per element)
    shape: tuple  # of DimLike; the element count is their product
    # "input", "output", "scratch" (allocated per call by the program) or "local" (a
    # stack array of constant size in the function that runs the loop using it, so
    # every thread running an outlined parallel body has its own)
    kind: str


# -- scalar expressions -------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Const:
    value: float
    dtype: str


@dataclass(frozen=True, eq=False)
class DimValue:
    """A dim (or any index expression) converted to a float."""

    dim: DimLike
    dtype: str


@dataclass(frozen=True, eq=False)
class Load:
    buffer: Buffer
    index: DimLike

    @property
    def dtype(self) -> str:
        return self.buffer.dtype


@dataclass(frozen=True, eq=False)
class Accumulator:
    name: str
    op: str  # "add", "max" or "min"
    dtype: str


@dataclass(frozen=True, eq=False)
class AccRef:
    acc: Accumulator

    @property
    def dtype(self) -> str:
        return self.acc.dtype


@dataclass(frozen=True, eq=False)
class Apply:
    """An element-wise op of the op table applied to scalars (`cast` has a target dtype)."""

    op: str
    args: tuple
    dtype: str


Expr = Union[Const, DimValue, Load, AccRef, Apply]


# -- statements ------------------------------------------------------------------------
@dataclass(eq=False)
class Loop:
    var: str  # a loop variable name, starting with "@"
    extent: DimLike
    body: list
    kind: str = "serial"  # "serial", "parallel" or "vector": a hint to the renderer


@dataclass(eq=False)
class Store:
    buffer: Buffer
    index: DimLike
    value: Expr


@dataclass(eq=False)
class AccInit:
    """acc = identity of acc.op (0, -inf or +inf)."""

    acc: Accumulator


@dataclass(eq=False)
class AccUpdate:
    """acc = acc op value (max/min propagate NaN, like NumPy)."""

    acc: Accumulator
    value: Expr


@dataclass(eq=False)
class Gemm:
    """c = a · b on whole row-major buffers, a library call (BLAS `gemm`).

    a is m × k, or stored k × m and read transposed when `trans_a`; b is k × n, or
    stored n × k when `trans_b`; c is m × n.
    """

    c: Buffer
    a: Buffer
    b: Buffer
    m: DimLike
    n: DimLike
    k: DimLike
    trans_a: bool = False
    trans_b: bool = False
    # c is known to be symmetric (c = bᵀ diag(s) b, see `symmetric_products`): a renderer
    # may compute one triangle and mirror it
    symmetric: bool = False
    # ±1: c = gram · aᵀa (BLAS `syrk`), a holding b's rows scaled by √|s| (s of one sign,
    # proved by `value_bounds`); b is then not read. 0: c = op(a)·op(b).
    gram: int = 0
    # a vector of k row scales r: `a` is never stored, its rows are b's times r, made a
    # block at a time by the runtime (`row_scaled_products`); a is then b itself.
    row_scale: Buffer | None = None


@dataclass(eq=False)
class Block:
    body: list


Stmt = Union[Loop, Store, AccInit, AccUpdate, Gemm, Block]


@dataclass(eq=False)
class Program:
    name: str
    dims: list[str]
    inputs: list[Buffer]
    outputs: list[Buffer]
    scratch: list[Buffer] = field(default_factory=list)
    body: list = field(default_factory=list)

    def __str__(self):
        return format_program(self)


# -- printing ---------------------------------------------------------------------------
def format_expr(e) -> str:
    if isinstance(e, Const):
        return repr(e.value)
    if isinstance(e, DimValue):
        return f"float({e.dim!r})"
    if isinstance(e, Load):
        return f"{e.buffer.name}[{e.index!r}]"
    if isinstance(e, AccRef):
        return e.acc.name
    args = ", ".join(format_expr(a) for a in e.args)
    suffix = f" -> {e.dtype}" if e.op == "cast" else ""
    return f"{e.op}({args}){suffix}"


def format_program(program: Program) -> str:
    lines = []
    params = program.dims + [
        f"{b.kind} {b.name}: {b.dtype}[{', '.join(map(repr, b.shape))}]"
        for b in program.inputs + program.outputs
    ]
    lines.append(f"program {program.name}({', '.join(params)}):")
    for b in program.scratch:
        lines.append(f"  scratch {b.name}: {b.dtype}[{', '.join(map(repr, b.shape))}]")

    def emit(stmts, depth):
        pad = "  " * depth
        for s in stmts:
            if isinstance(s, Loop):
                lines.append(f"{pad}for {s.var} in range({s.extent!r}):  # {s.kind}")
                emit(s.body, depth + 1)
            elif isinstance(s, Store):
                lines.append(f"{pad}{s.buffer.name}[{s.index!r}] = {format_expr(s.value)}")
            elif isinstance(s, AccInit):
                lines.append(f"{pad}{s.acc.name} = identity({s.acc.op}, {s.acc.dtype})")
            elif isinstance(s, AccUpdate):
                lines.append(f"{pad}{s.acc.name} {s.acc.op}= {format_expr(s.value)}")
            elif isinstance(s, Gemm):
                a = f"{s.a.name}ᵀ" if s.trans_a else s.a.name
                b = f"{s.b.name}ᵀ" if s.trans_b else s.b.name
                kind = "gemm" if not s.symmetric else "symmetric_gemm"
                operands = f"{a}, {b}"
                if s.gram:
                    kind, operands = "gram", f"{'+' if s.gram > 0 else '-'}{s.a.name}ᵀ{s.a.name}"
                if s.row_scale is not None:
                    scaled = f"({s.row_scale.name} ⊙ {s.b.name})"
                    second = scaled if s.gram else s.b.name
                    sign = "-" if s.gram < 0 else ""
                    kind, operands = "row_scaled", f"{sign}{scaled}ᵀ{second}"
                lines.append(f"{pad}{s.c.name} = {kind}({operands})  # {s.m!r}×{s.k!r} @ {s.k!r}×{s.n!r}")
            elif isinstance(s, Block):
                emit(s.body, depth)

    emit(program.body, 1)
    return "\n".join(lines)
