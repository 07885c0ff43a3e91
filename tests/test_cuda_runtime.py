"""The CUDA runtime without a GPU: NVRTC, the driver binding (against a fake libcuda
built here), device arrays, and `target="cuda"` end to end on the emulated device.

Tests that need a real GPU are marked `gpu` and skip when no driver is present.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

import fusegrad as fg
from fusegrad.runtime.cuda import arrays, driver, nvrtc
from fusegrad.runtime.cuda.arrays import DeviceArray, DeviceView, device_view

KERNEL = textwrap.dedent(
    """
    extern "C" __global__ void scale(long long n, const double *x, double *y) {
        long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
        if (i < n) y[i] = 2.0 * exp(x[i]);
    }
    """
)


def _nvrtc_available() -> bool:
    try:
        nvrtc.library_path()
    except fg.FusegradError:
        return False
    return True


needs_nvrtc = pytest.mark.skipif(not _nvrtc_available(), reason="NVRTC not installed")


def _gpu_present() -> bool:
    try:
        driver.get()
    except fg.FusegradError:
        return False
    return True


def gpu(test):
    """A test that needs a real GPU: marked `gpu`, skipped when the driver is missing."""
    skip = pytest.mark.skipif(not _gpu_present(), reason="no CUDA driver")
    return pytest.mark.gpu(skip(test))


# -- NVRTC -------------------------------------------------------------------------------


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_nvrtc_compiles_cubin_for_each_arch(arch):
    cubin = nvrtc.compile_cubin(KERNEL, arch)
    assert cubin[:4] == b"\x7fELF"  # a CUBIN is an ELF image
    assert b"scale" in cubin


@needs_nvrtc
def test_nvrtc_compiles_ptx_for_the_virtual_arch():
    ptx = nvrtc.compile_ptx(KERNEL, "sm_90")
    assert ".target sm_90" in ptx
    assert ".entry scale" in ptx


@needs_nvrtc
def test_nvrtc_version_is_a_pair_of_ints():
    major, minor = nvrtc.version()
    assert major >= 11 and minor >= 0


@needs_nvrtc
def test_cubins_are_cached_in_memory_and_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEGRAD_CACHE_DIR", str(tmp_path))
    source = KERNEL + "// cache test\n"
    before = nvrtc.stats["compiles"]
    first = nvrtc.compile_cubin(source, "sm_80")
    assert nvrtc.compile_cubin(source, "sm_80") == first
    assert nvrtc.stats["compiles"] == before + 1
    assert list(tmp_path.glob("*.kernel"))
    nvrtc._cubins.clear()  # a new process: the disk entry is read, NVRTC is not run
    assert nvrtc.compile_cubin(source, "sm_80") == first
    assert nvrtc.stats["compiles"] == before + 1


@needs_nvrtc
def test_compile_error_carries_the_log_and_the_source_line():
    source = 'extern "C" __global__ void k(double *x) {\n    x[0] = undefined_name;\n}\n'
    with pytest.raises(fg.CompileError) as info:
        nvrtc.compile_cubin(source, "sm_90", name="broken.cu")
    message = str(info.value)
    assert "broken.cu(2)" in message and "undefined_name" in message
    assert "2 |     x[0] = undefined_name;" in message


@pytest.mark.parametrize("arch", ["90", "sm90", "gfx90a", 90])
def test_bad_arch_is_named(arch):
    if isinstance(arch, str) and arch.isdigit() and _nvrtc_available():
        assert nvrtc.compile_cubin(KERNEL, arch)[:4] == b"\x7fELF"  # '90' means sm_90
        return
    with pytest.raises(fg.FusegradError, match="arch"):
        nvrtc.compile_cubin(KERNEL, arch)


def test_nvrtc_of_a_cuda_toolkit_is_found_without_the_wheel(tmp_path, monkeypatch):
    (tmp_path / "lib64").mkdir()
    (tmp_path / "lib64" / "libnvrtc.so.12").write_bytes(b"")
    (tmp_path / "lib64" / "libnvrtc-builtins.so.12.4").write_bytes(b"")
    monkeypatch.setattr(nvrtc.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    monkeypatch.delenv("FUSEGRAD_NVRTC", raising=False)
    assert nvrtc.library_path() == str(tmp_path / "lib64" / "libnvrtc.so.12")


def test_missing_nvrtc_says_how_to_install(monkeypatch):
    monkeypatch.setattr(nvrtc, "_candidate_paths", lambda: [])
    monkeypatch.delenv("FUSEGRAD_NVRTC", raising=False)
    with pytest.raises(fg.FusegradError, match="pip install nvidia-cuda-nvrtc"):
        nvrtc.library_path()
    monkeypatch.setenv("FUSEGRAD_NVRTC", "/nonexistent/libnvrtc.so")
    with pytest.raises(fg.FusegradError, match="FUSEGRAD_NVRTC"):
        nvrtc.library_path()


def test_import_loads_neither_nvrtc_nor_the_driver():
    code = textwrap.dedent(
        """
        import numpy as np
        import fusegrad as fg
        f = fg.compile(lambda x: np.sum(x * x), target="cuda")   # compiling is lazy too
        maps = open("/proc/self/maps").read()
        print("nvrtc" in maps, "libcuda" in maps)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False"]


