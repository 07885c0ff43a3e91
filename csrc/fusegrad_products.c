/*
 * fusegrad_products.c -- matrix products run on fusegrad's own thread pool, one
 * single-threaded BLAS call per piece.
 *
 * Plain C99. The BLAS entry points are passed in by the caller (generated code
 * passes the addresses of cblas_?gemm, cblas_?gemmt and cblas_?syrk), so this
 * file links against no BLAS itself.
 *
 * Pieces (fixed by the shape of the product alone, never by the thread count, so
 * a product gives the same bits with 1 thread or 16):
 *
 *   - bands of rows of C, or of columns when C is wider than tall:
 *         C[i0:i1, :] = op(A)[i0:i1, :] · op(B)
 *     each element of C comes from one call that runs over all of k;
 *   - parts of k, when C is small and k long (a Hessian Xᵀ diag(s) X of many rows,
 *     a gradient Xᵀ R):
 *         C_p = op(A)[:, k_p] · op(B)[k_p, :],   C = (C_0 + C_1) + C_2 + …
 *     summed in part order.
 *
 * Symmetric products (C = Bᵀ diag(s) B, or C = ±AᵀA when s has one sign) compute
 * the lower triangle of each part (gemmt, syrk: about half of gemm's work), sum
 * the triangles and mirror them, so C is exactly symmetric. Row-scaled ones
 * (fg_row_scaled_product, C = (s ⊙ B)ᵀ B: a Hessian whose scaled copy of B the
 * compiler no longer stores) scale each part's rows a block at a time as they are
 * packed; scales of one sign make them ±(√|s| ⊙ B)ᵀ(√|s| ⊙ B), one operand. In
 * float64 with 16–128 columns on an AVX-512 CPU the triangles come from the
 * register tiles of fusegrad_gram.c instead of the BLAS.
 *
 * Why not the BLAS's own threads: OpenBLAS splits m and n only, so the 64×64
 * Hessian of 10,000 rows took 1.6 ms on two of its threads against 0.9 ms for two
 * one-thread syrk calls on halves of k; and its threads spin for a while after
 * each call, competing with fusegrad's pool for the same cores. The runtime sets
 * OpenBLAS to one thread (runtime/blas.py); an AOT library's user should do the
 * same (OPENBLAS_NUM_THREADS=1), see the generated header.
 *
 * If the partial sums of a k split cannot be allocated, the product runs as one
 * call on the calling thread instead (correct, slower, other bits).
 */
#include "fusegrad_rt.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* CBLAS enumerations (cblas.h), passed as ints. */
#define ROW_MAJOR 101
#define NO_TRANS 111
#define TRANS 112
#define LOWER 122

/* Below this many multiply-adds a product is one call on the calling thread:
 * waking the pool and packing operands per piece would cost more than it saves. */
#define SERIAL_WORK ((int64_t)1 << 19)
/* Rows (or columns) of C per band at least, and bands at most. */
#define BAND_MIN 64
#define MAX_BANDS 32
/* Rows of k per part at least, parts at most, and the memory their partial sums
 * may take: each part after the first has an m × n partial of its own. */
#define PART_MIN 512
#define MAX_PARTS 8
#define PARTIALS_BYTES ((int64_t)64 << 20)
/* k split when k is this many times the larger side of C, or more. */
#define TALL 4

typedef void (*dgemm_fn)(int, int, int, int, int, int, double, const double *, int,
                         const double *, int, double, double *, int);
typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int,
                         const float *, int, float, float *, int);
typedef void (*dgemmt_fn)(int, int, int, int, int, int, double, const double *, int,
                          const double *, int, double, double *, int);
typedef void (*sgemmt_fn)(int, int, int, int, int, int, float, const float *, int,
                          const float *, int, float, float *, int);
typedef void (*dsyrk_fn)(int, int, int, int, int, double, const double *, int, double,
                         double *, int);
typedef void (*ssyrk_fn)(int, int, int, int, int, float, const float *, int, float,
                         float *, int);

enum kind { GEMM, GEMMT, SYRK };
enum split { WHOLE, ROWS, COLUMNS, PARTS };

typedef struct product {
    enum kind kind;
    int item; /* bytes per element: FG_FLOAT64 or FG_FLOAT32 */
    void (*blas)(void);
    int trans_a, trans_b;
    int64_t m, n, k, lda, ldb;
    double alpha;
    const char *a, *b;
    const char *scale; /* fg_row_scaled_product: A's rows are B's times these, never stored */
    char *c;
    /* the pieces */
    enum split split;
    int64_t step, pieces;
    char *partials; /* PARTS: pieces - 1 partials of m × n */
    int failed;     /* atomic: a row-scaled piece found no memory for its blocks */
} product;

