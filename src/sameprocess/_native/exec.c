/* sp_exec: map a prepared plan, write the stack, clone, wait (exec.h).
 *
 * This runs in the calling host thread (ctypes released the GIL), so
 * unlike the child path it may use libc and errno.  It reads top to bottom
 * as its phases; each failure records {step, errno, range} and leaves by
 * the one error exit.  Nothing it maps needs undoing there: every mapping
 * is MAP_FIXED inside a reservation the caller made and unmaps.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "exec.h"

/* _native.py packs these with struct formats: see EXEC_PLAN there. */
_Static_assert(sizeof(struct sp_load_step) == 64, "LOAD_STEP in _native.py");
_Static_assert(sizeof(struct sp_image) == 24, "IMAGE in _native.py");
_Static_assert(sizeof(struct sp_exec_result) == 40, "EXEC_RESULT in _native.py");
_Static_assert(offsetof(struct sp_exec_plan, result) == 88, "EXEC_PLAN in _native.py");
_Static_assert(sizeof(struct sp_exec_plan) == 128, "EXEC_PLAN in _native.py");

static int fail(struct sp_exec_result *r, int step, int err, uint64_t addr, uint64_t len)
{
    r->step = step;
    r->err = err;
    r->addr = addr;
    r->len = len;
    return -1;
}

static int map_fixed(uint64_t addr, uint64_t len, int prot, int flags, int fd, uint64_t offset)
{
    void *got = mmap((void *)(uintptr_t)addr, len, prot, flags | MAP_PRIVATE | MAP_FIXED, fd, (off_t)offset);
    return (got == MAP_FAILED) ? -1 : 0;
}

/* The file mapping's last page holds bytes past p_filesz that must read as
 * zero; a read-only segment is made writable just for that. */
static int zero_tail(struct sp_exec_result *r, uint64_t file_end, uint64_t len, int prot)
{
    uint64_t size = (uint64_t)getpagesize(), page = file_end & ~(size - 1);
    if (!(prot & PROT_WRITE) && (mprotect((void *)(uintptr_t)page, size, prot | PROT_WRITE) != 0))
        return fail(r, SP_EXEC_PROTECT, errno, page, size);
    memset((void *)(uintptr_t)file_end, 0, len);
    if (!(prot & PROT_WRITE) && (mprotect((void *)(uintptr_t)page, size, prot) != 0))
        return fail(r, SP_EXEC_PROTECT, errno, page, size);
    return 0;
}

/* binfmt_elf's order per PT_LOAD: file part, zeroed tail, anonymous bss. */
static int map_image(struct sp_exec_result *r, const struct sp_image *image)
{
    for (uint32_t i = 0; i < image->n_steps; i++) {
        const struct sp_load_step *s = &image->steps[i];
        uint64_t start = image->bias + s->start;
        if (s->file_len && (map_fixed(start, s->file_len, s->prot, 0, image->fd, s->offset) != 0))
            return fail(r, SP_EXEC_MAP_FILE, errno, start, s->file_len);
        if (s->zero_len && (zero_tail(r, image->bias + s->file_end, s->zero_len, s->prot) != 0))
            return -1;
        uint64_t anon = image->bias + s->anon_start;
        if (s->anon_len && (map_fixed(anon, s->anon_len, s->prot, MAP_ANONYMOUS, -1, 0) != 0))
            return fail(r, SP_EXEC_MAP_ANON, errno, anon, s->anon_len);
    }
    return 0;
}

/* The usable stack over its reservation (the guard below stays PROT_NONE),
 * then the initial image at its top, where the child path will not write,
 * its pointers moved from a top of 0 to the real one. */
static int map_stack(struct sp_exec_plan *plan)
{
    if (map_fixed(plan->stack_low, plan->stack_size, plan->stack_prot,
                  MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0) != 0)
        return fail(&plan->result, SP_EXEC_MAP_STACK, errno, plan->stack_low, plan->stack_size);
    uint64_t *image = (uint64_t *)(uintptr_t)plan->stack_image_at;
    memcpy(image, plan->stack_image, plan->stack_image_len);
    for (uint32_t i = 0; i < plan->n_stack_relocs; i++)
        if (plan->stack_relocs[i] < (plan->stack_image_len / 8))
            image[plan->stack_relocs[i]] += plan->stack_top;
    return 0;
}

/* The report eventfd readable: the child reached the entry.  The pidfd
 * readable first: it exited (a step failed, or it was killed).  A signal
 * for the host ends the wait early (reported stays -1), so that Python
 * runs its handler and then waits, or kills the child if the handler
 * raised. */
static int wait_for_report(struct sp_exec_plan *plan)
{
    struct pollfd fds[2] = {{plan->child->report_fd, POLLIN, 0}, {plan->result.pidfd, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0)
        return (errno == EINTR) ? 0 : fail(&plan->result, SP_EXEC_WAIT_REPORT, errno, 0, 0);
    plan->result.reported = (fds[0].revents & POLLIN) ? 1 : 0;
    return 0;
}

static int clone_and_wait(struct sp_exec_plan *plan)
{
    int32_t pidfd = -1;
    long pid = sp_spawn(plan->child, &pidfd);
    if (pid < 0)
        return fail(&plan->result, SP_EXEC_CLONE, (int)-pid, 0, 0);
    plan->result.pid = (int32_t)pid;
    plan->result.pidfd = pidfd;
    return (plan->flags & SP_EXEC_WAIT) ? wait_for_report(plan) : 0;
}

int sp_exec(struct sp_exec_plan *plan)
{
    struct sp_exec_result *r = &plan->result;
    memset(r, 0, sizeof *r);
    r->pidfd = -1;
    r->reported = -1;
    for (uint32_t i = 0; i < plan->n_images; i++)
        if (map_image(r, &plan->images[i]) != 0)
            return -1;
    if (plan->stack_size && (map_stack(plan) != 0))
        return -1;
    if (plan->child && (clone_and_wait(plan) != 0))
        return -1;
    return 0;
}