# -- the driver, against a fake libcuda ----------------------------------------------------

# A stand-in for libcuda.so.1 with the documented signatures: memory is host memory, a
# launch records its configuration and arguments, cuInit fails with the code in
# FAKE_CUDA_INIT (100 = CUDA_ERROR_NO_DEVICE) when set, the compute capability is
# FAKE_CUDA_CC (default 90), and cuModuleLoadData takes only CUBINs (ELF), not PTX.
FAKE_DRIVER = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
typedef int CUresult;
static int64_t last_launch[16];
static const char *names[] = {"CUDA_SUCCESS", "CUDA_ERROR_NO_DEVICE", "CUDA_ERROR_UNKNOWN"};
static int name_index(CUresult e) { return e == 0 ? 0 : e == 100 ? 1 : 2; }
CUresult cuGetErrorName(CUresult e, const char **s) { *s = names[name_index(e)]; return 0; }
CUresult cuGetErrorString(CUresult e, const char **s) {
    *s = e == 100 ? "no CUDA-capable device is detected" : "unknown error"; return 0; }
CUresult cuInit(unsigned flags) {
    const char *code = getenv("FAKE_CUDA_INIT"); return code ? atoi(code) : 0; }
CUresult cuDriverGetVersion(int *v) { *v = 13000; return 0; }
CUresult cuDeviceGetCount(int *n) { *n = 1; return 0; }
CUresult cuDeviceGet(int *d, int ordinal) { *d = ordinal; return 0; }
CUresult cuDeviceGetName(char *name, int len, int d) { strncpy(name, "Fake GPU", len); return 0; }
CUresult cuDeviceGetAttribute(int *v, int attribute, int d) {
    const char *cc = getenv("FAKE_CUDA_CC");  /* compute capability as 10 * major + minor */
    int arch = cc ? atoi(cc) : 90;
    *v = attribute == 75 ? arch / 10 : attribute == 76 ? arch % 10 : attribute == 36 ? 2619000
       : attribute == 37 ? 5120 : 1024;
    return 0; }
CUresult cuDevicePrimaryCtxRetain(void **ctx, int d) { *ctx = (void *)0x1; return 0; }
CUresult cuCtxSetCurrent(void *ctx) { return 0; }
CUresult cuCtxSynchronize(void) { return 0; }
CUresult cuMemGetInfo_v2(size_t *f, size_t *t) { *f = 1 << 30; *t = 1 << 31; return 0; }
CUresult cuModuleLoadData(void **m, const void *image) {
    *m = (void *)0x2; return memcmp(image, "\x7f" "ELF", 4) == 0 ? 0 : 200; }
CUresult cuModuleUnload(void *m) { return 0; }
CUresult cuModuleGetFunction(void **f, void *m, const char *name) {
    *f = (void *)0x3; return strcmp(name, "missing") == 0 ? 500 : 0; }