static int64_t at_least_1(int64_t x) { return x > 1 ? x : 1; }

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* c (ldc = n) = alpha · op(a) · op(b) over an m × n × k piece; lower triangle only
 * for GEMMT and SYRK (then m == n). */
static void call_blas(const product *p, int64_t m, int64_t n, int64_t k, const char *a,
                      const char *b, double beta, char *c)
{
    int ta = p->trans_a ? TRANS : NO_TRANS, tb = p->trans_b ? TRANS : NO_TRANS;
    int lda = (int)p->lda, ldb = (int)p->ldb, ldc = (int)at_least_1(p->n);
    if (p->item == FG_FLOAT64) {
        double alpha = p->alpha;
        const double *da = (const double *)a, *db = (const double *)b;
        double *dc = (double *)c;
        if (p->kind == GEMM)
            ((dgemm_fn)p->blas)(ROW_MAJOR, ta, tb, (int)m, (int)n, (int)k, alpha, da, lda, db,
                                ldb, beta, dc, ldc);
        else if (p->kind == GEMMT)
            ((dgemmt_fn)p->blas)(ROW_MAJOR, LOWER, ta, tb, (int)n, (int)k, alpha, da, lda, db,
                                 ldb, beta, dc, ldc);
        else
            ((dsyrk_fn)p->blas)(ROW_MAJOR, LOWER, ta, (int)n, (int)k, alpha, da, lda, beta, dc,
                                ldc);
    } else {
        float alpha = (float)p->alpha;
        const float *fa = (const float *)a, *fb = (const float *)b;
        float *fc = (float *)c;
        if (p->kind == GEMM)
            ((sgemm_fn)p->blas)(ROW_MAJOR, ta, tb, (int)m, (int)n, (int)k, alpha, fa, lda, fb,
                                ldb, (float)beta, fc, ldc);
        else if (p->kind == GEMMT)
            ((sgemmt_fn)p->blas)(ROW_MAJOR, LOWER, ta, tb, (int)n, (int)k, alpha, fa, lda, fb,
                                 ldb, (float)beta, fc, ldc);
        else
            ((ssyrk_fn)p->blas)(ROW_MAJOR, LOWER, ta, (int)n, (int)k, alpha, fa, lda, (float)beta, fc,
                                ldc);
    }
}

/* Address of element (row, col) of a row-major matrix with leading dimension ld. */
static const char *element(const product *p, const char *base, int64_t row, int64_t col,
                           int64_t ld)
{
    return base + (row * ld + col) * p->item;
}

/* Operands of rows [i0, i1) of op(A), columns [j0, j1) of op(B), k range [k0, k1). */
static const char *a_at(const product *p, int64_t i, int64_t kk)
{
    return p->trans_a ? element(p, p->a, kk, i, p->lda) : element(p, p->a, i, kk, p->lda);
}

static const char *b_at(const product *p, int64_t kk, int64_t j)
{
    return p->trans_b ? element(p, p->b, j, kk, p->ldb) : element(p, p->b, kk, j, p->ldb);
}

/* Rows of k per packed block of the Gram tiles, and the largest n they serve (beyond
 * it OpenBLAS's own blocking is efficient, and the padded U would leave the L2). */
#define GRAM_ROWS 256
#define GRAM_MAX_N 128

static int gram_tiles_serve(const product *p)
{
    return p->kind != GEMM && p->item == FG_FLOAT64 && p->n >= 16 && p->n <= GRAM_MAX_N &&
           fg_gram_kernel_available();
}

/* rows of a (k x n, row-major), row r times scale[r], into block (k x n) */
static void scale_rows(const product *p, char *block, const char *a, int64_t rows,
                       const char *scale)
{
    int64_t n = p->n;
    for (int64_t r = 0; r < rows; r++) {
        if (p->item == FG_FLOAT64) {
            double factor = ((const double *)scale)[r], *to = (double *)block + r * n;
            const double *from = (const double *)a + r * n;
            for (int64_t j = 0; j < n; j++)
                to[j] = factor * from[j];
        } else {
            float factor = ((const float *)scale)[r], *to = (float *)block + r * n;
            const float *from = (const float *)a + r * n;
            for (int64_t j = 0; j < n; j++)
                to[j] = factor * from[j];
        }
    }
}

