"""OpenBLAS for matrix–matrix products, from the `scipy-openblas32` wheel.

The library is loaded once and the addresses of its row-major CBLAS entry points are
handed to the JIT; a kernel passes them to the C runtime's product functions, which
call them. Its symbols carry the wheel's prefix: `scipy_cblas_dgemm`. Dims are 32-bit
ints in this build; the kernels check that they fit. It is loaded with ctypes, which
needs no declarations: this process only takes addresses and sets the thread count
(cffi's ABI mode parsed the prototypes with pycparser, ~20 ms of every process's start).

OpenBLAS is set to one thread: fusegrad runs the products on its own pool, one
single-threaded BLAS call per piece of a product (csrc/fusegrad_products.c), so
one pool has the cores and no second pool spins between fusegrad's loops. (This
library is fusegrad's own copy of OpenBLAS; NumPy's is another and keeps its
threads.)
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import threading

from ..compiler.llvm.blas_names import ALL_BLAS_SYMBOLS

_lock = threading.Lock()
_library = None
_missing = None


def _load():
    global _library, _missing
    with _lock:
        if _library is not None or _missing is not None:
            return _library
        try:
            path = library_path()
            if path is None:
                raise ImportError("scipy-openblas32 is not installed")
            library = ctypes.CDLL(path)
            library.scipy_openblas_set_num_threads.argtypes = [ctypes.c_int]
            library.scipy_openblas_set_num_threads.restype = None
            library.scipy_openblas_get_num_threads.argtypes = []
            library.scipy_openblas_get_num_threads.restype = ctypes.c_int
        except (ImportError, OSError, AttributeError) as exc:
            _missing = str(exc)
            return None
        # fusegrad's pool runs the products (see the module doc)
        library.scipy_openblas_set_num_threads(1)
        _library = library
        return _library


def library_path() -> str | None:
    """The wheel's library file, or None (not installed), found without importing the
    wheel's package, whose `__init__` asks importlib.metadata for its version (15–19 ms
    of a process's start; loading the library itself takes ~1 ms): the wheel keeps it in
    its `lib/` folder as `libscipy_openblas*.so`. Another layout falls back to the
    package's own `get_lib_dir()` and `get_library()`."""
    spec = importlib.util.find_spec("scipy_openblas32")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = os.path.join(list(spec.submodule_search_locations)[0], "lib")
    try:
        names = sorted(n for n in os.listdir(folder)
                       if n.startswith("libscipy_openblas") and ".so" in n)
    except OSError:
        names = []
    if names:
        return os.path.join(folder, names[0])
    try:
        import scipy_openblas32

        path = os.path.join(scipy_openblas32.get_lib_dir(), f"lib{scipy_openblas32.get_library()}.so")
    except (ImportError, AttributeError, OSError, IndexError):
        return None
    return path if os.path.isfile(path) else None


def available() -> bool:
    return _load() is not None


def symbol_addresses() -> dict[str, int]:
    """Addresses of the BLAS entry points, for the JIT (runtime/jit.py). One the library
    lacks (gemmt before OpenBLAS 0.3.20) is left out: a kernel that calls it fails to
    link, with a `CompileError` that names it."""
    library = _load()
    if library is None:
        return {}
    return {
        name: ctypes.cast(getattr(library, name), ctypes.c_void_p).value
        for name in sorted(ALL_BLAS_SYMBOLS)
        if hasattr(library, name)
    }


def get_num_threads() -> int:
    """OpenBLAS's own thread count (1 once fusegrad has loaded it)."""
    library = _load()
    return int(library.scipy_openblas_get_num_threads()) if library is not None else 1