CUresult cuFuncSetAttribute(void *f, int a, int v) { last_launch[15] = v; return 0; }
CUresult cuMemAlloc_v2(uint64_t *p, size_t n) { *p = (uint64_t)malloc(n); return 0; }
CUresult cuMemFree_v2(uint64_t p) { free((void *)p); return 0; }
CUresult cuMemsetD8_v2(uint64_t p, unsigned char c, size_t n) { memset((void *)p, c, n); return 0; }
CUresult cuMemcpyHtoD_v2(uint64_t d, const void *s, size_t n) { memcpy((void *)d, s, n); return 0; }
CUresult cuMemcpyDtoH_v2(void *d, uint64_t s, size_t n) { memcpy(d, (void *)s, n); return 0; }
CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                        unsigned by, unsigned bz, unsigned shared, void *stream,
                        void **params, void **extra) {
    last_launch[0] = gx; last_launch[1] = bx; last_launch[2] = shared;
    for (int k = 0; k < 3; k++) last_launch[3 + k] = *(int64_t *)params[k];
    return 0; }
int64_t *fake_last_launch(void) { return last_launch; }
"""


@pytest.fixture(scope="module")
def fake_libcuda(tmp_path_factory):
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler for the fake driver")
    folder = tmp_path_factory.mktemp("fakecuda")
    (folder / "fake.c").write_text(FAKE_DRIVER)
    library = folder / "libfakecuda.so"
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-o", str(library), str(folder / "fake.c")], check=True
    )
    return str(library)


def test_no_driver_is_one_clear_error_at_first_use(monkeypatch):
    monkeypatch.setenv("FUSEGRAD_LIBCUDA", "/nonexistent/libcuda.so.1")
    with pytest.raises(fg.FusegradError, match="needs an NVIDIA GPU and driver"):
        driver.Driver(driver.library_name())


def test_driver_errors_name_the_function_and_the_drivers_message(fake_libcuda, monkeypatch):
    monkeypatch.setenv("FAKE_CUDA_INIT", "100")
    with pytest.raises(fg.FusegradError) as info:
        driver.Driver(fake_libcuda)
    message = str(info.value)
    assert "needs an NVIDIA GPU: the driver is installed but found none" in message
    assert "cuInit" in message and "CUDA_ERROR_NO_DEVICE" in message
    assert "no CUDA-capable device is detected" in message
    monkeypatch.setenv("FAKE_CUDA_INIT", "999")
    with pytest.raises(fg.FusegradError, match="cuInit failed: CUDA_ERROR_UNKNOWN"):
        driver.Driver(fake_libcuda)


def test_driver_reports_arch_and_bandwidth(fake_libcuda):
    fake = driver.Driver(fake_libcuda)
    assert fake.arch == "sm_90"
    assert fake.name() == "Fake GPU"
    assert fake.version() == 13000
    assert fake.peak_bandwidth() == pytest.approx(2 * 2619e6 * 5120 / 8)


def test_memory_round_trip_and_kernel_parameters(fake_libcuda, monkeypatch):
    from fusegrad.runtime.cuda.device import CudaDevice

    fake = driver.Driver(fake_libcuda)
    monkeypatch.setattr(nvrtc, "compile_cubin", lambda source, arch, name: b"\x7fELF fake")
    device = CudaDevice(fake)
    x = np.arange(5.0)
    pointer = device.alloc(x.nbytes)
    device.upload(pointer, x)
    back = np.empty_like(x)
    device.download(back, pointer)
    np.testing.assert_array_equal(back, x)

    class Program:
        name, source, dims = "p", KERNEL, ["n"]

    module = device.load(Program)
    assert device.load(Program) is module  # cached per source
    launch = Launch("scale", 2, 256, 64 * 1024, ("n", "x", "y"))
    device.launch(module, launch, 2, [5, pointer, 12345])
    values = _last_launch(fake_libcuda)
    assert values[:6] == [2, 256, 64 * 1024, 5, pointer, 12345]
    assert values[15] == 64 * 1024  # > 48 KiB of shared memory: the kernel opted in
    device.free(pointer)
    with pytest.raises(fg.FusegradError, match="cuModuleGetFunction"):
        device.launch(module, Launch("missing", 1, 1, 0, ()), 1, [])


class Launch(NamedTuple):
    """The fields of compiler/cuda/plan.py's Launch that a device reads."""

    kernel: str
    grid: int
    block: int
    shared_bytes: int
    args: tuple


