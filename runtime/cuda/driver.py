"""The CUDA driver API (libcuda.so.1) through cffi ABI mode, opened at the first call.

    driver = get()                         # cuInit + device 0's primary context
    driver.arch                            # 'sm_90': compute capability, for NVRTC
    module = driver.load_module(cubin)     # cuModuleLoadData
    function = driver.function(module, "k")
    ptr = driver.alloc(nbytes); driver.upload(ptr, host_buffer, nbytes); …
    driver.launch(function, grid, block, shared_bytes, [("int64", 7), ("ptr", ptr)])
    driver.synchronize()

Every CUresult other than CUDA_SUCCESS becomes a FusegradError naming the driver
function and carrying the driver's own name and description of the error. A machine
without the driver gets one clear error at the first call; `FUSEGRAD_LIBCUDA` names
another library (a testing aid). The declarations below are written from the CUDA
driver API reference (cuda.h); only what fusegrad calls is declared. The AOT
launcher (fusegrad/aot/cuda.py) compiles the same declarations.
"""

from __future__ import annotations

import os
import threading

from ...compiler.errors import FusegradError

#: The driver functions fusegrad calls, as C declarations (cffi cdef and AOT launcher).
DECLARATIONS = """
typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;

CUresult cuInit(unsigned int Flags);
CUresult cuDriverGetVersion(int *driverVersion);
CUresult cuGetErrorName(CUresult error, const char **pStr);
CUresult cuGetErrorString(CUresult error, const char **pStr);
CUresult cuDeviceGetCount(int *count);
CUresult cuDeviceGet(CUdevice *device, int ordinal);
CUresult cuDeviceGetName(char *name, int len, CUdevice dev);
CUresult cuDeviceGetAttribute(int *pi, int attrib, CUdevice dev);
CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev);
CUresult cuCtxSetCurrent(CUcontext ctx);
CUresult cuCtxSynchronize(void);
CUresult cuMemGetInfo_v2(size_t *free, size_t *total);
CUresult cuModuleLoadData(CUmodule *module, const void *image);
CUresult cuModuleUnload(CUmodule hmod);
CUresult cuModuleGetFunction(CUfunction *hfunc, CUmodule hmod, const char *name);
CUresult cuFuncSetAttribute(CUfunction hfunc, int attrib, int value);
CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize);
CUresult cuMemFree_v2(CUdeviceptr dptr);
CUresult cuMemcpyHtoD_v2(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount);
CUresult cuMemcpyDtoH_v2(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount);
CUresult cuMemsetD8_v2(CUdeviceptr dstDevice, unsigned char uc, size_t N);
CUresult cuLaunchKernel(CUfunction f,
                        unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,
                        unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,
                        unsigned int sharedMemBytes, CUstream hStream,
                        void **kernelParams, void **extra);
"""

# CUdevice_attribute values (cuda.h)
ATTRIBUTE = {
    "max_threads_per_block": 1,
    "max_grid_dim_x": 5,
    "multiprocessor_count": 16,
    "memory_clock_rate_khz": 36,
    "global_memory_bus_width": 37,
    "compute_capability_major": 75,
    "compute_capability_minor": 76,
}
_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8
CUDA_ERROR_NO_DEVICE = 100
_STATIC_SHARED_LIMIT = 48 * 1024  # beyond this a kernel must opt in (cuFuncSetAttribute)
_KERNEL_PARAM_TYPES = {"int64": "int64_t *", "ptr": "CUdeviceptr *"}

NO_DRIVER = (
    "target='cuda' needs an NVIDIA GPU and driver: libcuda.so.1 was not found ({detail})"
)

_lock = threading.Lock()
_driver: Driver | None = None


def library_name() -> str:
    return os.environ.get("FUSEGRAD_LIBCUDA") or "libcuda.so.1"


def get() -> Driver:
    """The process's driver on device 0, initialized at the first call."""
    global _driver
    with _lock:
        if _driver is None:
            _driver = Driver(library_name())
        return _driver


