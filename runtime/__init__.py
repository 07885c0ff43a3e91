"""fusegrad.runtime: loading and calling compiled kernels (cffi), BLAS, CUDA, cache, AOT."""
