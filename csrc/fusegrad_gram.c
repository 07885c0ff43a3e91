/*
 * fusegrad_gram.c -- the rank-k update of a small symmetric matrix, C += Aᵀ B, as
 * register tiles in AVX-512 (float64), for the Hessians Xᵀ diag(s) X of models
 * with a few dozen to a hundred parameters.
 *
 * Why: OpenBLAS's dsyrk reaches ~22 GFLOP/s of useful work per core at n = 64
 * (its blocking is made for large n), against ~50 for a large dgemm on the same
 * core. These tiles do ~31 (10,000 × 64 per core, measured on the AMD EPYC of
 * bench/RESULTS.md), which is most of what a logistic-regression Newton step costs.
 *
 * Tiles: C's upper triangle in 16 × 8 blocks, U[j0 + jj][i0 + ii] for ii < 16,
 * jj < 8, kept in 16 zmm registers while the k rows stream by:
 *
 *     for each row r:  a0 = A[r, i0 : i0+8], a1 = A[r, i0+8 : i0+16]   (loads)
 *                      for jj < 8: b = B[r, j0 + jj]                     (broadcast)
 *                                  acc0[jj] += a0 · b;  acc1[jj] += a1 · b
 *
 * Operands are packed by the caller into blocks of rows with a padded leading
 * dimension (a multiple of 16, zero columns past n), so tiles need no edge cases.
 *
 * Built only where FG_SIMD_KERNELS is defined (the JIT's runtime, compiled with
 * GCC or Clang for x86-64) and run only where the CPU has AVX-512F
 * (fg_gram_kernel_available); everything else takes the BLAS.
 */
#include "fusegrad_rt.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(FG_SIMD_KERNELS) && defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FG_HAVE_GRAM_KERNEL 1
#endif

#ifdef FG_HAVE_GRAM_KERNEL
#include <immintrin.h>

/* explicit FMAs: ISO C mode (-std=c99) contracts no a·b + c by itself */
/* One cache line of [*next, end) per row of the tile, towards L2 (see fg_gram_tiles_f64). */
#define PREFETCH_LINE(next, end)                                                       \
    do {                                                                               \
        if ((next) < (end)) {                                                          \
            _mm_prefetch((next), _MM_HINT_T1);                                         \
            (next) += 64;                                                              \
        }                                                                              \
    } while (0)

__attribute__((target("avx512f"))) static void tile_16x8(int64_t k, const double *a,
                                                         const double *b, int64_t ld,
                                                         double *u, int64_t ldu,
                                                         const char *next, const char *end)
{
    __m512d acc0[8], acc1[8];
#pragma GCC unroll 8
    for (int jj = 0; jj < 8; jj++) {
        acc0[jj] = _mm512_setzero_pd();
        acc1[jj] = _mm512_setzero_pd();
    }
    for (int64_t r = 0; r < k; r++, a += ld, b += ld) {
        PREFETCH_LINE(next, end);
        __m512d a0 = _mm512_loadu_pd(a), a1 = _mm512_loadu_pd(a + 8);
#pragma GCC unroll 8
        for (int jj = 0; jj < 8; jj++) {
            __m512d bj = _mm512_set1_pd(b[jj]);
            acc0[jj] = _mm512_fmadd_pd(a0, bj, acc0[jj]);
            acc1[jj] = _mm512_fmadd_pd(a1, bj, acc1[jj]);
        }
    }
#pragma GCC unroll 8
    for (int jj = 0; jj < 8; jj++) {
        double *row = u + jj * ldu;
        _mm512_storeu_pd(row, _mm512_add_pd(_mm512_loadu_pd(row), acc0[jj]));
        _mm512_storeu_pd(row + 8, _mm512_add_pd(_mm512_loadu_pd(row + 8), acc1[jj]));
    }
}

/* the right half of a diagonal tile, an 8 × 8 block on the diagonal: its left half
 * (columns i0 .. i0+7 of rows j0 = i0+8 .. i0+15) lies wholly below the diagonal */
