/* Exercises the program break, then the heap.
 *
 * All brk/sbrk calls happen before anything can call malloc, then the
 * results are printed ("delta" values are relative to the starting break):
 *   start=0x...               sbrk(0) at entry
 *   sbrk_grow=ok|ENOMEM|...   sbrk(4096)
 *   after_grow_delta=N        sbrk(0) afterwards
 *   brk_grow=ok|...           brk(current + 8192)
 *   after_brk_delta=N
 *   brk_restore=ok|...        brk(start)
 *   after_restore_delta=N
 *   sbrk_below=ok|...         sbrk(-4096) from the start: below the heap,
 *                             where the kernel leaves the break alone
 *   after_below_delta=N       (glibc's idea of the break)
 *   kernel_delta=N            the kernel's break (raw brk(0) syscall)
 * Natively: ok, 4096, ok, 12288, ok, 0, ok, 0, 0.
 *
 * Then it allocates 64 MiB in pieces of 24..4119 bytes, fills each with a
 * pattern, verifies them all, frees them and prints "pieces=N" and
 * "heap ok" (or "heap CORRUPT at piece N" and exits 1).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define HEAP_BYTES (64L * 1024 * 1024)

static const char *result(int failed, int err)
{
    if (!failed)
        return "ok";
    if (err == ENOMEM)
        return "ENOMEM";
    if (err == EPERM)
        return "EPERM";
    return strerror(err);
}

int main(void)
{
    char *start, *after_grow, *after_brk, *after_restore, *after_below, *kernel;
    int grow_failed, grow_errno, brk_failed, brk_errno;
    int restore_failed, restore_errno, below_failed, below_errno;

    start = sbrk(0);
    errno = 0;
    grow_failed = (sbrk(4096) == (void *)-1);
    grow_errno = errno;
    after_grow = sbrk(0);
    errno = 0;
    brk_failed = (brk(after_grow + 8192) != 0);
    brk_errno = errno;
    after_brk = sbrk(0);
    errno = 0;
    restore_failed = (brk(start) != 0);
    restore_errno = errno;
    after_restore = sbrk(0);
    errno = 0;
    below_failed = (sbrk(-4096) == (void *)-1);
    below_errno = errno;
    after_below = sbrk(0);
    kernel = (char *)syscall(SYS_brk, 0);

    printf("start=0x%lx\n", (unsigned long)(uintptr_t)start);
    printf("sbrk_grow=%s\n", result(grow_failed, grow_errno));
    printf("after_grow_delta=%ld\n", (long)(after_grow - start));
    printf("brk_grow=%s\n", result(brk_failed, brk_errno));
    printf("after_brk_delta=%ld\n", (long)(after_brk - start));
    printf("brk_restore=%s\n", result(restore_failed, restore_errno));
    printf("after_restore_delta=%ld\n", (long)(after_restore - start));
    printf("sbrk_below=%s\n", result(below_failed, below_errno));
    printf("after_below_delta=%ld\n", (long)(after_below - start));
    printf("kernel_delta=%ld\n", (long)(kernel - start));
    fflush(stdout);

    size_t max_pieces = HEAP_BYTES / 24;
    unsigned char **pieces = malloc(max_pieces * sizeof *pieces);
    size_t count = 0;
    long total = 0;

    if (pieces == NULL) {
        perror("malloc");
        return 1;
    }
    while (total < HEAP_BYTES) {
        size_t size = 24 + ((count * 2654435761u) % 4096);
        pieces[count] = malloc(size);
        if (pieces[count] == NULL) {
            printf("malloc failed after %ld bytes\n", total);
            return 1;
        }
        memset(pieces[count], (int)(count & 0xff), size);
        memcpy(pieces[count], &count, sizeof count);
        total += (long)size;
        count++;
    }
    for (size_t i = 0; i < count; i++) {
        size_t size = 24 + ((i * 2654435761u) % 4096), stored;
        memcpy(&stored, pieces[i], sizeof stored);
        if ((stored != i) || (pieces[i][size - 1] != (unsigned char)(i & 0xff))) {
            printf("heap CORRUPT at piece %zu\n", i);
            return 1;
        }
    }
    for (size_t i = 0; i < count; i++)
        free(pieces[i]);
    free(pieces);
    printf("pieces=%zu\n", count);
    puts("heap ok");
    return 0;
}
