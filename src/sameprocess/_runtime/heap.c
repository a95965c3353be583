/* The shared heap: allocation, freeing, bins and quick lists (the layout
 * and the crash-safety rules are in heap.h; repair and checks in
 * heap_repair.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "heap.h"

/* -- bins ------------------------------------------------------------------- */

void sp__bin_push(struct sp_heap *h, struct sp_chunk *c, uint64_t size)
{
    unsigned i = bin_index(size);
    struct sp_chunk *first = h->bins[i];

    c->prev = NULL;
    c->next = first;
    if (first != NULL)
        first->prev = c;
    h->bins[i] = c;
    h->binmap[i / 64] |= (1ULL << (i % 64));
}

static void bin_unlink(struct sp_heap *h, struct sp_chunk *c, uint64_t size)
{
    unsigned i = bin_index(size);

    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        h->bins[i] = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    if (h->bins[i] == NULL)
        h->binmap[i / 64] &= ~(1ULL << (i % 64));
}

/* First non-empty bin at or above index i, or SP_BINS. */
static unsigned next_bin(const struct sp_heap *h, unsigned i)
{
    while (i < SP_BINS) {
        uint64_t word = h->binmap[i / 64] & (~0ULL << (i % 64));

        if (word != 0)
            return ((i / 64) * 64) + (unsigned)__builtin_ctzll(word);
        i = ((i / 64) + 1) * 64;
    }
    return SP_BINS;
}

/* A free chunk of at least `need` bytes, unlinked, or NULL. */
static struct sp_chunk *take_free(struct sp_heap *h, uint64_t need)
{
    unsigned i = bin_index(need);
    struct sp_chunk *c;

    if (need >= SP_SMALL_LIMIT) {  /* large classes mix sizes: first fit */
        for (c = h->bins[i]; c != NULL; c = c->next) {
            if (size_of(c) >= need) {
                bin_unlink(h, c, size_of(c));
                return c;
            }
        }
        i++;
    }
    i = next_bin(h, i);  /* for a small size, its own exact bin first */
    if (i == SP_BINS)
        return NULL;
    c = h->bins[i];
    bin_unlink(h, c, size_of(c));
    return c;
}

/* -- locking ----------------------------------------------------------------- */

int sp__heap_lock(struct sp_heap *h)
{
    int owner_died = 0;
    int rc = sp__lock(&h->lock, &owner_died);

    if (rc != 0)
        return rc;
    if (owner_died) {
        h->recoveries++;
        if (sp__heap_repair(h) != 0)
            h->broken = 1;
    }
    if (h->broken) {
        sp__unlock(&h->lock);
        return -ENOTRECOVERABLE;
    }
    return 0;
}

/* -- the API ------------------------------------------------------------------- */

void sp__heap_init(struct sp_heap *h, uint64_t base, uint64_t end, uint64_t key)
{
    memset(h, 0, sizeof *h);
    sp__init_lock(&h->lock);
    h->base = (base + 15) & SIZE_MASK;
    h->end = end & SIZE_MASK;
    h->top = h->base;
    h->key = key;
}

int sp__heap_contains(const struct sp_block *block, const void *ptr, size_t size)
{
    uint64_t p = addr(ptr);

    return (p >= block->heap.base) && (p <= block->heap.end) && (size <= block->heap.end - p);
}

/* Give the pages strictly inside [from, to) back to the kernel. */
static void trim(uint64_t from, uint64_t to)
{
    from = (from + PAGE - 1) & ~(uint64_t)(PAGE - 1);
    to &= ~(uint64_t)(PAGE - 1);
    if (to > from)
        madvise((void *)(uintptr_t)from, to - from, MADV_DONTNEED);
}

/* Free chunk c (head INUSE) into the bins or the wilderness, merging it
 * with free neighbours. */
