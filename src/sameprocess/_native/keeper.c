/* The keeper task: serves programs' memory calls and keeps the ledger.
 *
 * Phases of its life, in order (keeper_main):
 *   1. detach from the host: every signal blocked, its own session, cwd /,
 *      no descriptor but the control socket;
 *   2. loop on one epoll set: the control socket (requests from the host and
 *      listeners from child paths) and one seccomp listener per program;
 *   3. exit once the host is gone and no program's filter has a task left.
 *
 * Rules (the child path's): a CLONE_VM task without TLS of its own, so raw
 * syscalls only (sp_syscall), no errno, no locks, no allocation.
 *
 * A notification is answered in one of two ways:
 *   - performed here: the caller is in the space's mm (kcmp), so the keeper
 *     makes the very call, placing mappings that name no address in the
 *     window, records the result in the ledger and returns it;
 *   - let through (SECCOMP_USER_NOTIF_FLAG_CONTINUE): a descendant in an mm
 *     of its own (fork without exec), or a call the keeper cannot make for
 *     the caller (a descriptor it may not take).  The kernel then runs the
 *     call as if no filter were there.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/kcmp.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "keeper.h"
#include "ledger.h"
#include "syscalls.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif
#ifndef MAP_32BIT
#define MAP_32BIT 0
#endif
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS _IOW('!', 4, uint64_t)
#endif
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP 1  /* Linux 6.6 */
#define PIDFD_THREAD 0x80   /* O_EXCL: a pidfd for one thread (Linux 6.9) */
#define CONTROL_EVENT (~0ULL)
#define SLOT_LIVE 0x2u       /* registered, not reclaimed yet */
#define PAGE 4096ULL
#define HUGE_ALIGN (2ULL << 20)

_Static_assert(sizeof(struct sp_keeper_msg) == 112, "KEEPER_MSG in _ledger.py");
_Static_assert(sizeof(struct sp_keeper_reply) == 32, "KEEPER_REPLY in _ledger.py");
_Static_assert(sizeof(struct sp_keeper_slot) == 32, "slot size in _ledger.py");
_Static_assert(sizeof(struct sp_ledger_entry) == 24, "entry size in _ledger.py");
_Static_assert(offsetof(struct sp_keeper, epoll_fd) == 72, "KEEPER in _ledger.py");
_Static_assert(offsetof(struct sp_keeper, counters) == 104, "KEEPER in _ledger.py");

static int failed(long r) { return r < 0 && r >= -MAX_ERRNO; }
static uint64_t page_up(uint64_t n) { return (n + PAGE - 1) & ~(PAGE - 1); }

/* -- slots ------------------------------------------------------------------ */

static long find_slot(const struct sp_keeper *k, uint64_t id)
{
    for (uint32_t n = 0; n < k->n_slot_cap; n++) {
        uint32_t i = (uint32_t)((id + n) % k->n_slot_cap);
        if (k->slots[i].id == id)
            return i;
    }
    return -1;
}

static long new_slot(struct sp_keeper *k, uint64_t id)
{
    for (uint32_t n = 0; n < k->n_slot_cap; n++) {
        uint32_t i = (uint32_t)((id + n) % k->n_slot_cap);
        if (k->slots[i].id == 0) {
            k->slots[i] = (struct sp_keeper_slot){id, 0, 0, -1, -1, SLOT_LIVE};
            k->counters.slots_used++;
            return i;
        }
    }
    return -1;
}

/* A slot is free again once reclaimed and its listener is closed. */
static void release_if_done(struct sp_keeper *k, struct sp_keeper_slot *s)
{
    if ((s->flags & SLOT_LIVE) || s->listener >= 0)
        return;
    if (s->pidfd >= 0)
        SYSCALL(SYS_close, s->pidfd, 0, 0, 0, 0, 0);
    s->id = 0;
    s->pidfd = -1;
    k->counters.slots_used--;
}

static uint64_t reclaim(struct sp_keeper *k, uint32_t slot, uint64_t *bytes)
{
    uint64_t count = ledger_reclaim(k, slot, bytes);
    k->slots[slot].flags &= ~SLOT_LIVE;
    k->counters.reclaimed += count;
    return count;
}