def _last_launch(library: str) -> list[int]:
    import cffi

    ffi = cffi.FFI()
    ffi.cdef("int64_t *fake_last_launch(void);")
    values = ffi.dlopen(library).fake_last_launch()
    return [int(values[k]) for k in range(16)]


def test_device_memory_is_pooled_by_size_class(fake_libcuda):
    from fusegrad.runtime.cuda.device import POOL_BYTES, CudaDevice, size_class

    device = CudaDevice(driver.Driver(fake_libcuda))
    assert [size_class(n) for n in (1, 512, 513, 3 << 20)] == [512, 512, 1024, 4 << 20]
    assert device.alloc(0) == 0
    first = device.alloc(1000)
    device.free(first)
    assert device.alloc(900) == first  # the same class: the kept block, no driver call
    other = device.alloc(3000)
    assert other != first
    device.free(first)
    device.free(other)
    assert device.release_memory() == 1024 + 4096
    big = device.alloc(POOL_BYTES + 1)  # more than the pool keeps: freed to the driver
    device.free(big)
    assert device.release_memory() == 0


def test_bad_kernel_argument_count_is_named(fake_libcuda, monkeypatch):
    from fusegrad.runtime.cuda.device import CudaDevice

    monkeypatch.setattr(nvrtc, "compile_cubin", lambda source, arch, name: b"\x7fELF fake")
    device = CudaDevice(driver.Driver(fake_libcuda))

    class Program:
        name, source, dims = "p", KERNEL + "//2", ["n"]

    module = device.load(Program)
    with pytest.raises(fg.FusegradError, match="scale takes 3 arguments"):
        device.launch(module, Launch("scale", 1, 32, 0, ("n", "x", "y")), 1, [1, 2])
    with pytest.raises(fg.FusegradError, match="at most 2147483647"):
        device.launch(module, Launch("scale", 1, 32, 0, ("n", "x", "y")), 2**31, [1, 2, 3])


# -- device arrays -----------------------------------------------------------------------


class FakeCudaArray:
    """An object with only `__cuda_array_interface__`, like CuPy's arrays."""

    def __init__(self, **interface):
        self.__cuda_array_interface__ = {"version": 3, "strides": None, **interface}


def test_array_interface_gives_pointer_shape_and_dtype():
    fake = FakeCudaArray(shape=(3, 4), typestr="<f4", data=(0xABC000, False))
    view = device_view("X", fake)
    assert view == DeviceView(0xABC000, (3, 4), np.dtype("float32"), fake)
    assert view.nbytes == 48


def test_array_interface_accepts_c_contiguous_strides_and_size_one_axes():
    fake = FakeCudaArray(shape=(3, 1, 2), typestr="<f8", data=(64, False), strides=(16, 999, 8))
    assert device_view("X", fake).shape == (3, 1, 2)


@pytest.mark.parametrize(
    "interface, message",
    [
        (dict(shape=(3,), typestr="<i8", data=(64, False)), "typestr '<i8'"),
        (dict(shape=(3, 4), typestr="<f8", data=(64, False), strides=(8, 24)), "C-contiguous"),
        (dict(shape=(3,), typestr="<f8", data=(0, False)), "null pointer"),
        (dict(shape=(3,), typestr="<f8", data=(64, False), version=1), "version 1"),
        (dict(shape=(3,), typestr="<f8", data=(64, False), mask=object()), "masked"),
        (dict(shape=(3,), typestr="<f8"), "no 'data'"),
    ],
)
def test_bad_device_arrays_are_named(interface, message):
    fake = FakeCudaArray(**interface)
    with pytest.raises(fg.FusegradError, match=message) as info:
        device_view("weights", fake)
    assert "'weights'" in str(info.value)


def test_an_interface_that_raises_is_reported_with_the_argument():
    class RequiresGrad:  # what a PyTorch CUDA tensor with requires_grad=True does
        @property
        def __cuda_array_interface__(self):
            raise RuntimeError("Can't get __cuda_array_interface__ on Variable that requires grad")

    with pytest.raises(fg.FusegradError, match="argument 'w': reading its __cuda_array_inter"):
        device_view("w", RequiresGrad())


