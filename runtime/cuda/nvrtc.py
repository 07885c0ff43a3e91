"""CUDA C → CUBIN or PTX with NVRTC, loaded through cffi ABI mode at first use.

    cubin = compile_cubin(source, arch="sm_90")    # bytes, for cuModuleLoadData
    ptx = compile_ptx(source, arch="sm_90")        # str (for compute_90)
    version()                                      # (major, minor) of the NVRTC loaded

NVRTC comes from the `nvidia-cuda-nvrtc` wheel (`nvidia/cu13/lib/libnvrtc.so.13`, or
`nvidia/cuda_nvrtc/lib/libnvrtc.so.12` for CUDA 12 wheels), else from a CUDA toolkit
($CUDA_HOME/lib64); `FUSEGRAD_NVRTC=/path/to/libnvrtc.so` overrides the search. Some
wheels need `libnvrtc-builtins.so.*` loaded RTLD_GLOBAL before libnvrtc can find it, so it
is opened first when present.

CUBIN for the device's own arch is preferred over PTX: NVRTC 13.5 writes PTX `.version
9.5`, which an older driver rejects (TOOLCHAIN.md). CUBINs are cached in memory and on
disk (runtime/cache.py) under sha256(source, arch, options, NVRTC version).
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import os
import re
import threading

from ...compiler.errors import CompileError, FusegradError
from .. import cache

_CDEF = """
typedef int nvrtcResult;
typedef struct _nvrtcProgram *nvrtcProgram;
const char *nvrtcGetErrorString(nvrtcResult result);
nvrtcResult nvrtcVersion(int *major, int *minor);
nvrtcResult nvrtcCreateProgram(nvrtcProgram *prog, const char *src, const char *name,
                               int numHeaders, const char * const *headers,
                               const char * const *includeNames);
nvrtcResult nvrtcDestroyProgram(nvrtcProgram *prog);
nvrtcResult nvrtcCompileProgram(nvrtcProgram prog, int numOptions,
                                const char * const *options);
nvrtcResult nvrtcGetPTXSize(nvrtcProgram prog, size_t *ptxSizeRet);
nvrtcResult nvrtcGetPTX(nvrtcProgram prog, char *ptx);
nvrtcResult nvrtcGetCUBINSize(nvrtcProgram prog, size_t *cubinSizeRet);
nvrtcResult nvrtcGetCUBIN(nvrtcProgram prog, char *cubin);
nvrtcResult nvrtcGetProgramLogSize(nvrtcProgram prog, size_t *logSizeRet);
nvrtcResult nvrtcGetProgramLog(nvrtcProgram prog, char *log);
"""

NVRTC_SUCCESS = 0
NVRTC_ERROR_COMPILATION = 6
DEFAULT_OPTIONS = ("--std=c++17", "-default-device")
_ARCH = re.compile(r"^(sm|compute)_(\d{2,3}[a-z]?)$")
_INSTALL_HINT = "pip install nvidia-cuda-nvrtc"

_lock = threading.Lock()
_loaded = None  # (ffi, lib) once opened
_cubins: dict[str, bytes] = {}  # in-memory cache: key → CUBIN

#: Compilations this process ran (misses of both caches), for tests.
stats = {"compiles": 0}


def _candidate_paths() -> list[str]:
    """libnvrtc locations: the installed `nvidia` wheels (newest CUDA first), then a CUDA
    toolkit's lib64 ($CUDA_HOME, $CUDA_PATH, /usr/local/cuda)."""
    patterns = []
    spec = importlib.util.find_spec("nvidia")
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            patterns += [os.path.join(root, "cu13/lib/libnvrtc.so*"),
                         os.path.join(root, "cuda_nvrtc/lib/libnvrtc.so*")]  # fmt: skip
    for variable in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(variable):
            patterns.append(os.path.join(os.environ[variable], "lib64", "libnvrtc.so*"))
    patterns.append("/usr/local/cuda/lib64/libnvrtc.so*")
    found = []
    for pattern in patterns:
        found += sorted(glob.glob(pattern), reverse=True)
    return [path for path in found if "builtins" not in os.path.basename(path)]


def library_path() -> str:
    """The libnvrtc this process opens (FUSEGRAD_NVRTC, else the wheel's)."""
    configured = os.environ.get("FUSEGRAD_NVRTC")
    if configured:
        if not os.path.exists(configured):
            raise FusegradError(
                f"FUSEGRAD_NVRTC={configured!r} does not exist; unset it or point it at "
                f"libnvrtc.so ({_INSTALL_HINT})"
            )
        return configured
    candidates = _candidate_paths()
    if not candidates:
        raise FusegradError(
            "target='cuda' needs NVRTC to compile CUDA C, and none was found: "
            f"{_INSTALL_HINT} (or set FUSEGRAD_NVRTC to a libnvrtc.so)"
        )
    return candidates[0]


def _open():
    """(ffi, lib) for NVRTC, opened once per process."""
    global _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        import cffi

        path = library_path()
        ffi = cffi.FFI()
        ffi.cdef(_CDEF)
        folder = os.path.dirname(path)
        # The builtins library must be resolvable when libnvrtc loads it by soname.
        for builtins in sorted(glob.glob(os.path.join(folder, "libnvrtc-builtins.so*"))):
            try:
                ffi.dlopen(builtins, ffi.RTLD_NOW | ffi.RTLD_GLOBAL)
            except OSError:
                pass
        try:
            lib = ffi.dlopen(path, ffi.RTLD_NOW | ffi.RTLD_GLOBAL)
        except OSError as exc:
            raise FusegradError(f"cannot load NVRTC from {path}: {exc} ({_INSTALL_HINT})")
        _loaded = (ffi, lib)
        return _loaded


