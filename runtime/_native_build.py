"""cffi API-mode builder for ``fusegrad.runtime._native`` (the C runtime in csrc/).

Used by setup.py through ``cffi_modules=["runtime/_native_build.py:ffibuilder"]``;
setuptools runs it from the project root under both ``pip install .`` and
``pip install -e .``.  To rebuild the extension after editing csrc/, rerun
``pip install -e .``.
"""

import os

import cffi

# Paths are relative to the project root (the directory of setup.py), which is
# the working directory while setuptools builds.  setuptools wants relative
# source paths; os.path.relpath keeps them correct if run from elsewhere.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CSRC = os.path.relpath(os.path.join(_ROOT, "csrc"))

CDEF = """
#define FG_OK ...
#define FG_ERR_NEGATIVE_DIM ...
#define FG_ERR_NO_MEMORY ...
#define FG_ERR_INCONSISTENT ...

void *fg_alloc(int64_t nbytes);
void fg_free(void *p);
int64_t fg_release_blocks(void);
const char *fg_strerror(int status);
int fg_runtime_abi_version(void);

typedef void (*fg_parallel_body)(void *ctx, int64_t begin, int64_t end);
void fg_parallel_for(int64_t n, int64_t grain, fg_parallel_body body, void *ctx);
void fg_set_num_threads(int n);
int fg_get_num_threads(void);

void fg_gemm(int item, void (*gemm)(void), int trans_a, int trans_b, int64_t m, int64_t n,
             int64_t k, const void *a, const void *b, void *c);
void fg_symmetric_product(int item, void (*gemm)(void), void (*gemmt)(void), int64_t n,
                          int64_t k, const void *a, const void *b, void *c);
void fg_gram(int item, void (*gemm)(void), void (*syrk)(void), int64_t n, int64_t k,
             double alpha, const void *a, void *c);
int fg_row_scaled_product(int item, void (*gemm)(void), void (*gemmt)(void),
                          void (*syrk)(void), int gram, int64_t n, int64_t k, const void *b,
                          const void *scale, void *c);
int fg_gram_kernel_available(void);
"""

ffibuilder = cffi.FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "fusegrad.runtime._native",
    '#include "fusegrad_rt.h"\n',
    sources=[os.path.join(_CSRC, name)
             for name in ("fusegrad_rt.c", "fusegrad_pool.c", "fusegrad_products.c",
                          "fusegrad_gram.c")],
    include_dirs=[_CSRC],
    depends=[os.path.join(_CSRC, "fusegrad_rt.h")],
    # FG_SIMD_KERNELS: the AVX-512 Gram tiles (csrc/fusegrad_gram.c), chosen at run time
    extra_compile_args=["-O2", "-pthread", "-DFG_SIMD_KERNELS"],
    extra_link_args=["-pthread"],
)

