"""A compiled specialization: the native entry point and the Python side of a call.

`build_kernel(function, tree)` runs the compiler pipeline, JIT-compiles the one
native entry point and wraps it for calls from Python: bind dims from the
arguments' shapes (a `ShapeError` names any mismatch), allocate the outputs,
make one native call with the GIL released, check the status.

Two callers do this (runtime/binder.py): `binder`, in C, through the packed entry
point `name_packed(dims, buffers)` for arguments exactly like the specialization's
(None for kernels it does not fit), and `call_arrays`, generated Python through
cffi, for everything else.

With the on-disk cache (runtime/cache.py) a kernel compiled by an earlier process is
loaded from its object code instead: no pipeline, no LLVM optimization or code
generation. The entry keeps the program's signature (name, dims, input and output
buffers), which is all the callers need; `kernel.program` runs the pipeline again
only when something else of it is read.
"""

from __future__ import annotations

import functools
import os
import pickle
import threading

import cffi

from ..compiler import loopir
from ..compiler.errors import FusegradError, ShapeError
from ..compiler.ir import Function
from ..compiler.llvm.packed_entry import append_packed_entry, packed_name
from ..compiler.trace import OutputTree
from . import blas, cache
from .binder import make_caller, native_binder
from .jit import OPT_LEVEL, host_vector_bytes, jit_compile, jit_load


@functools.cache
def _cffi() -> cffi.FFI:
    # Made at the first use: creating an FFI imports cffi's C parser (pycparser, ~15 ms),
    # which a kernel called through the C binder never needs.
    return cffi.FFI()


_C_TYPES = {"float64": "double *", "float32": "float *", "bool": "uint8_t *"}
_C_ARRAYS = {"float64": "double[]", "float32": "float[]", "bool": "uint8_t[]"}


class Kernel:
    c_array_types = _C_ARRAYS

    def __init__(self, function: Function, tree: OutputTree, use_blas: bool):
        self.function = function
        self.tree = tree
        self.use_blas = use_blas
        self.from_cache = False  # loaded from the on-disk cache (runtime/cache.py)
        self._llvm_ir_unoptimized = None
        key = None
        if cache.enabled():
            key = cache.kernel_key(function.digest, tree.structure, use_blas, OPT_LEVEL)
            self.from_cache = self._load(cache.load(key))
        if not self.from_cache:
            self._compile(key)
        self.binder = native_binder(self, self.jit.address_of(packed_name(self.program)))

    # The Python caller is built at its first use: most calls go through the C binder,
    # and cffi parses a new signature with pycparser (2–3 ms of a warm first call).
    @functools.cached_property
    def c_signature(self) -> str:
        c_args = ["int64_t"] * len(self.program.dims) + [
            _C_TYPES[b.dtype] for b in self.program.inputs + self.program.outputs
        ]
        return f"int(*)({', '.join(c_args) or 'void'})"

    @property
    def ffi(self) -> cffi.FFI:
        return _cffi()

    @functools.cached_property
    def entry(self):
        return _cffi().cast(self.c_signature, self.jit.address)

    @functools.cached_property
    def call_arrays(self):
        return make_caller(self)

    def _compile(self, key: str | None):
        """Run the pipeline and LLVM; store the object code and the program's signature."""
        self.program = _pipeline().to_loop_ir(self.function, blas=self.use_blas)
        self._llvm_ir_unoptimized = append_packed_entry(
            _render_program(self.program), self.program
        )
        objects = []
        self.jit = jit_compile(
            self._llvm_ir_unoptimized,
            self.program.name,
            on_object=objects.append,
            exports=(packed_name(self.program),),
        )
        if key is not None:
            signature = _signature(self.program)
            cache.store(
                key,
                pickle.dumps((signature, objects), protocol=pickle.HIGHEST_PROTOCOL),
            )

    def _load(self, payload: bytes | None) -> bool:
        """Rebuild from a cache entry: the object files, and the program's signature (the
        loop program itself is rebuilt only if asked for)."""
        if payload is None:
            return False
        try:
            signature, objects = pickle.loads(payload)
            self.jit = jit_load(objects, signature.name, exports=(packed_name(signature),))
        except Exception:  # noqa: BLE001 - an entry that does not load is compiled again
            cache.stats["bad_entries"] += 1
            return False
        self.program = _CachedProgram(signature, self.function, self.use_blas)
        return True

    @property
    def llvm_ir_unoptimized(self) -> str:
        """The LLVM IR rendered from the loop program, with the packed entry point."""
        if self._llvm_ir_unoptimized is None:
            program = self.program.full()
            self._llvm_ir_unoptimized = append_packed_entry(
                _render_program(program), program
            )
        return self._llvm_ir_unoptimized

    @property
    def llvm_ir(self) -> str:
        """The optimized LLVM IR of the entry point."""
        if not self.jit.source:
            self.jit.source = self.llvm_ir_unoptimized
        return self.jit.llvm_ir

    def call(self, arrays):
        if self.binder is not None:
            result = self.binder(*arrays)
            if result is not NotImplemented:
                return result
        return self.call_arrays(*arrays)

    def fail(self, status: int):
        from .native import strerror

        error = ShapeError if status in (1, 3, 4) else FusegradError
        message = strerror(status)
        if status == 4:
            message = (
                "a matrix dimension exceeds 2**31 - 1, the limit of the 32-bit BLAS"
            )
        raise error(
            f"{self.function.name}: the kernel returned status {status}: {message}"
        )


# The compiler's passes and renderer are imported on first use: a kernel loaded from the
# on-disk cache needs neither (importing them was ~4 ms of a warm first call).
def _pipeline():
    from ..compiler import pipeline

    return pipeline


def _render_program(program: loopir.Program) -> str:
    from ..compiler.llvm.render import render_program

    return render_program(program, vector_bytes=host_vector_bytes())


def _signature(program: loopir.Program) -> loopir.Program:
    """What the callers of a kernel read of its program: name, dims, inputs, outputs."""
    return loopir.Program(
        program.name, list(program.dims), list(program.inputs), list(program.outputs)
    )


class _CachedProgram:
    """The loop program of a kernel from the cache: the signature stored with it at
    once, any other attribute from the pipeline, run again on first use."""

    def __init__(self, signature: loopir.Program, function: Function, use_blas: bool):
        self.name = signature.name
        self.dims = signature.dims
        self.inputs = signature.inputs
        self.outputs = signature.outputs
        self._function = function
        self._use_blas = use_blas
        self._program = None

    def full(self) -> loopir.Program:
        if self._program is None:
            self._program = _pipeline().to_loop_ir(self._function, blas=self._use_blas)
        return self._program

    def __getattr__(self, name):
        return getattr(self.full(), name)

    def __str__(self):
        return str(self.full())


# Compiled kernels by content hash of the traced graph: a graph traced again (by another
# CompiledFunction, or for another pattern of sizes that gives the same graph) is not
# compiled again. Dtypes and ranks are part of the graph, so of the key.
_kernels: dict[tuple, Kernel] = {}
_kernels_lock = threading.Lock()


def build_kernel(function: Function, tree: OutputTree) -> Kernel:
    # FUSEGRAD_BLAS=0 computes matrix products with generated loops instead of OpenBLAS.
    use_blas = os.environ.get("FUSEGRAD_BLAS", "1") != "0" and blas.available()
    key = (function.digest, repr(tree.structure), use_blas)
    kernel = _kernels.get(key)
    if kernel is None:
        with _kernels_lock:
            kernel = _kernels.get(key)
            if kernel is None:
                kernel = Kernel(function, tree, use_blas)
                _kernels[key] = kernel
    return kernel
