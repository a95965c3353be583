/* sp_spawn: clone3 into the caller's address space and become a program.
 *
 * Rules for the child path (everything after sp_clone3 returns 0):
 *  - It shares memory with the host but not its thread: no libc calls, no
 *    errno, no locks, no allocation.  Only sp_syscall() and stack locals.
 *  - It runs on the low part of the program's own stack mapping, below the
 *    initial stack image the host already wrote, and never touches that image.
 *  - A failure is reported as data (struct sp_child_error in spec->failure,
 *    shared memory), then the child exits with status 127: the host sees the
 *    pidfd readable and turns the record into OSError.  Success is one write
 *    to the report eventfd, whose wakeup (unlike a pipe's close) does not
 *    ask the scheduler to run the host on the child's CPU.
 *  - All signals stay blocked (the parent blocked them around clone3) until
 *    dispositions are reset; the mask is cleared last, just before entry.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "keeper.h"
#include "syscalls.h"
#define SECCOMP_SET_MODE_FILTER 1
/* Keep the program's speculation mitigations as they would be natively:
 * without this flag the kernel forces SSBD on every filtered task. */
#define SECCOMP_FILTER_FLAG_SPEC_ALLOW (1UL << 2)
/* The ledger's filter: its listener goes to the keeper; once the keeper has
 * read a notification, only a fatal signal may interrupt the call (else the
 * keeper could map for a caller that is no longer waiting). */
#define SECCOMP_FILTER_FLAG_NEW_LISTENER (1UL << 3)
#define SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (1UL << 5)
#define PR_SET_PTRACER_ 0x59616d61
#define PRIO_PROCESS_ 0

/* _native.py packs the spec with struct.Struct("<6Q5Q2I3i3iI16siiiQQ"). */
_Static_assert(sizeof(struct sp_child_spec) == 184, "CHILD_SPEC in _native.py");
_Static_assert(offsetof(struct sp_child_spec, n_keep_fds) == 88, "CHILD_SPEC in _native.py");
_Static_assert(offsetof(struct sp_child_spec, stdio) == 96, "CHILD_SPEC in _native.py");
_Static_assert(offsetof(struct sp_child_spec, comm) == 124, "CHILD_SPEC in _native.py");
_Static_assert(offsetof(struct sp_child_spec, host_cpu) == 140, "CHILD_SPEC in _native.py");
_Static_assert(offsetof(struct sp_child_spec, ledger_prog) == 152, "CHILD_SPEC in _native.py");
_Static_assert(offsetof(struct sp_child_spec, cpus) == 168, "CHILD_SPEC in _native.py");
_Static_assert(sizeof(struct sp_rlimit) == 24, "RLIMIT in _native.py");

/* The kernel's struct sigaction layout (not libc's). */
struct kernel_sigaction {
    unsigned long handler;
    unsigned long flags;
    unsigned long restorer;
    unsigned long mask;
};

/* Step helper: one error exit for the whole child path. */
#define CHILD_CALL(spec, step, expr)                    \
    do {                                                \
        long r_ = (expr);                               \
        if (r_ < 0 && r_ > -4096)                       \
            child_fail((spec), (step), (int32_t)-r_);   \
    } while (0)

__attribute__((noreturn)) static void child_fail(const struct sp_child_spec *spec,
                                                 int32_t step, int32_t err)
{
    spec->failure->step = step;
    spec->failure->err = err;
    for (;;)
        SYSCALL(SYS_exit_group, 127, 0, 0, 0, 0, 0);
}

static void child_signals(const struct sp_child_spec *spec)
{
    /* CLONE_CLEAR_SIGHAND already reset handled signals to SIG_DFL; ignored
     * ones survive it, as they survive exec.  Only the signals named in the
     * spec are changed (restore_signals, or a launcher's exact set). */
    for (int sig = 1; sig <= 64; sig++) {
        uint64_t bit = 1ULL << (sig - 1);
        if (sig == SIGKILL || sig == SIGSTOP || !((spec->ignore_signals | spec->default_signals) & bit))
            continue;
        struct kernel_sigaction act = {0};
        act.handler = (spec->ignore_signals & bit) ? (unsigned long)SIG_IGN : (unsigned long)SIG_DFL;
        long r = SYSCALL(SYS_rt_sigaction, sig, &act, 0, KERNEL_SIGSET_SIZE, 0, 0);
        if (r < 0 && r != -22) /* EINVAL: a number this kernel does not have */
            child_fail(spec, SP_STEP_SIGNALS, (int32_t)-r);
    }
}