/* The lower triangle of out (n x n) = alpha · Σ over rows [lo, hi) of aᵀ b, by the
 * Gram tiles (fusegrad_gram.c); 0 when their buffers cannot be allocated. */
static int gram_part(const product *p, int64_t lo, int64_t hi, char *out)
{
    int64_t n = p->n, ld = (n + 15) / 16 * 16;
    int same = p->kind == SYRK;
    double *u = fg_alloc(ld * ld * (int64_t)sizeof(double));
    double *block_a = fg_alloc(GRAM_ROWS * ld * (int64_t)sizeof(double));
    double *block_b = same ? block_a : fg_alloc(GRAM_ROWS * ld * (int64_t)sizeof(double));
    const double *a = (const double *)p->a, *b = (const double *)p->b;
    const double *scale = (const double *)p->scale;
    double *c = (double *)out;
    int ok = u != NULL && block_a != NULL && block_b != NULL;

    if (ok) {
        memset(u, 0, (size_t)(ld * ld) * sizeof(double));
        for (int64_t r0 = lo; r0 < hi; r0 += GRAM_ROWS) {
            int64_t rows = hi - r0 < GRAM_ROWS ? hi - r0 : GRAM_ROWS;
            fg_gram_pack_f64(block_a, a + r0 * n, rows, n, ld, scale ? scale + r0 : NULL);
            if (!same)
                fg_gram_pack_f64(block_b, b + r0 * n, rows, n, ld, NULL);
            /* the rows the next pack reads (same: one matrix), prefetched by the tiles */
            int64_t next_rows = hi - (r0 + rows) < GRAM_ROWS ? hi - (r0 + rows) : GRAM_ROWS;
            fg_gram_tiles_f64(ld, rows, block_a, block_b, ld, u,
                              same && next_rows > 0 ? (const void *)(a + (r0 + rows) * n) : NULL,
                              next_rows * n * (int64_t)sizeof(double));
        }
        for (int64_t i = 0; i < n; i++) /* U holds the upper triangle: C[i][j] = U[j][i] */
            for (int64_t j = 0; j <= i; j++)
                c[i * n + j] = p->alpha * u[j * ld + i];
    }
    if (!same)
        fg_free(block_b);
    fg_free(block_a);
    fg_free(u);
    return ok;
}

/* Rows [lo, hi) of a row-scaled product by the BLAS: blocks of scaled rows, their
 * triangles summed into out by beta = 1 (0 for the first); 0 without memory. */
static int scaled_blas_part(const product *p, int64_t lo, int64_t hi, char *out)
{
    char *block = fg_alloc(GRAM_ROWS * p->n * p->item);
    if (block == NULL)
        return 0;
    for (int64_t r0 = lo; r0 < hi; r0 += GRAM_ROWS) {
        int64_t rows = hi - r0 < GRAM_ROWS ? hi - r0 : GRAM_ROWS;
        scale_rows(p, block, a_at(p, 0, r0), rows, p->scale + r0 * p->item);
        /* SYRK reads only its a; GEMMT pairs the scaled rows with b's own */
        call_blas(p, p->m, p->n, rows, block, b_at(p, r0, 0), r0 == lo ? 0.0 : 1.0, out);
    }
    fg_free(block);
    return 1;
}

/* out = the product over rows [lo, hi) of k (a triangle for GEMMT and SYRK); 0 when
 * a row-scaled product finds no memory for its blocks. */
static int part(const product *p, int64_t lo, int64_t hi, char *out)
{
    if (gram_tiles_serve(p) && gram_part(p, lo, hi, out))
        return 1;
    if (p->scale != NULL)
        return scaled_blas_part(p, lo, hi, out);
    call_blas(p, p->m, p->n, hi - lo, a_at(p, 0, lo), b_at(p, lo, 0), 0.0, out);
    return 1;
}

static void run_pieces(void *ctx, int64_t begin, int64_t end)
{
    const product *p = ctx;
    for (int64_t piece = begin; piece < end; ++piece) {
        int64_t lo = piece * p->step, hi = lo + p->step;
        if (p->split == ROWS) {
            hi = hi < p->m ? hi : p->m;
            call_blas(p, hi - lo, p->n, p->k, a_at(p, lo, 0), b_at(p, 0, 0), 0.0,
                      p->c + lo * p->n * p->item);
        } else if (p->split == COLUMNS) {
            hi = hi < p->n ? hi : p->n; /* a band of columns: ldc stays n */
            call_blas(p, p->m, hi - lo, p->k, a_at(p, 0, 0), b_at(p, 0, lo), 0.0,
                      p->c + lo * p->item);
        } else { /* PARTS */
            char *out = piece == 0 ? p->c : p->partials + (piece - 1) * p->m * p->n * p->item;
            hi = hi < p->k ? hi : p->k;
            if (!part(p, lo, hi, out))
                __atomic_store_n(&((product *)ctx)->failed, 1, __ATOMIC_RELAXED);
        }
    }
}