def test_numpy_arrays_and_cpu_dlpack_take_the_host_path():
    x = np.ones(3)
    assert device_view("x", x) is None  # numpy has __dlpack__, on the CPU

    class CpuTensor:
        def __dlpack__(self, stream=None):
            return x.__dlpack__()

        def __dlpack_device__(self):
            return x.__dlpack_device__()

    assert device_view("x", CpuTensor()) is None


def test_dlpack_tensor_is_parsed_without_a_copy():
    x = np.arange(6.0).reshape(2, 3)

    class CudaTensor:  # numpy's capsule, claiming to be on a CUDA device
        def __dlpack__(self, stream=None):
            return x.__dlpack__()

        def __dlpack_device__(self):
            return (arrays.KDL_CUDA, 0)

    view = device_view("X", CudaTensor())
    assert view.pointer == x.ctypes.data
    assert view.shape == (2, 3) and view.dtype == np.float64


def test_dlpack_non_contiguous_and_other_devices_are_errors():
    x = np.arange(12.0).reshape(3, 4)[:, ::2]

    class Tensor:
        def __init__(self, device):
            self.device = device

        def __dlpack__(self, stream=None):
            return x.__dlpack__()

        def __dlpack_device__(self):
            return (self.device, 0)

    with pytest.raises(fg.FusegradError, match="'X'.*C-contiguous"):
        device_view("X", Tensor(arrays.KDL_CUDA))
    with pytest.raises(fg.FusegradError, match="'X' is a DLPack tensor on ROCm"):
        device_view("X", Tensor(10))


class HostMemoryDevice:
    """The device protocol's memory half on host memory (for DeviceArray alone)."""

    def __init__(self):
        self.buffers = {}

    def alloc(self, nbytes):
        buffer = np.empty(max(nbytes, 1), np.uint8)
        self.buffers[buffer.ctypes.data] = buffer
        return buffer.ctypes.data

    def free(self, pointer):
        del self.buffers[pointer]

    def upload(self, pointer, array):
        self.buffers[pointer][: array.nbytes] = array.reshape(-1).view(np.uint8)

    def download(self, array, pointer):
        array.reshape(-1).view(np.uint8)[:] = self.buffers[pointer][: array.nbytes]

    def synchronize(self):
        pass


def test_device_array_round_trip_interface_and_free():
    device = HostMemoryDevice()
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    d = DeviceArray.from_host(device, x)
    assert (d.shape, d.dtype, d.ndim, d.size, len(d)) == ((2, 3), np.float32, 2, 6, 2)
    np.testing.assert_array_equal(d.get(), x)
    np.testing.assert_array_equal(np.asarray(d), x)
    view = device_view("x", d)  # a DeviceArray is itself a device input
    assert (view.pointer, view.shape, view.dtype) == (d.pointer, (2, 3), np.float32)
    del d, view
    assert device.buffers == {}
    with pytest.raises(fg.DTypeError, match="float32 or float64"):
        DeviceArray.from_host(device, np.arange(3))


# -- target="cuda" -------------------------------------------------------------------------


def test_unknown_target_is_a_clear_error():
    with pytest.raises(fg.FusegradError, match="target must be one of"):
        fg.compile(lambda x: x, target="tpu")
    with pytest.raises(fg.FusegradError, match="'metal'"):
        fg.compile_grad(target="metal")


def test_target_cpu_is_the_default_compiled_function():
    f = fg.compile(lambda x: x * 2)
    assert type(f) is fg.CompiledFunction and f.target == "cpu"
    g = fg.compile(f, target="cuda")
    assert g.target == "cuda" and g.fn is f.fn
    assert "target='cuda'" in repr(g)


def test_bad_device_kind_is_named(monkeypatch):
    from fusegrad.runtime.cuda import launcher

    monkeypatch.setenv(launcher.DEVICE_ENV, "tpu")
    with pytest.raises(fg.FusegradError, match="FUSEGRAD_CUDA_DEVICE='tpu'"):
        launcher.default_device()


# -- the launcher alone: a stand-in renderer and executor on host memory -------------------


def _fake_render(program):
    return types.SimpleNamespace(
        name=program.name, source="// stand-in", dims=program.dims, inputs=program.inputs,
        outputs=program.outputs, scratch=[], steps=[],
    )  # fmt: skip


