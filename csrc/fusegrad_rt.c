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
/* Scratch blocks freed by a thread are kept for its next call, on two shelves.
 *
 * Large blocks (>= FG_HUGE_BLOCK): glibc returns a freed block at the top of the
 * heap to the system once the free top exceeds its trim threshold, so a kernel
 * called in a loop with a 5 MB scratch buffer page-faulted it in again on every
 * call (230 faults and ~0.5 ms per call of the 10,000x64 logistic Hessian, whose
 * product takes 1.3 ms). Up to FG_CACHED_BLOCKS blocks, FG_CACHE_BYTES in all.
 *
 * Smaller blocks (the partial sums of a few chunks, a short gradient, the row
 * scales and product blocks of a Hessian): posix_memalign of a small block took
 * glibc through the consolidation of its fast bins on every call
 * (malloc_consolidate: ~8 % of the 200x8 logistic gradient's 3 us), and blocks of
 * 128 KiB or more came fresh from mmap, their pages faulted in and zeroed on every
 * call. Up to FG_SMALL_BLOCKS blocks, FG_SMALL_TOTAL in all.
 *
 * A request takes the smallest kept block of at least its size and at most twice
 * it; a full shelf drops its oldest block. A thread's blocks are freed when it
 * exits. */
#define FG_CACHED_BLOCKS 4
#define FG_CACHE_BYTES ((size_t)256 << 20)
#define FG_SMALL_BLOCKS 8
#define FG_SMALL_TOTAL ((size_t)16 << 20)

struct fg_shelf {
    int count; /* blocks kept, oldest first */
    int capacity;
    void *block[FG_SMALL_BLOCKS];
    size_t size[FG_SMALL_BLOCKS];
};

struct fg_block_cache {
    struct fg_shelf large, small;
};

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static int cache_usable; /* set once, under cache_once */

/* Remove entry i, keeping the others in order; its block. */
static void *remove_entry(struct fg_shelf *shelf, int i)
{
    void *p = shelf->block[i];
    for (int j = i + 1; j < shelf->count; j++) {
        shelf->block[j - 1] = shelf->block[j];
        shelf->size[j - 1] = shelf->size[j];
    }
    shelf->count--;
    return p;
}

/* Free every block of the shelf; the bytes freed. */
static int64_t empty_shelf(struct fg_shelf *shelf)
{
    int64_t freed = 0;
    while (shelf->count > 0) {
        freed += (int64_t)shelf->size[0];
        free(remove_entry(shelf, 0));
    }
    return freed;
}

static void release_cache(void *cell)
{
    struct fg_block_cache *cache = cell;
    empty_shelf(&cache->large);
    empty_shelf(&cache->small);
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
        if (cache != NULL) {
            cache->large.capacity = FG_CACHED_BLOCKS;
            cache->small.capacity = FG_SMALL_BLOCKS;
        }
    }
    return cache;
}

static struct fg_shelf *shelf_for(struct fg_block_cache *cache, size_t size)
{
    return size >= FG_HUGE_BLOCK ? &cache->large : &cache->small;
}

static void *take_cached(size_t size)
{
    struct fg_block_cache *cache = thread_cache(0);
    struct fg_shelf *shelf;
    int best = -1;

    if (cache == NULL)
        return NULL;
    shelf = shelf_for(cache, size);
    for (int i = 0; i < shelf->count; i++) {
        size_t have = shelf->size[i];
        if (have >= size && have / 2 <= size && (best < 0 || have < shelf->size[best]))
            best = i;
    }
    return best < 0 ? NULL : remove_entry(shelf, best);
}

/* 1 if the block is kept (then the caller must not free it). */
static int keep_cached(void *p)
{
    size_t size = malloc_usable_size(p), total = size;
    size_t limit = size >= FG_HUGE_BLOCK ? FG_CACHE_BYTES : FG_SMALL_TOTAL;
    struct fg_block_cache *cache;
    struct fg_shelf *shelf;

    if (size > limit)
        return 0;
    cache = thread_cache(1);
    if (cache == NULL)
        return 0;
    shelf = shelf_for(cache, size);
    for (int i = 0; i < shelf->count; i++)
        total += shelf->size[i];
    while (shelf->count == shelf->capacity || total > limit) {
        total -= shelf->size[0]; /* drop the oldest */
        free(remove_entry(shelf, 0));
    }
    shelf->block[shelf->count] = p;
    shelf->size[shelf->count] = size;
    shelf->count++;
    return 1;
}
#endif /* FG_BLOCK_CACHE */

int64_t fg_release_blocks(void)
{
    int64_t freed = 0;
#ifdef FG_BLOCK_CACHE
    struct fg_block_cache *cache = thread_cache(0);
    if (cache != NULL)
        freed = empty_shelf(&cache->large) + empty_shelf(&cache->small);
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
#ifdef FG_BLOCK_CACHE
    p = take_cached(size); /* from the shelf of blocks of this size's kind */
    if (p != NULL)
        return p;
#endif
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