static void release(struct sp_heap *h, struct sp_chunk *c)
{
    uint64_t own = size_of(c), size = own;
    struct sp_chunk *start = c, *next = at(addr(c) + own);

    if (!(c->head & PREV_INUSE)) {  /* merge with the free chunk before */
        start = at(addr(c) - *(uint64_t *)((char *)c - 8));
        size += size_of(start);
        bin_unlink(h, start, size_of(start));
    }
    if (addr(next) == h->top) {  /* merge into the wilderness */
        tag(h, start, TAG_GONE);
        barrier();
        h->top = addr(start);  /* commit */
        barrier();
        tag(h, c, TAG_GONE);
        if (own >= TRIM_LIMIT)
            trim(addr(c) + HEADER, addr(next));
        return;
    }
    int merge_next = !(next->head & INUSE);

    if (merge_next) {  /* merge with the free chunk after */
        size += size_of(next);
        bin_unlink(h, next, size_of(next));
    }
    if (start == c)
        tag(h, c, TAG_FREE);
    *footer(start, size) = size;
    barrier();
    start->head = size | PREV_INUSE;  /* commit: free, covering the merged ones */
    barrier();
    if (start != c)
        tag(h, c, TAG_GONE);
    if (merge_next)
        tag(h, next, TAG_GONE);
    at(addr(start) + size)->head &= ~PREV_INUSE;
    sp__bin_push(h, start, size);
    if (own >= TRIM_LIMIT)
        trim(addr(c) + sizeof(struct sp_chunk), addr(c) + own - 8);
}

/* Empty every quick list into the bins (memory is running short). */
static int flush_quick(struct sp_heap *h)
{
    int flushed = 0;

    for (unsigned q = 0; q < SP_QUICK_CLASSES; q++) {
        while (h->quick[q] != NULL) {
            struct sp_chunk *c = h->quick[q];

            h->quick[q] = c->next;
            h->quick_count[q]--;
            release(h, c);
            flushed = 1;
        }
    }
    return flushed;
}

/* A chunk of exactly need bytes (or a little more), marked in use, or NULL. */
static struct sp_chunk *carve(struct sp_heap *h, uint64_t need)
{
    struct sp_chunk *c = take_free(h, need);
    uint64_t have;

    if (c != NULL) {
        have = size_of(c);
        if (have - need >= MIN_CHUNK) {  /* split: the remainder stays free */
            struct sp_chunk *rest = at(addr(c) + need);

            rest->head = (have - need) | PREV_INUSE;
            tag(h, rest, TAG_FREE);
            *footer(rest, have - need) = have - need;
            barrier();
            c->head = need | INUSE | (c->head & PREV_INUSE);  /* commit */
            barrier();
            sp__bin_push(h, rest, have - need);
        } else {
            c->head |= INUSE;  /* commit */
            barrier();
            if (addr(c) + have < h->top)
                at(addr(c) + have)->head |= PREV_INUSE;
        }
        return c;
    }
    if (need > h->end - h->top)
        return NULL;
    c = at(h->top);  /* from the wilderness */
    c->head = need | INUSE | PREV_INUSE;  /* the chunk before top is in use */
    barrier();
    h->top += need;  /* commit */
    return c;
}

void *sp__heap_alloc(struct sp_block *block, size_t size)
{
    struct sp_heap *h = &block->heap;
    struct sp_chunk *c;
    uint64_t need;
    int rc;

    if (size > (h->end - h->base)) {
        __atomic_fetch_add(&h->failed_allocs, 1, __ATOMIC_RELAXED);
        errno = ENOMEM;
        return NULL;
    }
    need = (size + HEADER + 15) & SIZE_MASK;
    if (need < MIN_CHUNK)
        need = MIN_CHUNK;
    if ((rc = sp__heap_lock(h)) != 0) {
        errno = -rc;
        return NULL;
    }
    if ((need < SP_SMALL_LIMIT) && ((c = h->quick[need >> 4]) != NULL)) {
        h->quick[need >> 4] = c->next;
        h->quick_count[need >> 4]--;
        barrier();
    } else if ((c = carve(h, need)) == NULL && (!flush_quick(h) || (c = carve(h, need)) == NULL)) {
        h->failed_allocs++;
        sp__unlock(&h->lock);
        errno = ENOMEM;
        return NULL;
    }
    tag(h, c, TAG_USED);  /* commit for a quick chunk */
    h->used_bytes += size_of(c);
    h->used_blocks++;
    h->allocs++;
    sp__unlock(&h->lock);
    return (char *)c + HEADER;
}

