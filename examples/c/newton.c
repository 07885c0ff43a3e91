/*
 * newton.c -- logistic regression fitted by Newton's method, in C, with the value,
 * gradient and Hessian kernel that fusegrad built from model.py (libmodel).
 *
 *     make                      # build/libmodel.so (python -m fusegrad build) + build/newton
 *     build/newton              # synthetic data: 2000 rows, 10 columns
 *     build/newton data.bin     # int64 m, int64 n, X (m*n doubles, row-major), y (m doubles, +-1)
 *
 * Each step calls logistic() once for the loss, its gradient g and Hessian H, and
 * solves H d = g by Cholesky: w <- w - d, until |g| < 1e-8. Prints the steps and
 * the fitted weights, one per line, as w[j] = %.17g.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "model.h"

#define TOLERANCE 1e-8
#define MAX_STEPS 50

/* xorshift64* and Box-Muller: reproducible synthetic data without other libraries. */
static double uniform(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return ((*state * 2685821657736338717ULL) >> 11) * (1.0 / 9007199254740992.0);
}

static double normal(uint64_t *state)
{
    double u = uniform(state), v = uniform(state);
    return sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
}

/* X: m x n standard normal; y = sign(X w_true + noise). */
static void synthetic(int64_t m, int64_t n, double *X, double *y)
{
    uint64_t state = 88172645463325252ULL;
    double *w_true = malloc((size_t)n * sizeof *w_true);
    int64_t i, j;
    for (j = 0; j < n; ++j)
        w_true[j] = normal(&state) / sqrt((double)n);
    for (i = 0; i < m; ++i) {
        double z = 0.5 * normal(&state);
        for (j = 0; j < n; ++j) {
            X[i * n + j] = normal(&state);
            z += X[i * n + j] * w_true[j];
        }
        y[i] = z > 0 ? 1.0 : -1.0;
    }
    free(w_true);
}

static int read_data(const char *path, int64_t *m, int64_t *n, double **X, double **y)
{
    FILE *file = fopen(path, "rb");
    int ok = 0;
    if (file == NULL)
        return 0;
    if (fread(m, sizeof *m, 1, file) == 1 && fread(n, sizeof *n, 1, file) == 1 && *m >= 0 &&
        *n >= 0) {
        size_t size = (size_t)*m * (size_t)*n;
        *X = malloc(size * sizeof **X + 1);
        *y = malloc((size_t)*m * sizeof **y + 1);
        ok = *X != NULL && *y != NULL && fread(*X, sizeof **X, size, file) == size &&
             fread(*y, sizeof **y, (size_t)*m, file) == (size_t)*m;
    }
    fclose(file);
    return ok;
}

/* Solve H d = g for symmetric positive definite H (n x n, overwritten by its Cholesky
 * factor L, H = L L^T). Returns 0 if H is not positive definite. */
static int cholesky_solve(int64_t n, double *H, const double *g, double *d)
{
    int64_t i, j, k;
    for (j = 0; j < n; ++j) {
        double s = H[j * n + j];
        for (k = 0; k < j; ++k)
            s -= H[j * n + k] * H[j * n + k];
        if (!(s > 0))
            return 0;
        H[j * n + j] = sqrt(s);
        for (i = j + 1; i < n; ++i) {
            double t = H[i * n + j];
            for (k = 0; k < j; ++k)
                t -= H[i * n + k] * H[j * n + k];
            H[i * n + j] = t / H[j * n + j];
        }
    }
    for (i = 0; i < n; ++i) { /* L z = g */
        double t = g[i];
        for (k = 0; k < i; ++k)
            t -= H[i * n + k] * d[k];
        d[i] = t / H[i * n + i];
    }
    for (i = n - 1; i >= 0; --i) { /* L^T d = z */
        double t = d[i];
        for (k = i + 1; k < n; ++k)
            t -= H[k * n + i] * d[k];
        d[i] = t / H[i * n + i];
    }
    return 1;
}

int main(int argc, char **argv)
{
    int64_t m = 2000, n = 10, j;
    double *X = NULL, *y = NULL, *w, *g, *H, *d, value, norm = INFINITY;
    int step, status;

    if (argc > 1) {
        if (!read_data(argv[1], &m, &n, &X, &y)) {
            fprintf(stderr, "newton: cannot read %s\n", argv[1]);
            return 1;
        }
    } else {
        X = malloc((size_t)(m * n) * sizeof *X);
        y = malloc((size_t)m * sizeof *y);
        synthetic(m, n, X, y);
    }
    w = calloc((size_t)n + 1, sizeof *w);
    g = malloc(((size_t)n + 1) * sizeof *g);
    d = malloc(((size_t)n + 1) * sizeof *d);
    H = malloc(((size_t)(n * n) + 1) * sizeof *H);
    if (X == NULL || y == NULL || w == NULL || g == NULL || d == NULL || H == NULL) {
        fprintf(stderr, "newton: out of memory\n");
        return 1;
    }
    printf("logistic regression: %lld rows, %lld columns\n", (long long)m, (long long)n);
    for (step = 0; step <= MAX_STEPS; ++step) {
        status = logistic(n, m, w, X, y, &value, g, H);
        if (status != MODEL_OK) {
            fprintf(stderr, "newton: logistic() failed: %s\n", model_strerror(status));
            return 1;
        }
        norm = 0;
        for (j = 0; j < n; ++j)
            norm += g[j] * g[j];
        norm = sqrt(norm);
        printf("step %d: loss %.12g, |grad| %.3g\n", step, value, norm);
        if (norm < TOLERANCE)
            break;
        if (!cholesky_solve(n, H, g, d)) {
            fprintf(stderr, "newton: the Hessian is not positive definite\n");
            return 1;
        }
        for (j = 0; j < n; ++j)
            w[j] -= d[j];
    }
    if (norm >= TOLERANCE) {
        fprintf(stderr, "newton: no convergence in %d steps\n", MAX_STEPS);
        return 1;
    }
    printf("converged in %d steps\n", step);
    for (j = 0; j < n; ++j)
        printf("w[%lld] = %.17g\n", (long long)j, w[j]);
    free(X);
    free(y);
    free(w);
    free(g);
    free(d);
    free(H);
    return 0;
}
