"""Which kernel runs each top-level statement of a loop program on a GPU.

A program's top-level statements run in order, each as one or more kernel launches on
the default stream (so each launch sees the previous one's writes):

- `GridLoop`: a parallel loop (its iterations independent, `parallelize` proved it) or a
  fill: one thread per iteration, blocks of `BLOCK` threads. Inner loops run serially
  in the thread.
- `ChunkReduction`: a parallel loop over the chunks of a reduction whose chunk body is
  "initialize accumulators, one flat loop over the chunk's elements, store the
  partials": one block per chunk. The block's threads stride the chunk's elements
  (neighbouring threads read neighbouring elements), each accumulating its own partial;
  a tree reduction in shared memory combines the threads' partials in a fixed order,
  and thread 0 stores the chunk's partial. No float atomics: the result is the same on
  every run.
- `RowBlock`: a parallel loop whose iterations (rows, or chunks of rows) run inner
  loops, like the logistic gradient's `z = X[i]·w; …; g += t·X[i]` or a row-wise
  softmax: one block of `ROW_BLOCK` threads per iteration. Scalar statements run on
  thread 0 with the scalars in shared memory; a flat inner loop is strided over the
  threads (the reads of a row are coalesced), its sums reduced by a tree as above;
  serial loops (the rows of a chunk) run uniformly in every thread, with a barrier
  between phases.
- `Combine`: a serial loop that only updates top-level accumulators (the combine of
  the chunks' partials): one block, the same strided accumulation and tree reduction,
  then thread 0 folds the result into the accumulator.
- `TiledGemm`: a matrix product, C = A·B: one block per 16×16 tile of C, the tiles of
  A and B it needs staged through shared memory; each element sums over k in order.
- `Serial`: everything else (top-level stores, accumulator set-up, loops with
  recurrences), consecutive statements in one single-thread kernel.

Top-level accumulators live across launches, so they live in device memory: one
one-element scratch buffer each (`Slot`); accumulators set up inside a kernel's
statements are registers of the thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import symbolic
from ..errors import CompileError
from ..loop_walk import effects_of, loads_in, walk
from ..loopir import AccInit, AccRef, AccUpdate, Apply, Block, Buffer, Const, Gemm, Loop, Store

#: Threads per block of the grid and reduction kernels (a power of two: the tree
#: reduction halves it).
BLOCK = 256
#: Threads per block of a RowBlock: one warp, as its rows are often short (32
#: features) and its many barriers are cheapest in a one-warp block.
ROW_BLOCK = 32


@dataclass
class GridLoop:
    loop: Loop


@dataclass
class ChunkReduction:
    loop: Loop  # over the chunks: blockIdx.x
    inits: list  # AccInit of the chunk's accumulators
    inner: Loop  # flat, over the chunk's elements: threadIdx.x + k·BLOCK
    finals: list  # stores of the partials, by thread 0


@dataclass
class RowBlock:
    loop: Loop  # blockIdx.x; its body a uniform sequence (see `_uniform`)


@dataclass
class Combine:
    loop: Loop  # its body: AccUpdates of top-level accumulators only
    # serial statements run by thread 0 before the reduction and after the fold (one
    # block: they need no launch of their own)
    prologue: list = field(default_factory=list)
    epilogue: list = field(default_factory=list)


@dataclass
class TiledGemm:
    gemm: Gemm


@dataclass
class Serial:
    stmts: list = field(default_factory=list)


@dataclass(frozen=True)
class Launch:
    """One kernel launch: `grid` blocks (a dim expression) of `block` threads;
    `args` are names of dims and buffers, in the kernel's parameter order."""

    kernel: str
    grid: object
    block: int
    shared_bytes: int
    args: tuple


@dataclass
class CudaProgram:
    """A loop program as CUDA C: one translation unit and the launches of a call.

    `scratch` holds the program's scratch buffers and the accumulator slots; a call
    allocates them (uninitialized) before the first launch and frees them after the
    last."""

    name: str
    source: str
    dims: list
    inputs: list
    outputs: list
    scratch: list
    steps: list


