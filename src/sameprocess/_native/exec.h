/* sp_exec(): the executing half of one exec, from a plan Python prepared.
 *
 * Python decides everything (which file, its validated headers, where each
 * image goes, the initial stack's bytes, the child path's spec) and
 * reserves the address ranges, so that the ledger can be told about them
 * before anything runs.  One call then does the rest without the GIL:
 * overlay each image's PT_LOADs onto its reservation, map the stack, write
 * the stack image (relocated to the stack's top), clone3 into the child path (sp_spawn) and wait for the
 * child's report.  Each part is optional (no images, no stack, no child),
 * so the same entry point also maps a lone image.
 *
 * Every mapping is MAP_FIXED inside a reservation the caller holds, so a
 * failure needs no unwinding here: the caller unmaps its reservations, as
 * it would have without a failure.  Errors come back as data (the step,
 * errno, the range) for Python to raise the exception it always raised.
 *
 * The layouts are mirrored in _native.py (EXEC_PLAN, IMAGE, LOAD_STEP):
 * keep the two in step.
 */
#ifndef SAMEPROCESS_EXEC_H
#define SAMEPROCESS_EXEC_H

#include <stdint.h>

#include "spawn.h"

/* plan->flags */
#define SP_EXEC_WAIT 0x1u  /* after clone3, wait for the child's report */

/* What failed, in result.step. */
enum sp_exec_step {
    SP_EXEC_OK = 0,
    SP_EXEC_MAP_FILE,    /* a PT_LOAD's file part */
    SP_EXEC_PROTECT,     /* mprotect around zeroing a read-only bss tail */
    SP_EXEC_MAP_ANON,    /* a PT_LOAD's anonymous bss */
    SP_EXEC_MAP_STACK,
    SP_EXEC_CLONE,
    SP_EXEC_WAIT_REPORT,
};

/* One PT_LOAD, relative to its image's load bias (the cached layout of
 * _loader.layout, packed once per parsed image). */
struct sp_load_step {
    uint64_t start;       /* page-aligned start of the file mapping */
    uint64_t file_len;    /* 0: no file data */
    uint64_t offset;      /* page-aligned file offset */
    uint64_t file_end;    /* first byte past the file data */
    uint64_t zero_len;    /* bytes from file_end to clear in its page */
    uint64_t anon_start;
    uint64_t anon_len;    /* bss pages mapped anonymous */
    int32_t prot;
    int32_t pad;
};

struct sp_image {
    uint64_t bias;        /* page-aligned; inside the caller's reservation */
    const struct sp_load_step *steps;
    uint32_t n_steps;
    int32_t fd;
};

struct sp_exec_result {
    int32_t step;         /* enum sp_exec_step that failed, SP_EXEC_OK */
    int32_t err;          /* its errno */
    uint64_t addr;        /* the range it was mapping or protecting */
    uint64_t len;
    int32_t pid;          /* > 0 once cloned */
    int32_t pidfd;        /* -1 until cloned */
    int32_t reported;     /* 1: reached the entry; 0: exited first; -1: not waited */
    int32_t pad;
};

struct sp_exec_plan {
    const struct sp_image *images;
    uint32_t n_images;
    uint32_t flags;
    uint64_t stack_low;   /* the usable stack, above its guard: mapped here */
    uint64_t stack_size;  /* 0: no stack */
    int32_t stack_prot;
    uint32_t n_stack_relocs;
    const void *stack_image;   /* copied to stack_image_at, with the stack mapping */
    uint64_t stack_image_len;
    uint64_t stack_image_at;   /* the initial stack pointer: argc */
    /* The image may be built for a stack whose top is 0 (Python keeps one
     * per argument list): stack_top is then added to each 8-byte word of
     * it that these indices name, its pointers. */
    const uint32_t *stack_relocs;
    uint64_t stack_top;
    struct sp_child_spec *child;   /* NULL: map only */
    struct sp_exec_result result;
};

/* Returns 0, or -1 with plan->result saying what failed. */
int sp_exec(struct sp_exec_plan *plan);

#endif