static void retire_listener(struct sp_keeper *k, uint32_t slot)
{
    struct sp_keeper_slot *s = &k->slots[slot];
    SYSCALL(SYS_epoll_ctl, k->epoll_fd, EPOLL_CTL_DEL, s->listener, 0, 0, 0);
    SYSCALL(SYS_close, s->listener, 0, 0, 0, 0, 0);
    s->listener = -1;
    k->live_listeners--;
    if (k->host_gone && (s->flags & SLOT_LIVE)) {  /* nobody else will reap it */
        uint64_t bytes;
        reclaim(k, slot, &bytes);
    }
    release_if_done(k, s);
}

/* -- performing a program's call ----------------------------------------------- */

/* The caller's descriptor fd, as one of ours; -errno if it cannot be had. */
static long take_fd(struct sp_keeper *k, uint32_t slot, int32_t tid, long fd, int listener,
                    uint64_t notif_id)
{
    struct sp_keeper_slot *s = &k->slots[slot];
    long pidfd = -1, own = 0;
    if (tid != s->pid) {   /* another thread: its table may differ (CLONE_VM children) */
        pidfd = SYSCALL(SYS_pidfd_open, tid, PIDFD_THREAD, 0, 0, 0, 0);
        own = !failed(pidfd);
    }
    if (failed(pidfd) || pidfd < 0) {
        if (s->pidfd < 0) {
            long r = SYSCALL(SYS_pidfd_open, s->pid, 0, 0, 0, 0, 0);
            if (failed(r))
                return r;
            s->pidfd = (int32_t)r;
        }
        pidfd = s->pidfd;
    }
    /* The tid may have been reused since the notification was read: only a
     * notification still pending proves that the pidfd names its caller. */
    long got = -ENOENT;
    if (!failed(SYSCALL(SYS_ioctl, listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &notif_id, 0, 0, 0)))
        got = SYSCALL(SYS_pidfd_getfd, pidfd, fd, 0, 0, 0, 0);
    if (own)
        SYSCALL(SYS_close, pidfd, 0, 0, 0, 0, 0);
    return got;
}

/* RLIMIT_AS, as the program's own: the kernel checks the keeper's limit
 * against the whole space, so the keeper checks the caller's against what
 * the ledger holds for its program (loader regions included). */
static int over_address_limit(const struct sp_keeper *k, uint32_t slot, int32_t tid, uint64_t more)
{
    struct { uint64_t cur, max; } lim;
    if (!(k->slots[slot].flags & SP_KEEPER_ADDRESS_LIMIT))
        return 0;
    if (failed(SYSCALL(SYS_prlimit64, tid, RLIMIT_AS, 0, &lim, 0, 0)))
        return 0;
    return lim.cur != ~0ULL && k->slots[slot].mapped + more > lim.cur;
}

/* Where the kernel would be free to choose: in the window instead. */
static long map_placed(struct sp_keeper *k, uint64_t hint, uint64_t len, long prot, long flags,
                       long fd, long off)
{
    long r;
    /* Like the kernel: the hint if it is free, for data (any failure there
     * means "not there", as a hint the kernel cannot use is ignored).  Code
     * (a file, or an executable mapping) goes in the window whatever the
     * hint, so that the calls it makes are the program's. */
    if (hint && (flags & MAP_ANONYMOUS) && !(prot & PROT_EXEC)) {
        r = SYSCALL(SYS_mmap, page_up(hint), len, prot, flags | MAP_FIXED_NOREPLACE, fd, off);
        if (!failed(r))
            return r;
    }
    uint64_t at = ledger_place(k, page_up(len), page_up(len) >= HUGE_ALIGN ? HUGE_ALIGN : PAGE);
    if (at) {
        r = SYSCALL(SYS_mmap, at, len, prot, flags | MAP_FIXED_NOREPLACE, fd, off);
        if (r != -EEXIST)
            return r;
    }
    return SYSCALL(SYS_mmap, 0, len, prot, flags, fd, off);  /* window full or taken */
}