__attribute__((target("avx512f"))) static void tile_8x8(int64_t k, const double *a,
                                                        const double *b, int64_t ld,
                                                        double *u, int64_t ldu,
                                                        const char *next, const char *end)
{
    __m512d acc[8];
#pragma GCC unroll 8
    for (int jj = 0; jj < 8; jj++)
        acc[jj] = _mm512_setzero_pd();
    for (int64_t r = 0; r < k; r++, a += ld, b += ld) {
        PREFETCH_LINE(next, end);
        __m512d a0 = _mm512_loadu_pd(a);
#pragma GCC unroll 8
        for (int jj = 0; jj < 8; jj++)
            acc[jj] = _mm512_fmadd_pd(a0, _mm512_set1_pd(b[jj]), acc[jj]);
    }
#pragma GCC unroll 8
    for (int jj = 0; jj < 8; jj++) {
        double *row = u + jj * ldu;
        _mm512_storeu_pd(row, _mm512_add_pd(_mm512_loadu_pd(row), acc[jj]));
    }
}

__attribute__((target("avx512f"))) void fg_gram_tiles_f64(int64_t n, int64_t k,
                                                          const double *a, const double *b,
                                                          int64_t ld, double *u,
                                                          const void *next, int64_t next_bytes)
{
    /* the upper triangle of U (n x n, leading dimension n; n a multiple of 16):
     * row block j0 of 8, column block i0 of 16, every tile with j0 < i0 + 16; the
     * last of each column block (j0 = i0 + 8) computes its right half only (at
     * n = 64, 18 tiles' work instead of 20).
     * [next, next + next_bytes): what the caller packs next (the next block of rows
     * of its matrix), prefetched into L2 a line per row of each tile while the tiles
     * compute, so that the packing reads cache instead of memory. */
    int64_t tiles = 0;
    for (int64_t i0 = 0; i0 < n; i0 += 16)
        tiles += (i0 + 16) / 8;
    int64_t share = next ? (next_bytes / tiles + 63) / 64 * 64 : 0; /* per tile, in lines */
    const char *from = (const char *)next, *end = from + (next ? next_bytes : 0);
    for (int64_t i0 = 0; i0 < n; i0 += 16) {
        for (int64_t j0 = 0; j0 < i0 + 8; j0 += 8, from += share)
            tile_16x8(k, a + i0, b + j0, ld, u + j0 * n + i0, n, from,
                      from + share < end ? from + share : end);
        int64_t j0 = i0 + 8;
        tile_8x8(k, a + i0 + 8, b + j0, ld, u + j0 * n + i0 + 8, n, from,
                 from + share < end ? from + share : end);
        from += share;
    }
}

__attribute__((target("avx512f"))) void fg_gram_pack_f64(double *block, const double *a,
                                                         int64_t rows, int64_t n, int64_t ld,
                                                         const double *scale)
{
    /* rows of a (leading dimension n), each times scale[r] when scale is given, into
     * block (leading dimension ld, a multiple of 8 and >= n) with zeros past n: the
     * operands of the tiles. Vector code by hand: -O2 leaves the scalar loop scalar. */
    for (int64_t r = 0; r < rows; r++) {
        const double *from = a + r * n;
        double *to = block + r * ld;
        __m512d factor = _mm512_set1_pd(scale != NULL ? scale[r] : 1.0);
        for (int64_t j = 0; j < ld; j += 8) {
            int64_t left = n - j;
            __mmask8 mask = left >= 8 ? 0xFF : left <= 0 ? 0 : (__mmask8)((1u << left) - 1);
            __m512d v = _mm512_maskz_loadu_pd(mask, from + j);
            _mm512_storeu_pd(to + j, scale != NULL ? _mm512_mul_pd(v, factor) : v);
        }
    }
}

int fg_gram_kernel_available(void)
{
    static int known = -1; /* the CPU's answer, asked once (every thread gets the same) */
    int value = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (value < 0) {
        const char *setting = getenv("FUSEGRAD_GRAM_TILES"); /* "0": always the BLAS */
        __builtin_cpu_init();
        value = __builtin_cpu_supports("avx512f") && !(setting && strcmp(setting, "0") == 0);
        __atomic_store_n(&known, value, __ATOMIC_RELAXED);
    }
    return value;
}
#else
void fg_gram_tiles_f64(int64_t n, int64_t k, const double *a, const double *b, int64_t ld,
                       double *u, const void *next, int64_t next_bytes)
{
    (void)n, (void)k, (void)a, (void)b, (void)ld, (void)u, (void)next, (void)next_bytes;
}

void fg_gram_pack_f64(double *block, const double *a, int64_t rows, int64_t n, int64_t ld,
                      const double *scale)
{
    (void)block, (void)a, (void)rows, (void)n, (void)ld, (void)scale;
}

int fg_gram_kernel_available(void)
{
    return 0;
}
#endif
