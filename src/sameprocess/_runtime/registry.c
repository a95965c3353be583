/* The registry: names -> (address, size), shared by every program of a space.
 *
 * 1024 slots; a slot is live when its hash word is non-zero.  A lookup scans
 * the 4 KiB hash array, then compares names.  Every change commits with one
 * store to a hash word (publish writes the entry first, unpublish clears
 * the hash first), so a holder killed mid-change leaves either the old or
 * the new state: taking over its lock only recounts `live`.
 *
 * Lifetime: an entry whose memory lies in the shared heap stays after its
 * publisher exits (that memory is the space's).  Any other entry names the
 * publisher's own memory (stack, globals, its libc heap), which may be
 * unmapped or reused once it exits: the host drops those entries when it
 * reaps the publisher (sp__drop_publisher), before unmapping anything.
 *
 * sp_wait sleeps on the `seq` futex; a publish bumps it and wakes every
 * waiter, but only when `waiters` says someone waits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static int check_name(const char *name, size_t *length)
{
    size_t n;

    if (name == NULL)
        return -EINVAL;
    n = strnlen(name, SP_NAME_MAX);
    if (n == 0)
        return -EINVAL;
    if (n >= SP_NAME_MAX)
        return -ENAMETOOLONG;
    *length = n;
    return 0;
}

static uint32_t name_hash(const char *name, size_t length)
{
    uint32_t hash = 2166136261u;  /* FNV-1a */

    for (size_t i = 0; i < length; i++)
        hash = (hash ^ (unsigned char)name[i]) * 16777619u;
    return (hash == 0) ? 1 : hash;
}

static int lock_registry(struct sp_registry *registry)
{
    int owner_died = 0;
    int rc = sp__lock(&registry->lock, &owner_died);

    if ((rc == 0) && owner_died) {
        uint32_t live = 0;

        for (int i = 0; i < SP_REGISTRY_SLOTS; i++)
            live += (registry->hashes[i] != 0);
        registry->live = live;
        registry->recoveries++;
    }
    return rc;
}

static int find(const struct sp_registry *registry, const char *name, size_t length, uint32_t hash)
{
    for (int i = 0; i < SP_REGISTRY_SLOTS; i++) {
        if ((registry->hashes[i] == hash)
            && (memcmp(registry->entries[i].name, name, length + 1) == 0))
            return i;
    }
    return -1;
}

int sp_publish(const char *name, void *ptr, size_t size)
{
    struct sp_block *block = sp__block();
    struct sp_registry *registry;
    struct sp_entry *entry;
    size_t length;
    uint32_t hash;
    int rc, slot;

    if (block == NULL)
        return -ENOTCONN;
    if ((rc = check_name(name, &length)) != 0)
        return rc;
    if ((ptr == NULL) || ((uintptr_t)ptr + size < (uintptr_t)ptr))
        return -EINVAL;
    registry = &block->registry;
    hash = name_hash(name, length);
    if ((rc = lock_registry(registry)) != 0)
        return rc;
    if (find(registry, name, length, hash) >= 0) {
        rc = -EEXIST;
    } else if (registry->live >= SP_REGISTRY_SLOTS) {
        rc = -ENOSPC;
    } else {
        for (slot = 0; registry->hashes[slot] != 0; slot++)
            ;
        entry = &registry->entries[slot];
        memset(entry->name, 0, sizeof entry->name);
        memcpy(entry->name, name, length);
        entry->address = (uintptr_t)ptr;
        entry->size = size;
        entry->publisher = getpid();
        entry->flags = sp__heap_contains(block, ptr, size) ? SP_ENTRY_IN_HEAP : 0;
        __atomic_store_n(&registry->hashes[slot], hash, __ATOMIC_RELEASE);  /* commit */
        registry->live++;
    }
    sp__unlock(&registry->lock);
    if ((rc == 0) && (__atomic_load_n(&registry->waiters, __ATOMIC_SEQ_CST) != 0)) {
        __atomic_fetch_add(&registry->seq, 1, __ATOMIC_SEQ_CST);
        sp__futex_wake(&registry->seq, INT_MAX);
    }
    return rc;
}

