"""EmulatedDevice: the device protocol of runtime/cuda/execute.py on the CPU (a testing aid).

    FUSEGRAD_CUDA_DEVICE=emulate python ...    # target="cuda" runs here, no GPU needed

The generated CUDA C is compiled by g++ with emulate.h (the CUDA built-ins, and
FG_EACH_THREAD as a loop over a block's threads) into a shared library, and a launch
runs the grid block after block. For every kernel of a program a small C entry point
`fg_emulate_<kernel>(grid, block, args)` sets the built-ins and calls the kernel once
per block, with the launch's arguments converted to the kernel's parameter types.

"Device memory" is host memory owned by this object (64-byte aligned NumPy buffers);
pointers are plain addresses, so DeviceArrays, uploads and downloads work unchanged.
Libraries are cached in memory per source and on disk in the fusegrad cache directory
(runtime/cache.py) under the hash of the source, the header and the compiler command.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import cffi
import numpy as np

from ...compiler.cuda.ops import C_TYPES
from ...compiler.errors import CompileError, FusegradError
from .. import cache

HEADER = Path(__file__).with_name("emulate.h")
COMPILE = ("-std=c++17", "-O1", "-shared", "-fPIC", "-w")
_ALIGNMENT = 64


class EmulatedModule:
    def __init__(self, ffi, library, kernels):
        self.ffi = ffi
        self.library = library  # keeps the shared library loaded
        self.kernels = kernels  # kernel name → number of arguments


class EmulatedDevice:
    def __init__(self, compiler: str | None = None):
        self.compiler = compiler or shutil.which("g++") or shutil.which("c++")
        if self.compiler is None:
            raise FusegradError("the emulated CUDA device needs a C++ compiler (g++)")
        self._memory: dict[int, np.ndarray] = {}
        self._modules: dict[str, EmulatedModule] = {}
        self._lock = threading.Lock()  # one launch at a time: the built-ins are globals

    # -- memory --------------------------------------------------------------------
    def alloc(self, nbytes: int) -> int:
        raw = np.empty(max(int(nbytes), 1) + _ALIGNMENT, np.uint8)
        pointer = -raw.ctypes.data % _ALIGNMENT + raw.ctypes.data
        self._memory[pointer] = raw
        return pointer

    def free(self, pointer: int) -> None:
        if self._memory.pop(pointer, None) is None:
            raise FusegradError(f"free of {pointer:#x}: not memory of this emulated device")

    def upload(self, pointer: int, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        ctypes.memmove(pointer, array.ctypes.data, array.nbytes)

    def download(self, array: np.ndarray, pointer: int) -> None:
        if not array.flags.c_contiguous:
            raise FusegradError("download needs a C-contiguous host array")
        ctypes.memmove(array.ctypes.data, pointer, array.nbytes)

    def synchronize(self) -> None:
        pass  # launches run to completion before they return

    def release_memory(self) -> int:
        return 0  # nothing is pooled: freed buffers go back to NumPy at once

    # -- kernels -------------------------------------------------------------------
    def load(self, program) -> EmulatedModule:
        with self._lock:
            module = self._modules.get(program.source)
            if module is None:
                module = self._build(program)
                self._modules[program.source] = module
            return module

    def launch(self, module: EmulatedModule, launch, grid: int, args: list) -> None:
        count = module.kernels.get(launch.kernel)
        if count is None:
            raise FusegradError(f"kernel {launch.kernel} is not in the loaded module")
        if len(args) != count:
            raise FusegradError(f"kernel {launch.kernel} takes {count} arguments, got {len(args)}")
        if grid <= 0:
            return
        values = module.ffi.new("long long[]", [int(a) for a in args] or [0])
        with self._lock:
            getattr(module.library, f"fg_emulate_{launch.kernel}")(grid, launch.block, values)

    def _build(self, program) -> EmulatedModule:
        entries, kernels = _entry_points(program)
        source = program.source + "\n" + "\n\n".join(entries) + "\n"
        command = [self.compiler, *COMPILE, "-include", str(HEADER)]
        key = hashlib.sha256(
            "\0".join([source, HEADER.read_text(), " ".join(command)]).encode()
        ).hexdigest()
        path = _cached_library(key, source, command)
        ffi = cffi.FFI()
        ffi.cdef("\n".join(
            f"void fg_emulate_{k}(long long grid, unsigned int block, const long long *args);"
            for k in kernels
        ))
        return EmulatedModule(ffi, ffi.dlopen(str(path)), kernels)


def _entry_points(program):
    """C entry points that run each kernel over its grid, and kernel → argument count."""
    dtypes = {b.name: b.dtype for b in (*program.inputs, *program.outputs, *program.scratch)}
    dims = set(program.dims)
    entries, kernels = [], {}
    for launch in program.steps:
        if launch.kernel in kernels:
            continue
        kernels[launch.kernel] = len(launch.args)
        args = []
        for k, name in enumerate(launch.args):
            if name in dims:
                args.append(f"args[{k}]")
            else:
                args.append(f"({C_TYPES[dtypes[name]]} *)(uintptr_t)args[{k}]")
        entries.append(
            f'extern "C" void fg_emulate_{launch.kernel}(long long grid, unsigned int block, '
            "const long long *args)\n{\n"
            "    blockDim.x = block;\n"
            "    gridDim.x = (unsigned int)grid;\n"
            "    for (long long b = 0; b < grid; ++b) {\n"
            "        blockIdx.x = (unsigned int)b;\n"
            f"        {launch.kernel}({', '.join(args)});\n"
            "    }\n}"
        )
    return entries, kernels


def _cached_library(key: str, source: str, command: list) -> Path:
    folder = cache.directory() / "emulate" if cache.enabled() else Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.so"
    if path.exists():
        return path
    with tempfile.TemporaryDirectory() as scratch:
        source_path = Path(scratch) / "kernels.cu.cpp"
        source_path.write_text(source)
        built = Path(scratch) / "kernels.so"
        result = subprocess.run([*command, str(source_path), "-o", str(built)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise CompileError(
                f"the emulated CUDA device could not compile the generated CUDA C:\n"
                f"{result.stderr.strip()}"
            )
        temporary = folder / f".{key}.{os.getpid()}.tmp"
        shutil.copyfile(built, temporary)
        os.replace(temporary, path)  # atomic: concurrent processes see all or nothing
    return path
