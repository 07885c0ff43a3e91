"""A compiled specialization: the native entry point and the Python side of a call.

`build_kernel(function, tree)` runs the compiler pipeline, JIT-compiles the one
native entry point and wraps it for calls from Python: bind dims from the
arguments' shapes (a `ShapeError` names any mismatch), allocate the outputs,
make one cffi call (cffi releases the GIL during it), check the status.
"""

from __future__ import annotations

import threading

import cffi
import numpy as np

from ..compiler import pipeline, symbolic
from ..compiler.binding import bind_dims
from ..compiler.errors import FusegradError, ShapeError
from ..compiler.ir import Function
from ..compiler.trace import OutputTree

_ffi = cffi.FFI()
_C_TYPES = {"float64": "double *", "float32": "float *", "bool": "uint8_t *"}
_C_ARRAYS = {"float64": "double[]", "float32": "float[]", "bool": "uint8_t[]"}


class Kernel:
    def __init__(self, function: Function, tree: OutputTree):
        self.function = function
        self.tree = tree
        self.program = pipeline.to_loop_ir(function)
        from ..compiler.llvm.render import render_program
        from .jit import jit_compile

        self.llvm_ir_unoptimized = render_program(self.program)
        self.jit = jit_compile(self.llvm_ir_unoptimized, self.program.name)
        c_args = ["int64_t"] * len(self.program.dims) + [
            _C_TYPES[b.dtype] for b in self.program.inputs + self.program.outputs
        ]
        self.c_signature = f"int(*)({', '.join(c_args) or 'void'})"
        self._entry = _ffi.cast(self.c_signature, self.jit.address)
        self._output_shapes = [o.shape for o in function.outputs]
        self._output_dtypes = [np.dtype(o.dtype) for o in function.outputs]
        self._param_dtypes = [np.dtype(p.node.dtype) for p in function.params]
        self._input_ctypes = [_C_ARRAYS[b.dtype] for b in self.program.inputs]
        self._output_ctypes = [_C_ARRAYS[b.dtype] for b in self.program.outputs]

    @property
    def llvm_ir(self) -> str:
        """The optimized LLVM IR of the entry point."""
        return self.jit.llvm_ir

    def call(self, arrays):
        arrays = [
            a if a.dtype == dtype and a.flags.c_contiguous else np.ascontiguousarray(a, dtype=dtype)
            for a, dtype in zip(arrays, self._param_dtypes)
        ]
        dims = bind_dims(self.function, [a.shape for a in arrays])
        outputs = [
            np.empty(tuple(symbolic.evaluate(d, dims) for d in shape), dtype=dtype)
            for shape, dtype in zip(self._output_shapes, self._output_dtypes)
        ]
        args = [dims[name] for name in self.program.dims]
        args += [_ffi.from_buffer(t, a) for t, a in zip(self._input_ctypes, arrays)]
        args += [_ffi.from_buffer(t, o) for t, o in zip(self._output_ctypes, outputs)]
        status = self._entry(*args)
        if status != 0:
            from .native import strerror

            error = ShapeError if status in (1, 3) else FusegradError
            raise error(f"{self.function.name}: the kernel returned status {status}: {strerror(status)}")
        results = [o[()] if o.ndim == 0 else o for o in outputs]
        return self.tree.unflatten(results)


# Compiled kernels by content hash of the traced graph: a graph traced again (by another
# CompiledFunction, or for another pattern of sizes that gives the same graph) is not
# compiled again. Dtypes and ranks are part of the graph, so of the key.
_kernels: dict[tuple, Kernel] = {}
_kernels_lock = threading.Lock()


def build_kernel(function: Function, tree: OutputTree) -> Kernel:
    key = (function.digest, repr(tree.structure))
    kernel = _kernels.get(key)
    if kernel is None:
        with _kernels_lock:
            kernel = _kernels.get(key)
            if kernel is None:
                kernel = Kernel(function, tree)
                _kernels[key] = kernel
    return kernel