def flatten_blocks(stmts) -> list:
    flat = []
    for stmt in stmts:
        flat.extend(flatten_blocks(stmt.body) if isinstance(stmt, Block) else [stmt])
    return flat


def slots(stmts) -> dict:
    """Top-level accumulator → its one-element scratch buffer."""
    return {
        s.acc: Buffer(f"fg_acc_{s.acc.name}", s.acc.dtype, (), "scratch")
        for s in stmts
        if isinstance(s, AccInit)
    }


def plan(stmts, top_level_accs) -> list:
    """The kernels of a flat list of top-level statements, in order."""
    kernels = []
    for stmt in _stores_where_ready(_inits_where_used(stmts)):
        kernel = _kernel_of(stmt, top_level_accs)
        if kernel is None:
            if not kernels or not isinstance(kernels[-1], Serial):
                kernels.append(Serial())
            kernels[-1].stmts.append(stmt)
        else:
            kernels.append(kernel)
    return _serial_into_combines(kernels)


def _inits_where_used(stmts) -> list:
    """The statements with each top-level AccInit moved down to just before the first
    statement that uses its accumulator (the init of a reduction's total then sits next
    to the combine that needs it, not before the chunk loop)."""
    result = list(stmts)
    for init in [s for s in stmts if isinstance(s, AccInit)]:
        position = result.index(init)
        later = result[position + 1:]
        uses = [k for k, s in enumerate(later) if init.acc in effects_of([s]).accumulators]
        if uses:
            result.pop(position)
            result.insert(position + uses[0], init)
    return result


def _stores_where_ready(stmts) -> list:
    """The statements with each top-level Store moved up to just after the last earlier
    statement it depends on (the store of a reduction's total then follows the combine
    that finishes it, and runs in that kernel)."""
    result = list(stmts)
    for store in [s for s in stmts if isinstance(s, Store)]:
        position = result.index(store)
        mine = effects_of([store])
        ready = 0
        for k in range(position - 1, -1, -1):
            if mine.depends_on(effects_of([result[k]])):
                ready = k + 1
                break
        result.pop(position)
        result.insert(ready, store)
    return result


def _serial_into_combines(kernels) -> list:
    """Serial kernels next to a Combine run in its block (thread 0): fewer launches."""
    merged = []
    for kernel in kernels:
        previous = merged[-1] if merged else None
        if isinstance(kernel, Combine) and isinstance(previous, Serial):
            merged.pop()
            kernel.prologue = previous.stmts
        elif isinstance(kernel, Serial) and isinstance(previous, Combine) and not previous.epilogue:
            previous.epilogue = kernel.stmts
            continue
        merged.append(kernel)
    return merged


def _kernel_of(stmt, top_level_accs):
    if isinstance(stmt, Gemm):
        if stmt.gram or stmt.row_scale is not None:  # CPU loop passes only (pipeline.py)
            raise CompileError("the CUDA renderer has no Gram or row-scaled products")
        return TiledGemm(stmt)
    if not isinstance(stmt, Loop):
        return None
    if stmt.kind == "parallel":
        return _chunk_reduction(stmt) or _row_block(stmt) or GridLoop(stmt)
    if _is_fill(stmt):
        return GridLoop(stmt)
    if _is_combine(stmt, top_level_accs):
        return Combine(stmt)
    return None


def _chunk_reduction(loop: Loop):
    """inits, one flat inner loop whose stores each go to an element of their own,
    and stores of the partials (values of the chunk's accumulators, loads and dims)."""
    body = loop.body
    inits = [s for s in body if isinstance(s, AccInit)]
    loops = [s for s in body if isinstance(s, Loop)]
    if len(loops) != 1 or not inits:
        return None
    inner = loops[0]
    position = body.index(inner)
    if body[:position] != inits or any(not isinstance(s, Store) for s in body[position + 1:]):
        return None
    if not is_flat(inner):
        return None
    # A store whose index does not move with the element would be written by every
    # thread (a chunk-private row that `parallelize` shrank): not for a block.
    for s in walk(inner.body):
        if isinstance(s, Store) and inner.var not in symbolic.dim_symbols([s.index]):
            return None
    reduced = {s.acc for s in inits}
    local = {s.acc for s in walk(inner.body) if isinstance(s, AccInit)}
    if any(isinstance(s, AccUpdate) and s.acc not in reduced | local for s in walk(inner.body)):
        return None
    finals = body[position + 1:]
    for s in finals:
        if any(ref.acc not in reduced for ref in _acc_refs(s.value)):
            return None
    return ChunkReduction(loop, inits, inner, finals)


