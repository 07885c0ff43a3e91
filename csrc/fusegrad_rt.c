/*
 * fusegrad_rt.c -- the small C runtime that fusegrad's generated kernels call.
 * Plain C99 + POSIX (posix_memalign); no mutable global state.
 */
#if !defined(_POSIX_C_SOURCE) || _POSIX_C_SOURCE < 200112L
#undef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200112L
#endif
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE /* madvise */
#endif

#include "fusegrad_rt.h"

#include <stdint.h>
#include <stdlib.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

/* Blocks from this size on are aligned to 2 MiB and offered to transparent huge
 * pages (as NumPy does for its arrays): a fresh 40 MB scratch buffer otherwise
 * takes 10,000 page faults on first touch, which measured 50 ms in a VM. */
#define FG_HUGE_BLOCK ((size_t)4 << 20)
#define FG_HUGE_ALIGNMENT ((size_t)2 << 20)

void *fg_alloc(int64_t nbytes)
{
    void *p = NULL;
    size_t size;

    if (nbytes < 0)
        return NULL;
    if ((uint64_t)nbytes > (uint64_t)SIZE_MAX)
        return NULL;
    /* A zero-byte request still gets a real, freeable block. */
    size = nbytes == 0 ? (size_t)FG_ALLOC_ALIGNMENT : (size_t)nbytes;
    if (size >= FG_HUGE_BLOCK) {
        if (posix_memalign(&p, FG_HUGE_ALIGNMENT, size) != 0)
            return NULL;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
        (void)madvise(p, size, MADV_HUGEPAGE); /* a hint: failure changes nothing */
#endif
        return p;
    }
    if (posix_memalign(&p, (size_t)FG_ALLOC_ALIGNMENT, size) != 0)
        return NULL;
    return p;
}

void fg_free(void *p)
{
    free(p);
}

const char *fg_strerror(int status)
{
    switch (status) {
    case FG_OK:
        return "ok";
    case FG_ERR_NEGATIVE_DIM:
        return "a dimension is negative";
    case FG_ERR_NO_MEMORY:
        return "out of memory while allocating scratch buffers";
    case FG_ERR_INCONSISTENT:
        return "inconsistent dimensions";
    case FG_ERR_BLAS_DIMS:
        return "a matrix dimension exceeds 2**31 - 1, the limit of the 32-bit BLAS";
    default:
        return "unknown status";
    }
}

int fg_runtime_abi_version(void)
{
    return FG_RUNTIME_ABI_VERSION;
}