def version() -> tuple[int, int]:
    """(major, minor) of the NVRTC this process uses."""
    ffi, lib = _open()
    major, minor = ffi.new("int *"), ffi.new("int *")
    _check(lib, lib.nvrtcVersion(major, minor), "nvrtcVersion")
    return major[0], minor[0]


def _check(lib, result: int, function: str) -> None:
    if result != NVRTC_SUCCESS:
        import cffi

        message = cffi.FFI().string(lib.nvrtcGetErrorString(result)).decode()
        raise CompileError(f"NVRTC {function} failed: {message} (code {result})")


def _normalize_arch(arch: str, kind: str) -> str:
    """'sm_90' / 'compute_90' / '90' → the name for `kind` ('sm' or 'compute')."""
    if not isinstance(arch, str):
        raise FusegradError(f"arch must be a string such as 'sm_90', got {arch!r}")
    digits = arch if arch[:1].isdigit() else None
    match = _ARCH.match(arch)
    if match:
        digits = match.group(2)
    if digits is None or not re.fullmatch(r"\d{2,3}[a-z]?", digits):
        raise FusegradError(f"arch must look like 'sm_90' or 'compute_90', got {arch!r}")
    return f"{kind}_{digits}"


def _compile(source: str, arch: str, name: str, options, want: str) -> bytes:
    """Run NVRTC once; CUBIN or PTX bytes. Errors carry the log and the source lines."""
    if not isinstance(source, str):
        raise FusegradError(f"source must be CUDA C text (str), got {type(source).__name__}")
    ffi, lib = _open()
    program = ffi.new("nvrtcProgram *")
    _check(
        lib,
        lib.nvrtcCreateProgram(program, source.encode(), name.encode(), 0, ffi.NULL, ffi.NULL),
        "nvrtcCreateProgram",
    )
    try:
        encoded = [ffi.new("char[]", option.encode()) for option in options]
        option_array = ffi.new("const char *[]", encoded)
        result = lib.nvrtcCompileProgram(program[0], len(encoded), option_array)
        stats["compiles"] += 1
        if result != NVRTC_SUCCESS:
            log = _program_log(ffi, lib, program[0])
            message = ffi.string(lib.nvrtcGetErrorString(result)).decode()
            raise CompileError(
                f"NVRTC could not compile {name} for {arch} ({message}):\n{log}"
                + _quoted_lines(source, log)
            )
        size = ffi.new("size_t *")
        if want == "cubin":
            _check(lib, lib.nvrtcGetCUBINSize(program[0], size), "nvrtcGetCUBINSize")
            buffer = ffi.new("char[]", size[0])
            _check(lib, lib.nvrtcGetCUBIN(program[0], buffer), "nvrtcGetCUBIN")
        else:
            _check(lib, lib.nvrtcGetPTXSize(program[0], size), "nvrtcGetPTXSize")
            buffer = ffi.new("char[]", size[0])
            _check(lib, lib.nvrtcGetPTX(program[0], buffer), "nvrtcGetPTX")
        return bytes(ffi.buffer(buffer, size[0]))
    finally:
        lib.nvrtcDestroyProgram(program)


def _program_log(ffi, lib, program) -> str:
    size = ffi.new("size_t *")
    if lib.nvrtcGetProgramLogSize(program, size) != NVRTC_SUCCESS or size[0] <= 1:
        return "(NVRTC gave no log)"
    buffer = ffi.new("char[]", size[0])
    lib.nvrtcGetProgramLog(program, buffer)
    return ffi.string(buffer).decode(errors="replace").strip()


def _quoted_lines(source: str, log: str) -> str:
    """The source lines the log points at (`name(LINE): error ...`), numbered."""
    lines = source.splitlines()
    numbers = sorted({int(n) for n in re.findall(r"\((\d+)\): ", log)})
    quoted = [f"{n:5d} | {lines[n - 1]}" for n in numbers if 1 <= n <= len(lines)]
    return "\n\nat:\n" + "\n".join(quoted) if quoted else ""


def _key(source: str, arch: str, options) -> str:
    text = repr(("nvrtc-cubin", version(), arch, tuple(options), source))
    return hashlib.sha256(text.encode()).hexdigest()


def compile_cubin(
    source: str, arch: str = "sm_90", name: str = "fusegrad.cu", options=DEFAULT_OPTIONS
) -> bytes:
    """A CUBIN of `source` for `arch` ('sm_80', 'sm_90', …), cached in memory and on disk."""
    arch = _normalize_arch(arch, "sm")
    options = tuple(options) + (f"--gpu-architecture={arch}",)
    key = _key(source, arch, options)
    cubin = _cubins.get(key)
    if cubin is None:
        cubin = cache.load(key)
    if cubin is None:
        cubin = _compile(source, arch, name, options, "cubin")
        cache.store(key, cubin)
    _cubins[key] = cubin
    return cubin


def compile_ptx(
    source: str, arch: str = "sm_90", name: str = "fusegrad.cu", options=DEFAULT_OPTIONS
) -> str:
    """PTX of `source` for the virtual arch of `arch` ('sm_90' → compute_90); not cached."""
    arch = _normalize_arch(arch, "compute")
    options = tuple(options) + (f"--gpu-architecture={arch}",)
    return _compile(source, arch, name, options, "ptx").rstrip(b"\0").decode()
