/* The sharing runtime's block: its layout, and what the C files share.
 *
 * One block per space, in memory the host maps (never a program's):
 *
 *   struct sp_block        magic, version, self pointer, sizes, key
 *     .registry            lock, futex sequence, 1024 named entries
 *     .heap                lock, arena bounds, free-list bins, counters
 *   (padding to a page)
 *   the heap arena         [heap.base, heap.end): 16-byte-aligned chunks
 *
 * Nothing in the block or the arena points into a program's code: entries
 * hold addresses of data, chunks hold sizes, check words and links to other
 * chunks.  Everything is at a fixed address for the life of the space (one
 * address space), so plain pointers are used.
 *
 * Locks are glibc's robust, process-shared mutexes.  When a thread dies
 * holding one, the kernel walks the dead thread's robust list, marks the
 * lock FUTEX_OWNER_DIED and wakes a waiter; the next locker gets EOWNERDEAD
 * and repairs the structure the lock protects (see sp__lock and heap.h).
 * Every change made under a lock commits with one store, so a repair only
 * has to rebuild derived state (free lists) or nothing at all (registry,
 * channels).
 *
 * Plain futex waits and wakes (sp_wait, channels) use FUTEX_PRIVATE_FLAG:
 * every program of a space shares one mm, and a private futex's key is
 * (mm, address).
 */
#ifndef SP_RUNTIME_INTERNAL_H
#define SP_RUNTIME_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#pragma GCC visibility push(default)  /* the public API is exported, the rest hidden */
#include "sameprocess.h"
#pragma GCC visibility pop

#define SP_EXPORT __attribute__((visibility("default")))

#define SP_AT_SAMEPROCESS 0x53504143UL   /* auxv type: "SPAC" */
#define SP_BLOCK_MAGIC    0x314b4c4254525053ULL  /* "SPRTBLK1" */
#define SP_BLOCK_VERSION  1u
#define SP_REGISTRY_SLOTS SP_REGISTRY_CAPACITY

/* A registry entry.  hash != 0 marks a live entry; publishing writes the
 * rest first and the hash last, unpublishing clears the hash first. */
#define SP_ENTRY_IN_HEAP 0x1u  /* [address, address+size) is in the shared heap */

struct sp_entry {
    char name[SP_NAME_MAX];
    uint64_t address;
    uint64_t size;
    int32_t publisher;  /* pid (thread group) of the program that published it */
    uint32_t flags;
};

struct sp_registry {
    pthread_mutex_t lock;
    uint32_t seq;      /* futex word: bumped after a publish that has waiters */
    uint32_t waiters;  /* threads inside sp_wait */
    uint32_t live;
    uint64_t recoveries;  /* times a dead holder's lock was taken over */
    uint32_t hashes[SP_REGISTRY_SLOTS];  /* scanned first; 0 = free slot */
    struct sp_entry entries[SP_REGISTRY_SLOTS];
};

/* Free-list bins: exact 16-byte classes below 1 KiB, then four per power of
 * two (up to 2^63). */
#define SP_SMALL_LIMIT 1024u
#define SP_BINS        (64 + (4 * 54))
#define SP_BINMAP_WORDS ((SP_BINS + 63) / 64)
#define SP_QUICK_CLASSES (SP_SMALL_LIMIT / 16)

struct sp_chunk;

struct sp_heap {
    pthread_mutex_t lock;
    uint64_t base, end;  /* the arena */
    uint64_t top;        /* [top, end) is the untouched wilderness */
    uint64_t key;        /* random; mixed into every chunk's check word */
    uint64_t binmap[SP_BINMAP_WORDS];
    struct sp_chunk *bins[SP_BINS];
    struct sp_chunk *quick[SP_QUICK_CLASSES];  /* freed small chunks, not merged */
    uint32_t quick_count[SP_QUICK_CLASSES];
    /* counters (read without the lock: approximate while others run) */
    uint64_t used_bytes, used_blocks;  /* chunk bytes, including headers */
    uint64_t allocs, frees, failed_allocs;
    uint64_t bad_frees, recoveries;
    uint32_t broken;   /* a repair failed: every call now fails */
};

struct sp_block {
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;        /* sizeof(struct sp_block) */
    struct sp_block *self;
    uint64_t total_size;         /* the whole mapping, arena included */
    struct sp_registry registry;
    struct sp_heap heap;
};

/* Statistics, for tests and benchmarks (sp__stats). */
struct sp_stats {
    uint64_t heap_size, used_bytes, used_blocks;
    uint64_t allocs, frees, failed_allocs, bad_frees, heap_recoveries;
    uint64_t registry_live, registry_recoveries;
};

/* block.c */
struct sp_block *sp__block(void);  /* NULL when not in a space (errno ENOTCONN) */
int sp__lock(pthread_mutex_t *lock, int *owner_died);  /* 0 or -errno */
void sp__unlock(pthread_mutex_t *lock);
void sp__init_lock(pthread_mutex_t *lock);
extern int sp__interruptible;
int sp__futex_wait(uint32_t *word, uint32_t expected, const struct timespec *deadline);
void sp__futex_wake(uint32_t *word, int count);
void sp__deadline(struct timespec *deadline, long timeout_ms);  /* CLOCK_MONOTONIC */
int sp__expired(const struct timespec *deadline);

/* heap.c */
void sp__heap_init(struct sp_heap *heap, uint64_t base, uint64_t end, uint64_t key);
void *sp__heap_alloc(struct sp_block *block, size_t size);  /* errno set on NULL */
int sp__heap_free(struct sp_block *block, void *ptr);  /* 0 or a negative SP_FREE_* code */
int sp__heap_contains(const struct sp_block *block, const void *ptr, size_t size);
int sp__heap_cache_class(const struct sp_block *block, const void *ptr);
void sp__heap_mark(const struct sp_block *block, void *ptr, int cached);
void sp__heap_flush(struct sp_block *block, void **lists, unsigned classes);

/* Why sp_free refused a pointer (negative return of sp__free_checked). */
#define SP_FREE_FOREIGN  (-1)  /* not inside the shared heap */
#define SP_FREE_DOUBLE   (-2)  /* a block that was already freed */
#define SP_FREE_INVALID  (-3)  /* inside the heap but not a block's start */
#define SP_FREE_BROKEN   (-4)  /* the heap could not be repaired */
#define SP_FREE_NOTCONN  (-5)  /* not in a space */

/* Exported for the Python binding and for tests; not in the public header. */
SP_EXPORT int sp__attach(void *block);
SP_EXPORT size_t sp__header_size(void);
SP_EXPORT void sp__set_interruptible(int on);
SP_EXPORT void sp__set_cache(int on);
SP_EXPORT int sp__block_init(void *mem, uint64_t total_size, uint64_t heap_offset, uint64_t key);
SP_EXPORT int sp__block_close(void *mem);
SP_EXPORT int sp__drop_publisher(int pid);
SP_EXPORT int sp__free_checked(void *ptr);
SP_EXPORT const char *sp__free_error(int code);
SP_EXPORT int sp__stats(struct sp_stats *out);
SP_EXPORT int sp__heap_check(char *message, size_t length);
SP_EXPORT int sp__debug_hold(int which, int fd);

#define SP_HOLD_HEAP     1
#define SP_HOLD_REGISTRY 2

#endif
