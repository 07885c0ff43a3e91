"""Render a loop-IR `Program` as an LLVM IR module (text) with one C-ABI entry point.

    int32 name(int64 dim_0, ..., elem* in_0, ..., elem* out_0, ...)

dims in `program.dims` order, then the input and output buffers (`double`,
`float`, or one byte per `bool`). The status is 0 on success, 1 for a negative
dim (checked before anything runs) and 2 when a scratch buffer cannot be
allocated (`fg_alloc` gave NULL; nothing is left allocated).

Index expressions are `symbolic.Dim` polynomials in i64: symbols starting with
"@" name the innermost enclosing loop of that variable, the others are dims.
Element-wise ops come from the table in `scalar.py`.

An innermost loop that reduces nothing (a map, a fill, the combine of partials) carries
loop metadata `llvm.loop.interleave.count 1`: it is still vectorized, but its vector
body is not copied for instructions in flight, which only a reduction's latency chain
needs (−3 ms of W3's compile; W6's and W2's reductions lose 10–20 % without it).

A `parallel` loop runs on the C runtime's thread pool. Its body is outlined into

    internal void name_par<k>(ptr ctx, i64 begin, i64 end)    ; iterations [begin, end)

which unpacks a context struct (the dims, enclosing loop variables, accumulator
values and buffer pointers the body uses, stored by the caller into an alloca) and
calls `name_par<k>.body(begin, end, values...)`, whose pointer parameters are
`noalias` (the inliner turns that into alias scopes, so the loop still vectorizes).
The caller then runs

    call void @fg_parallel_for(i64 extent, i64 grain, ptr @name_par<k>, ptr %ctx)

Grain: `ceil(PARALLEL_GRAIN_WORK / work)`, where `work` (≥ 1, computed at run time)
is the number of innermost iterations one iteration of the loop runs — the product
of the extents of the loops nested in it, summed over sibling loops, with extents
evaluated at iteration 0. A block thus does at least PARALLEL_GRAIN_WORK innermost
iterations and short loops stay on the calling thread.

Accumulators do not cross the parallel boundary: one the body updates must be
initialized (`AccInit`) in the body before any other use there, and must not be
used outside the loop (deterministic reductions across iterations are cut into
per-chunk partials before rendering, see `parallelize`). An accumulator the body
only reads is passed by value. Parallel loops nested in a parallel body are serial.
"""

from __future__ import annotations

import numbers

from llvmlite import ir

from .. import loopir, symbolic
from ..errors import CompileError
from . import row_dots
from .blas_names import BLAS_SYMBOLS
from .scalar import (
    ACC_IDENTITY,
    ACC_UPDATE,
    ELEMENT_SIZES,
    I1,
    I8,
    I32,
    I64,
    PTR,
    SCALAR_TABLE,
    STORAGE_TYPES,
    ScalarEmitter,
    constant,
    value_type,
)

STATUS_OK, STATUS_NEGATIVE_DIM, STATUS_NO_MEMORY = 0, 1, 2
STATUS_BLAS_DIMS = 4  # a matrix dim exceeds the 32-bit ints of the BLAS
INT32_MAX = 2**31 - 1
NSW = ("nsw",)
#: Innermost iterations a block of a parallel loop runs at least (see the module doc).
PARALLEL_GRAIN_WORK = 16384
VOID = ir.VoidType()
#: Loop metadata of a loop that reduces nothing: interleaving copies the vector body for
#: more instructions in flight, which a reduction's latency chain needs and a map does not.
NOT_INTERLEAVED = [("llvm.loop.interleave.count", ir.Constant(I32, 1))]


def render_program(
    program: loopir.Program, target_triple: str | None = None, vector_bytes: int = 32
) -> str:
    """LLVM IR text of a module defining `program.name` (see the module doc).
    `vector_bytes`: the target's vector register width (64 with AVX-512, 32 with AVX2),
    which sets how many rows a block of row dot products computes at once (row_dots.py)."""
    module = ir.Module(name=program.name)
    if target_triple is not None:
        module.triple = target_triple
    _Renderer(module, program, vector_bytes).render()
    return str(module)


def _i64(value: int) -> ir.Constant:
    return ir.Constant(I64, value)


def _i32(value: int) -> ir.Constant:
    return ir.Constant(I32, value)


def _llvm_name(name: str) -> str:
    return name.lstrip(loopir.LOOP_VAR_PREFIX) or "v"


