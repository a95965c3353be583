/* The shared heap after a lock holder died (repair) and for tests (check):
 * both walk the chain of chunk heads from base to top (see heap.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "heap.h"

/* Rebuild bins, footers, flags, tags and counters from the chain of heads.
 * 0, or -1 when a head is impossible (the heap is then marked broken). */
int sp__heap_repair(struct sp_heap *h)
{
    struct sp_chunk *run = NULL;  /* first chunk of the current free run */
    uint64_t run_size = 0, a = h->base, used = 0, blocks = 0;
    uint64_t prev_flag = PREV_INUSE;

    memset(h->bins, 0, sizeof h->bins);
    memset(h->binmap, 0, sizeof h->binmap);
    memset(h->quick, 0, sizeof h->quick);
    memset(h->quick_count, 0, sizeof h->quick_count);
    while (a < h->top) {
        struct sp_chunk *c = at(a);
        uint64_t size = size_of(c);

        if ((size < MIN_CHUNK) || (size > h->top - a))
            return -1;
        if (!is_free(h, c)) {
            if (run != NULL) {
                run->head = run_size | PREV_INUSE;
                tag(h, run, TAG_FREE);
                *footer(run, run_size) = run_size;
                sp__bin_push(h, run, run_size);
                run = NULL;
                prev_flag = 0;
            }
            c->head = size | INUSE | prev_flag;
            if (tag_of(h, c) != TAG_CACHED)  /* a live thread's cache: leave it */
                tag(h, c, TAG_USED);
            used += size;
            blocks++;
            prev_flag = PREV_INUSE;
        } else if (run == NULL) {
            run = c;
            run_size = size;
        } else {
            run_size += size;
            tag(h, c, TAG_GONE);
        }
        a += size;
    }
    if (run != NULL) {  /* a free run before the wilderness joins it */
        tag(h, run, TAG_GONE);
        h->top = addr(run);
    }
    h->used_bytes = used;
    h->used_blocks = blocks;
    return 0;
}

static int fail(char *message, size_t length, uint64_t where, const char *what)
{
    if (message != NULL)
        snprintf(message, length, "chunk at %#llx: %s", (unsigned long long)where, what);
    return -EUCLEAN;
}

/* Walk the whole heap and check every invariant; for tests. */
static int check(struct sp_heap *h, char *message, size_t length)
{
    uint64_t a = h->base, used = 0, blocks = 0, free_chunks = 0, binned = 0, quick = 0, listed = 0;
    int prev_used = 1;

    while (a < h->top) {
        struct sp_chunk *c = at(a);
        uint64_t size = size_of(c);
        int in_use = (c->head & INUSE) != 0;

        if ((size < MIN_CHUNK) || (size > h->top - a))
            return fail(message, length, a, "impossible size");
        if (((c->head & PREV_INUSE) != 0) != prev_used)
            return fail(message, length, a, "PREV_INUSE does not match the previous chunk");
        if (in_use && (tag_of(h, c) == TAG_QUICK)) {
            if (size >= SP_SMALL_LIMIT)
                return fail(message, length, a, "a large chunk in a quick list");
            quick++;
            prev_used = 1;
            a += size;
            continue;
        }
        if ((c->check != (h->key ^ a ^ (in_use ? TAG_USED : TAG_FREE)))
            && !(in_use && (tag_of(h, c) == TAG_CACHED)))
            return fail(message, length, a, "bad check word");
        if (!in_use) {
            if (!prev_used)
                return fail(message, length, a, "two free chunks side by side");
            if (*footer(c, size) != size)
                return fail(message, length, a, "bad footer");
            free_chunks++;
        } else {
            used += size;
            blocks++;
        }
        prev_used = in_use;
        a += size;
    }
    if (!prev_used)
        return fail(message, length, a, "free chunk next to the wilderness");
    for (unsigned i = 0; i < SP_BINS; i++) {
        int marked = (h->binmap[i / 64] >> (i % 64)) & 1;

        if (marked != (h->bins[i] != NULL))
            return fail(message, length, i, "bin map does not match the bin");
        for (struct sp_chunk *c = h->bins[i], *prev = NULL; c != NULL; prev = c, c = c->next) {
            if ((addr(c) < h->base) || (addr(c) >= h->top) || (c->head & INUSE)
                || (bin_index(size_of(c)) != i) || (c->prev != prev))
                return fail(message, length, addr(c), "bad bin entry");
            if (++binned > free_chunks)
                return fail(message, length, addr(c), "more chunks in bins than free");
        }
    }
    if (binned != free_chunks)
        return fail(message, length, h->top, "a free chunk is in no bin");
    for (unsigned q = 0; q < SP_QUICK_CLASSES; q++) {
        uint32_t n = 0;

        for (struct sp_chunk *c = h->quick[q]; c != NULL; c = c->next, n++) {
            if ((addr(c) < h->base) || (addr(c) >= h->top) || (tag_of(h, c) != TAG_QUICK)
                || ((size_of(c) >> 4) != q) || (n >= QUICK_MAX))
                return fail(message, length, addr(c), "bad quick list entry");
        }
        if (n != h->quick_count[q])
            return fail(message, length, q, "quick list count is wrong");
        listed += n;
    }
    if (listed != quick)
        return fail(message, length, h->top, "a quick chunk is in no quick list");
    if ((used != h->used_bytes) || (blocks != h->used_blocks))
        return fail(message, length, h->top, "counters do not match the chunks");
    return 0;
}

SP_EXPORT int sp__heap_check(char *message, size_t length)
{
    struct sp_block *block = sp__block();
    int rc;

    if (block == NULL)
        return -ENOTCONN;
    if ((rc = sp__heap_lock(&block->heap)) != 0)
        return rc;
    rc = check(&block->heap, message, length);
    sp__unlock(&block->heap.lock);
    return rc;
}