static long do_mmap(struct sp_keeper *k, uint32_t slot, const struct seccomp_notif *req, int listener)
{
    const uint64_t *a = (const uint64_t *)req->data.args;
    uint64_t addr = a[0], len = a[1];
    long prot = (long)a[2], flags = (long)(int)a[3], fd = (long)(int)a[4], off = (long)a[5];
    long ours = -1;
    if (over_address_limit(k, slot, (int32_t)req->pid, page_up(len)))
        return -ENOMEM;
    if (!(flags & MAP_ANONYMOUS)) {
        ours = take_fd(k, slot, req->pid, fd, listener, req->id);
        if (ours == -EBADF)
            return -EBADF;
        if (failed(ours))
            return 1;  /* may not take it: let the kernel map it, unrecorded */
        fd = ours;
    }
    long r;
    if ((flags & (MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_32BIT | MAP_HUGETLB | MAP_GROWSDOWN)) || len == 0)
        r = SYSCALL(SYS_mmap, addr, len, prot, flags, fd, off);
    else
        r = map_placed(k, addr, len, prot, flags, fd, off);
    if (ours >= 0)
        SYSCALL(SYS_close, ours, 0, 0, 0, 0, 0);
    if (!failed(r) && ledger_set(k, (uint64_t)r, (uint64_t)r + page_up(len), slot) < 0)
        k->counters.ledger_full++;
    return r;
}

static long do_munmap(struct sp_keeper *k, const struct seccomp_notif *req)
{
    uint64_t addr = req->data.args[0], len = req->data.args[1];
    long r = SYSCALL(SYS_munmap, addr, len, 0, 0, 0, 0);
    if (!failed(r) && ledger_carve(k, addr, addr + page_up(len)) < 0)
        k->counters.ledger_full++;
    return r;
}

/* A move the kernel would place anywhere: into a reservation in the window. */
static long remap_placed(struct sp_keeper *k, uint64_t old, uint64_t old_len, uint64_t new_len,
                         long flags)
{
    uint64_t at = ledger_place(k, page_up(new_len), page_up(new_len) >= HUGE_ALIGN ? HUGE_ALIGN : PAGE);
    long reserve = at ? SYSCALL(SYS_mmap, at, new_len, PROT_NONE,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0)
                      : -EEXIST;
    if (failed(reserve))
        return SYSCALL(SYS_mremap, old, old_len, new_len, flags, 0, 0);
    long r = SYSCALL(SYS_mremap, old, old_len, new_len, flags | MREMAP_FIXED, reserve, 0);
    if (failed(r))
        SYSCALL(SYS_munmap, reserve, new_len, 0, 0, 0, 0);
    return r;
}

static long do_mremap(struct sp_keeper *k, uint32_t slot, const struct seccomp_notif *req)
{
    const uint64_t *a = (const uint64_t *)req->data.args;
    uint64_t old = a[0], old_len = a[1], new_len = a[2], target = a[4];
    long flags = (long)(int)a[3], r;
    if (new_len > old_len && over_address_limit(k, slot, (int32_t)req->pid, page_up(new_len - old_len)))
        return -ENOMEM;
    if ((flags & MREMAP_FIXED) || !(flags & MREMAP_MAYMOVE))
        r = SYSCALL(SYS_mremap, old, old_len, new_len, flags, target, 0);
    else {
        r = old_len ? SYSCALL(SYS_mremap, old, old_len, new_len, flags & ~MREMAP_MAYMOVE, 0, 0) : -ENOMEM;
        if (r == -ENOMEM)  /* cannot stay where it is */
            r = remap_placed(k, old, old_len, new_len, flags);
    }
    if (failed(r))
        return r;
    if (!(flags & MREMAP_DONTUNMAP) && old_len
        && ledger_carve(k, old, old + page_up(old_len)) < 0)
        k->counters.ledger_full++;
    if (ledger_set(k, (uint64_t)r, (uint64_t)r + page_up(new_len), slot) < 0)
        k->counters.ledger_full++;
    return r;
}

/* -- notifications ------------------------------------------------------------ */

static int same_mm(const struct sp_keeper *k, int32_t tid)
{
    return SYSCALL(SYS_kcmp, k->self_pid, tid, KCMP_VM, 0, 0, 0) == 0;
}