def _fake_execute(device, cuda, dims, inputs, outputs):
    """What `f(x) = (2 x, sum(x))` computes, on the device's host memory."""
    x_buffer = cuda.inputs[0]
    dtype = np.dtype(x_buffer.dtype)
    n = dims[x_buffer.shape[0].name]
    x = device.buffers[inputs[x_buffer.name]][: n * dtype.itemsize].view(dtype)
    twice = device.buffers[outputs[cuda.outputs[0].name]][: n * dtype.itemsize].view(dtype)
    total = device.buffers[outputs[cuda.outputs[1].name]][: dtype.itemsize].view(dtype)
    twice[:] = 2 * x
    total[0] = x.sum()
    device.executed += 1


@pytest.fixture
def stand_in_backend(monkeypatch):
    from fusegrad.runtime.cuda import launcher

    device = HostMemoryDevice()
    device.executed = 0
    monkeypatch.setitem(
        sys.modules,
        "fusegrad.compiler.cuda.render",
        types.SimpleNamespace(render_cuda=_fake_render),
    )
    monkeypatch.setitem(
        sys.modules, "fusegrad.runtime.cuda.execute", types.SimpleNamespace(execute=_fake_execute)
    )
    monkeypatch.setattr(launcher, "default_device", lambda: device)
    monkeypatch.setattr(launcher, "_kernels", {})
    return device


def test_host_arrays_in_numpy_out_and_device_memory_freed(stand_in_backend):
    f = fg.compile(lambda x: (x * 2, np.sum(x)), target="cuda")
    twice, total = f(np.arange(4.0))
    np.testing.assert_array_equal(twice, [0.0, 2.0, 4.0, 6.0])
    assert type(twice) is np.ndarray and total == 6.0 and np.ndim(total) == 0
    assert stand_in_backend.buffers == {}  # inputs and outputs freed after the copy back
    f(np.arange(3.0))  # another size: the same specialization
    assert f.cache_size == 1 and stand_in_backend.executed == 2


def test_device_arrays_in_device_arrays_out(stand_in_backend):
    f = fg.compile(lambda x: (x * 2, np.sum(x)), target="cuda")
    x = DeviceArray.from_host(stand_in_backend, np.arange(5, dtype=np.float32))
    twice, total = f(x)
    assert isinstance(twice, DeviceArray) and twice.dtype == np.float32
    np.testing.assert_array_equal(twice.get(), [0, 2, 4, 6, 8])
    assert total.shape == () and float(np.asarray(total)) == 10.0
    again, _ = f(twice)  # an output is an input of the next call, with no copy
    np.testing.assert_array_equal(again.get(), [0, 4, 8, 12, 16])


def test_device_array_dtype_and_shape_errors_name_the_argument(stand_in_backend):
    f = fg.compile(lambda x, y: (x * y, np.sum(x)), target="cuda")
    x = DeviceArray.from_host(stand_in_backend, np.ones(3))
    with pytest.raises(fg.ShapeError, match="'y'"):
        f(x, np.ones(4))
    g = fg.compile(lambda x: (x * 2, np.sum(x)), target="cuda")
    bad = FakeCudaArray(shape=(3,), typestr="<i4", data=(64, False))
    with pytest.raises(fg.DTypeError, match="'x'"):
        g(bad)
    with pytest.raises(TypeError, match="missing"):
        g()


def test_cuda_source_shows_the_rendered_program(stand_in_backend):
    f = fg.compile(lambda x: (x * 2, np.sum(x)), target="cuda")
    assert f.cuda_source(np.ones(3)) == "// stand-in"
    cpu = fg.compile(lambda x: (x * 2, np.sum(x)))
    assert cpu.cuda_source(np.ones(3)) == "// stand-in"  # rendering needs no GPU


# -- on a real GPU (bench/gpu.sh runs these) ---------------------------------------------------


@gpu
def test_gpu_launches_an_nvrtc_kernel():
    from fusegrad.runtime.cuda.device import CudaDevice

    device = CudaDevice()

    class Program:
        name, source, dims = "scale", KERNEL, ["n"]

    x = np.linspace(-1.0, 1.0, 1000)
    y = np.empty_like(x)
    pointers = [device.alloc(x.nbytes), device.alloc(y.nbytes)]
    device.upload(pointers[0], x)
    module = device.load(Program)
    device.launch(module, Launch("scale", 4, 256, 0, ("n", "x", "y")), 4, [1000, *pointers])
    device.synchronize()
    device.download(y, pointers[1])
    for pointer in pointers:
        device.free(pointer)
    np.testing.assert_allclose(y, 2.0 * np.exp(x), rtol=1e-15)


