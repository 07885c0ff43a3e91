/*
 * fusegrad_pool.c -- fg_parallel_for: a persistent pthread pool for the
 * parallel loops of generated kernels.
 *
 * Plain C99 + POSIX threads. The only extension used is the GCC/Clang
 * __atomic builtins (the spin phase of a hand-off needs atomics, and C99 has
 * none); every compiler the project supports (gcc, clang) provides them.
 *
 * Model
 *   One pool per process: `workers` threads plus the thread that calls
 *   fg_parallel_for. A call cuts [0, n) into nblocks <= FG_BLOCKS_PER_THREAD x
 *   num_threads contiguous blocks of at least `grain` iterations each (sizes
 *   differ by at most one), wakes up to nblocks - 1 workers, and every thread of
 *   the call, the caller too, claims blocks in order from one atomic cursor until
 *   none is left; the call returns when every block is done. Only the workers the
 *   call needs are woken.
 *
 *   Why blocks are claimed, not assigned: on a shared machine one core can run at
 *   half speed for seconds (the host runs something on its sibling hyperthread).
 *   With one block per thread the call waited for the slow core's half; claimed
 *   blocks let the fast core run more of them. A worker that is still waking up
 *   (or descheduled on a busy machine) finds no block left and delays nothing.
 *
 *   Hand-off: each worker owns a slot (generation + ticket). The dispatcher
 *   writes the call's generation, then bumps the ticket; the worker spins on the
 *   ticket for a short time (FG_SPIN_NS) after its last job and then sleeps on its
 *   own condition variable. Completion is a shared countdown of blocks that the
 *   dispatcher spins on (then sleeps). Sleeping and waking use the "set the
 *   sleeping flag, then re-check" protocol with sequentially consistent atomics,
 *   so no wake-up is lost and the common case (spinning peer) takes no lock.
 *
 *   The cursor holds the call's generation next to the next block's index, and a
 *   block is claimed by compare-and-swap of both: a worker that wakes after its
 *   call ended (and another began) fails the claim instead of running the old
 *   call's body on the new call's blocks. A successful claim keeps the call, and
 *   so the body, context and block sizes it reads, alive until that block is done.
 *
 * Concurrency (documented choice)
 *   The pool serves one fg_parallel_for at a time, guarded by a mutex taken
 *   with pthread_mutex_trylock. A call that finds the pool busy -- another
 *   thread is dispatching, or this call comes from inside a body (nested
 *   parallelism, on a worker or on the dispatching thread) -- runs its whole
 *   range on the calling thread instead of waiting. Concurrent callers thus
 *   never block one another and never deadlock, and nested loops run serially.
 *   Results never depend on who ran which block: bodies of parallel loops are
 *   independent per iteration (deterministic reductions are chunked by the
 *   compiler, not here).
 *
 * Thread count
 *   FUSEGRAD_NUM_THREADS (read once, when the pool state is first set up) or
 *   the number of online CPUs; fg_set_num_threads changes it for later calls.
 *   Worker threads are created lazily, when a call first needs them; the pool
 *   grows but never shrinks (surplus workers just sleep). Workers block every
 *   signal, so signals reach the application's own threads.
 *
 * fork()
 *   A child process inherits no threads: an atfork handler resets the pool so
 *   the child creates fresh workers on its first parallel call.
 */
#if !defined(_POSIX_C_SOURCE) || _POSIX_C_SOURCE < 200809L
#undef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "fusegrad_rt.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if !defined(__GNUC__) && !defined(__clang__)
#error "fusegrad_pool.c needs the GCC/Clang __atomic builtins"
#endif

/* Upper bound on the thread count (callers asking for more get this many). */
#define FG_MAX_THREADS 1024
/* How long a worker spins for its next job, and the dispatcher for the end of
 * the current one, before sleeping on a condition variable; after the first
 * FG_YIELD_AFTER_NS the spinning thread yields its CPU between checks, so that
 * an oversubscribed machine still runs the thread it waits for. */
#define FG_SPIN_NS 200000L
#define FG_YIELD_AFTER_NS 20000L
/* Spin iterations between two clock reads. */
#define FG_SPIN_CHECK 64
/* Blocks a call is cut into per thread (see the model above). */
#define FG_BLOCKS_PER_THREAD 4

#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define LOAD_ACQ(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)

/* One worker's slot; 64-byte aligned (fg_alloc) so slots share no cache line. */
typedef struct fg_worker {
    unsigned long generation; /* atomic: the call, written before `ticket` is bumped */
    unsigned long ticket;     /* atomic: bumped once per job */
    int sleeping;             /* atomic: 1 while the worker waits on `wake` */
    pthread_mutex_t lock;
    pthread_cond_t wake;
} fg_worker;

