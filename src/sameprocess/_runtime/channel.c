/* Channels: bounded MPMC queues of pointer-sized messages in the shared heap.
 *
 * A ring of 2^k slots with a tail (senders' side, under send_lock) and a
 * head (receivers' side, under recv_lock), each on its own cache line, so a
 * sender and a receiver never contend for one lock.  Each side also keeps
 * the last value it saw of the other's index (a lower bound, so never
 * wrong, only stale): a streaming receiver reads tail again only when it
 * has caught up with what it saw, not for every message.
 *
 * A sender writes the slot, then publishes it with one store to tail; a
 * receiver reads the slot, then frees it with one store to head.  A holder
 * killed at any point leaves the ring consistent (the message is either
 * queued or not), so taking over its lock needs no repair.
 *
 * Each side touches the channel only while holding its lock, wake-ups
 * included, which is what lets sp_channel_destroy free it safely (below).
 *
 * Waiting: spin for up to SPIN_NS watching head/tail (a waiting receiver
 * gets a message in well under a microsecond; it looks every RECV_POLL
 * pauses, so a receiver that keeps catching up with a fast sender does not
 * pull tail's cache line over for every message), then sleep on an event
 * futex (not_empty / not_full).  Waiters are counted; a sender bumps the
 * event and wakes one receiver only when the count is non-zero, so the fast
 * path makes no system call.  Counting before re-checking, and publishing
 * before reading the count, both sequentially consistent, means a wake-up
 * cannot be missed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define CHANNEL_MAGIC 0x4c4e4e4148435053ULL  /* "SPCHANNL" */
#define MAX_CAPACITY  (1UL << 24)
#define SPIN_NS       20000L
#define RECV_POLL     8u  /* pauses between a waiting receiver's looks at tail */
#define STREAM_POLL   64u /* the same for a receiver that is draining a stream */
#define STREAM_AFTER  4u  /* messages taken without waiting that make a stream */

/* Messages this thread took in a row without waiting.  A receiver that
 * catches up with a stream looks at tail less often, so that a batch
 * builds up instead of tail's cache line moving over for every message;
 * one that had to wait (a request, a ping) looks often, for latency. */
static __thread unsigned recv_streak;