static void child_fds(const struct sp_child_spec *spec)
{
    /* The host moved every source below 3 that is not already its target,
     * so these dups cannot clobber each other. */
    for (int fd = 0; fd < 3; fd++) {
        if (spec->stdio[fd] >= 0 && spec->stdio[fd] != fd)
            CHILD_CALL(spec, SP_STEP_STDIO, SYSCALL(SYS_dup3, spec->stdio[fd], fd, 0, 0, 0, 0));
        else if (spec->stdio[fd] == fd)  /* dup3 clears FD_CLOEXEC; no dup3, no clear */
            CHILD_CALL(spec, SP_STEP_STDIO, SYSCALL(SYS_fcntl, fd, F_SETFD, 0, 0, 0, 0));
    }
    /* A kept descriptor must survive the program's own exec too, as after
     * subprocess's exec (this table is the child's own: the host's flags
     * stay). */
    for (uint32_t i = 0; i < spec->n_keep_fds; i++)
        if (spec->keep_fds[i] != spec->report_fd)
            CHILD_CALL(spec, SP_STEP_CLOSE_FDS, SYSCALL(SYS_fcntl, spec->keep_fds[i], F_SETFD, 0, 0, 0, 0));

    /* There is no exec, so O_CLOEXEC never fires: close every host
     * descriptor except the ones kept, in the gaps between them. */
    unsigned int low = 3;
    for (uint32_t i = 0; i < spec->n_keep_fds; i++) {
        unsigned int keep = (unsigned int)spec->keep_fds[i];
        if (keep > low)
            CHILD_CALL(spec, SP_STEP_CLOSE_FDS, SYSCALL(SYS_close_range, low, keep - 1, 0, 0, 0, 0));
        if (keep >= low)
            low = keep + 1;
    }
    CHILD_CALL(spec, SP_STEP_CLOSE_FDS, SYSCALL(SYS_close_range, low, ~0U, 0, 0, 0, 0));
}

static void child_process_state(const struct sp_child_spec *spec)
{
    if (spec->flags & SP_NEW_SESSION)
        CHILD_CALL(spec, SP_STEP_SESSION, SYSCALL(SYS_setsid, 0, 0, 0, 0, 0, 0));
    if (spec->flags & SP_SET_PGID)
        CHILD_CALL(spec, SP_STEP_PGID, SYSCALL(SYS_setpgid, 0, spec->pgid, 0, 0, 0, 0));
    if (spec->umask >= 0)
        SYSCALL(SYS_umask, spec->umask, 0, 0, 0, 0, 0);
    if (spec->cwd)
        CHILD_CALL(spec, SP_STEP_CHDIR, SYSCALL(SYS_chdir, spec->cwd, 0, 0, 0, 0, 0));
    for (uint32_t i = 0; i < spec->n_rlimits; i++) {
        const struct sp_rlimit *rl = &spec->rlimits[i];
        uint64_t lim[2] = {rl->soft, rl->hard};
        CHILD_CALL(spec, SP_STEP_RLIMIT, SYSCALL(SYS_prlimit64, 0, rl->resource, lim, 0, 0, 0));
    }
    CHILD_CALL(spec, SP_STEP_COMM, SYSCALL(SYS_prctl, PR_SET_NAME, spec->comm, 0, 0, 0, 0));
}

/* A launcher's CPU affinity and nice value: what its own child would
 * inherit, where a clone inherits the host's.  Set after the rlimits, so
 * that a lower nice is judged by the program's RLIMIT_NICE, as the
 * launcher's own was. */
static void child_scheduling(const struct sp_child_spec *spec)
{
    if (spec->cpus)
        CHILD_CALL(spec, SP_STEP_AFFINITY,
                   SYSCALL(SYS_sched_setaffinity, 0, spec->cpus_size, spec->cpus, 0, 0, 0));
    if (spec->flags & SP_SET_NICE)
        CHILD_CALL(spec, SP_STEP_NICE, SYSCALL(SYS_setpriority, PRIO_PROCESS_, 0, spec->nice, 0, 0, 0));
}

/* exec is where the kernel moves a new program to the idlest CPU
 * (sched_exec); a clone has no such point, and the scheduler starts the
 * child on its parent's CPU.  There the host, woken by the report, would
 * wait behind the whole program instead of running beside it.  So a child
 * that finds itself on the host's CPU steps off it by narrowing its
 * affinity for a moment, then puts back exactly the mask it had.
 *
 * The step comes after the report, in two halves: the mask is read before
 * (when a failure can still be reported), the move made after.  Moving
 * first made the host wait for the move, that is for a turn on the other
 * CPU, which is long when that CPU is busy (a server launching in
 * parallel); moved after, only the program waits for it, as it would
 * after an exec. */
struct cpu_step {
    long size;                 /* 0: stay where it is */
    uint64_t mask[16];         /* 1024 CPUs: the mask to put back */
    uint64_t others[16];       /* the same without the host's CPU */
};

static void plan_leave_host_cpu(const struct sp_child_spec *spec, struct cpu_step *step)
{
    uint32_t cpu = 0;
    step->size = 0;
    if (SYSCALL(SYS_getcpu, &cpu, 0, 0, 0, 0, 0) < 0 || (int32_t)cpu != spec->host_cpu)
        return;
    long size = SYSCALL(SYS_sched_getaffinity, 0, sizeof step->mask, step->mask, 0, 0, 0);
    if (size <= 0 || cpu >= (uint64_t)size * 8)
        return;
    uint64_t any = 0;
    for (long i = 0; i < size / 8; i++)
        any |= step->others[i] = step->mask[i] & ~(i == cpu / 64 ? 1ULL << (cpu % 64) : 0);
    if (any)   /* else no other CPU it may use: stay */
        step->size = size;
}

