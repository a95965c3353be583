/* Finding the block (discovery), initialising it, locks and futexes.
 *
 * Discovery, in a program: getauxval(SP_AT_SAMEPROCESS) gives the block's
 * address.  A program exec'd by a program gets the kernel's auxv, without
 * that entry, and a forked child sees the block's header zeroed
 * (MADV_WIPEONFORK; the arena it copies like any memory), so neither can be
 * fooled.  The address is still checked before any plain dereference: the
 * header is read with process_vm_readv on ourselves (or /proc/self/mem),
 * so a bogus value reads as "not mapped", never a crash; magic, version,
 * header size and the self pointer must all match.
 *
 * In the host, the Python binding attaches the block it created
 * (sp__attach) and detaches it when the space closes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static struct sp_block *attached;  /* this copy of the library's block */
static int probed;                 /* the auxv was looked at (and had nothing valid) */

/* -- discovery -------------------------------------------------------------- */

static int read_self(void *out, uintptr_t address, size_t length)
{
    struct iovec local = { out, length };
    struct iovec remote = { (void *)address, length };
    ssize_t got = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    int fd;

    if (got == (ssize_t)length)
        return 0;
    if ((got < 0) && (errno != ENOSYS) && (errno != EPERM))
        return -1;  /* EFAULT: not mapped */
    fd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    got = pread(fd, out, length, (off_t)address);
    close(fd);
    return (got == (ssize_t)length) ? 0 : -1;
}

static int valid_header(const struct sp_block *copy, uintptr_t address)
{
    return (copy->magic == SP_BLOCK_MAGIC)
        && (copy->version == SP_BLOCK_VERSION)
        && (copy->header_size == sizeof(struct sp_block))
        && ((uintptr_t)copy->self == address)
        && (copy->total_size >= sizeof(struct sp_block));
}

static struct sp_block *probe_auxv(void)
{
    struct sp_block copy;
    uintptr_t address;

    errno = 0;
    address = getauxval(SP_AT_SAMEPROCESS);
    if ((address == 0) || ((address % 64) != 0))
        return NULL;
    if (read_self(&copy, address, sizeof copy) != 0)
        return NULL;
    if (!valid_header(&copy, address))
        return NULL;
    return (struct sp_block *)address;
}

struct sp_block *sp__block(void)
{
    struct sp_block *block = __atomic_load_n(&attached, __ATOMIC_ACQUIRE);

    if ((block == NULL) && !__atomic_load_n(&probed, __ATOMIC_ACQUIRE)) {
        block = probe_auxv();
        if (block != NULL)
            __atomic_store_n(&attached, block, __ATOMIC_RELEASE);
        else
            __atomic_store_n(&probed, 1, __ATOMIC_RELEASE);
    }
    /* Closed by the host, or wiped in a forked child: not a space any more. */
    if ((block == NULL) || (__atomic_load_n(&block->magic, __ATOMIC_ACQUIRE) != SP_BLOCK_MAGIC)) {
        errno = ENOTCONN;
        return NULL;
    }
    return block;
}

int sp_in_space(void)
{
    int saved = errno;
    int in = (sp__block() != NULL);

    errno = saved;
    return in;
}

SP_EXPORT int sp__attach(void *mem)
{
    struct sp_block copy;

    if (mem == NULL) {
        __atomic_store_n(&attached, NULL, __ATOMIC_RELEASE);
        return 0;
    }
    if ((read_self(&copy, (uintptr_t)mem, sizeof copy) != 0) || !valid_header(&copy, (uintptr_t)mem))
        return -EINVAL;
    __atomic_store_n(&attached, (struct sp_block *)mem, __ATOMIC_RELEASE);
    return 0;
}

/* -- the host's side: initialise and close a block ------------------------------ */

SP_EXPORT size_t sp__header_size(void)
{
    return sizeof(struct sp_block);
}

/* Set by the Python binding: its waits return on EINTR (errno EINTR) so that
 * Python can run its signal handlers (Ctrl-C), then wait again. */
int sp__interruptible;

SP_EXPORT void sp__set_interruptible(int on)
{
    sp__interruptible = on;
}

SP_EXPORT int sp__block_init(void *mem, uint64_t total_size, uint64_t heap_offset, uint64_t key)
{
    struct sp_block *block = mem;

    if (((uintptr_t)mem % 4096) != 0 || (heap_offset < sizeof *block) || (heap_offset % 4096) != 0
        || (total_size <= heap_offset + 4096))
        return -EINVAL;
    /* A forked child of the host or of a program must not see a live block;
     * the arena it may copy, like any other memory. */
    if (madvise(mem, heap_offset, MADV_WIPEONFORK) != 0)
        return -errno;
    memset(block, 0, sizeof *block);
    block->version = SP_BLOCK_VERSION;
    block->header_size = sizeof *block;
    block->self = block;
    block->total_size = total_size;
    sp__init_lock(&block->registry.lock);
    sp__heap_init(&block->heap, (uintptr_t)mem + heap_offset, (uintptr_t)mem + total_size, key);
    __atomic_store_n(&block->magic, SP_BLOCK_MAGIC, __ATOMIC_RELEASE);
    return 0;
}

