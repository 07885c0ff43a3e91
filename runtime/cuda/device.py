"""CudaDevice: the device protocol of runtime/cuda/execute.py on a real GPU.

    device = CudaDevice()                 # opens the driver (first CUDA call)
    module = device.load(program)         # NVRTC → CUBIN for the GPU's own arch, loaded
    ptr = device.alloc(nbytes); device.upload(ptr, array)
    device.launch(module, launch, grid, args)   # args in launch.args order
    device.download(array, ptr); device.free(ptr); device.synchronize()

Modules are cached per (source, arch) for the process; CUBINs also on disk (nvrtc.py).

Device memory is pooled: `free` keeps a block (up to POOL_BYTES in all) for the next
`alloc` of its size class, because cuMemAlloc/cuMemFree cost tens of microseconds
each and cuMemFree waits for the whole device: a call's inputs, outputs and scratch
would otherwise cost more than a small kernel. Reuse is safe because every launch and
copy runs on the one default stream, in order. `release_memory()` gives the kept
blocks back to the driver.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from ...compiler.errors import FusegradError
from . import driver as driver_api
from . import nvrtc

MAX_GRID_X = 2**31 - 1  # gridDim.x limit of every arch since sm_30
POOL_BYTES = 1 << 30  # freed device memory kept for reuse, at most
_LARGE = 2 << 20  # from 2 MiB on, sizes round up to a multiple of 2 MiB; below, a power of 2


def size_class(nbytes: int) -> int:
    """The size a block of `nbytes` is allocated with (so that freed blocks match)."""
    if nbytes >= _LARGE:
        return -(-nbytes // _LARGE) * _LARGE
    return max(512, 1 << (nbytes - 1).bit_length())


@dataclass
class LoadedModule:
    """A loaded CUBIN with its kernels looked up by name, and which args are dims."""

    handle: object
    dims: frozenset[str]
    functions: dict[str, object] = field(default_factory=dict)


class CudaDevice:
    """Device 0 of the CUDA driver; thread-safe module cache."""

    def __init__(self, driver=None):
        self.driver = driver if driver is not None else driver_api.get()
        self.arch = self.driver.arch
        self._modules: dict[tuple[str, str], LoadedModule] = {}
        self._lock = threading.Lock()
        self._sizes: dict[int, int] = {}  # live or pooled block → its size class
        self._pool: dict[int, list[int]] = {}  # size class → free blocks
        self._pooled_bytes = 0

    def load(self, program) -> LoadedModule:
        key = (program.source, self.arch)
        with self._lock:
            module = self._modules.get(key)
            if module is None:
                cubin = nvrtc.compile_cubin(program.source, self.arch, f"{program.name}.cu")
                module = LoadedModule(self.driver.load_module(cubin), frozenset(program.dims))
                self._modules[key] = module
            return module

    def alloc(self, nbytes: int) -> int:
        if nbytes <= 0:
            return 0
        size = size_class(int(nbytes))
        with self._lock:
            kept = self._pool.get(size)
            if kept:
                self._pooled_bytes -= size
                return kept.pop()
        pointer = self.driver.alloc(size)
        with self._lock:
            self._sizes[pointer] = size
        return pointer

    def free(self, ptr: int) -> None:
        if not ptr:
            return
        with self._lock:
            size = self._sizes.get(ptr)
            if size is not None and self._pooled_bytes + size <= POOL_BYTES:
                self._pool.setdefault(size, []).append(ptr)
                self._pooled_bytes += size
                return
            self._sizes.pop(ptr, None)
        self.driver.free(ptr)

    def release_memory(self) -> int:
        """Give the pooled blocks back to the driver; the number of bytes released."""
        with self._lock:
            blocks = [p for kept in self._pool.values() for p in kept]
            released, self._pooled_bytes = self._pooled_bytes, 0
            self._pool.clear()
            for pointer in blocks:
                del self._sizes[pointer]
        for pointer in blocks:
            self.driver.free(pointer)
        return released

    def upload(self, ptr: int, array: np.ndarray) -> None:
        _require_contiguous(array, "upload")
        self.driver.upload(ptr, array, array.nbytes)

    def download(self, array: np.ndarray, ptr: int) -> None:
        _require_contiguous(array, "download")
        self.driver.download(array, ptr, array.nbytes)

    def launch(self, module: LoadedModule, launch, grid: int, args: list) -> None:
        function = module.functions.get(launch.kernel)
        if function is None:
            function = self.driver.function(module.handle, launch.kernel)
            self.driver.allow_shared(function, launch.shared_bytes)
            module.functions[launch.kernel] = function
        if len(args) != len(launch.args):
            raise FusegradError(
                f"kernel {launch.kernel} takes {len(launch.args)} arguments "
                f"{launch.args}, got {len(args)}"
            )
        typed = [
            ("int64" if name in module.dims else "ptr", int(value))
            for name, value in zip(launch.args, args)
        ]
        if grid <= 0:
            return  # an empty domain: nothing to launch (a 0-block grid is an error)
        if grid > MAX_GRID_X:
            raise FusegradError(
                f"kernel {launch.kernel} needs {grid} blocks of {launch.block} threads; "
                f"a CUDA grid has at most {MAX_GRID_X} (the arrays are too large)"
            )
        self.driver.launch(function, int(grid), launch.block, launch.shared_bytes, typed)

    def synchronize(self) -> None:
        self.driver.synchronize()


def _require_contiguous(array: np.ndarray, what: str) -> None:
    if not array.flags.c_contiguous:
        raise FusegradError(f"{what} needs a C-contiguous host array")