struct sp_channel {
    uint64_t magic;       /* CHANNEL_MAGIC ^ address: wiped when destroyed */
    uint64_t mask;        /* capacity - 1 */
    void *allocation;     /* what sp_alloc returned; the channel is 64-aligned in it */
    uint32_t closed;
    uint32_t reserved;
    char name[SP_NAME_MAX];
    _Alignas(64) pthread_mutex_t send_lock;
    uint64_t tail;
    uint64_t head_seen;   /* a lower bound of head, read by senders only */
    _Alignas(64) pthread_mutex_t recv_lock;
    uint64_t head;
    uint64_t tail_seen;   /* a lower bound of tail, read by receivers only */
    _Alignas(64) uint32_t not_empty;
    uint32_t recv_waiters;
    uint32_t not_full;
    uint32_t send_waiters;
    _Alignas(64) void *slots[];
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

static int valid(const struct sp_channel *ch)
{
    struct sp_block *block = sp__block();

    return (block != NULL) && (ch != NULL) && (((uintptr_t)ch % 64) == 0)
        && sp__heap_contains(block, ch, sizeof *ch)
        && (__atomic_load_n(&ch->magic, __ATOMIC_ACQUIRE) == (CHANNEL_MAGIC ^ (uintptr_t)ch));
}

sp_channel *sp_channel_create(const char *name, size_t capacity)
{
    struct sp_block *block = sp__block();
    struct sp_channel *ch;
    size_t slots = 1, bytes;
    void *raw;
    int rc;

    if (block == NULL)
        return NULL;
    if ((capacity == 0) || (capacity > MAX_CAPACITY) || (name == NULL)) {
        errno = EINVAL;
        return NULL;
    }
    if (strnlen(name, SP_NAME_MAX) >= SP_NAME_MAX) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    while (slots < capacity)
        slots *= 2;
    bytes = sizeof *ch + (slots * sizeof(void *));
    raw = sp__heap_alloc(block, bytes + 64);
    if (raw == NULL)
        return NULL;
    ch = (struct sp_channel *)(((uintptr_t)raw + 63) & ~(uintptr_t)63);
    memset(ch, 0, sizeof *ch);
    ch->mask = slots - 1;
    ch->allocation = raw;
    strncpy(ch->name, name, SP_NAME_MAX - 1);
    sp__init_lock(&ch->send_lock);
    sp__init_lock(&ch->recv_lock);
    __atomic_store_n(&ch->magic, CHANNEL_MAGIC ^ (uintptr_t)ch, __ATOMIC_RELEASE);
    rc = sp_publish(name, ch, bytes);
    if (rc != 0) {
        ch->magic = 0;
        sp__heap_free(block, raw);
        errno = -rc;
        return NULL;
    }
    return ch;
}

sp_channel *sp_channel_open(const char *name, long timeout_ms)
{
    struct sp_channel *ch = (timeout_ms == 0) ? sp_lookup(name, NULL) : sp_wait(name, NULL, timeout_ms);

    if ((ch != NULL) && !valid(ch)) {
        errno = EPROTO;
        return NULL;
    }
    return ch;
}

/* -- one attempt each ------------------------------------------------------------ */

static int lock_side(pthread_mutex_t *lock)
{
    int owner_died = 0;

    return sp__lock(lock, &owner_died);  /* nothing to repair: see the top */
}

static int try_send(struct sp_channel *ch, void *message)
{
    uint64_t tail;
    int rc = lock_side(&ch->send_lock);

    if (rc != 0)
        return rc;
    if (__atomic_load_n(&ch->closed, __ATOMIC_ACQUIRE)) {
        sp__unlock(&ch->send_lock);
        return -EPIPE;
    }
    tail = ch->tail;
    if ((tail - ch->head_seen > ch->mask)
        && (tail - (ch->head_seen = __atomic_load_n(&ch->head, __ATOMIC_ACQUIRE)) > ch->mask)) {
        sp__unlock(&ch->send_lock);
        return -EAGAIN;
    }
    ch->slots[tail & ch->mask] = message;
    __atomic_store_n(&ch->tail, tail + 1, __ATOMIC_SEQ_CST);  /* publish */
    if (__atomic_load_n(&ch->recv_waiters, __ATOMIC_SEQ_CST) != 0) {
        __atomic_fetch_add(&ch->not_empty, 1, __ATOMIC_SEQ_CST);
        sp__futex_wake(&ch->not_empty, 1);
    }
    sp__unlock(&ch->send_lock);
    return 0;
}

static int try_recv(struct sp_channel *ch, void **message)
{
    uint64_t head;
    uint32_t closed;
    int rc = lock_side(&ch->recv_lock);

    if (rc != 0)
        return rc;
    head = ch->head;
    if (ch->tail_seen == head) {
        /* closed before tail: every send that beat close() is then visible */
        closed = __atomic_load_n(&ch->closed, __ATOMIC_ACQUIRE);
        if ((ch->tail_seen = __atomic_load_n(&ch->tail, __ATOMIC_ACQUIRE)) == head) {
            sp__unlock(&ch->recv_lock);
            return closed ? -EPIPE : -EAGAIN;
        }
    }
    *message = ch->slots[head & ch->mask];
    __atomic_store_n(&ch->head, head + 1, __ATOMIC_SEQ_CST);  /* free the slot */
    if (__atomic_load_n(&ch->send_waiters, __ATOMIC_SEQ_CST) != 0) {
        __atomic_fetch_add(&ch->not_full, 1, __ATOMIC_SEQ_CST);
        sp__futex_wake(&ch->not_full, 1);
    }
    sp__unlock(&ch->recv_lock);
    return 0;
}

/* -- waiting ------------------------------------------------------------------------ */

/* Nothing to do yet: a sender has fewer than `room` free slots, a receiver
 * no message. */
static int must_wait(const struct sp_channel *ch, int sending, uint64_t room)
{
    uint64_t head = __atomic_load_n(&ch->head, __ATOMIC_SEQ_CST);
    uint64_t tail = __atomic_load_n(&ch->tail, __ATOMIC_SEQ_CST);

    if (__atomic_load_n(&ch->closed, __ATOMIC_SEQ_CST))
        return 0;
    return sending ? ((ch->mask + 1) - (tail - head) < room) : (tail == head);
}

static uint64_t batch_room(const struct sp_channel *ch)
{
    uint64_t half = (ch->mask + 1) / 2;

    return (half == 0) ? 1 : ((half < 64) ? half : 64);
}

/* Wait until the channel may have room (sending) or a message; 0, or
 * -ETIMEDOUT once the deadline (NULL: none) passed, or -EINTR (Python). */
static int wait_turn(struct sp_channel *ch, int sending, unsigned look_every,
                     const struct timespec *deadline)
{
    uint32_t *event = sending ? &ch->not_full : &ch->not_empty;
    uint32_t *waiters = sending ? &ch->send_waiters : &ch->recv_waiters;
    struct timespec spin_until;
    uint32_t seq;
    int rc = 0;

    sp__deadline(&spin_until, 0);
    spin_until.tv_nsec += SPIN_NS;
    if (spin_until.tv_nsec >= 1000000000L) {
        spin_until.tv_sec++;
        spin_until.tv_nsec -= 1000000000L;
    }
    /* A spinning sender waits for a batch of free slots (and polls less
     * often): waiting for one slot at a time makes the head's cache line
     * bounce between the two for every message of a full channel.  Only
     * the spin does that; whether to sleep is decided on one free slot. */
    for (unsigned i = 1; must_wait(ch, sending, sending ? batch_room(ch) : 1); i++) {
        for (unsigned k = 0; k < look_every; k++)
            cpu_relax();
        if (((i % 32) == 0) && sp__expired(&spin_until))
            break;
    }
    seq = __atomic_load_n(event, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(waiters, 1, __ATOMIC_SEQ_CST);
    if (must_wait(ch, sending, 1))
        rc = sp__futex_wait(event, seq, deadline);
    __atomic_fetch_sub(waiters, 1, __ATOMIC_SEQ_CST);
    return rc;
}

int sp_channel_send(sp_channel *ch, void *message, long timeout_ms)
{
    struct timespec deadline;
    int rc;

    if (!valid(ch))
        return -EINVAL;
    if (timeout_ms > 0)
        sp__deadline(&deadline, timeout_ms);
    while ((rc = try_send(ch, message)) == -EAGAIN) {
        int waited = (timeout_ms == 0) ? -ETIMEDOUT : wait_turn(ch, 1, 8u, (timeout_ms > 0) ? &deadline : NULL);

        if (waited == -EINTR)
            return -EINTR;
        if (waited != 0) {
            rc = try_send(ch, message);  /* a last look */
            return (rc == -EAGAIN) ? -ETIMEDOUT : rc;
        }
    }
    return rc;
}

int sp_channel_recv(sp_channel *ch, void **message, long timeout_ms)
{
    struct timespec deadline;
    unsigned look_every = (recv_streak >= STREAM_AFTER) ? STREAM_POLL : RECV_POLL;
    int rc;

    if (!valid(ch) || (message == NULL))
        return -EINVAL;
    if (timeout_ms > 0)
        sp__deadline(&deadline, timeout_ms);
    recv_streak++;
    while ((rc = try_recv(ch, message)) == -EAGAIN) {
        int waited = (timeout_ms == 0) ? -ETIMEDOUT
                                       : wait_turn(ch, 0, look_every, (timeout_ms > 0) ? &deadline : NULL);

        recv_streak = 0;
        if (waited == -EINTR)
            return -EINTR;
        if (waited != 0) {
            rc = try_recv(ch, message);
            return (rc == -EAGAIN) ? -ETIMEDOUT : rc;
        }
    }
    return rc;
}

int sp_channel_close(sp_channel *ch)
{
    int rc;

    if (!valid(ch))
        return -EINVAL;
    if ((rc = lock_side(&ch->send_lock)) != 0)  /* no send completes after this */
        return rc;
    __atomic_store_n(&ch->closed, 1, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&ch->not_empty, 1, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&ch->not_full, 1, __ATOMIC_SEQ_CST);
    sp__futex_wake(&ch->not_empty, INT_MAX);
    sp__futex_wake(&ch->not_full, INT_MAX);
    sp__unlock(&ch->send_lock);
    return 0;
}

/* Senders and receivers touch the channel only inside their lock (wake-ups
 * included), so once destroy has held both locks, a call that already
 * delivered its message is done with the memory. */
int sp_channel_destroy(sp_channel *ch)
{
    struct sp_block *block = sp__block();
    int rc;

    if (!valid(ch))
        return -EINVAL;
    if ((rc = sp_channel_close(ch)) != 0 || (rc = lock_side(&ch->recv_lock)) != 0)
        return rc;
    __atomic_store_n(&ch->magic, 0, __ATOMIC_SEQ_CST);
    sp__unlock(&ch->recv_lock);
    if (sp_lookup(ch->name, NULL) == ch)
        sp_unpublish(ch->name);
    return (sp__heap_free(block, ch->allocation) == 0) ? 0 : -EINVAL;
}

size_t sp_channel_count(const sp_channel *ch)
{
    if (!valid(ch))
        return 0;
    return (size_t)(__atomic_load_n(&ch->tail, __ATOMIC_ACQUIRE) - __atomic_load_n(&ch->head, __ATOMIC_ACQUIRE));
}