/* 1 and *entry filled when found, 0 when absent, or -errno. */
static int lookup(struct sp_block *block, const char *name, size_t length, struct sp_entry *out)
{
    struct sp_registry *registry = &block->registry;
    int rc, slot;

    if ((rc = lock_registry(registry)) != 0)
        return rc;
    slot = find(registry, name, length, name_hash(name, length));
    if (slot >= 0)
        *out = registry->entries[slot];
    sp__unlock(&registry->lock);
    return (slot >= 0) ? 1 : 0;
}

void *sp_lookup(const char *name, size_t *size)
{
    struct sp_block *block = sp__block();
    struct sp_entry entry;
    size_t length;
    int rc;

    if (block == NULL)
        return NULL;
    if ((rc = check_name(name, &length)) != 0 || (rc = lookup(block, name, length, &entry)) <= 0) {
        errno = (rc == 0) ? ENOENT : -rc;
        return NULL;
    }
    if (size != NULL)
        *size = entry.size;
    return (void *)(uintptr_t)entry.address;
}

void *sp_wait(const char *name, size_t *size, long timeout_ms)
{
    struct sp_block *block = sp__block();
    struct sp_registry *registry;
    struct timespec deadline;
    struct sp_entry entry;
    size_t length;
    int rc;

    if (block == NULL)
        return NULL;
    if ((rc = check_name(name, &length)) != 0) {
        errno = -rc;
        return NULL;
    }
    registry = &block->registry;
    if (timeout_ms >= 0)
        sp__deadline(&deadline, timeout_ms);
    for (;;) {
        uint32_t seq = __atomic_load_n(&registry->seq, __ATOMIC_ACQUIRE);

        /* Counted as a waiter before looking, so a publish that our lookup
         * misses is sure to see us and bump seq (then the wait returns). */
        __atomic_fetch_add(&registry->waiters, 1, __ATOMIC_SEQ_CST);
        rc = lookup(block, name, length, &entry);
        if ((rc == 0) && (timeout_ms >= 0) && sp__expired(&deadline))
            rc = -ETIMEDOUT;
        if ((rc == 0) && (sp__futex_wait(&registry->seq, seq, (timeout_ms >= 0) ? &deadline : NULL) == -EINTR))
            rc = -EINTR;
        __atomic_fetch_sub(&registry->waiters, 1, __ATOMIC_SEQ_CST);
        if (rc == 0 && (__atomic_load_n(&block->magic, __ATOMIC_ACQUIRE) != SP_BLOCK_MAGIC))
            rc = -ENOTCONN;  /* the space closed while we slept */
        if (rc < 0) {
            errno = -rc;
            return NULL;
        }
        if (rc == 1)
            break;
    }
    if (size != NULL)
        *size = entry.size;
    return (void *)(uintptr_t)entry.address;
}

int sp_unpublish(const char *name)
{
    struct sp_block *block = sp__block();
    struct sp_registry *registry;
    size_t length;
    int rc, slot;

    if (block == NULL)
        return -ENOTCONN;
    if ((rc = check_name(name, &length)) != 0)
        return rc;
    registry = &block->registry;
    if ((rc = lock_registry(registry)) != 0)
        return rc;
    slot = find(registry, name, length, name_hash(name, length));
    if (slot >= 0) {
        __atomic_store_n(&registry->hashes[slot], 0, __ATOMIC_RELEASE);  /* commit */
        registry->live--;
    }
    sp__unlock(&registry->lock);
    return (slot >= 0) ? 0 : -ENOENT;
}

/* Host, when it reaps program `pid`: drop the entries naming its own memory. */
SP_EXPORT int sp__drop_publisher(int pid)
{
    struct sp_block *block = sp__block();
    struct sp_registry *registry;
    int rc, dropped = 0;

    if (block == NULL)
        return -ENOTCONN;
    registry = &block->registry;
    if ((rc = lock_registry(registry)) != 0)
        return rc;
    for (int i = 0; i < SP_REGISTRY_SLOTS; i++) {
        const struct sp_entry *entry = &registry->entries[i];

        if ((registry->hashes[i] != 0) && (entry->publisher == pid)
            && !(entry->flags & SP_ENTRY_IN_HEAP)) {
            __atomic_store_n(&registry->hashes[i], 0, __ATOMIC_RELEASE);
            registry->live--;
            dropped++;
        }
    }
    sp__unlock(&registry->lock);
    return dropped;
}
