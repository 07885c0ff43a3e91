"""OpenBLAS for matrix–matrix products, from the `scipy-openblas32` wheel.

The library is loaded once (cffi ABI mode) and the addresses of its row-major
CBLAS entry points are handed to the JIT; a kernel passes them to the C runtime's
product functions, which call them. Its symbols carry the wheel's prefix:
`scipy_cblas_dgemm`. Dims are 32-bit ints in this build; the kernels check that
they fit.

OpenBLAS is set to one thread: fusegrad runs the products on its own pool, one
single-threaded BLAS call per piece of a product (csrc/fusegrad_products.c), so
one pool has the cores and no second pool spins between fusegrad's loops. (This
library is fusegrad's own copy of OpenBLAS; NumPy's is another and keeps its
threads.)
"""

from __future__ import annotations

import os
import threading

import cffi

from ..compiler.llvm.render import BLAS_SYMBOLS

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
    void scipy_cblas_dsyrk(int order, int uplo, int trans, int n, int k, double alpha,
                           const double *a, int lda, double beta, double *c, int ldc);
    void scipy_cblas_ssyrk(int order, int uplo, int trans, int n, int k, float alpha,
                           const float *a, int lda, float beta, float *c, int ldc);
    void scipy_openblas_set_num_threads(int n);
    int scipy_openblas_get_num_threads(void);
    """
)
_lock = threading.Lock()
_library = None
_missing = None


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
        # fusegrad's pool runs the products (see the module doc)
        _library.scipy_openblas_set_num_threads(1)
        return _library


def available() -> bool:
    return _load() is not None


def symbol_addresses() -> dict[str, int]:
    """Addresses of the BLAS entry points, for `llvmlite.binding.add_symbol`."""
    library = _load()
    if library is None:
        return {}
    return {
        name: int(_ffi.cast("uintptr_t", _ffi.addressof(library, name)))
        for table in BLAS_SYMBOLS.values()  # gemm; gemmt (OpenBLAS ≥ 0.3.20); syrk
        for name in table.values()
    }


def get_num_threads() -> int:
    """OpenBLAS's own thread count (1 once fusegrad has loaded it)."""
    library = _load()
    return int(library.scipy_openblas_get_num_threads()) if library is not None else 1
