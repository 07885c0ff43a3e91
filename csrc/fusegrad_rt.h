/*
 * fusegrad_rt.h -- the small C runtime that fusegrad's generated kernels call.
 *
 * Built into the Python extension fusegrad.runtime._native (cffi API mode)
 * for JIT use, and compiled into AOT libraries next to the generated code.
 * Plain C99; no mutable global state.
 */
#ifndef FUSEGRAD_RT_H
#define FUSEGRAD_RT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ABI version of this runtime; bump when a signature or behaviour changes. */
#define FG_RUNTIME_ABI_VERSION 1

/* Alignment (bytes) of every block returned by fg_alloc. */
#define FG_ALLOC_ALIGNMENT 64

/* Status codes returned by generated entry points (see fg_strerror). */
#define FG_OK                0
#define FG_ERR_NEGATIVE_DIM  1
#define FG_ERR_NO_MEMORY     2
#define FG_ERR_INCONSISTENT  3

/* 64-byte aligned allocation. Returns NULL for a negative size or when out of
 * memory; a size of 0 returns a valid minimal block (never NULL). Release
 * with fg_free. */
void *fg_alloc(int64_t nbytes);

/* Release a block from fg_alloc. fg_free(NULL) does nothing. */
void fg_free(void *p);

/* Static, human-readable message for a status code (never NULL). */
const char *fg_strerror(int status);

/* Returns FG_RUNTIME_ABI_VERSION. */
int fg_runtime_abi_version(void);

#ifdef __cplusplus
}
#endif

#endif /* FUSEGRAD_RT_H */