/* Is p the start of a live block?  0, or the SP_FREE_* reason. */
static int classify(const struct sp_heap *h, uint64_t p)
{
    const struct sp_chunk *c = at(p - HEADER);
    uint64_t t, size;

    if ((p < h->base) || (p >= h->end))
        return SP_FREE_FOREIGN;
    if ((p < h->base + HEADER) || ((p % 16) != 0))
        return SP_FREE_INVALID;
    t = tag_of(h, c);
    if ((t == TAG_FREE) || (t == TAG_GONE) || (t == TAG_QUICK) || (t == TAG_CACHED))
        return SP_FREE_DOUBLE;
    if ((t != TAG_USED) || (addr(c) >= h->top))
        return SP_FREE_INVALID;
    size = size_of(c);
    if (!(c->head & INUSE))
        return SP_FREE_DOUBLE;
    if ((size < MIN_CHUNK) || (size > h->top - addr(c)))
        return SP_FREE_INVALID;
    return 0;
}

/* A live chunk (lock held) goes to its quick list, or back to the bins. */
static void free_chunk(struct sp_heap *h, struct sp_chunk *c)
{
    uint64_t size = size_of(c);

    h->used_bytes -= size;
    h->used_blocks--;
    h->frees++;
    if ((size < SP_SMALL_LIMIT) && (h->quick_count[size >> 4] < QUICK_MAX)) {
        tag(h, c, TAG_QUICK);  /* commit */
        barrier();
        c->next = h->quick[size >> 4];
        h->quick[size >> 4] = c;
        h->quick_count[size >> 4]++;
    } else {
        release(h, c);
    }
}

int sp__heap_free(struct sp_block *block, void *ptr)
{
    struct sp_heap *h = &block->heap;
    struct sp_chunk *c = at(addr(ptr) - HEADER);
    int rc;

    if ((addr(ptr) < h->base) || (addr(ptr) >= h->end)) {  /* no lock needed to say so */
        __atomic_fetch_add(&h->bad_frees, 1, __ATOMIC_RELAXED);
        return SP_FREE_FOREIGN;
    }
    if ((rc = sp__heap_lock(h)) != 0)
        return (rc == -ENOTRECOVERABLE) ? SP_FREE_BROKEN : rc;
    if ((rc = classify(h, addr(ptr))) != 0) {
        h->bad_frees++;
        sp__unlock(&h->lock);
        return rc;
    }
    free_chunk(h, c);
    sp__unlock(&h->lock);
    return 0;
}

/* -- for the thread cache (cache.c) ---------------------------------------------- */

/* The cache class of a live block (its chunk size / 16, below 1 KiB), 0 for
 * a live block too large to cache, or the SP_FREE_* reason it is not a live
 * block.  Called without the lock: a block the caller owns does not change
 * under it. */
int sp__heap_cache_class(const struct sp_block *block, const void *ptr)
{
    const struct sp_heap *h = &block->heap;
    int rc = classify(h, addr(ptr));
    uint64_t size;

    if (rc != 0)
        return rc;
    size = size_of(at(addr(ptr) - HEADER));
    return (size < SP_SMALL_LIMIT) ? (int)(size >> 4) : 0;
}

void sp__heap_mark(const struct sp_block *block, void *ptr, int cached)
{
    tag(&block->heap, at(addr(ptr) - HEADER), cached ? TAG_CACHED : TAG_USED);
}

/* A thread's cache goes back to the heap: lists[q] are chains linked
 * through each block's first word. */
void sp__heap_flush(struct sp_block *block, void **lists, unsigned classes)
{
    struct sp_heap *h = &block->heap;

    if (sp__heap_lock(h) != 0)
        return;
    for (unsigned q = 0; q < classes; q++) {
        while (lists[q] != NULL) {
            void *ptr = lists[q];
            struct sp_chunk *c = at(addr(ptr) - HEADER);

            lists[q] = *(void **)ptr;
            if ((addr(c) >= h->base) && (addr(c) < h->top) && (tag_of(h, c) == TAG_CACHED))
                free_chunk(h, c);
        }
    }
    sp__unlock(&h->lock);
}
