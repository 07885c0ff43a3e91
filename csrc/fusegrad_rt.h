/*
 * fusegrad_rt.h -- the small C runtime that fusegrad's generated kernels call.
 *
 * Built into the Python extension fusegrad.runtime._native (cffi API mode)
 * for JIT use, and compiled into AOT libraries next to the generated code.
 * Plain C99 (+ pthreads for the thread pool of fg_parallel_for).
 */
#ifndef FUSEGRAD_RT_H
#define FUSEGRAD_RT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ABI version of this runtime; bump when a signature or behaviour changes. */
#define FG_RUNTIME_ABI_VERSION 3

/* Alignment (bytes) of every block returned by fg_alloc. */
#define FG_ALLOC_ALIGNMENT 64

/* Blocks from this size on are large: 2 MiB-aligned, offered to huge pages and,
 * in the JIT build, kept per thread after fg_free (see fusegrad_rt.c). The C
 * binder takes outputs of this size from fg_alloc for the same reason. */
#define FG_LARGE_BLOCK ((int64_t)4 << 20)

/* Status codes returned by generated entry points (see fg_strerror). */
#define FG_OK                0
#define FG_ERR_NEGATIVE_DIM  1
#define FG_ERR_NO_MEMORY     2
#define FG_ERR_INCONSISTENT  3
#define FG_ERR_BLAS_DIMS 4 /* a matrix dim exceeds the 32-bit ints of the BLAS */

/* 64-byte aligned allocation. Returns NULL for a negative size or when out of
 * memory; a size of 0 returns a valid minimal block (never NULL). Release
 * with fg_free. */
void *fg_alloc(int64_t nbytes);

/* Release a block from fg_alloc. fg_free(NULL) does nothing. In the JIT build
 * a thread keeps a few large blocks (>= 4 MiB, 256 MiB in all) and a few smaller
 * ones (16 MiB in all) for its next fg_alloc instead of returning them to the
 * system; AOT libraries (built with FG_NO_BLOCK_CACHE) free every block. */
void fg_free(void *p);

/* Free the blocks the calling thread keeps; the number of bytes freed
 * (always 0 without the block cache). */
int64_t fg_release_blocks(void);

/* Static, human-readable message for a status code (never NULL). */
const char *fg_strerror(int status);

/* Returns FG_RUNTIME_ABI_VERSION. */
int fg_runtime_abi_version(void);

/* -- thread pool (fusegrad_pool.c) ---------------------------------------- */

/* The body of a parallel loop: runs iterations [begin, end) of it. */
typedef void (*fg_parallel_body)(void *ctx, int64_t begin, int64_t end);

/* Run body over [0, n) and return when every iteration is done.
 * n <= 0: nothing runs. n <= grain, or one thread configured: body(ctx, 0, n)
 * on the calling thread. Otherwise [0, n) is cut into at most
 * fg_get_num_threads() contiguous blocks of at least `grain` iterations each
 * (grain < 1 counts as 1), run by a persistent pthread pool (created lazily);
 * the calling thread runs the first block, and any block no worker has
 * started by the time it is done. The pool serves one call at a
 * time: a call that finds it busy (a concurrent call from another thread, or
 * a call from inside a body) runs its whole range on the calling thread.
 * Thread-safe. Bodies must not depend on how [0, n) is cut. */
void fg_parallel_for(int64_t n, int64_t grain, fg_parallel_body body, void *ctx);

/* Thread count for later fg_parallel_for calls (clamped to 1..1024); the
 * default is $FUSEGRAD_NUM_THREADS, else the number of online CPUs. */
void fg_set_num_threads(int n);
int fg_get_num_threads(void);

/* -- matrix products on the pool (fusegrad_products.c) ---------------------- */

/* Element types of the products, as bytes per element. */
#define FG_FLOAT64 8
#define FG_FLOAT32 4

/* C (m x n) = op(A) op(B), all C-contiguous row-major; op(A) is m x k (A stored
 * k x m when trans_a), op(B) k x n (B stored n x k when trans_b). `gemm` is the
 * row-major cblas_dgemm (item FG_FLOAT64) or cblas_sgemm (FG_FLOAT32), called
 * once per piece of the product (bands of C, or parts of k whose partial
 * products are summed in part order) from fg_parallel_for; the pieces depend on
 * m, n and k only, so the result has the same bits for any thread count. The
 * BLAS should run one thread of its own (OPENBLAS_NUM_THREADS=1). Dims fit in
 * int (the caller checks). */
void fg_gemm(int item, void (*gemm)(void), int trans_a, int trans_b, int64_t m, int64_t n,
             int64_t k, const void *a, const void *b, void *c);

/* C (n x n) = A^T B for A, B (k x n) whose product is known to be symmetric
 * (A = diag(s) B): lower triangles by cblas_?gemmt per part of k (or bands of
 * the full product by cblas_?gemm when k < 4 n), mirrored: C is exactly
 * symmetric. */
void fg_symmetric_product(int item, void (*gemm)(void), void (*gemmt)(void), int64_t n,
                          int64_t k, const void *a, const void *b, void *c);

/* C (n x n) = alpha A^T A for A (k x n), by cblas_?syrk per part of k (or gemm bands
 * when k < 4 n), mirrored. */
void fg_gram(int item, void (*gemm)(void), void (*syrk)(void), int64_t n, int64_t k,
             double alpha, const void *a, void *c);

/* C (n x n) = (s ⊙ B)^T B (gram = 0: cblas_?gemmt) or gram · (s ⊙ B)^T (s ⊙ B)
 * (gram = ±1: cblas_?syrk) for B (k x n) and row scales s (k): the scaled rows are
 * made a block at a time, in cache, and never stored whole (but for k < 4 n, where
 * they are, for gemm bands). With gram = 0 and scales that turn out to be of one
 * sign, the product is made the gram way with √|s|. Parts of k as in
 * fg_symmetric_product, mirrored. Returns FG_OK, or FG_ERR_NO_MEMORY when the
 * blocks cannot be allocated. */
int fg_row_scaled_product(int item, void (*gemm)(void), void (*gemmt)(void),
                          void (*syrk)(void), int gram, int64_t n, int64_t k, const void *b,
                          const void *scale, void *c);

/* Internal to the runtime (fusegrad_gram.c): whether the AVX-512 Gram tiles run
 * here, and U (n x n, its upper triangle, leading dimension n) += A^T B over k
 * rows of A and B (leading dimension ld); n a multiple of 16. The pack copies
 * rows (times their scales) into blocks of leading dimension ld, zero past n. */
int fg_gram_kernel_available(void);
void fg_gram_pack_f64(double *block, const double *a, int64_t rows, int64_t n, int64_t ld,
                      const double *scale);
void fg_gram_tiles_f64(int64_t n, int64_t k, const double *a, const double *b, int64_t ld,
                       double *u, const void *next, int64_t next_bytes);

#ifdef __cplusplus
}
#endif

#endif /* FUSEGRAD_RT_H */