/* Every program has been killed and reaped: mark the block dead and give
 * the arena's pages back (the mapping stays, so stray host views read
 * zeros instead of faulting). */
SP_EXPORT int sp__block_close(void *mem)
{
    struct sp_block *block = mem;
    uint64_t heap = block->heap.base;
    uint64_t end = block->heap.end;

    __atomic_store_n(&block->magic, 0, __ATOMIC_RELEASE);
    sp__futex_wake(&block->registry.seq, INT_MAX);
    if (madvise((void *)heap, end - heap, MADV_DONTNEED) != 0)
        return -errno;
    return 0;
}

SP_EXPORT int sp__stats(struct sp_stats *out)
{
    struct sp_block *block = sp__block();

    if (block == NULL)
        return -ENOTCONN;
    memset(out, 0, sizeof *out);
    out->heap_size = block->heap.end - block->heap.base;
    out->used_bytes = __atomic_load_n(&block->heap.used_bytes, __ATOMIC_RELAXED);
    out->used_blocks = __atomic_load_n(&block->heap.used_blocks, __ATOMIC_RELAXED);
    out->allocs = __atomic_load_n(&block->heap.allocs, __ATOMIC_RELAXED);
    out->frees = __atomic_load_n(&block->heap.frees, __ATOMIC_RELAXED);
    out->failed_allocs = __atomic_load_n(&block->heap.failed_allocs, __ATOMIC_RELAXED);
    out->bad_frees = __atomic_load_n(&block->heap.bad_frees, __ATOMIC_RELAXED);
    out->heap_recoveries = __atomic_load_n(&block->heap.recoveries, __ATOMIC_RELAXED);
    out->registry_live = __atomic_load_n(&block->registry.live, __ATOMIC_RELAXED);
    out->registry_recoveries = __atomic_load_n(&block->registry.recoveries, __ATOMIC_RELAXED);
    return 0;
}

/* Tests only: take a lock, say "held=TID" on fd, and never give the lock
 * back (the caller gets killed). */
SP_EXPORT int sp__debug_hold(int which, int fd)
{
    char line[32];
    struct sp_block *block = sp__block();
    int owner_died = 0;
    int rc;

    if (block == NULL)
        return -ENOTCONN;
    rc = sp__lock((which == SP_HOLD_HEAP) ? &block->heap.lock : &block->registry.lock, &owner_died);
    if (rc != 0)
        return rc;
    if (write(fd, line, (size_t)snprintf(line, sizeof line, "held=%d\n", gettid())) < 0)
        return -errno;
    for (;;)
        pause();
}

/* -- locks ------------------------------------------------------------------ */

void sp__init_lock(pthread_mutex_t *lock)
{
    pthread_mutexattr_t attr;

    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(lock, &attr);
    pthread_mutexattr_destroy(&attr);
}

/* Take a robust lock.  When its last holder died holding it, the lock is
 * ours, *owner_died is set, and the caller must repair what the lock
 * protects before unlocking (marking it consistent first makes a repair
 * cut short by another death be retried by the next locker). */
int sp__lock(pthread_mutex_t *lock, int *owner_died)
{
    int rc = pthread_mutex_lock(lock);

    if (rc == EOWNERDEAD) {
        *owner_died = 1;
        pthread_mutex_consistent(lock);
        return 0;
    }
    return -rc;
}

void sp__unlock(pthread_mutex_t *lock)
{
    pthread_mutex_unlock(lock);
}

/* -- futexes and deadlines -------------------------------------------------- */

void sp__deadline(struct timespec *deadline, long timeout_ms)
{
    clock_gettime(CLOCK_MONOTONIC, deadline);
    deadline->tv_sec += timeout_ms / 1000;
    deadline->tv_nsec += (timeout_ms % 1000) * 1000000L;
    if (deadline->tv_nsec >= 1000000000L) {
        deadline->tv_sec += 1;
        deadline->tv_nsec -= 1000000000L;
    }
}

int sp__expired(const struct timespec *deadline)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec > deadline->tv_sec)
        || ((now.tv_sec == deadline->tv_sec) && (now.tv_nsec >= deadline->tv_nsec));
}

/* Sleep while *word == expected, until woken or the absolute CLOCK_MONOTONIC
 * deadline (NULL: none).  0 when woken or the word changed, -ETIMEDOUT, or
 * -EINTR for the Python binding (sp__interruptible). */
int sp__futex_wait(uint32_t *word, uint32_t expected, const struct timespec *deadline)
{
    long rc = syscall(SYS_futex, word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expected, deadline,
                      NULL, FUTEX_BITSET_MATCH_ANY);

    if ((rc != 0) && (errno == ETIMEDOUT))
        return -ETIMEDOUT;
    if ((rc != 0) && (errno == EINTR) && sp__interruptible)
        return -EINTR;
    return 0;
}

void sp__futex_wake(uint32_t *word, int count)
{
    syscall(SYS_futex, word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, count, NULL, NULL, 0);
}