static struct {
    pthread_mutex_t busy;        /* held by the one dispatching call */
    int num_threads;             /* atomic: configured thread count */
    int nworkers;                /* workers created (guarded by `busy`) */
    fg_worker *workers[FG_MAX_THREADS];
    /* the current call, written by the dispatcher before it publishes `cursor` */
    fg_parallel_body body;
    void *ctx;
    int64_t nblocks, size, rest; /* blocks 0 .. rest-1 have size+1 iterations */
    unsigned long generation;    /* the last call's (guarded by `busy`) */
    uint64_t cursor;             /* atomic: generation << 32 | the next block to claim */
    /* completion of the current call */
    long pending;                /* atomic: blocks not yet finished */
    int caller_sleeping;         /* atomic */
    pthread_mutex_t done_lock;
    pthread_cond_t done;
} pool = {PTHREAD_MUTEX_INITIALIZER, 0, 0, {0}, NULL, NULL, 0, 0, 0, 0, 0, 0, 0,
          PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield");
#else
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
#endif
}

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Busy waiting with a time limit: `while (!done) if (!backoff_step(&b)) sleep;` */
typedef struct fg_backoff {
    int64_t start;
    int spins;
} fg_backoff;

static fg_backoff backoff_start(void)
{
    fg_backoff b;
    b.start = now_ns();
    b.spins = 0;
    return b;
}

/* One wait step; 0 once the spin time is over and the caller should sleep. */
static int backoff_step(fg_backoff *b)
{
    int64_t elapsed;
    cpu_relax();
    if (++b->spins < FG_SPIN_CHECK)
        return 1;
    b->spins = 0;
    elapsed = now_ns() - b->start;
    if (elapsed > FG_SPIN_NS)
        return 0;
    if (elapsed > FG_YIELD_AFTER_NS)
        sched_yield();
    return 1;
}

static int clamp_threads(long n)
{
    if (n < 1)
        return 1;
    if (n > FG_MAX_THREADS)
        return FG_MAX_THREADS;
    return (int)n;
}

static int default_num_threads(void)
{
    const char *text = getenv("FUSEGRAD_NUM_THREADS");
    if (text != NULL && *text != '\0') {
        char *end = NULL;
        long n;
        errno = 0;
        n = strtol(text, &end, 10);
        if (errno == 0 && end != text && *end == '\0' && n >= 1)
            return clamp_threads(n);
    }
    return clamp_threads(sysconf(_SC_NPROCESSORS_ONLN));
}

static void atfork_child(void)
{
    /* The child has no workers; the parent's slots are abandoned (their locks
     * may be in any state), and every lock is fresh. */
    pthread_mutex_init(&pool.busy, NULL);
    pthread_mutex_init(&pool.done_lock, NULL);
    pthread_cond_init(&pool.done, NULL);
    pool.nworkers = 0;
    memset(pool.workers, 0, sizeof(pool.workers));
    pool.cursor = 0;
    pool.pending = 0;
    pool.caller_sleeping = 0;
}

static void pool_init(void)
{
    int n = default_num_threads();
    /* fg_set_num_threads calls this first, so it never overrides a setting */
    STORE(&pool.num_threads, n);
    pthread_atfork(NULL, NULL, atfork_child);
}

/* -- workers ------------------------------------------------------------------------- */
static void finish_block(void)
{
    if (__atomic_sub_fetch(&pool.pending, 1, __ATOMIC_SEQ_CST) == 0 &&
        LOAD(&pool.caller_sleeping)) {
        pthread_mutex_lock(&pool.done_lock);
        pthread_cond_signal(&pool.done);
        pthread_mutex_unlock(&pool.done_lock);
    }
}

/* The next unclaimed block of call `generation`, or -1 (none left, or that call is
 * over). */