class Driver:
    """libcuda opened, initialized, with device 0's primary context."""

    def __init__(self, library: str, ordinal: int = 0):
        import cffi

        self.ffi = cffi.FFI()
        self.ffi.cdef(DECLARATIONS)
        try:
            self.lib = self.ffi.dlopen(library)
        except OSError as exc:
            raise FusegradError(NO_DRIVER.format(detail=f"{library}: {exc}")) from None
        result = self.lib.cuInit(0)
        if result == CUDA_ERROR_NO_DEVICE:
            raise FusegradError(
                "target='cuda' needs an NVIDIA GPU: the driver is installed but found none "
                f"(cuInit: {self.describe(result)})"
            )
        if result != 0:
            raise FusegradError(f"CUDA driver call cuInit failed: {self.describe(result)}")
        count = self.ffi.new("int *")
        self._call("cuDeviceGetCount", count)
        if count[0] <= ordinal:
            raise FusegradError(
                f"target='cuda' needs an NVIDIA GPU: the driver reports {count[0]} device(s)"
            )
        device = self.ffi.new("CUdevice *")
        self._call("cuDeviceGet", device, ordinal)
        self.device = device[0]
        context = self.ffi.new("CUcontext *")
        self._call("cuDevicePrimaryCtxRetain", context, self.device)
        self.context = context[0]
        self._current = threading.local()
        self.make_current()
        major = self.attribute("compute_capability_major")
        minor = self.attribute("compute_capability_minor")
        self.arch = f"sm_{major}{minor}"

    # -- errors -------------------------------------------------------------------------

    def _call(self, function: str, *args) -> None:
        result = getattr(self.lib, function)(*args)
        if result != 0:
            raise FusegradError(f"CUDA driver call {function} failed: {self.describe(result)}")

    def describe(self, result: int) -> str:
        """'CUDA_ERROR_NAME: description (code N)', as far as the driver tells."""
        text = self.ffi.new("const char **")
        name = description = "?"
        if self.lib.cuGetErrorName(result, text) == 0 and text[0] != self.ffi.NULL:
            name = self.ffi.string(text[0]).decode()
        if self.lib.cuGetErrorString(result, text) == 0 and text[0] != self.ffi.NULL:
            description = self.ffi.string(text[0]).decode()
        return f"{name}: {description} (code {result})"

    # -- device ------------------------------------------------------------------------

    def make_current(self) -> None:
        """Bind the primary context to the calling thread (once per thread)."""
        if not getattr(self._current, "bound", False):
            self._call("cuCtxSetCurrent", self.context)
            self._current.bound = True

    def attribute(self, name: str) -> int:
        value = self.ffi.new("int *")
        self._call("cuDeviceGetAttribute", value, ATTRIBUTE[name], self.device)
        return value[0]

    def name(self) -> str:
        buffer = self.ffi.new("char[]", 256)
        self._call("cuDeviceGetName", buffer, 256, self.device)
        return self.ffi.string(buffer).decode()

    def version(self) -> int:
        """The driver's CUDA version as 1000*major + 10*minor (13000 for 13.0)."""
        value = self.ffi.new("int *")
        self._call("cuDriverGetVersion", value)
        return value[0]

    def peak_bandwidth(self) -> float:
        """Theoretical memory bandwidth in bytes/s: 2 (DDR) · clock · bus width / 8."""
        clock_hz = self.attribute("memory_clock_rate_khz") * 1000.0
        return 2.0 * clock_hz * self.attribute("global_memory_bus_width") / 8.0

    # -- modules -----------------------------------------------------------------------

    def load_module(self, image: bytes):
        self.make_current()
        module = self.ffi.new("CUmodule *")
        self._call("cuModuleLoadData", module, self.ffi.from_buffer(image))
        return module[0]

    def function(self, module, name: str):
        function = self.ffi.new("CUfunction *")
        self._call("cuModuleGetFunction", function, module, name.encode())
        return function[0]

    def allow_shared(self, function, shared_bytes: int) -> None:
        """Opt a kernel in to more than 48 KiB of dynamic shared memory."""
        if shared_bytes > _STATIC_SHARED_LIMIT:
            self._call(
                "cuFuncSetAttribute",
                function,
                _FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                shared_bytes,
            )

    # -- memory ------------------------------------------------------------------------

    def alloc(self, nbytes: int) -> int:
        if nbytes == 0:
            return 0
        self.make_current()
        pointer = self.ffi.new("CUdeviceptr *")
        self._call("cuMemAlloc_v2", pointer, nbytes)
        return int(pointer[0])

    def free(self, pointer: int) -> None:
        if pointer:
            self.make_current()
            self._call("cuMemFree_v2", pointer)

    def upload(self, pointer: int, host, nbytes: int) -> None:
        """Copy `nbytes` from a host buffer (anything cffi's from_buffer takes)."""
        if nbytes:
            self.make_current()
            self._call("cuMemcpyHtoD_v2", pointer, self.ffi.from_buffer(host), nbytes)

    def download(self, host, pointer: int, nbytes: int) -> None:
        """Copy `nbytes` into a writable host buffer."""
        if nbytes:
            self.make_current()
            target = self.ffi.from_buffer(host, require_writable=True)
            self._call("cuMemcpyDtoH_v2", target, pointer, nbytes)

    def memory_info(self) -> tuple[int, int]:
        free, total = self.ffi.new("size_t *"), self.ffi.new("size_t *")
        self._call("cuMemGetInfo_v2", free, total)
        return free[0], total[0]

    # -- launches ----------------------------------------------------------------------

    def launch(self, function, grid: int, block: int, shared_bytes: int, args) -> None:
        """cuLaunchKernel on the default stream; `args` are (kind, value) pairs with
        kind 'int64' or 'ptr'. kernelParams is an array of pointers to the values."""
        self.make_current()
        values = [self.ffi.new(_KERNEL_PARAM_TYPES[kind], value) for kind, value in args]
        params = self.ffi.new("void *[]", [self.ffi.cast("void *", v) for v in values])
        if not values:
            params = self.ffi.NULL
        self._call(
            "cuLaunchKernel",
            function,
            grid, 1, 1,
            block, 1, 1,
            shared_bytes,
            self.ffi.NULL,
            params,
            self.ffi.NULL,
        )  # fmt: skip

    def synchronize(self) -> None:
        self.make_current()
        self._call("cuCtxSynchronize")
