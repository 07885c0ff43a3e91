/*
 * fusegrad_rt.c -- the small C runtime that fusegrad's generated kernels call.
 * Plain C99 + POSIX (posix_memalign, pthread keys). No mutable global state,
 * except the per-thread block cache below in the JIT build; AOT libraries are
 * compiled with FG_NO_BLOCK_CACHE and have none.
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
#include <malloc.h> /* malloc_usable_size */
#include <sys/mman.h>
#endif
#if defined(__GLIBC__) && !defined(FG_NO_BLOCK_CACHE)
#define FG_BLOCK_CACHE 1
#include <pthread.h>
#endif

/* Blocks from this size on are aligned to 2 MiB and offered to transparent huge
 * pages (as NumPy does for its arrays): a fresh 40 MB scratch buffer otherwise
 * takes 10,000 page faults on first touch, which measured 50 ms in a VM. */
#define FG_HUGE_BLOCK ((size_t)FG_LARGE_BLOCK)
#define FG_HUGE_ALIGNMENT ((size_t)2 << 20)

#ifdef FG_BLOCK_CACHE
/* Large scratch blocks freed by a thread are kept for its next call.
 *
 * Why: glibc returns a freed block at the top of the heap to the system once
 * the free top exceeds its trim threshold, so a kernel called in a loop with a
 * 5 MB scratch buffer page-faulted it in again on every call (230 faults and
 * ~0.5 ms per call of the 10,000x64 logistic Hessian, whose product takes 1.3 ms).
 * Each thread keeps up to FG_CACHED_BLOCKS blocks, FG_CACHE_BYTES in all; a
 * request takes the smallest kept block of at least its size and at most twice
 * it. A thread's blocks are freed when it exits. */
#define FG_CACHED_BLOCKS 4
#define FG_CACHE_BYTES ((size_t)256 << 20)

struct fg_block_cache {
    int count; /* blocks kept, oldest first */
    void *block[FG_CACHED_BLOCKS];
    size_t size[FG_CACHED_BLOCKS];
};

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static int cache_usable; /* set once, under cache_once */

static void release_cache(void *cell)
{
    struct fg_block_cache *cache = cell;
    for (int i = 0; i < cache->count; i++)
        free(cache->block[i]);
    free(cache);
}

static void create_cache_key(void)
{
    cache_usable = pthread_key_create(&cache_key, release_cache) == 0;
}

static struct fg_block_cache *thread_cache(int create)
{
    struct fg_block_cache *cache;

    (void)pthread_once(&cache_once, create_cache_key);
    if (!cache_usable)
        return NULL;
    cache = pthread_getspecific(cache_key);
    if (cache == NULL && create) {
        cache = calloc(1, sizeof *cache);
        if (cache != NULL && pthread_setspecific(cache_key, cache) != 0) {
            free(cache);
            cache = NULL;
        }
    }
    return cache;
}

/* Remove entry i, keeping the others in order; its block. */
static void *remove_entry(struct fg_block_cache *cache, int i)
{
    void *p = cache->block[i];
    for (int j = i + 1; j < cache->count; j++) {
        cache->block[j - 1] = cache->block[j];
        cache->size[j - 1] = cache->size[j];
    }
    cache->count--;
    return p;
}

static void *take_cached(size_t size)
{
    struct fg_block_cache *cache = thread_cache(0);
    int best = -1;

    if (cache == NULL)
        return NULL;
    for (int i = 0; i < cache->count; i++) {
        size_t have = cache->size[i];
        if (have >= size && have / 2 <= size && (best < 0 || have < cache->size[best]))
            best = i;
    }
    return best < 0 ? NULL : remove_entry(cache, best);
}

/* 1 if the block is kept (then the caller must not free it). */
static int keep_cached(void *p)
{
    size_t size = malloc_usable_size(p), total = size;
    struct fg_block_cache *cache;

    if (size < FG_HUGE_BLOCK || size > FG_CACHE_BYTES)
        return 0;
    cache = thread_cache(1);
    if (cache == NULL)
        return 0;
    for (int i = 0; i < cache->count; i++)
        total += cache->size[i];
    while (cache->count == FG_CACHED_BLOCKS || total > FG_CACHE_BYTES) {
        total -= cache->size[0]; /* drop the oldest */
        free(remove_entry(cache, 0));
    }
    cache->block[cache->count] = p;
    cache->size[cache->count] = size;
    cache->count++;
    return 1;
}
#endif /* FG_BLOCK_CACHE */

int64_t fg_release_blocks(void)
{
    int64_t freed = 0;
#ifdef FG_BLOCK_CACHE
    struct fg_block_cache *cache = thread_cache(0);
    while (cache != NULL && cache->count > 0) {
        freed += (int64_t)cache->size[0];
        free(remove_entry(cache, 0));
    }
#endif
    return freed;
}

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
#ifdef FG_BLOCK_CACHE
        p = take_cached(size);
        if (p != NULL)
            return p;
#endif
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
#ifdef FG_BLOCK_CACHE
    if (p != NULL && keep_cached(p))
        return;
#endif
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