static int64_t claim_block(unsigned long generation)
{
    uint64_t cursor = LOAD(&pool.cursor);
    for (;;) {
        if ((cursor >> 32) != (generation & 0xffffffffUL) ||
            (int64_t)(cursor & 0xffffffffULL) >= pool.nblocks)
            return -1;
        if (__atomic_compare_exchange_n(&pool.cursor, &cursor, cursor + 1, 0,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            return (int64_t)(cursor & 0xffffffffULL);
    }
}

/* Claim and run blocks of call `generation` until none is left. */
static void run_blocks(unsigned long generation)
{
    int64_t k;
    while ((k = claim_block(generation)) >= 0) {
        int64_t begin = k * pool.size + (k < pool.rest ? k : pool.rest);
        pool.body(pool.ctx, begin, begin + pool.size + (k < pool.rest));
        finish_block();
    }
}

static void *worker_main(void *arg)
{
    fg_worker *w = (fg_worker *)arg;
    unsigned long seen = 0;

    for (;;) {
        fg_backoff b = backoff_start();
        while (LOAD_ACQ(&w->ticket) == seen && backoff_step(&b))
            ;
        if (LOAD_ACQ(&w->ticket) == seen) {
            pthread_mutex_lock(&w->lock);
            STORE(&w->sleeping, 1);
            while (LOAD(&w->ticket) == seen)
                pthread_cond_wait(&w->wake, &w->lock);
            STORE(&w->sleeping, 0);
            pthread_mutex_unlock(&w->lock);
        }
        seen = LOAD_ACQ(&w->ticket);
        run_blocks(LOAD(&w->generation));
    }
    return NULL;
}

/* Start workers until there are `wanted` (or thread creation fails); under `busy`. */
static void grow_pool(int wanted)
{
    sigset_t all, old;
    pthread_attr_t attr;

    if (wanted > FG_MAX_THREADS - 1)
        wanted = FG_MAX_THREADS - 1;
    if (pool.nworkers >= wanted)
        return;
    if (pthread_attr_init(&attr) != 0)
        return;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* new threads inherit the creator's mask: start them with every signal blocked */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    while (pool.nworkers < wanted) {
        pthread_t thread;
        fg_worker *w = (fg_worker *)fg_alloc((int64_t)sizeof(fg_worker));
        if (w == NULL)
            break;
        memset(w, 0, sizeof(*w));
        if (pthread_mutex_init(&w->lock, NULL) != 0) {
            fg_free(w);
            break;
        }
        if (pthread_cond_init(&w->wake, NULL) != 0) {
            pthread_mutex_destroy(&w->lock);
            fg_free(w);
            break;
        }
        if (pthread_create(&thread, &attr, worker_main, w) != 0) {
            pthread_cond_destroy(&w->wake);
            pthread_mutex_destroy(&w->lock);
            fg_free(w);
            break;
        }
        pool.workers[pool.nworkers++] = w;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
}

static void hand_off(fg_worker *w, unsigned long generation)
{
    STORE(&w->generation, generation);
    /* seq_cst store, then seq_cst load of `sleeping`: pairs with the worker's
     * store of `sleeping` and re-check of `ticket` (one of the two sees the other) */
    STORE(&w->ticket, __atomic_load_n(&w->ticket, __ATOMIC_RELAXED) + 1);
    if (LOAD(&w->sleeping)) {
        pthread_mutex_lock(&w->lock);
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);
    }
}

static void wait_for_workers(void)
{
    fg_backoff b = backoff_start();
    while (LOAD_ACQ(&pool.pending) != 0 && backoff_step(&b))
        ;
    if (LOAD_ACQ(&pool.pending) == 0)
        return;
    pthread_mutex_lock(&pool.done_lock);
    STORE(&pool.caller_sleeping, 1);
    while (LOAD(&pool.pending) != 0)
        pthread_cond_wait(&pool.done, &pool.done_lock);
    STORE(&pool.caller_sleeping, 0);
    pthread_mutex_unlock(&pool.done_lock);
}

/* -- the API ------------------------------------------------------------------------- */
void fg_parallel_for(int64_t n, int64_t grain, fg_parallel_body body, void *ctx)
{
    int64_t nblocks, helpers, k;
    unsigned long generation;
    int threads;

    if (n <= 0)
        return;
    if (grain < 1)
        grain = 1;
    if (n <= grain) {
        body(ctx, 0, n);
        return;
    }
    pthread_once(&pool_once, pool_init);
    threads = LOAD(&pool.num_threads);
    if (threads <= 1 || pthread_mutex_trylock(&pool.busy) != 0) {
        body(ctx, 0, n); /* one thread, pool busy, or nested: all here */
        return;
    }
    grow_pool(threads - 1);
    nblocks = n / grain; /* every block gets at least `grain` iterations */
    if (nblocks > (int64_t)threads * FG_BLOCKS_PER_THREAD)
        nblocks = (int64_t)threads * FG_BLOCKS_PER_THREAD;
    helpers = nblocks - 1 < (int64_t)threads - 1 ? nblocks - 1 : (int64_t)threads - 1;
    if (helpers > (int64_t)pool.nworkers) /* fewer if thread creation failed */
        helpers = pool.nworkers;
    if (helpers < 1) {
        pthread_mutex_unlock(&pool.busy);
        body(ctx, 0, n);
        return;
    }
    pool.body = body;
    pool.ctx = ctx;
    pool.nblocks = nblocks;
    pool.size = n / nblocks;
    pool.rest = n % nblocks;
    generation = ++pool.generation;
    STORE(&pool.pending, (long)nblocks);
    STORE(&pool.cursor, (uint64_t)(generation & 0xffffffffUL) << 32);
    for (k = 0; k < helpers; ++k)
        hand_off(pool.workers[k], generation);
    run_blocks(generation);
    wait_for_workers();
    pthread_mutex_unlock(&pool.busy);
}

void fg_set_num_threads(int n)
{
    pthread_once(&pool_once, pool_init);
    STORE(&pool.num_threads, clamp_threads(n));
}

int fg_get_num_threads(void)
{
    pthread_once(&pool_once, pool_init);
    return LOAD(&pool.num_threads);
}