@gpu
def test_gpu_logistic_gradient_equals_the_cpu_path():
    def loss(w, X, y):
        return np.sum(np.log1p(np.exp(-y * (X @ w))))

    rng = np.random.default_rng(0)
    w, X = rng.standard_normal(16), rng.standard_normal((3000, 16))
    y = np.sign(rng.standard_normal(3000))
    value, grad = fg.compile_grad(loss, target="cuda")(w, X, y)
    value_cpu, grad_cpu = fg.compile_grad(loss)(w, X, y)
    np.testing.assert_allclose(value, value_cpu, rtol=1e-12)
    np.testing.assert_allclose(grad, grad_cpu, rtol=1e-12, atol=1e-12)


# -- target="cuda" end to end on the CPU-emulated device (runtime/cuda/emulate.py) ----------


@pytest.fixture
def emulated(monkeypatch):
    pytest.importorskip("fusegrad.compiler.cuda.render")
    pytest.importorskip("fusegrad.runtime.cuda.emulate")
    if shutil.which("g++") is None:
        pytest.skip("the emulated device needs g++")
    monkeypatch.setenv("FUSEGRAD_CUDA_DEVICE", "emulate")


def logistic(w, X, y):
    return np.sum(np.log1p(np.exp(-y * (X @ w))))


def chain(x):
    return np.sum(np.tanh(x) * np.exp(-x * x) + np.log1p(x * x))


def test_emulated_logistic_value_and_gradient_equal_the_cpu_path(emulated):
    rng = np.random.default_rng(1)
    w, X = rng.standard_normal(7), rng.standard_normal((300, 7))
    y = np.sign(rng.standard_normal(300))
    value, grad = fg.compile_grad(logistic, target="cuda")(w, X, y)
    value_cpu, grad_cpu = fg.compile_grad(logistic)(w, X, y)
    np.testing.assert_allclose(value, value_cpu, rtol=1e-12)
    np.testing.assert_allclose(grad, grad_cpu, rtol=1e-12, atol=1e-12)


def test_emulated_w2_chain_equals_the_cpu_path(emulated):
    x = np.random.default_rng(2).standard_normal(5000)
    value, grad = fg.compile_grad(chain, target="cuda")(x)
    value_cpu, grad_cpu = fg.compile_grad(chain)(x)
    np.testing.assert_allclose(value, value_cpu, rtol=1e-12)
    np.testing.assert_allclose(grad, grad_cpu, rtol=1e-12, atol=1e-12)


def test_emulated_device_arrays_stay_on_the_device(emulated):
    from fusegrad.runtime.cuda import launcher

    x = np.random.default_rng(3).standard_normal(100).astype(np.float32)
    value, grad = fg.compile_grad(chain, target="cuda")(launcher.to_device(x))
    assert isinstance(grad, DeviceArray) and grad.dtype == np.float32
    value_cpu, grad_cpu = fg.compile_grad(chain)(x)
    np.testing.assert_allclose(np.asarray(value), value_cpu, rtol=1e-5)
    np.testing.assert_allclose(grad.get(), grad_cpu, rtol=1e-5, atol=1e-6)


# -- bench/gpu.sh and bench/gpu.py ------------------------------------------------------------

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_gpu_script_parses_and_documents_its_options():
    if shutil.which("bash") is not None:
        subprocess.run(["bash", "-n", str(BENCH / "gpu.sh")], check=True)
    command = [sys.executable, str(BENCH / "gpu.py"), "--help"]
    usage = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "--dry-run" in usage.stdout and "--output" in usage.stdout


def test_gpu_benchmark_dry_run_on_the_emulated_device(emulated, tmp_path):
    output = tmp_path / "gpu.md"
    subprocess.run(
        [sys.executable, str(BENCH / "gpu.py"), "--dry-run", "--without", "PyTorch,JAX",
         "--output", str(output)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    table = output.read_text()
    assert table.count("| fusegrad cuda |") == 4 and "GB/s" in table