/* C += the partials in part order, rows [begin, end); for a triangle, only its lower
 * part, then mirrored into the upper one. */
static void sum_rows(void *ctx, int64_t begin, int64_t end)
{
    const product *p = ctx;
    int triangle = p->kind != GEMM;
    int64_t n = p->n, plane = p->m * p->n;
    for (int64_t i = begin; i < end; ++i) {
        int64_t width = triangle ? i + 1 : n;
        if (p->item == FG_FLOAT64) {
            double *c = (double *)p->c + i * n;
            const double *partials = (const double *)p->partials + i * n;
            for (int64_t part = 0; part + 1 < p->pieces; ++part)
                for (int64_t j = 0; j < width; ++j)
                    c[j] += partials[part * plane + j];
            if (triangle)
                for (int64_t j = 0; j < i; ++j)
                    ((double *)p->c)[j * n + i] = c[j];
        } else {
            float *c = (float *)p->c + i * n;
            const float *partials = (const float *)p->partials + i * n;
            for (int64_t part = 0; part + 1 < p->pieces; ++part)
                for (int64_t j = 0; j < width; ++j)
                    c[j] += partials[part * plane + j];
            if (triangle)
                for (int64_t j = 0; j < i; ++j)
                    ((float *)p->c)[j * n + i] = c[j];
        }
    }
}

/* Pieces of the product: bands of C, parts of k, or one whole call. */
static void choose_pieces(product *p)
{
    int64_t side = p->m > p->n ? p->m : p->n;
    p->split = WHOLE;
    p->pieces = 1;
    if (p->m * p->n * p->k < SERIAL_WORK)
        return;
    if (p->k >= TALL * side) {
        int64_t parts = p->k / PART_MIN, partial = p->m * p->n * p->item;
        if (parts > MAX_PARTS)
            parts = MAX_PARTS;
        if (partial > 0 && parts - 1 > PARTIALS_BYTES / partial)
            parts = PARTIALS_BYTES / partial + 1;
        if (parts >= 2) {
            p->split = PARTS;
            p->step = ceil_div(p->k, parts);
            p->pieces = ceil_div(p->k, p->step);
        }
        return;
    }
    if (p->kind != GEMM)
        return; /* a wide triangle: see fg_symmetric_product */
    {
        int rows = p->m >= p->n;
        int64_t extent = rows ? p->m : p->n, bands = extent / BAND_MIN;
        if (bands > MAX_BANDS)
            bands = MAX_BANDS;
        if (bands >= 2) {
            p->split = rows ? ROWS : COLUMNS;
            p->step = ceil_div(extent, bands);
            p->pieces = ceil_div(extent, p->step);
        }
    }
}

static void zero(product *p)
{
    memset(p->c, 0, (size_t)(p->m * p->n * p->item));
}

/* Run the product in its pieces; then sum the partials (and mirror a triangle). */
static void run(product *p)
{
    if (p->m == 0 || p->n == 0)
        return;
    if (p->k == 0) {
        zero(p); /* an empty sum, whatever the BLAS would do with k = 0 */
        return;
    }
    choose_pieces(p);
    p->partials = NULL;
    if (p->split == PARTS) {
        p->partials = fg_alloc((p->pieces - 1) * p->m * p->n * p->item);
        if (p->partials == NULL) {
            p->split = WHOLE;
            p->pieces = 1;
        }
    }
    if (p->split == WHOLE)
        p->failed = !part(p, 0, p->k, p->c);
    else
        fg_parallel_for(p->pieces, 1, run_pieces, p);
    if (p->kind != GEMM || p->split == PARTS)
        fg_parallel_for(p->m, 64, sum_rows, p); /* pieces - 1 partials, then the mirror */
    fg_free(p->partials);
    p->partials = NULL;
}

