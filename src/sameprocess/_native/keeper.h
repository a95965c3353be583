/* The keeper: one task of the space that performs every mmap, munmap and
 * mremap its programs make, and records who owns each range (the ledger).
 *
 * Each program starts with a seccomp filter that turns those three calls,
 * when made from the space's code window (or from the images the host
 * mapped for it), into user notifications on a listener of its own.  The
 * keeper shares the mm, so it can make the call itself and answer with
 * the result; the range is then recorded under the program.  When the
 * program is reaped, the host asks the keeper to unmap everything the
 * program owns (RECLAIM).
 *
 * The keeper is a CLONE_VM task, not a thread of the host: it outlives a
 * host that dies, serves programs until their last task is gone, then
 * exits.  Like the child path it has no TLS of its own: raw syscalls only,
 * no errno, no locks, no allocation.
 *
 * The layouts below are mirrored in _ledger.py: keep the two in step.
 */
#ifndef SAMEPROCESS_KEEPER_H
#define SAMEPROCESS_KEEPER_H

#include <stdint.h>

#define SP_KEEPER_REGIONS 4

enum sp_keeper_kind {
    SP_KEEPER_REGISTER = 1,  /* host, before clone: id, the loader's regions */
    SP_KEEPER_LISTENER = 2,  /* child path: id, pid, the listener (SCM_RIGHTS) */
    SP_KEEPER_RECLAIM = 3,   /* host, after reaping: id -> reply */
    SP_KEEPER_QUERY = 4,     /* host: id, buf, buf_len -> reply, ranges in buf */
    SP_KEEPER_FORGET = 5,    /* host: id of a spawn that never started -> reply */
};

/* One request on the control socket (SOCK_SEQPACKET: one message each). */
struct sp_keeper_msg {
    uint32_t kind;
    uint32_t n_regions;
    uint64_t id;
    int64_t pid;
    uint64_t buf;                          /* QUERY: uint64_t pairs [start, end) */
    uint64_t buf_len;                      /* QUERY: pairs that fit in buf */
    uint64_t regions[2 * SP_KEEPER_REGIONS];
    uint64_t flags;                        /* REGISTER: SP_KEEPER_* below */
};

/* REGISTER: the program starts with a finite RLIMIT_AS, which the keeper
 * must then check on each call (others skip that syscall). */
#define SP_KEEPER_ADDRESS_LIMIT 0x1u

/* The answer to RECLAIM, QUERY and FORGET. */
struct sp_keeper_reply {
    uint64_t id;
    int64_t result;   /* ranges unmapped (RECLAIM) or owned (QUERY); -errno */
    uint64_t bytes;   /* bytes unmapped or owned */
    uint64_t pad;
};

/* One owned range of the ledger; the ledger is sorted by start and its
 * ranges never overlap. */
struct sp_ledger_entry {
    uint64_t start;
    uint64_t end;
    uint32_t slot;
    uint32_t pad;
};

struct sp_keeper_slot {
    uint64_t id;        /* 0: free */
    uint64_t mapped;    /* bytes recorded under this program */
    int32_t pid;
    int32_t pidfd;      /* opened on first need, -1 */
    int32_t listener;   /* -1: none (yet, or its last task is gone) */
    uint32_t flags;     /* SLOT_* in keeper.c, and SP_KEEPER_ADDRESS_LIMIT */
};

/* Counters the host reads (and logs) without asking. */
struct sp_keeper_counters {
    uint64_t notifications;  /* calls performed for programs */
    uint64_t continued;      /* calls let through: another mm, or not attributable */
    uint64_t untracked;      /* calls of a program let through unrecorded (see keeper.c) */
    uint64_t reclaimed;      /* ranges unmapped after exits */
    uint64_t ledger_full;    /* calls let through because the ledger was full */
    uint64_t slots_used;     /* programs registered, or with a task left */
};

/* The keeper's whole state, in memory the host mapped for it (MAP_NORESERVE:
 * only what is used costs memory).  The host fills the first block. */
struct sp_keeper {
    /* set by the host */
    uint64_t window_lo, window_hi;   /* where programs' mappings are placed */
    uint64_t stack, stack_size;      /* the keeper's own stack */
    struct sp_keeper_slot *slots;
    struct sp_ledger_entry *entries;
    uint32_t n_slot_cap, pad0;
    uint64_t entry_cap;
    int32_t control_fd;              /* the keeper's end of the control socket */
    int32_t host_pid;
    /* the keeper's */
    int32_t epoll_fd;
    int32_t self_pid;
    uint64_t n_entries;
    uint64_t cursor;                 /* next-fit placement, moving down */
    uint32_t live_listeners;
    uint32_t host_gone;
    struct sp_keeper_counters counters;
};

/* Starts the keeper task; returns its PID and stores a pidfd, or -errno. */
long sp_keeper_start(struct sp_keeper *keeper, int32_t *pidfd_out);

#endif
