"""`target="cuda"`: a traced function run as a CudaProgram on a device.

    kernel = build_cuda_kernel(function, tree)   # loop IR → CUDA C (compiler/cuda)
    kernel.call(args)                            # host or device arrays in, results out

A call binds dims from the arguments' shapes exactly like the CPU path
(compiler/binding.py), then:
  - NumPy (host) inputs are copied to the device, device arrays (`__cuda_array_interface__`
    or DLPack, runtime/cuda/arrays.py) are used in place;
  - outputs are allocated on the device and the program's steps run in order
    (runtime/cuda/execute.py);
  - if any input was a device array the results are DeviceArrays (no copy back),
    otherwise they are copied back to NumPy and the device memory is freed.

The device is a CudaDevice (driver + NVRTC) unless `FUSEGRAD_CUDA_DEVICE=emulate` asks
for the CPU emulation of runtime/cuda/emulate.py: a testing aid that runs the generated
CUDA C compiled by g++, so `target="cuda"` is tested end to end without a GPU.
"""

from __future__ import annotations

import functools
import math
import os
import threading

import numpy as np

from ...compiler import pipeline, symbolic
from ...compiler.binding import bind_dims
from ...compiler.errors import DTypeError, FusegradError
from .arrays import DeviceArray, DeviceView

DEVICE_ENV = "FUSEGRAD_CUDA_DEVICE"  # "emulate": the CPU emulation (testing aid)
_devices: dict[str, object] = {}
_devices_lock = threading.Lock()


def device_kind() -> str:
    kind = os.environ.get(DEVICE_ENV, "gpu") or "gpu"
    if kind not in ("gpu", "emulate"):
        raise FusegradError(f"{DEVICE_ENV}={kind!r}: expected 'gpu' (default) or 'emulate'")
    return kind


def _make_device(kind: str):
    if kind == "emulate":
        from .emulate import EmulatedDevice

        return EmulatedDevice()
    from .device import CudaDevice

    return CudaDevice()


def default_device():
    """The process's device of the kind `FUSEGRAD_CUDA_DEVICE` names, made at first use."""
    kind = device_kind()
    with _devices_lock:
        device = _devices.get(kind)
        if device is None:
            device = _make_device(kind)
            _devices[kind] = device
        return device


def to_device(array, device=None) -> DeviceArray:
    """A DeviceArray copy of a float32/float64 host array on the default device."""
    return DeviceArray.from_host(device or default_device(), np.asarray(array))


def to_loop_ir(function):
    """The loop IR the CUDA renderer takes: the pipeline's CUDA passes (matrix products
    are Gemm statements, which the renderer makes tiled kernels)."""
    return pipeline.to_loop_ir(function, target="cuda")


class CudaKernel:
    """One specialization for the CUDA target: its loop program and CUDA program."""

    def __init__(self, function, tree):
        from ...compiler.cuda.render import render_cuda

        self.function = function
        self.tree = tree
        self.program = to_loop_ir(function)
        self.cuda = render_cuda(self.program)

    @property
    def source(self) -> str:
        """The generated CUDA C (one translation unit)."""
        return self.cuda.source

    def call(self, args, device=None):
        """`args`: one value per parameter, each a host ndarray (already of the
        parameter's dtype) or a DeviceView."""
        from .execute import execute

        device = device or default_device()
        params = self.function.params
        for param, value in zip(params, args):
            _check_dtype(param, value)
        dims = bind_dims(self.function, [value.shape for value in args])
        on_device = any(isinstance(value, DeviceView) for value in args)
        owned: list[int] = []
        try:
            inputs = {}
            for buffer, value in zip(self.cuda.inputs, args):
                if isinstance(value, DeviceView):
                    inputs[buffer.name] = value.pointer
                else:
                    host = np.ascontiguousarray(value, dtype=buffer.dtype)
                    pointer = device.alloc(host.nbytes)
                    owned.append(pointer)
                    device.upload(pointer, host)
                    inputs[buffer.name] = pointer
            results = [
                DeviceArray(device, _evaluate_shape(node.shape, dims), node.dtype)
                for node in self.function.outputs
            ]
            outputs = {b.name: r.pointer for b, r in zip(self.cuda.outputs, results)}
            execute(device, self.cuda, dims, inputs, outputs)
            device.synchronize()
        finally:
            for pointer in owned:
                device.free(pointer)
        if not on_device:
            results = [_to_host(result) for result in results]
        return self.tree.unflatten(results)


def _to_host(result: DeviceArray):
    host = result.get()
    return host[()] if host.ndim == 0 else host


def _evaluate_shape(shape, dims) -> tuple[int, ...]:
    return tuple(symbolic.evaluate(d, dims) for d in shape)


def _check_dtype(param, value) -> None:
    if isinstance(value, DeviceView) and value.dtype != np.dtype(param.node.dtype):
        raise DTypeError(
            f"argument {param.name!r} is a device array of dtype {value.dtype}, but the "
            f"kernel was traced for {param.node.dtype}; device arrays are not converted "
            "(that would copy): pass one of the traced dtype"
        )


_kernels: dict[tuple, CudaKernel] = {}
_kernels_lock = threading.Lock()


def build_cuda_kernel(function, tree) -> CudaKernel:
    """The CUDA kernel of a traced graph, shared by every function that traces to it."""
    key = (function.digest, repr(tree.structure))
    with _kernels_lock:
        kernel = _kernels.get(key)
        if kernel is None:
            kernel = CudaKernel(function, tree)
            _kernels[key] = kernel
        return kernel


@functools.cache
def _zero(dtype: np.dtype) -> np.ndarray:
    return np.zeros((), dtype)


def stand_in(view: DeviceView) -> np.ndarray:
    """A host array of the view's shape and dtype that takes no memory (zero strides):
    what tracing and the specialization key see of a device argument."""
    if math.prod(view.shape) == 0:
        return np.empty(view.shape, view.dtype)
    return np.broadcast_to(_zero(view.dtype), view.shape)
