/* sp_alloc / sp_free, with a small per-thread cache in front of the heap.
 *
 * Each thread keeps up to CACHE_MAX freed blocks per 16-byte size class
 * below 1 KiB, taken and given back without the heap's lock (a robust lock
 * pair costs more than the rest of an allocation).  A cached block is
 * tagged CACHED: to the heap it is still in use, and freeing it again is a
 * double free.  The cache goes back to the heap when the thread exits (a
 * pthread key destructor) and when the program exits (a destructor for
 * the thread calling exit()).  A program killed by a signal, or ending with
 * _exit(), keeps its cached blocks: at most CACHE_MAX blocks per class per
 * thread (about 260 KiB) stay allocated for the rest of the space's life.
 *
 * The Python binding turns the cache off (sp__set_cache): a ctypes call
 * costs far more than the lock, and Python's frees are then visible in
 * the heap's counters at once.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

#define CACHE_MAX 8

struct cache {
    void *lists[SP_QUICK_CLASSES];  /* chains linked through each block's first word */
    uint8_t counts[SP_QUICK_CLASSES];
    struct sp_block *block;         /* the block the cached chunks belong to */
    int registered, closed;
};

static __thread struct cache cache;
static int cache_enabled = 1;
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

SP_EXPORT void sp__set_cache(int on)
{
    cache_enabled = on;
}

static void flush(struct cache *c)
{
    struct sp_block *block = c->block;

    c->closed = 1;
    if ((block != NULL) && (__atomic_load_n(&block->magic, __ATOMIC_ACQUIRE) == SP_BLOCK_MAGIC))
        sp__heap_flush(block, c->lists, SP_QUICK_CLASSES);
    for (unsigned q = 0; q < SP_QUICK_CLASSES; q++) {
        c->lists[q] = NULL;
        c->counts[q] = 0;
    }
}

static void thread_exit(void *value)
{
    flush(value);
}

__attribute__((destructor)) static void program_exit(void)
{
    flush(&cache);
}

static void make_key(void)
{
    if (pthread_key_create(&cache_key, thread_exit) != 0)
        cache_enabled = 0;
}

static int usable(struct sp_block *block)
{
    if (!cache_enabled || cache.closed)
        return 0;
    if (!cache.registered) {
        pthread_once(&cache_once, make_key);
        if (!cache_enabled || (pthread_setspecific(cache_key, &cache) != 0))
            return 0;
        cache.registered = 1;
        cache.block = block;
    }
    return cache.block == block;
}

void *sp_alloc(size_t size)
{
    struct sp_block *block = sp__block();
    size_t need = (size + 16 + 15) & ~(size_t)15;

    if (block == NULL)
        return NULL;
    if (need < 48)
        need = 48;
    if ((need < SP_SMALL_LIMIT) && (size < need) && (cache.lists[need >> 4] != NULL)
        && (cache.block == block)) {
        void *p = cache.lists[need >> 4];

        cache.lists[need >> 4] = *(void **)p;
        cache.counts[need >> 4]--;
        sp__heap_mark(block, p, 0);
        return p;
    }
    return sp__heap_alloc(block, size);
}

SP_EXPORT int sp__free_checked(void *ptr)
{
    struct sp_block *block;
    int q;

    if (ptr == NULL)
        return 0;
    if ((block = sp__block()) == NULL)
        return SP_FREE_NOTCONN;
    if (!usable(block))
        return sp__heap_free(block, ptr);
    if ((q = sp__heap_cache_class(block, ptr)) < 0) {
        __atomic_fetch_add(&block->heap.bad_frees, 1, __ATOMIC_RELAXED);
        return q;
    }
    if ((q == 0) || (cache.counts[q] >= CACHE_MAX))
        return sp__heap_free(block, ptr);
    sp__heap_mark(block, ptr, 1);
    *(void **)ptr = cache.lists[q];
    cache.lists[q] = ptr;
    cache.counts[q]++;
    return 0;
}

SP_EXPORT const char *sp__free_error(int code)
{
    switch (code) {
    case SP_FREE_FOREIGN: return "not a pointer into the shared heap (not from sp_alloc)";
    case SP_FREE_DOUBLE: return "double free (the block was already freed)";
    case SP_FREE_INVALID: return "invalid pointer: not the start of a shared-heap block";
    case SP_FREE_BROKEN: return "the shared heap is corrupted and could not be repaired";
    case SP_FREE_NOTCONN: return "not in a sameprocess space";
    default: return "unknown error";
    }
}

void sp_free(void *ptr)
{
    int rc = sp__free_checked(ptr);

    if (rc != 0) {
        fprintf(stderr, "sameprocess: sp_free(%p): %s\n", ptr, sp__free_error(rc));
        abort();
    }
}