/* After the report: nothing is left to tell a failure to.  Putting back a
 * mask the kernel has just returned fails only if those CPUs went away
 * meanwhile, and the program then runs on the ones left, as a program
 * whose CPUs were taken from it would. */
static void leave_host_cpu(const struct cpu_step *step)
{
    if (step->size && SYSCALL(SYS_sched_setaffinity, 0, step->size, step->others, 0, 0, 0) == 0)
        SYSCALL(SYS_sched_setaffinity, 0, step->size, step->mask, 0, 0, 0);
}

/* Hand the program to the keeper: a filter whose listener the keeper
 * serves, sent with the program's id.  From here on the program's memory
 * calls are recorded; the child path itself makes none. */
static void child_join_ledger(const struct sp_child_spec *spec)
{
    /* Under yama ptrace_scope 1 the keeper, a sibling, may take the
     * program's descriptors (for its file mappings) only if named here. */
    SYSCALL(SYS_prctl, PR_SET_PTRACER_, spec->keeper_pid, 0, 0, 0, 0);
    long listener = SYSCALL(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                            SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_SPEC_ALLOW
                                | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
                            spec->ledger_prog, 0, 0, 0);
    CHILD_CALL(spec, SP_STEP_LEDGER, listener);
    struct sp_keeper_msg m = {0};
    m.kind = SP_KEEPER_LISTENER;
    m.id = spec->ledger_id;
    m.pid = SYSCALL(SYS_getpid, 0, 0, 0, 0, 0, 0);
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control = {0};
    struct iovec iov = {&m, sizeof m};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    *(int *)CMSG_DATA(c) = (int)listener;
    CHILD_CALL(spec, SP_STEP_LEDGER, SYSCALL(SYS_sendmsg, spec->keeper_fd, &msg, MSG_NOSIGNAL, 0, 0, 0));
    SYSCALL(SYS_close, listener, 0, 0, 0, 0, 0);
    SYSCALL(SYS_close, spec->keeper_fd, 0, 0, 0, 0, 0);
}

__attribute__((noreturn)) static void child_main(void *arg)
{
    const struct sp_child_spec *spec = arg;
    struct cpu_step cpu_step;

    child_signals(spec);
    child_process_state(spec);
    child_scheduling(spec);
    plan_leave_host_cpu(spec, &cpu_step);   /* within the mask just set */
    child_fds(spec);
    if (spec->flags & SP_NO_NEW_PRIVS)
        CHILD_CALL(spec, SP_STEP_NO_NEW_PRIVS, SYSCALL(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0));
    if (spec->seccomp_prog)
        CHILD_CALL(spec, SP_STEP_SECCOMP,
                   SYSCALL(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_SPEC_ALLOW,
                           spec->seccomp_prog, 0, 0, 0));
    if (spec->ledger_prog)
        child_join_ledger(spec);
    uint64_t empty = 0;
    CHILD_CALL(spec, SP_STEP_SIGMASK,
               SYSCALL(SYS_rt_sigprocmask, SIG_SETMASK, &empty, 0, KERNEL_SIGSET_SIZE, 0, 0));
    /* The report is the success signal: the host may free the spec at once,
     * so nothing may read it after the write. */
    uint64_t entry = spec->entry, initial_sp = spec->initial_sp, one = 1;
    int32_t report_fd = spec->report_fd;
    SYSCALL(SYS_write, report_fd, &one, sizeof one, 0, 0, 0);
    SYSCALL(SYS_close, report_fd, 0, 0, 0, 0, 0);
    leave_host_cpu(&cpu_step);
    sp_enter(entry, initial_sp);
}

long sp_spawn(struct sp_child_spec *spec, int32_t *pidfd_out)
{
    uint32_t cpu = 0;
    spec->host_cpu = SYSCALL(SYS_getcpu, &cpu, 0, 0, 0, 0, 0) < 0 ? -1 : (int32_t)cpu;
    return sp_clone_task(spec->child_stack, spec->child_stack_size, pidfd_out, child_main, (void *)spec);
}

long sp_clone_task(uint64_t stack, uint64_t stack_size, int32_t *pidfd_out, void (*fn)(void *), void *arg)
{
    /* Block everything (including libc's internal signals) so that no signal
     * is delivered to the new task before it has set up its own. */
    uint64_t all = ~0ULL, old = 0;
    long r = SYSCALL(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, KERNEL_SIGSET_SIZE, 0, 0);
    if (r < 0)
        return r;

    struct clone_args args = {0};
    args.flags = CLONE_VM | CLONE_PIDFD | CLONE_CLEAR_SIGHAND;
    args.pidfd = (uint64_t)(uintptr_t)pidfd_out;
    args.exit_signal = SIGCHLD;
    args.stack = stack;
    args.stack_size = stack_size;
    long pid = sp_clone3(&args, sizeof args, fn, arg);

    SYSCALL(SYS_rt_sigprocmask, SIG_SETMASK, &old, 0, KERNEL_SIGSET_SIZE, 0, 0);
    return pid;
}