static void serve_notification(struct sp_keeper *k, uint32_t slot)
{
    struct sp_keeper_slot *s = &k->slots[slot];
    struct seccomp_notif req = {0};
    if (failed(SYSCALL(SYS_ioctl, s->listener, SECCOMP_IOCTL_NOTIF_RECV, &req, 0, 0, 0)))
        return;  /* its caller died meanwhile */
    struct seccomp_notif_resp resp = {.id = req.id};
    long r = 1;  /* 1: let it through */
    if ((s->flags & SLOT_LIVE) && same_mm(k, (int32_t)req.pid)) {
        if (req.data.nr == SYS_mmap)
            r = do_mmap(k, slot, &req, s->listener);
        else if (req.data.nr == SYS_munmap)
            r = do_munmap(k, &req);
        else if (req.data.nr == SYS_mremap)
            r = do_mremap(k, slot, &req);
        if (r == 1)
            k->counters.untracked++;
        else
            k->counters.notifications++;
    } else {
        k->counters.continued++;
    }
    if (r == 1)
        resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    else if (failed(r))
        resp.error = (int32_t)r;
    else
        resp.val = r;
    /* ENOENT: the caller was killed after the call was made; what it mapped
     * is recorded and goes with the rest of the program. */
    SYSCALL(SYS_ioctl, s->listener, SECCOMP_IOCTL_NOTIF_SEND, &resp, 0, 0, 0);
}

/* -- control socket --------------------------------------------------------------- */

static void reply(struct sp_keeper *k, uint64_t id, int64_t result, uint64_t bytes)
{
    struct sp_keeper_reply out = {id, result, bytes, 0};
    SYSCALL(SYS_sendto, k->control_fd, &out, sizeof out, MSG_DONTWAIT | MSG_NOSIGNAL, 0, 0);
}

static void on_register(struct sp_keeper *k, const struct sp_keeper_msg *m)
{
    long slot = new_slot(k, m->id);
    if (slot < 0)
        return;  /* the host checks the slot count before it registers */
    k->slots[slot].flags |= (uint32_t)(m->flags & SP_KEEPER_ADDRESS_LIMIT);
    for (uint32_t i = 0; i < m->n_regions && i < SP_KEEPER_REGIONS; i++)
        if (ledger_set(k, m->regions[2 * i], m->regions[2 * i + 1], (uint32_t)slot) < 0)
            k->counters.ledger_full++;
}

static void on_listener(struct sp_keeper *k, const struct sp_keeper_msg *m, int fd)
{
    long slot = find_slot(k, m->id);
    if (slot < 0 || k->slots[slot].listener >= 0) {
        SYSCALL(SYS_close, fd, 0, 0, 0, 0, 0);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)slot};
    if (failed(SYSCALL(SYS_epoll_ctl, k->epoll_fd, EPOLL_CTL_ADD, fd, &ev, 0, 0))) {
        SYSCALL(SYS_close, fd, 0, 0, 0, 0, 0);  /* its calls fail with ENOSYS */
        return;
    }
    /* The caller waits for the keeper and the keeper for the caller: ask
     * the scheduler to hand the CPU over rather than migrate (the flag is
     * ignored before Linux 6.6, which is fine). */
    SYSCALL(SYS_ioctl, fd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, 0, 0, 0);
    k->slots[slot].listener = fd;
    k->slots[slot].pid = (int32_t)m->pid;
    k->live_listeners++;
}

static void on_request(struct sp_keeper *k, const struct sp_keeper_msg *m)
{
    long slot = find_slot(k, m->id);
    uint64_t bytes = 0;
    if (slot < 0) {
        reply(k, m->id, -ENOENT, 0);
    } else if (m->kind == SP_KEEPER_RECLAIM) {
        uint64_t count = reclaim(k, (uint32_t)slot, &bytes);
        release_if_done(k, &k->slots[slot]);
        reply(k, m->id, (int64_t)count, bytes);
    } else {
        uint64_t count = ledger_query(k, (uint32_t)slot, (uint64_t *)(uintptr_t)m->buf, m->buf_len, &bytes);
        reply(k, m->id, (int64_t)count, bytes);
    }
}

