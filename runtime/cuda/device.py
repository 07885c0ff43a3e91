"""CudaDevice: the device protocol of runtime/cuda/execute.py on a real GPU.

    device = CudaDevice()                 # opens the driver (first CUDA call)
    module = device.load(program)         # NVRTC → CUBIN for the GPU's own arch, loaded
    ptr = device.alloc(nbytes); device.upload(ptr, array)
    device.launch(module, launch, grid, args)   # args in launch.args order
    device.download(array, ptr); device.free(ptr); device.synchronize()

Modules are cached per (source, arch) for the process; CUBINs also on disk (nvrtc.py).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from ...compiler.errors import FusegradError
from . import driver as driver_api
from . import nvrtc

MAX_GRID_X = 2**31 - 1  # gridDim.x limit of every arch since sm_30

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
        return self.driver.alloc(int(nbytes))

    def free(self, ptr: int) -> None:
        self.driver.free(ptr)

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
