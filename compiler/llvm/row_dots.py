"""Dot products of a block of matrix rows with one vector, L rows at a time.

The loop IR of `z = X @ w` over a block of rows (a matrix–vector product, and the first
half of every fused logistic or least-squares pass) is

    for @r in range(R):                 # serial
      acc = 0
      for @v in range(C):               # vector
        acc add= mul(A[a0 + S·@r + @v], w[w0 + @v])
      out[o0 + @r] = acc

LLVM vectorizes the inner loop and then reduces the vector accumulator of *each row*
to a scalar: a tree of log₂ L shuffles and adds, plus the loop's set-up, per row. For
the short rows of these workloads (C = 8, 32) that is most of the row's instructions.
Here L rows (L = the lanes of one vector register) are computed together:

    acc_i ← fma(A[row i, c : c+L], w[c : c+L], acc_i)    for each full chunk c, i < L
    acc_i ← acc_i + A[row i, tail] · w[tail]               masked loads, if L ∤ C
    out[g : g+L] ← transpose-reduce(acc_0, ..., acc_{L−1})

The transpose-reduce adds the L accumulators pairwise in log₂ L levels of shuffles,
so that lane i of the result is the sum of acc_i: L − 1 vector adds and 2(L − 1)
shuffles for L rows, against L(log₂ L) of each, one row at a time. Each row is read
in order (its chunks, then the next row's). Rows left over (fewer than L) are summed
one at a time, in the same order: their vector of partial sums, then a tree of
adjacent lanes, which is the tree the transpose-reduce builds for each lane.

Results stay deterministic: a row's sum order depends on C only, not on where a
thread's share of the rows begins, so any thread count gives the same bits.
"""

from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from .. import loopir, symbolic
from .scalar import ELEMENT_SIZES, I1, I32, I64, STORAGE_TYPES

_FLOATS = ("float64", "float32")


@dataclass(frozen=True)
class RowDots:
    """A loop that matches the pattern of the module doc."""

    loop: loopir.Loop
    matrix: loopir.Buffer
    matrix_start: symbolic.DimLike  # a0: the index of A[row 0, column 0]
    row_stride: symbolic.DimLike  # S
    vector: loopir.Buffer
    vector_start: symbolic.DimLike  # w0
    out: loopir.Buffer
    out_start: symbolic.DimLike  # o0
    columns: symbolic.DimLike  # C


def match(loop: loopir.Loop) -> RowDots | None:
    """The row-dot pattern of `loop` (its kind aside), or None."""
    if len(loop.body) != 3:
        return None
    init, inner, store = loop.body
    if not (isinstance(init, loopir.AccInit) and isinstance(inner, loopir.Loop)
            and isinstance(store, loopir.Store) and len(inner.body) == 1):
        return None
    update, acc = inner.body[0], init.acc
    if not (isinstance(update, loopir.AccUpdate) and update.acc is acc and acc.op == "add"
            and acc.dtype in _FLOATS and store.buffer.dtype == acc.dtype
            and isinstance(store.value, loopir.AccRef) and store.value.acc is acc):
        return None
    product = update.value
    if not (isinstance(product, loopir.Apply) and product.op == "mul"
            and all(isinstance(a, loopir.Load) and a.buffer.dtype == acc.dtype
                    for a in product.args)):
        return None
    row, column = loop.var, inner.var
    if _depends(inner.extent, row) or _depends(inner.extent, column):
        return None
    out_start = _at(store.index, {row: 0})
    if _depends(store.index, column) or _coefficient(store.index, row) != 1:
        return None
    for matrix_load, vector_load in (product.args, product.args[::-1]):
        vector_index, matrix_index = vector_load.index, matrix_load.index
        if (_depends(vector_index, row) or _coefficient(vector_index, column) != 1
                or _coefficient(matrix_index, column) != 1):
            continue
        matrix_start = _at(matrix_index, {row: 0, column: 0})
        stride = symbolic.simplify(_at(matrix_index, {row: 1, column: 0}) - matrix_start)
        if _depends(stride, row) or _depends(stride, column):
            continue
        return RowDots(loop, matrix_load.buffer, matrix_start, stride, vector_load.buffer,
                       _at(vector_index, {column: 0}), store.buffer, out_start, inner.extent)
    return None


