/* The native core's one interface: sp_spawn() starts a program in the
 * caller's address space from a fully prepared sp_child_spec.
 *
 * Everything fallible that can be done in Python (path lookup, ELF parsing,
 * mapping, building the initial stack) is done before this is called; the
 * spec only carries what the child path must do between clone3 and the jump
 * to the program's entry point.  The layout is mirrored by CHILD_SPEC in
 * _native.py: keep the two in step.
 */
#ifndef SAMEPROCESS_SPAWN_H
#define SAMEPROCESS_SPAWN_H

#include <stdint.h>

#define SP_NEW_SESSION     0x1u  /* setsid() */
#define SP_SET_PGID        0x2u  /* setpgid(0, spec->pgid) */
#define SP_NO_NEW_PRIVS    0x4u  /* needed before a seccomp filter without CAP_SYS_ADMIN */
#define SP_SET_NICE        0x8u  /* setpriority(PRIO_PROCESS, 0, spec->nice) */

/* The step that failed, reported to the parent with its errno. */
enum sp_step {
    SP_STEP_NONE = 0,
    SP_STEP_SIGNALS,
    SP_STEP_SESSION,
    SP_STEP_PGID,
    SP_STEP_UMASK,
    SP_STEP_CHDIR,
    SP_STEP_STDIO,
    SP_STEP_CLOSE_FDS,
    SP_STEP_COMM,
    SP_STEP_RLIMIT,
    SP_STEP_NO_NEW_PRIVS,
    SP_STEP_SECCOMP,
    SP_STEP_SIGMASK,
    SP_STEP_AFFINITY,   /* spec->cpus (a launcher's mask) */
    SP_STEP_LEDGER,
    SP_STEP_NICE,
};

/* What the child stores in spec->failure when a step fails. */
struct sp_child_error {
    int32_t step;
    int32_t err;
};

struct sp_rlimit {
    uint32_t resource;
    uint32_t pad;
    uint64_t soft;
    uint64_t hard;
};

struct sp_child_spec {
    uint64_t entry;             /* first instruction: ld.so's or a static program's entry */
    uint64_t initial_sp;        /* address of argc on the program's stack */
    uint64_t child_stack;       /* lowest address of the stack the child path runs on */
    uint64_t child_stack_size;
    uint64_t ignore_signals;    /* bit (sig - 1) set: SIG_IGN */
    uint64_t default_signals;   /* bit (sig - 1) set: SIG_DFL (unless in ignore_signals) */
    const int32_t *keep_fds;    /* sorted ascending, all >= 3: survive close_range */
    const char *cwd;            /* NULL: keep the host's */
    const void *seccomp_prog;   /* struct sock_fprog *, NULL: no filter */
    const struct sp_rlimit *rlimits;
    struct sp_child_error *failure; /* filled in when a step fails, before exit(127) */
    uint32_t n_keep_fds;
    uint32_t n_rlimits;
    int32_t stdio[3];           /* dup3 onto 0, 1, 2; -1 or equal to the target: keep */
    int32_t report_fd;          /* eventfd: written once all steps succeeded, then closed */
    int32_t umask;              /* -1: keep */
    int32_t pgid;               /* with SP_SET_PGID */
    uint32_t flags;
    char comm[16];              /* PR_SET_NAME, NUL-terminated */
    int32_t host_cpu;           /* set by sp_spawn: the CPU it called clone3 on */
    int32_t keeper_fd;          /* control socket of the keeper (keeper.h), with ledger_prog */
    int32_t keeper_pid;         /* allowed to take the program's descriptors (yama) */
    const void *ledger_prog;    /* struct sock_fprog * of the ledger filter, NULL: none */
    uint64_t ledger_id;         /* the program's id in the keeper's ledger */
    const uint64_t *cpus;       /* CPU affinity mask to set, NULL: keep the host's */
    uint32_t cpus_size;         /* its size in bytes, a multiple of 8 */
    int32_t nice;               /* with SP_SET_NICE */
};


/* Returns the new PID and stores a pidfd, or returns -errno. */
long sp_spawn(struct sp_child_spec *spec, int32_t *pidfd_out);

/* A CLONE_VM task (not a thread) running fn(arg) on [stack, stack+size),
 * cloned with every signal blocked: the program's child path, the keeper. */
long sp_clone_task(uint64_t stack, uint64_t stack_size, int32_t *pidfd_out, void (*fn)(void *), void *arg);

/* Per-architecture assembly (arch/<machine>.S). */
long sp_clone3(void *clone_args, unsigned long size, void (*fn)(void *), void *arg);
long sp_syscall(long nr, long a1, long a2, long a3, long a4, long a5, long a6);
__attribute__((noreturn)) void sp_enter(uint64_t entry, uint64_t sp);

#endif
