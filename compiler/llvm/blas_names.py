"""The BLAS entry points generated code calls, by routine and dtype.

They are the row-major CBLAS functions of the `scipy-openblas32` wheel, whose symbols
carry its prefix (`scipy_cblas_dgemm`). The renderer declares them (render.py) and
generated code passes their addresses to the C runtime's product functions
(csrc/fusegrad_products.c), which call them; the JIT resolves them to the loaded
library (runtime/blas.py), an AOT build links them (fusegrad/aot/build.py). A module
of its own so that the runtime does not import the renderer to learn the names (the
renderer and llvmlite.ir cost ~15 ms to import).
"""

#: What every name starts with (in IR text or a symbol table: the code calls the BLAS).
PREFIX = "scipy_cblas_"
BLAS_SYMBOLS = {
    routine: {"float64": f"{PREFIX}d{routine}", "float32": f"{PREFIX}s{routine}"}
    for routine in ("gemm", "gemmt", "syrk")  # gemmt: OpenBLAS ≥ 0.3.20
}
#: Every name in BLAS_SYMBOLS.
ALL_BLAS_SYMBOLS = frozenset(name for table in BLAS_SYMBOLS.values() for name in table.values())