def _at(index, mapping: dict) -> symbolic.DimLike:
    return symbolic.simplify(symbolic.substitute(index, mapping))


def _depends(index, var: str) -> bool:
    return isinstance(index, symbolic.Dim) and var in index.symbols()


def _coefficient(index, var: str):
    """The coefficient of `var` in an index affine in it (None if it is not affine)."""
    slope = symbolic.simplify(_at(index, {var: 1}) - _at(index, {var: 0}))
    again = symbolic.simplify(_at(index, {var: 2}) - _at(index, {var: 1}))
    if symbolic.simplify(slope - again) != 0:
        return None
    return slope if isinstance(slope, int) else None


def lanes(dtype: str, vector_bytes: int) -> int:
    """Elements of `dtype` in one vector register of `vector_bytes` bytes (≥ 2)."""
    return max(2, vector_bytes // ELEMENT_SIZES[dtype])


def render(renderer, dots: RowDots, vector_bytes: int, start: ir.Value, stop: ir.Value) -> None:
    """Emit rows [start, stop) of `dots.loop` (none if stop ≤ start): groups of L rows,
    then the rows left over one at a time, each row summed in the same order either way
    (so a row's bits do not depend on where a thread's share of the rows begins)."""
    _Emitter(renderer, dots, vector_bytes).rows(start, stop)


class _Emitter:
    def __init__(self, renderer, dots: RowDots, vector_bytes: int):
        self.b = b = renderer.builder
        self.renderer = renderer
        dtype = dots.out.dtype
        self.width = lanes(dtype, vector_bytes)
        self.scalar_type = STORAGE_TYPES[dtype]
        self.vector_type = ir.VectorType(self.scalar_type, self.width)
        self.vector_suffix = f"v{self.width}{'f64' if dtype == 'float64' else 'f32'}"
        self.align = ELEMENT_SIZES[dtype]
        columns = renderer.index(symbolic.dim_max(dots.columns, 0))
        self.matrix = renderer._element_pointer(dots.matrix, dots.matrix_start)
        self.stride = renderer.index(dots.row_stride)
        self.vector = renderer._element_pointer(dots.vector, dots.vector_start)
        self.out = renderer._element_pointer(dots.out, dots.out_start)
        self.tail = b.srem(columns, self._i64(self.width))
        self.full_columns = b.sub(columns, self.tail)
        self.has_tail = b.icmp_signed(">", self.tail, self._i64(0))
        splat = b.shuffle_vector(
            b.insert_element(ir.Constant(ir.VectorType(I64, self.width), None), self.tail,
                             ir.Constant(I32, 0)),
            ir.Constant(ir.VectorType(I64, self.width), None),
            ir.Constant(ir.VectorType(I32, self.width), [0] * self.width))
        self.tail_mask = b.icmp_signed("<", _lane_numbers(self.width), splat)

    @staticmethod
    def _i64(value: int) -> ir.Constant:
        return ir.Constant(I64, value)

    def rows(self, start, stop):
        b, width = self.b, self.width
        count = b.sub(stop, start)
        count = b.select(b.icmp_signed("<", count, self._i64(0)), self._i64(0), count)
        groups_end = b.add(start, b.sub(count, b.srem(count, self._i64(width))))
        partials = self.renderer._entry_alloca(ir.ArrayType(self.vector_type, width),
                                               "dots.partials")
        with self._loop("dots.group", start, groups_end, width) as first:
            with self._loop("dots.lane", self._i64(0), self._i64(width), 1) as i:
                self._store_vector(partials, i, self._lane_sum(b.add(first, i)))
            sums = [self._load_vector(partials, self._i64(i)) for i in range(width)]
            self._store(first, _transpose_reduce(b, sums, width), self.vector_type)
        with self._loop("dots.row", groups_end, stop, 1) as row:
            self._store(row, _tree_sum(b, self._lane_sum(row), width), self.scalar_type)

    def _loop(self, name, start, stop, step, carried=None):
        """A loop of explicit vector code, which LLVM's loop vectorizer leaves alone
        (nothing to gain, and each loop it analyzes costs compile time)."""
        def loop_id():
            return self.renderer._loop_id([("llvm.loop.vectorize.enable", ir.Constant(I1, 0))])

        return _counted(self.b, name, start, stop, step, carried, loop_id)

    def _lane_sum(self, row):
        """The vector Σ_chunks A[row, chunk] ⊙ w[chunk] (+ the masked tail) of one row."""
        b = self.b
        row_start = b.gep(self.matrix, [b.mul(row, self.stride)], inbounds=True,
                          source_etype=self.scalar_type)
        with self._loop("dots.chunk", self._i64(0), self.full_columns, self.width,
                        carried=[ir.Constant(self.vector_type, None)]) as (chunk, carried):
            w = self._load(self.vector, chunk)
            carried.next = [self._fma(self._load(row_start, chunk), w, carried.value[0])]
        total = carried.result[0]
        before = b.block
        with b.if_then(self.has_tail):
            with_tail = self._fma(self._masked_load(row_start), self._masked_load(self.vector),
                                  total)
            after_tail = b.block
        merged = b.phi(self.vector_type)
        merged.add_incoming(with_tail, after_tail)
        merged.add_incoming(total, before)
        return merged

    def _store_vector(self, array, index, value):
        pointer = self.b.gep(array, [self._i64(0), index], inbounds=True)
        self.b.store(value, pointer, align=self.align)

    def _load_vector(self, array, index):
        pointer = self.b.gep(array, [self._i64(0), index], inbounds=True)
        return self.b.load(pointer, align=self.align)

    def _load(self, base, offset):
        b = self.b
        pointer = b.gep(base, [offset], inbounds=True, source_etype=self.scalar_type)
        return b.load(b.bitcast(pointer, self.vector_type.as_pointer()), typ=self.vector_type,
                      align=self.align)

    def _fma(self, x, y, acc):
        """llvm.fmuladd(x, y, acc): one fused multiply-add where the target has it, else a
        product and a sum; the same in every row's code, whatever path the row takes."""
        vector_type = self.vector_type
        function = _declared(self.renderer.module, f"llvm.fmuladd.{self.vector_suffix}",
                             ir.FunctionType(vector_type, [vector_type] * 3))
        return self.b.call(function, [x, y, acc])

    def _masked_load(self, base):
        """base[full_columns + lane] for the tail's lanes, zero in the others (which are
        not read). The intrinsic's 4-operand form (alignment as an operand) is the one
        every LLVM since 15 reads; newer ones upgrade it."""
        b, vector_type = self.b, self.vector_type
        pointer = b.gep(base, [self.full_columns], inbounds=True, source_etype=self.scalar_type)
        ftype = ir.FunctionType(vector_type, [pointer.type, I32,
                                              ir.VectorType(I1, self.width), vector_type])
        function = _declared(self.renderer.module, f"llvm.masked.load.{self.vector_suffix}.p0",
                             ftype)
        return b.call(function, [pointer, ir.Constant(I32, self.align), self.tail_mask,
                                 ir.Constant(vector_type, None)])

    def _store(self, row, value, typ):
        b = self.b
        pointer = b.gep(self.out, [row], inbounds=True, source_etype=self.scalar_type)
        b.store(value, b.bitcast(pointer, typ.as_pointer()), align=self.align)


def _lane_numbers(width: int) -> ir.Constant:
    return ir.Constant(ir.VectorType(I64, width), list(range(width)))


def _declared(module: ir.Module, name: str, ftype: ir.FunctionType) -> ir.Function:
    """The function `name` of the module, declared with `ftype` on first use."""
    function = module.globals.get(name)
    return function if function is not None else ir.Function(module, ftype, name)


def _transpose_reduce(b, vectors: list, width: int):
    """One vector whose lane i is the sum of the lanes of vectors[i].

    Level with block size h (1, 2, 4, ...): vectors P, Q (holding h rows each, lane
    k·2h + j of each segment for row j) become one holding 2h rows: segment s takes
    [P's first h lanes, Q's first h lanes] + [P's last h lanes, Q's last h lanes]."""
    block = 1
    while len(vectors) > 1:
        low, high = [], []
        for segment in range(width // (2 * block)):
            start = segment * 2 * block
            low += [start + j for j in range(block)] + [width + start + j for j in range(block)]
            high += [start + block + j for j in range(block)] + [
                width + start + block + j for j in range(block)]
        low_mask = ir.Constant(ir.VectorType(I32, width), low)
        high_mask = ir.Constant(ir.VectorType(I32, width), high)
        vectors = [b.fadd(b.shuffle_vector(p, q, low_mask), b.shuffle_vector(p, q, high_mask))
                   for p, q in zip(vectors[0::2], vectors[1::2])]
        block *= 2
    return vectors[0]


def _tree_sum(b, vector, width: int):
    """The sum of one vector's lanes in the order `_transpose_reduce` adds each lane group:
    adjacent pairs first, ((a0 + a1) + (a2 + a3)) + ..."""
    while width > 1:
        half = width // 2
        even = ir.Constant(ir.VectorType(I32, half), list(range(0, width, 2)))
        odd = ir.Constant(ir.VectorType(I32, half), list(range(1, width, 2)))
        vector = b.fadd(b.shuffle_vector(vector, vector, even),
                        b.shuffle_vector(vector, vector, odd))
        width = half
    return b.extract_element(vector, ir.Constant(I32, 0))


class _Carried:
    """Values carried around a loop: `value` in the body, `next` set by it, `result` after."""

    def __init__(self, phis):
        self.value = phis
        self.next = None
        self.result = None


class _counted:
    """for var in range(start, stop, step) as a context manager over the body's builder
    position; with `carried`, loop-carried values (phis) are given and returned."""

    def __init__(self, b, name, start, stop, step, carried=None, loop_id=None):
        self.b, self.name, self.start, self.stop, self.step = b, name, start, stop, step
        self.carried = carried
        self.loop_id = loop_id  # a function giving the back edge's llvm.loop metadata

    def __enter__(self):
        b = self.b
        self.preheader = b.block
        self.header = b.append_basic_block(f"{self.name}.header")
        self.body = b.append_basic_block(f"{self.name}.body")
        self.exit = b.append_basic_block(f"{self.name}.exit")
        b.branch(self.header)
        b.position_at_end(self.header)
        self.var = b.phi(I64, name=self.name)
        self.var.add_incoming(self.start, self.preheader)
        if self.carried is None:
            self.state = None
        else:
            phis = []
            for value in self.carried:
                phi = b.phi(value.type)
                phi.add_incoming(value, self.preheader)
                phis.append(phi)
            self.state = _Carried(phis)
        b.cbranch(b.icmp_signed("<", self.var, self.stop), self.body, self.exit)
        b.position_at_end(self.body)
        return self.var if self.state is None else (self.var, self.state)

    def __exit__(self, kind, *rest):
        if kind is not None:
            return False
        b = self.b
        following = b.add(self.var, ir.Constant(I64, self.step), flags=("nsw",))
        latch = b.block
        self.var.add_incoming(following, latch)
        if self.state is not None:
            for phi, value in zip(self.state.value, self.state.next):
                phi.add_incoming(value, latch)
            self.state.result = self.state.value  # the header's phis, seen from the exit
        back_edge = b.branch(self.header)
        if self.loop_id is not None:
            back_edge.set_metadata("llvm.loop", self.loop_id())
        b.position_at_end(self.exit)
        return False