class _IndexScopes:
    """Index values already computed, per loop nesting level.

    A value computed at one level dominates everything that follows at that level
    and inside it, so lookups search outwards; leaving a loop forgets its level.
    A loop that shadows a variable is a barrier: outer values may use the old one.
    """

    def __init__(self):
        self.frames: list[tuple[dict, bool]] = [({}, False)]

    def push(self, barrier: bool):
        self.frames.append(({}, barrier))

    def pop(self):
        self.frames.pop()

    def get(self, key):
        for values, barrier in reversed(self.frames):
            if key in values:
                return values[key]
            if barrier:
                return None
        return None

    def put(self, key, value):
        self.frames[-1][0][key] = value


class _Renderer:
    def __init__(self, module: ir.Module, program: loopir.Program, vector_bytes: int = 32):
        self.program = program
        self.module = module
        self.vector_bytes = vector_bytes
        buffers = list(program.inputs) + list(program.outputs)
        ftype = ir.FunctionType(I32, [I64] * len(program.dims) + [PTR] * len(buffers))
        self.function = ir.Function(module, ftype, name=program.name)
        self.function.attributes.add("nounwind")
        args = self.function.args
        self.dims = {}
        for name, arg in zip(program.dims, args):
            arg.name = _llvm_name(name)
            self.dims[name] = arg
        self.pointers = {}  # Buffer (by identity) -> pointer value
        for buffer, arg in zip(buffers, args[len(program.dims):]):
            arg.name = buffer.name
            # inputs are read-only and outputs fresh arrays, so nothing aliases a write
            arg.add_attribute("noalias")
            self.pointers[buffer] = arg
        self._enter_function(self.function)
        self.loop_vars: dict[str, list[ir.Value]] = {}
        self.indices = _IndexScopes()
        self.accumulators: dict[loopir.Accumulator, ir.Value] = {}
        self.fg_alloc = ir.Function(module, ir.FunctionType(PTR, [I64]), "fg_alloc")
        self.fg_alloc.attributes.add("nounwind")
        self.fg_alloc.return_value.add_attribute("noalias")
        self.fg_free = ir.Function(module, ir.FunctionType(VOID, [PTR]), "fg_free")
        self.fg_free.attributes.add("nounwind")
        self.fg_parallel_for = None  # declared with the first parallel loop
        self.parallel_count = 0
        self.in_parallel = False  # rendering an outlined body: parallel loops run serially
        self.regions = _AccumulatorRegions(program.body)

    # -- the program ---------------------------------------------------------------------
    def render(self):
        b = self.builder
        for acc in self.regions.serial:
            self._declare_accumulator(acc)
        self._check_dims()
        self._check_blas_dims()
        scratch = self.scratch_pointers = self._allocate_scratch()
        self.statements(self.program.body)
        for pointer in reversed(scratch):
            b.call(self.fg_free, [pointer])
        b.ret(ir.Constant(I32, STATUS_OK))
        self.allocas.branch(self.start)

    def _enter_function(self, function: ir.Function):
        """Render into `function` from now on: allocas go to its `entry` block, which
        holds nothing else (and branches to `start` once the function is complete)."""
        self.function = function
        self.allocas = ir.IRBuilder(function.append_basic_block("entry"))
        self.start = function.append_basic_block("start")
        self.builder = ir.IRBuilder(self.start)
        self.scalar = ScalarEmitter(self.builder)

    def _declare_accumulator(self, acc: loopir.Accumulator):
        if (acc.op, acc.dtype) not in ACC_IDENTITY:
            raise CompileError(f"unsupported accumulator {acc.name}: {acc.op} over {acc.dtype}")
        slot = self._entry_alloca(value_type(acc.dtype), acc.name)
        # an AccRef before any AccInit reads the identity, never an undefined value
        self.builder.store(self._identity(acc), slot)
        self.accumulators[acc] = slot

    def _identity(self, acc: loopir.Accumulator) -> ir.Value:
        return constant(acc.dtype, ACC_IDENTITY[(acc.op, acc.dtype)])

    def _check_dims(self):
        b = self.builder
        if not self.dims:
            return
        negative = ir.Constant(I1, 0)
        for arg in self.dims.values():
            negative = b.or_(negative, b.icmp_signed("<", arg, _i64(0)))
        with b.if_then(negative, likely=False):
            b.ret(ir.Constant(I32, STATUS_NEGATIVE_DIM))

    def _check_blas_dims(self):
        # Before anything is allocated: a status return leaks nothing.
        b = self.builder
        gemms = [s for s in _walk_statements(self.program.body) if isinstance(s, loopir.Gemm)]
        for gemm in gemms:
            for dim in (gemm.m, gemm.n, gemm.k):
                too_big = b.icmp_signed(">", self.index(dim), _i64(INT32_MAX))
                with b.if_then(too_big, likely=False):
                    b.ret(ir.Constant(I32, STATUS_BLAS_DIMS))

    def _allocate_scratch(self) -> list[ir.Value]:
        b = self.builder
        pointers, failed = [], ir.Constant(I1, 0)
        for buffer in self.program.scratch:
            pointer = b.call(self.fg_alloc, [self._scratch_bytes(buffer)], name=buffer.name)
            failed = b.or_(failed, b.icmp_unsigned("==", pointer, ir.Constant(PTR, None)))
            self.pointers[buffer] = pointer
            pointers.append(pointer)
        if pointers:
            with b.if_then(failed, likely=False):
                for pointer in reversed(pointers):
                    b.call(self.fg_free, [pointer])  # fg_free(NULL) does nothing
                b.ret(ir.Constant(I32, STATUS_NO_MEMORY))
        return pointers

    def _scratch_bytes(self, buffer: loopir.Buffer) -> ir.Value:
        """Size of a scratch buffer in bytes; −1 (which fg_alloc refuses) if i64 overflows."""
        b = self.builder
        nbytes, overflow = _i64(ELEMENT_SIZES[buffer.dtype]), ir.Constant(I1, 0)
        for extent in buffer.shape:
            if not (isinstance(extent, symbolic.Dim) and extent.is_symbol):
                # an extent below 0 (an empty loop range) allocates nothing
                extent = symbolic.dim_max(extent, 0)
            product = b.smul_with_overflow(nbytes, self.index(extent))
            nbytes = b.extract_value(product, 0)
            overflow = b.or_(overflow, b.extract_value(product, 1))
        return b.select(overflow, _i64(-1), nbytes)

    # -- statements ----------------------------------------------------------------------
    def statements(self, stmts):
        for stmt in stmts:
            method = _STATEMENTS.get(type(stmt))
            if method is None:
                raise CompileError(f"unknown loop-IR statement {stmt!r}")
            method(self, stmt)

    def loop(self, stmt: loopir.Loop):
        if stmt.kind == "parallel" and not self.in_parallel:
            self.parallel_loop(stmt)
        else:
            self._rows(stmt, _i64(0), self.index(stmt.extent))

    def _rows(self, stmt: loopir.Loop, start: ir.Value, stop: ir.Value):
        """Iterations [start, stop) of a loop; dot products of matrix rows with a vector
        are computed a vector register of rows at a time (row_dots.py)."""
        dots = row_dots.match(stmt)
        if dots is None:
            self._counted_loop(stmt.var, start, stop, stmt.body)
        else:
            row_dots.render(self, dots, self.vector_bytes, start, stop)

    def _counted_loop(self, var_name: str, start: ir.Value, stop: ir.Value, stmts):
        """for var in range(start, stop): stmts."""
        # preheader → header (i < stop?) → body → latch (i + 1) → header; header → exit
        b = self.builder
        name = _llvm_name(var_name)
        preheader = b.block
        header = b.append_basic_block(f"{name}.header")
        body = b.append_basic_block(f"{name}.body")
        latch = b.append_basic_block(f"{name}.latch")
        exit_ = b.append_basic_block(f"{name}.exit")
        b.branch(header)

        b.position_at_end(header)
        var = b.phi(I64, name=name)
        var.add_incoming(start, preheader)
        b.cbranch(b.icmp_signed("<", var, stop), body, exit_)

        b.position_at_end(body)
        self.indices.push(barrier=var_name in self.loop_vars)
        self.loop_vars.setdefault(var_name, []).append(var)
        self.statements(stmts)
        self.loop_vars[var_name].pop()
        if not self.loop_vars[var_name]:
            del self.loop_vars[var_name]
        self.indices.pop()
        b.branch(latch)

        b.position_at_end(latch)
        following = b.add(var, _i64(1), name=f"{name}.next", flags=("nuw", "nsw"))
        var.add_incoming(following, latch)
        back_edge = b.branch(header)
        if _is_map_loop(stmts):
            back_edge.set_metadata("llvm.loop", self._loop_id(NOT_INTERLEAVED))
        b.position_at_end(exit_)

    def _loop_id(self, properties: list) -> ir.MDValue:
        """A loop's own metadata node !{self, properties...} (LLVM requires the self-link)."""
        nodes = [self.module.add_metadata([ir.MetaDataString(self.module, name), value])
                 for name, value in properties]
        # not through add_metadata: that returns one shared node for equal operands
        loop_id = ir.values.MDValue(self.module, [], name=str(len(self.module.metadata)))
        loop_id.operands = (loop_id, *nodes)
        return loop_id

    # -- parallel loops ------------------------------------------------------------------
    def parallel_loop(self, stmt: loopir.Loop):
        """fg_parallel_for(extent, grain, name_par<k>, ctx) over an outlined body."""
        private, shared = self.regions.check_parallel(stmt)
        captures = self._captures(stmt, shared)
        name = f"{self.program.name}_par{self.parallel_count}"
        self.parallel_count += 1
        body = self._outline_body(f"{name}.body", stmt, captures, private)
        context_type = ir.LiteralStructType([value.type for _, value in captures])
        trampoline = self._trampoline(name, body, context_type)

        b = self.builder
        if captures:
            context = self._entry_alloca(context_type, f"{name}.ctx")
            for k, (_, value) in enumerate(captures):
                b.store(value, b.gep(context, [ir.Constant(I32, 0), ir.Constant(I32, k)],
                                     inbounds=True))
        else:
            context = ir.Constant(PTR, None)
        extent = self.index(stmt.extent)
        b.call(self._declare_parallel_for(), [extent, self._grain(stmt), trampoline, context])

    def _captures(self, stmt: loopir.Loop, shared) -> list:
        """(what, caller value) of each value the body needs: dims, enclosing loop
        variables, values of accumulators it only reads, then buffer pointers."""
        symbols, buffers = _uses(stmt.body)
        captures = [(("dim", d), self.dims[d]) for d in self.program.dims if d in symbols]
        for name in symbols:
            if loopir.is_loop_var(name) and name != stmt.var and name in self.loop_vars:
                captures.append((("var", name), self.loop_vars[name][-1]))
        for acc in shared:
            slot = self.accumulators.get(acc)
            value = self._identity(acc) if slot is None else self.builder.load(
                slot, typ=value_type(acc.dtype))
            captures.append((("acc", acc), value))
        for buffer in buffers:
            if buffer.kind == "local":
                continue  # the outlined body allocates its own
            pointer = self.pointers.get(buffer)
            if pointer is None:
                raise CompileError(
                    f"buffer {buffer.name} is not a buffer of {self.program.name}")
            captures.append((("buffer", buffer), pointer))
        return captures

    def _outline_body(self, name, stmt, captures, private) -> ir.Function:
        """internal void name(i64 begin, i64 end, captured values...): the loop over
        [begin, end) with every captured pointer `noalias`."""
        ftype = ir.FunctionType(VOID, [I64, I64] + [value.type for _, value in captures])
        function = ir.Function(self.module, ftype, name=name)
        function.linkage = "internal"
        function.attributes.add("nounwind")
        begin, end = function.args[:2]
        begin.name, end.name = "begin", "end"
        saved = {attr: getattr(self, attr) for attr in _FUNCTION_STATE}
        self._enter_function(function)
        self.dims, self.pointers, self.loop_vars, self.accumulators = {}, {}, {}, {}
        self.indices = _IndexScopes()
        self.in_parallel = True
        try:
            for ((what, key), _), arg in zip(captures, function.args[2:]):
                if what == "dim":
                    arg.name = _llvm_name(key)
                    self.dims[key] = arg
                elif what == "var":
                    arg.name = _llvm_name(key)
                    self.loop_vars[key] = [arg]
                elif what == "acc":
                    arg.name = key.name
                    self.accumulators[key] = self._entry_alloca(value_type(key.dtype), key.name)
                    self.builder.store(arg, self.accumulators[key])
                else:
                    arg.name = key.name
                    arg.add_attribute("noalias")
                    self.pointers[key] = arg
            for acc in private:
                self._declare_accumulator(acc)
            self._rows(stmt, begin, end)
            self.builder.ret_void()
            self.allocas.branch(self.start)
        finally:
            for attr, value in saved.items():
                setattr(self, attr, value)
        return function

    def _trampoline(self, name, body: ir.Function, context_type) -> ir.Function:
        """internal void name(ptr ctx, i64 begin, i64 end): unpack ctx, call the body."""
        function = ir.Function(self.module, ir.FunctionType(VOID, [PTR, I64, I64]), name=name)
        function.linkage = "internal"
        function.attributes.add("nounwind")
        context, begin, end = function.args
        context.name, begin.name, end.name = "ctx", "begin", "end"
        b = ir.IRBuilder(function.append_basic_block("entry"))
        values = []
        for k, element in enumerate(context_type.elements):
            field = b.gep(context, [ir.Constant(I32, 0), ir.Constant(I32, k)], inbounds=True,
                          source_etype=context_type)
            values.append(b.load(field, typ=element))
        b.call(body, [begin, end] + values)
        b.ret_void()
        return function

    def _grain(self, stmt: loopir.Loop) -> ir.Value:
        """ceil(PARALLEL_GRAIN_WORK / work) iterations, work = innermost iterations of one."""
        b = self.builder
        unbound = {name: 0 for name in _bound_inside(stmt)}
        work = symbolic.simplify(symbolic.dim_max(_work(stmt.body, unbound), 1))
        if isinstance(work, int):
            return _i64(-(-PARALLEL_GRAIN_WORK // work))
        work = self.index(work)
        target = _i64(PARALLEL_GRAIN_WORK)
        per_block = b.sdiv(b.add(work, _i64(PARALLEL_GRAIN_WORK - 1)), work)
        return b.select(b.icmp_signed(">=", work, target), _i64(1), per_block, name="grain")

    def _declare_parallel_for(self) -> ir.Function:
        if self.fg_parallel_for is None:
            ftype = ir.FunctionType(VOID, [I64, I64, PTR, PTR])
            self.fg_parallel_for = ir.Function(self.module, ftype, "fg_parallel_for")
            self.fg_parallel_for.attributes.add("nounwind")
        return self.fg_parallel_for

    def _local_array(self, buffer: loopir.Buffer) -> ir.Value:
        """A `local` buffer: a stack array of the function being rendered (an outlined
        parallel body has its own, so each thread has its own)."""
        count = symbolic.simplify(symbolic.product(buffer.shape))
        if not isinstance(count, int):
            raise CompileError(f"local buffer {buffer.name} needs a constant size, not {count!r}")
        return self.allocas.alloca(STORAGE_TYPES[buffer.dtype], size=_i64(count), name=buffer.name)

    def _entry_alloca(self, typ: ir.Type, name: str) -> ir.Value:
        """An alloca in the entry block of the current function, which holds allocas only
        (so it runs once per call, not once per loop trip)."""
        return self.allocas.alloca(typ, name=name)

    def store(self, stmt: loopir.Store):
        buffer = stmt.buffer
        if buffer.kind == "input":
            raise CompileError(f"store into input buffer {buffer.name}")
        if stmt.value.dtype != buffer.dtype:
            raise CompileError(
                f"store of a {stmt.value.dtype} value into {buffer.name}: {buffer.dtype}"
            )
        value = self.expression(stmt.value, {})
        if buffer.dtype == "bool":
            value = self.builder.zext(value, I8)
        self.builder.store(value, self._element_pointer(buffer, stmt.index))

    def acc_init(self, stmt: loopir.AccInit):
        self.builder.store(self._identity(stmt.acc), self.accumulators[stmt.acc])

    def acc_update(self, stmt: loopir.AccUpdate):
        acc = stmt.acc
        if stmt.value.dtype != acc.dtype:
            raise CompileError(f"{acc.name} ({acc.dtype}) updated with a {stmt.value.dtype}")
        value = self.expression(stmt.value, {})
        slot = self.accumulators[acc]
        current = self.builder.load(slot, typ=value_type(acc.dtype))
        self.builder.store(ACC_UPDATE[acc.op](self.scalar, current, value), slot)

    def block(self, stmt: loopir.Block):
        self.statements(stmt.body)

    def gemm(self, stmt: loopir.Gemm):
        """C = A·B by the C runtime on fusegrad's pool, one-thread BLAS calls per piece
        (dims were checked to fit in int32):

            fg_gemm(item, &cblas_?gemm, trans_a, trans_b, m, n, k, a, b, c)
            fg_symmetric_product(item, &cblas_?gemm, &cblas_?gemmt, n, k, a, b, c)
            fg_gram(item, &cblas_?gemm, &cblas_?syrk, n, k, ±1.0, a, c)   # C = ±AᵀA
            fg_row_scaled_product(item, &cblas_?gemm, &cblas_?gemmt, &cblas_?syrk, gram,
                                  n, k, b, row_scale, c)          # status: out of memory

        A `symmetric` C is computed as lower triangles and mirrored, so it is exactly
        symmetric (gemm's two triangles differ in rounding)."""
        dtype = stmt.c.dtype
        item = _i32(ELEMENT_SIZES[dtype])
        a, b, c = (self._buffer_pointer(x) for x in (stmt.a, stmt.b, stmt.c))
        n, k = self.index(stmt.n), self.index(stmt.k)
        gemm = self._blas("gemm", dtype)
        if stmt.row_scale is not None:
            status = self._runtime_call("fg_row_scaled_product", [
                item, gemm, self._blas("gemmt", dtype), self._blas("syrk", dtype),
                _i32(stmt.gram), n, k, b, self._buffer_pointer(stmt.row_scale), c], returns=I32)
            self._return_if_failed(status)
        elif stmt.gram:
            alpha = ir.Constant(ir.DoubleType(), float(stmt.gram))
            self._runtime_call("fg_gram", [item, gemm, self._blas("syrk", dtype), n, k, alpha,
                                           a, c])
        elif stmt.symmetric:
            self._runtime_call("fg_symmetric_product", [
                item, gemm, self._blas("gemmt", dtype), n, k, a, b, c])
        else:
            flags = [_i32(int(t)) for t in (stmt.trans_a, stmt.trans_b)]
            self._runtime_call("fg_gemm", [item, gemm, *flags, self.index(stmt.m), n, k, a, b,
                                           c])

    def _return_if_failed(self, status: ir.Value):
        """A runtime call's status: anything but 0 frees the scratch and is returned."""
        b = self.builder
        with b.if_then(b.icmp_signed("!=", status, ir.Constant(I32, STATUS_OK)), likely=False):
            for pointer in reversed(self.scratch_pointers):
                b.call(self.fg_free, [pointer])
            b.ret(status)

    def _blas(self, routine: str, dtype: str) -> ir.Function:
        """The BLAS routine as an external symbol, passed by address (never called here)."""
        name = BLAS_SYMBOLS[routine][dtype]
        function = self.module.globals.get(name)
        if function is None:
            function = ir.Function(self.module, ir.FunctionType(VOID, []), name)
        return function

    def _runtime_call(self, name: str, args: list, returns=VOID):
        function = self.module.globals.get(name)
        if function is None:
            ftype = ir.FunctionType(returns, [a.type for a in args])
            function = ir.Function(self.module, ftype, name)
            function.attributes.add("nounwind")
        return self.builder.call(function, args)

    def _buffer_pointer(self, buffer: loopir.Buffer) -> ir.Value:
        pointer = self.pointers.get(buffer)
        if pointer is None:
            raise CompileError(f"buffer {buffer.name} is not a buffer of {self.program.name}")
        return pointer

    # -- scalar expressions ----------------------------------------------------------------
    def expression(self, expr, memo: dict) -> ir.Value:
        """The value of `expr`; `memo` shares repeated sub-expressions of one statement."""
        key = id(expr)
        if key not in memo:
            method = _EXPRESSIONS.get(type(expr))
            if method is None:
                raise CompileError(f"unknown loop-IR expression {expr!r}")
            memo[key] = method(self, expr, memo)
        return memo[key]

    def const(self, expr: loopir.Const, memo) -> ir.Value:
        return constant(expr.dtype, expr.value)

    def dim_value(self, expr: loopir.DimValue, memo) -> ir.Value:
        return self.builder.sitofp(self.index(expr.dim), value_type(expr.dtype))

    def load(self, expr: loopir.Load, memo) -> ir.Value:
        buffer = expr.buffer
        pointer = self._element_pointer(buffer, expr.index)
        value = self.builder.load(pointer, typ=STORAGE_TYPES[buffer.dtype])
        if buffer.dtype == "bool":
            return self.builder.icmp_unsigned("!=", value, ir.Constant(I8, 0))
        return value

    def acc_ref(self, expr: loopir.AccRef, memo) -> ir.Value:
        return self.builder.load(self.accumulators[expr.acc], typ=value_type(expr.dtype))

    def apply(self, expr: loopir.Apply, memo) -> ir.Value:
        row = SCALAR_TABLE.get(expr.op)
        if row is None:
            raise CompileError(f"no LLVM rendering for element-wise op {expr.op!r}")
        args = [self.expression(arg, memo) for arg in expr.args]
        try:
            result = row(self.scalar, args, expr.dtype)
        except (ValueError, TypeError, KeyError) as exc:
            raise CompileError(f"cannot render {loopir.format_expr(expr)}: {exc}") from exc
        if result.type != value_type(expr.dtype):
            raise CompileError(f"{loopir.format_expr(expr)} gave {result.type}, not {expr.dtype}")
        return result

    def _element_pointer(self, buffer: loopir.Buffer, index) -> ir.Value:
        pointer = self.pointers.get(buffer)
        if pointer is None and buffer.kind == "local":
            pointer = self.pointers[buffer] = self._local_array(buffer)
        if pointer is None:
            raise CompileError(f"buffer {buffer.name} is not a buffer of {self.program.name}")
        return self.builder.gep(
            pointer, [self.index(index)], inbounds=True, source_etype=STORAGE_TYPES[buffer.dtype]
        )

    # -- index expressions (i64) -------------------------------------------------------------
    def index(self, value) -> ir.Value:
        if isinstance(value, numbers.Integral):
            return _i64(int(value))
        value = symbolic.simplify(value)
        if isinstance(value, int):
            return _i64(value)
        key = ("dim", value.key)
        cached = self.indices.get(key)
        if cached is not None:
            return cached
        b = self.builder
        total = None
        for monomial, coeff in value.terms:
            term = None
            for atom in monomial:
                factor = self.atom(atom)
                term = factor if term is None else b.mul(term, factor, flags=NSW)
            if term is None:
                term = _i64(coeff)
            elif coeff != 1:
                term = b.mul(term, _i64(coeff), flags=NSW)
            total = term if total is None else b.add(total, term, flags=NSW)
        self.indices.put(key, total)
        return total

    def atom(self, atom: symbolic.Atom) -> ir.Value:
        key = ("atom", atom._key)
        cached = self.indices.get(key)
        if cached is not None:
            return cached
        b = self.builder
        if atom.kind == "sym":
            value = self._symbol(atom.args[0])
        elif atom.kind == "floordiv":
            value = self._floordiv(self.index(atom.args[0]), atom.args[1])
        elif atom.kind in ("max", "min"):
            left, right = (self.index(arg) for arg in atom.args)
            keep_left = b.icmp_signed(">" if atom.kind == "max" else "<", left, right)
            value = b.select(keep_left, left, right)
        else:
            raise CompileError(f"unknown index atom {atom!r}")
        self.indices.put(key, value)
        return value

    def _symbol(self, name: str) -> ir.Value:
        if loopir.is_loop_var(name):
            bound = self.loop_vars.get(name)
            if not bound:
                raise CompileError(f"loop variable {name} used outside its loop")
            return bound[-1]
        if name not in self.dims:
            raise CompileError(f"{name} is not a dim of program {self.program.name}")
        return self.dims[name]

    def _floordiv(self, a: ir.Value, k: int) -> ir.Value:
        # floor(a / k) for k > 0: truncating division rounds up for negative a
        b = self.builder
        if not isinstance(k, int) or k <= 0:
            raise CompileError(f"floordiv by {k!r}: only a positive int is supported")
        if k & (k - 1) == 0:
            return b.ashr(a, _i64(k.bit_length() - 1))
        quotient = b.sdiv(a, _i64(k))
        negative_rest = b.icmp_signed("<", b.srem(a, _i64(k)), _i64(0))
        return b.sub(quotient, b.zext(negative_rest, I64))


_STATEMENTS = {
    loopir.Loop: _Renderer.loop,
    loopir.Store: _Renderer.store,
    loopir.AccInit: _Renderer.acc_init,
    loopir.AccUpdate: _Renderer.acc_update,
    loopir.Block: _Renderer.block,
    loopir.Gemm: _Renderer.gemm,
}


def _is_map_loop(stmts) -> bool:
    """An innermost loop that reduces nothing: each iteration stores its own elements."""
    return not any(isinstance(s, (loopir.Loop, loopir.AccUpdate)) for s in _walk_statements(stmts))


def _walk_statements(stmts):
    for stmt in stmts:
        yield stmt
        if isinstance(stmt, (loopir.Loop, loopir.Block)):
            yield from _walk_statements(stmt.body)

_EXPRESSIONS = {
    loopir.Const: _Renderer.const,
    loopir.DimValue: _Renderer.dim_value,
    loopir.Load: _Renderer.load,
    loopir.AccRef: _Renderer.acc_ref,
    loopir.Apply: _Renderer.apply,
}


# What describes the function being rendered (saved and restored around an outlined body).
_FUNCTION_STATE = ("function", "allocas", "start", "builder", "scalar", "dims", "pointers",
                   "loop_vars", "indices", "accumulators", "in_parallel")


def _expr_accumulators(expr, found: dict):
    if isinstance(expr, loopir.AccRef):
        found.setdefault(expr.acc)
    elif isinstance(expr, loopir.Apply):
        for arg in expr.args:
            _expr_accumulators(arg, found)


def _accumulators(stmts) -> list[loopir.Accumulator]:
    """Every accumulator the statements use, in order of first use."""
    found: dict[loopir.Accumulator, None] = {}
    for stmt in _walk_statements(stmts):
        if isinstance(stmt, (loopir.AccInit, loopir.AccUpdate)):
            found.setdefault(stmt.acc)
        if isinstance(stmt, (loopir.AccUpdate, loopir.Store)):
            _expr_accumulators(stmt.value, found)
    return list(found)


class _AccumulatorRegions:
    """Where each accumulator lives: the entry point's serial code, or the outlined
    body of one parallel loop (the outermost parallel loops; inner ones are serial)."""

    def __init__(self, body):
        self.serial: dict[loopir.Accumulator, None] = {}  # ordered set
        self.parallel: dict[int, list] = {}  # id(loop) → accumulators of its body
        self.places: dict[loopir.Accumulator, set] = {}  # acc → {None (serial), id(loop)}
        self._collect(body)

    def _collect(self, stmts):
        for stmt in stmts:
            if isinstance(stmt, loopir.Loop) and stmt.kind == "parallel":
                accs = _accumulators(stmt.body)
                self.parallel[id(stmt)] = accs
                for acc in accs:
                    self.places.setdefault(acc, set()).add(id(stmt))
            elif isinstance(stmt, (loopir.Loop, loopir.Block)):
                self._collect(stmt.body)
            else:
                for acc in _accumulators([stmt]):
                    self.serial.setdefault(acc)
                    self.places.setdefault(acc, set()).add(None)

    def check_parallel(self, loop: loopir.Loop):
        """(private, shared): accumulators the body computes (initialized per
        iteration) and those it only reads. Raises CompileError for one that would
        carry a value across the parallel boundary."""
        private, shared = [], []
        first_use = _first_uses(loop.body)
        written = {s.acc for s in _walk_statements(loop.body)
                   if isinstance(s, (loopir.AccInit, loopir.AccUpdate))}
        for acc in self.parallel[id(loop)]:
            if acc not in written:
                shared.append(acc)
                continue
            if first_use[acc] != "init":
                raise CompileError(
                    f"accumulator {acc.name} is {first_use[acc]} inside parallel loop "
                    f"{loop.var} before it is initialized there: an accumulator cannot carry "
                    f"a value across the iterations of a parallel loop (a reduction over "
                    f"them needs per-chunk partials, made before rendering)")
            if self.places[acc] != {id(loop)}:
                raise CompileError(
                    f"accumulator {acc.name} is computed inside parallel loop {loop.var} "
                    f"and used outside it: its value does not cross the parallel boundary")
            private.append(acc)
        return private, shared


def _first_uses(stmts) -> dict:
    """acc → "init", "updated" or "read": how program order first uses it."""
    first: dict = {}
    for stmt in _walk_statements(stmts):
        if isinstance(stmt, (loopir.AccUpdate, loopir.Store)):
            refs: dict = {}
            _expr_accumulators(stmt.value, refs)
            for acc in refs:
                first.setdefault(acc, "read")
        if isinstance(stmt, loopir.AccInit):
            first.setdefault(stmt.acc, "init")
        elif isinstance(stmt, loopir.AccUpdate):
            first.setdefault(stmt.acc, "updated")
    return first


def _uses(stmts):
    """(symbol names, buffers in order of first use) of the statements' indices,
    extents and values."""
    symbols: dict[str, None] = {}
    buffers: dict[loopir.Buffer, None] = {}

    def index(value):
        if isinstance(value, symbolic.Dim):
            for name in value.symbols():
                symbols.setdefault(name)

    def expr(e):
        if isinstance(e, loopir.Load):
            buffers.setdefault(e.buffer)
            index(e.index)
        elif isinstance(e, loopir.DimValue):
            index(e.dim)
        elif isinstance(e, loopir.Apply):
            for arg in e.args:
                expr(arg)

    for stmt in _walk_statements(stmts):
        if isinstance(stmt, loopir.Loop):
            index(stmt.extent)
        elif isinstance(stmt, loopir.Store):
            buffers.setdefault(stmt.buffer)
            index(stmt.index)
            expr(stmt.value)
        elif isinstance(stmt, loopir.AccUpdate):
            expr(stmt.value)
        elif isinstance(stmt, loopir.Gemm):
            for buffer in (stmt.c, stmt.a, stmt.b, stmt.row_scale):
                if buffer is not None:
                    buffers.setdefault(buffer)
            for dim in (stmt.m, stmt.n, stmt.k):
                index(dim)
    return list(symbols), list(buffers)


def _bound_inside(loop: loopir.Loop) -> list[str]:
    """The loop's variable and those of the loops nested in it."""
    return [loop.var] + [s.var for s in _walk_statements(loop.body) if isinstance(s, loopir.Loop)]


def _work(stmts, unbound: dict):
    """Innermost iterations the statements run: Σ over loops of extent · work(body), at
    least 1, with the variables in `unbound` (loops not entered yet) set to 0."""
    total = 0
    for stmt in stmts:
        if isinstance(stmt, loopir.Loop):
            extent = symbolic.substitute(symbolic.as_dim(stmt.extent), unbound)
            inner = symbolic.dim_max(_work(stmt.body, unbound), 1)
            total = total + symbolic.dim_max(extent, 0) * symbolic.as_dim(inner)
        elif isinstance(stmt, loopir.Block):
            total = total + symbolic.as_dim(_work(stmt.body, unbound))
    return symbolic.simplify(total)
