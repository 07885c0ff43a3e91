"""A compiled specialization: the native entry point and the Python side of a call.

`build_kernel(function, tree)` runs the compiler pipeline, JIT-compiles the one
native entry point and wraps it for calls from Python: bind dims from the
arguments' shapes (a `ShapeError` names any mismatch), allocate the outputs,
make one native call with the GIL released, check the status.

Two callers do this (runtime/binder.py): `binder`, in C, through the packed entry
point `name_packed(dims, buffers)` for arguments exactly like the specialization's
(None for kernels it does not fit), and `call_arrays`, generated Python through
cffi, for everything else.
"""

from __future__ import annotations

import os
import threading

import cffi

from ..compiler import pipeline
from ..compiler.errors import FusegradError, ShapeError
from ..compiler.ir import Function
from ..compiler.trace import OutputTree
from . import blas
from .binder import make_caller, native_binder

_ffi = cffi.FFI()
_C_TYPES = {"float64": "double *", "float32": "float *", "bool": "uint8_t *"}
_C_ARRAYS = {"float64": "double[]", "float32": "float[]", "bool": "uint8_t[]"}


class Kernel:
    ffi = _ffi
    c_array_types = _C_ARRAYS

    def __init__(self, function: Function, tree: OutputTree, use_blas: bool):
        self.function = function
        self.tree = tree
        self.program = pipeline.to_loop_ir(function, blas=use_blas)
        from ..compiler.llvm.packed_entry import append_packed_entry, packed_name
        from ..compiler.llvm.render import render_program
        from .jit import _LOCK, jit_compile

        self.llvm_ir_unoptimized = append_packed_entry(render_program(self.program), self.program)
        self.jit = jit_compile(self.llvm_ir_unoptimized, self.program.name)
        with _LOCK:  # llvmlite is not thread-safe
            packed_address = self.jit._engine.get_function_address(packed_name(self.program))
        c_args = ["int64_t"] * len(self.program.dims) + [
            _C_TYPES[b.dtype] for b in self.program.inputs + self.program.outputs
        ]
        self.c_signature = f"int(*)({', '.join(c_args) or 'void'})"
        self.entry = _ffi.cast(self.c_signature, self.jit.address)
        self.call_arrays = make_caller(self)
        self.binder = native_binder(self, packed_address)

    @property
    def llvm_ir(self) -> str:
        """The optimized LLVM IR of the entry point."""
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
            message = "a matrix dimension exceeds 2**31 - 1, the limit of the 32-bit BLAS"
        raise error(f"{self.function.name}: the kernel returned status {status}: {message}")


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