def _row_block(loop: Loop):
    """A parallel loop with nested inner loops, whose body is a uniform sequence and
    sets up every accumulator it uses."""
    if not any(isinstance(s, Loop) and not is_flat(s) for s in loop.body):
        return None
    inits = {s.acc for s in walk(loop.body) if isinstance(s, AccInit)}
    used = {s.acc for s in walk(loop.body) if isinstance(s, AccUpdate)}
    for s in walk(loop.body):
        used |= {ref.acc for ref in _acc_refs(getattr(s, "value", None))}
    if not used <= inits or not _uniform(loop.body):
        return None
    return RowBlock(loop)


def is_flat(loop: Loop) -> bool:
    return not any(isinstance(s, (Loop, Block, Gemm)) for s in walk(loop.body))


def _uniform(stmts) -> bool:
    """Statements every thread of a block can step through together: scalar statements
    (run by thread 0), loops the block's threads can share (`lane_loop`), and serial
    loops over uniform sequences."""
    for s in stmts:
        if isinstance(s, (AccInit, AccUpdate, Store)):
            continue
        if not isinstance(s, Loop):
            return False
        if lane_loop(s):
            continue
        if is_flat(s) or not _uniform(s.body):
            return False
    return True


def lane_loop(loop: Loop) -> bool:
    """A loop whose iterations the threads of a block may share: each store goes to an
    element of its own iteration, a buffer stored is read only where it is stored, the
    accumulators set up inside stay inside, and the sums it adds to outer accumulators
    (reduced by a tree afterwards) are read nowhere in it."""
    stmts = list(walk(loop.body))
    stores = [s for s in stmts if isinstance(s, Store)]
    if any(isinstance(s, Block) for s in stmts):
        return False
    if any(loop.var not in symbolic.dim_symbols([s.index]) for s in stores):
        return False
    outer = set(outer_sums(loop))
    for s in stmts:
        value = getattr(s, "value", None)
        if any(ref.acc in outer for ref in _acc_refs(value)):
            return False
        for load in loads_in(value):
            written = [t.index for t in stores if t.buffer is load.buffer]
            if written and not any(symbolic.dims_equal(load.index, w) for w in written):
                return False
    return True


def outer_sums(loop: Loop) -> list:
    """Accumulators a loop adds to but does not set up (in a shared loop: the threads'
    partials), in order of first update."""
    inner = {s.acc for s in walk(loop.body) if isinstance(s, AccInit)}
    updated = [s.acc for s in walk(loop.body) if isinstance(s, AccUpdate)]
    return [acc for acc in dict.fromkeys(updated) if acc not in inner]


def _is_fill(loop: Loop) -> bool:
    """for i: b[i] = constant, each iteration its own element."""
    return bool(loop.body) and all(
        isinstance(s, Store) and isinstance(s.value, Const) and loop.var in symbolic.dim_symbols([s.index])
        for s in loop.body
    )


def _is_combine(loop: Loop, top_level_accs) -> bool:
    """A loop of updates of top-level accumulators by values that read no accumulator."""
    return bool(loop.body) and all(
        isinstance(s, AccUpdate) and s.acc in top_level_accs and not list(_acc_refs(s.value))
        for s in loop.body
    )


def _acc_refs(expr):
    if isinstance(expr, AccRef):
        yield expr
    elif isinstance(expr, Apply):
        for arg in expr.args:
            yield from _acc_refs(arg)

