"""OpenBLAS for matrix–matrix products, from the `scipy-openblas32` wheel.

The library is loaded once (cffi ABI mode) and the addresses of its row-major
CBLAS entry points are handed to the JIT, so a kernel calls `cblas_dgemm`
directly. Its symbols carry the wheel's prefix: `scipy_cblas_dgemm`. Dims are
32-bit ints in this build; the kernels check that they fit.

OpenBLAS runs its own threads; fusegrad calls it only from the entry point's
own thread (never inside a parallel loop), and sets its thread count to
fusegrad's, so the two pools take turns instead of oversubscribing the cores.
"""

from __future__ import annotations

import os
import threading

import cffi

_ffi = cffi.FFI()
_ffi.cdef(
    """
    void scipy_cblas_dgemm(int order, int transa, int transb, int m, int n, int k,
                           double alpha, const double *a, int lda, const double *b, int ldb,
                           double beta, double *c, int ldc);
    void scipy_cblas_sgemm(int order, int transa, int transb, int m, int n, int k,
                           float alpha, const float *a, int lda, const float *b, int ldb,
                           float beta, float *c, int ldc);
    void scipy_cblas_dgemmt(int order, int uplo, int transa, int transb, int n, int k,
                            double alpha, const double *a, int lda, const double *b, int ldb,
                            double beta, double *c, int ldc);
    void scipy_cblas_sgemmt(int order, int uplo, int transa, int transb, int n, int k,
                            float alpha, const float *a, int lda, const float *b, int ldb,
                            float beta, float *c, int ldc);
    void scipy_openblas_set_num_threads(int n);
    int scipy_openblas_get_num_threads(void);
    """
)
_lock = threading.Lock()
_library = None
_missing = None

#: The symbols the generated code may call, as the JIT knows them.
GEMM_SYMBOLS = {"float64": "scipy_cblas_dgemm", "float32": "scipy_cblas_sgemm"}
#: One triangle of a product known to be symmetric (OpenBLAS ≥ 0.3.20).
GEMMT_SYMBOLS = {"float64": "scipy_cblas_dgemmt", "float32": "scipy_cblas_sgemmt"}


def _load():
    global _library, _missing
    with _lock:
        if _library is not None or _missing is not None:
            return _library
        try:
            import scipy_openblas32

            path = os.path.join(scipy_openblas32.get_lib_dir(), f"lib{scipy_openblas32.get_library()}.so")
            _library = _ffi.dlopen(path)
        except (ImportError, OSError) as exc:
            _missing = str(exc)
            return None
        from .native import get_num_threads

        # One thread count for both pools: OpenBLAS runs only between fusegrad's
        # parallel loops, on the same cores.
        _library.scipy_openblas_set_num_threads(get_num_threads())
        return _library


def available() -> bool:
    return _load() is not None


def symbol_addresses() -> dict[str, int]:
    """Addresses of the GEMM and GEMMT entry points, for `llvmlite.binding.add_symbol`."""
    library = _load()
    if library is None:
        return {}
    return {
        name: int(_ffi.cast("uintptr_t", _ffi.addressof(library, name)))
        for name in [*GEMM_SYMBOLS.values(), *GEMMT_SYMBOLS.values()]
    }


def set_num_threads(count: int) -> None:
    library = _load()
    if library is not None:
        library.scipy_openblas_set_num_threads(int(count))


def get_num_threads() -> int:
    library = _load()
    return int(library.scipy_openblas_get_num_threads()) if library is not None else 1