static product make(enum kind kind, int item, void (*blas)(void), int trans_a, int trans_b,
                    int64_t m, int64_t n, int64_t k, double alpha, const void *a, const void *b,
                    void *c)
{
    product p;
    memset(&p, 0, sizeof p);
    p.kind = kind;
    p.item = item;
    p.blas = blas;
    p.trans_a = trans_a;
    p.trans_b = trans_b;
    p.m = m;
    p.n = n;
    p.k = k;
    p.lda = at_least_1(trans_a ? m : k);
    p.ldb = at_least_1(trans_b ? k : n);
    p.alpha = alpha;
    p.a = a;
    p.b = b;
    p.c = c;
    return p;
}

void fg_gemm(int item, void (*gemm)(void), int trans_a, int trans_b, int64_t m, int64_t n,
             int64_t k, const void *a, const void *b, void *c)
{
    product p = make(GEMM, item, gemm, trans_a, trans_b, m, n, k, 1.0, a, b, c);
    run(&p);
}

/* A symmetric product with few rows for its columns: the full product in bands by
 * gemm (parts of k would be few and their partials large), then the lower triangle
 * mirrored. */
static void wide_symmetric(product *p, void (*gemm)(void))
{
    enum kind kind = p->kind;
    p->kind = GEMM;
    p->blas = gemm;
    run(p);
    p->kind = kind; /* sum_rows: no partials, the mirror only */
    p->split = WHOLE;
    p->pieces = 1;
    if (p->n > 0 && p->k > 0)
        fg_parallel_for(p->n, 64, sum_rows, p);
}

void fg_symmetric_product(int item, void (*gemm)(void), void (*gemmt)(void), int64_t n,
                          int64_t k, const void *a, const void *b, void *c)
{
    product p = make(GEMMT, item, gemmt, 1, 0, n, n, k, 1.0, a, b, c);
    if (k < TALL * n)
        wide_symmetric(&p, gemm);
    else
        run(&p);
}

void fg_gram(int item, void (*gemm)(void), void (*syrk)(void), int64_t n, int64_t k,
             double alpha, const void *a, void *c)
{
    product p = make(SYRK, item, syrk, 1, 0, n, n, k, alpha, a, a, c);
    if (k < TALL * n)
        wide_symmetric(&p, gemm);
    else
        run(&p);
}

/* +1 when no scale is negative, -1 when none is positive, 0 otherwise (NaN too) */
static int one_sign(const char *scale, int64_t k, int item)
{
    int64_t negative = 0, positive = 0;
    for (int64_t r = 0; r < k; r++) {
        double v = item == FG_FLOAT64 ? ((const double *)scale)[r] : ((const float *)scale)[r];
        negative += !(v >= 0.0);
        positive += !(v <= 0.0);
    }
    return negative == 0 ? 1 : positive == 0 ? -1 : 0;
}

static void square_roots_of_magnitudes(char *roots, const char *scale, int64_t k, int item)
{
    for (int64_t r = 0; r < k; r++) {
        if (item == FG_FLOAT64)
            ((double *)roots)[r] = sqrt(fabs(((const double *)scale)[r]));
        else
            ((float *)roots)[r] = sqrtf(fabsf(((const float *)scale)[r]));
    }
}

int fg_row_scaled_product(int item, void (*gemm)(void), void (*gemmt)(void),
                          void (*syrk)(void), int gram, int64_t n, int64_t k, const void *b,
                          const void *scale, void *c)
{
    char *roots = NULL;
    product p;

    if (k < TALL * n) { /* the scaled rows stored whole, for the bands of wide_symmetric */
        char *a = fg_alloc(k * n * item);
        if (a == NULL)
            return FG_ERR_NO_MEMORY;
        p = make(gram ? SYRK : GEMMT, item, gram ? syrk : gemmt, 1, 0, n, n, k,
                 gram ? (double)gram : 1.0, a, gram ? a : b, c);
        scale_rows(&p, a, b, k, scale);
        wide_symmetric(&p, gemm);
        fg_free(a);
        return FG_OK;
    }
    if (gram == 0) {
        /* scales of one sign, found at run time: C = ±(√|s| ⊙ B)ᵀ(√|s| ⊙ B), one operand
         * to scale and pack (syrk) instead of two (gemmt) */
        int sign = one_sign(scale, k, item);
        if (sign != 0 && (roots = fg_alloc(k * item)) != NULL) {
            square_roots_of_magnitudes(roots, scale, k, item);
            scale = roots;
            gram = sign;
        }
    }
    p = make(gram ? SYRK : GEMMT, item, gram ? syrk : gemmt, 1, 0, n, n, k,
             gram ? (double)gram : 1.0, b, b, c);
    p.scale = scale;
    run(&p);
    fg_free(roots);
    return p.failed ? FG_ERR_NO_MEMORY : FG_OK;
}
