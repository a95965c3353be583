/* The shared heap's chunks, for heap.c and heap_repair.c only.
 *
 * Chunks are boundary-tagged, 16-byte aligned, at least 48 bytes:
 *
 *   in use:  [head: size|INUSE|PREV_INUSE][check][user data ...]
 *   free:    [head: size|PREV_INUSE][check][next][prev] ... [size]
 *
 * `check` is key ^ address ^ tag, tag being USED, FREE, GONE (a header
 * absorbed by a merge), QUICK (below) or CACHED (in a thread's cache, see
 * cache.c: in use as far as the heap is concerned).  sp_free uses it to
 * tell a block start from any other address (a random 64-bit key: user
 * data cannot match by chance), and a freed block from a live one.  [top, end) is the wilderness; no free
 * chunk is ever next to another free chunk or to top.
 *
 * Free chunks sit in bins (exact 16-byte classes below 1 KiB, four classes
 * per power of two above), doubly linked, with a bitmap of non-empty bins.
 * In front of them, each small class has a quick list: up to QUICK_MAX
 * freed chunks kept whole (tag QUICK, head still INUSE, so neighbours do
 * not merge with them), handed out again without splitting or merging.
 * When memory runs short the quick lists are flushed into the bins.
 *
 * Crash safety.  The chain of chunk heads from base to top, with the QUICK
 * tags, is the truth; bins, quick lists, footers, PREV_INUSE bits, other
 * tags and counters are derived from it.  Each operation changes the chain
 * with one store (split: remainder header first, then the shrunk size;
 * merge: the grown size; carve from top: the header, then top; quick list:
 * the tag), with compiler barriers so the stores stay in that order.  A
 * thread killed at any instruction therefore leaves a walkable chain, and
 * the next locker (EOWNERDEAD) rebuilds everything else from it
 * (sp__heap_repair, in heap_repair.c).  The only loss: a chunk being allocated by the dead thread
 * may stay allocated (leaked).
 */
#ifndef SP_RUNTIME_HEAP_H
#define SP_RUNTIME_HEAP_H

#include "internal.h"

#define INUSE       0x1ULL
#define PREV_INUSE  0x2ULL
#define SIZE_MASK   (~15ULL)
#define HEADER      16u
#define MIN_CHUNK   48u
#define PAGE        4096u
#define TRIM_LIMIT  (256u * 1024u)  /* freeing this much gives its pages back */

#define TAG_USED 0x0ULL
#define TAG_FREE 0x46524545c0ffee00ULL
#define TAG_GONE 0x474f4e45deadbe00ULL
#define TAG_QUICK 0x515549434b000000ULL
#define TAG_CACHED 0x4341434845440000ULL  /* in a thread's cache: in use, to the heap */

#define QUICK_MAX 32  /* chunks per quick list */

#define barrier() __asm__ __volatile__("" ::: "memory")

struct sp_chunk {
    uint64_t head;
    uint64_t check;
    struct sp_chunk *next, *prev;  /* free chunks only */
};

static inline uint64_t size_of(const struct sp_chunk *c) { return c->head & SIZE_MASK; }
static inline struct sp_chunk *at(uint64_t address) { return (struct sp_chunk *)(uintptr_t)address; }
static inline uint64_t addr(const void *p) { return (uint64_t)(uintptr_t)p; }
static inline uint64_t *footer(struct sp_chunk *c, uint64_t size) { return (uint64_t *)((char *)c + size - 8); }

static inline void tag(const struct sp_heap *h, struct sp_chunk *c, uint64_t t)
{
    c->check = h->key ^ addr(c) ^ t;
}

static inline uint64_t tag_of(const struct sp_heap *h, const struct sp_chunk *c)
{
    return c->check ^ h->key ^ addr(c);
}

/* Free from the chain's point of view: a free head, or a quick chunk. */
static inline int is_free(const struct sp_heap *h, const struct sp_chunk *c)
{
    return !(c->head & INUSE) || (tag_of(h, c) == TAG_QUICK);
}

static inline unsigned bin_index(uint64_t size)
{
    unsigned log2;

    if (size < SP_SMALL_LIMIT)
        return (unsigned)(size >> 4);
    log2 = 63u - (unsigned)__builtin_clzll(size);
    return 64u + (4u * (log2 - 10u)) + (unsigned)((size >> (log2 - 2u)) & 3u);
}

void sp__bin_push(struct sp_heap *h, struct sp_chunk *c, uint64_t size);
int sp__heap_lock(struct sp_heap *h);    /* 0 (locked, repaired if needed), or -errno */
int sp__heap_repair(struct sp_heap *h);  /* 0, or -1: the chain itself is broken */

#endif