static void host_gone(struct sp_keeper *k)
{
    k->host_gone = 1;
    SYSCALL(SYS_epoll_ctl, k->epoll_fd, EPOLL_CTL_DEL, k->control_fd, 0, 0, 0);
    SYSCALL(SYS_close, k->control_fd, 0, 0, 0, 0, 0);
    k->control_fd = -1;
    for (uint32_t i = 0; i < k->n_slot_cap; i++) {  /* exited, never reaped by the host */
        struct sp_keeper_slot *s = &k->slots[i];
        if (s->id && s->listener < 0 && (s->flags & SLOT_LIVE)) {
            uint64_t bytes;
            reclaim(k, i, &bytes);
            release_if_done(k, s);
        }
    }
}

static void serve_control(struct sp_keeper *k)
{
    struct sp_keeper_msg m = {0};
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control;
    struct iovec iov = {&m, sizeof m};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1,
                         .msg_control = control.buf, .msg_controllen = sizeof control.buf};
    long n = SYSCALL(SYS_recvmsg, k->control_fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC, 0, 0, 0);
    if (n == -EAGAIN || n == -EINTR)
        return;
    if (n <= 0) {
        host_gone(k);
        return;
    }
    int fd = -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
        fd = *(int *)CMSG_DATA(c);
    if (n != sizeof m) {
        if (fd >= 0)
            SYSCALL(SYS_close, fd, 0, 0, 0, 0, 0);
        return;
    }
    if (m.kind == SP_KEEPER_LISTENER && fd >= 0)
        on_listener(k, &m, fd);
    else if (fd >= 0)
        SYSCALL(SYS_close, fd, 0, 0, 0, 0, 0);
    else if (m.kind == SP_KEEPER_REGISTER)
        on_register(k, &m);
    else if (m.kind == SP_KEEPER_RECLAIM || m.kind == SP_KEEPER_QUERY)
        on_request(k, &m);
}

/* -- the task ------------------------------------------------------------------------ */

static void detach_from_host(struct sp_keeper *k)
{
    uint64_t all = ~0ULL;
    SYSCALL(SYS_rt_sigprocmask, SIG_SETMASK, &all, 0, KERNEL_SIGSET_SIZE, 0, 0);
    SYSCALL(SYS_setsid, 0, 0, 0, 0, 0, 0);   /* no group signal or hangup reaches it */
    SYSCALL(SYS_chdir, "/", 0, 0, 0, 0, 0);
    SYSCALL(SYS_prctl, PR_SET_NAME, "sp-keeper", 0, 0, 0, 0);
    if (k->control_fd > 0)
        SYSCALL(SYS_close_range, 0, k->control_fd - 1, 0, 0, 0, 0);
    SYSCALL(SYS_close_range, k->control_fd + 1, ~0U, 0, 0, 0, 0);
}

__attribute__((noreturn)) static void keeper_main(void *arg)
{
    struct sp_keeper *k = arg;
    detach_from_host(k);
    k->self_pid = (int32_t)SYSCALL(SYS_getpid, 0, 0, 0, 0, 0, 0);
    k->epoll_fd = (int32_t)SYSCALL(SYS_epoll_create1, EPOLL_CLOEXEC, 0, 0, 0, 0, 0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = CONTROL_EVENT};
    SYSCALL(SYS_epoll_ctl, k->epoll_fd, EPOLL_CTL_ADD, k->control_fd, &ev, 0, 0);
    while (!k->host_gone || k->live_listeners > 0) {
        struct epoll_event events[32];
        long n = SYSCALL(SYS_epoll_pwait, k->epoll_fd, events, 32, -1, 0, KERNEL_SIGSET_SIZE);
        for (long i = 0; i < n; i++) {
            if (events[i].data.u64 == CONTROL_EVENT) {
                if (k->control_fd >= 0)
                    serve_control(k);
            } else if (events[i].events & EPOLLIN) {
                serve_notification(k, (uint32_t)events[i].data.u64);
            } else if (k->slots[events[i].data.u64].listener >= 0) {
                retire_listener(k, (uint32_t)events[i].data.u64);  /* HUP: its tasks are gone */
            }
        }
    }
    for (;;)
        SYSCALL(SYS_exit, 0, 0, 0, 0, 0, 0);
}

long sp_keeper_start(struct sp_keeper *keeper, int32_t *pidfd_out)
{
    keeper->host_pid = (int32_t)SYSCALL(SYS_getpid, 0, 0, 0, 0, 0, 0);
    return sp_clone_task(keeper->stack, keeper->stack_size, pidfd_out, keeper_main, keeper);
}
