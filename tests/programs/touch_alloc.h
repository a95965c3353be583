/* Allocate fresh memory, write it and read it back: for the programs that
 * check that allocation still works (late_alloc.c, daemon_worker.c).
 *
 * touch_alloc(mib): half of it in 4 MiB anonymous mmaps, half in 1 MiB
 * mallocs (above glibc's mmap threshold, so fresh mappings too); every page
 * written, then every page checked.  Nothing is freed.  Returns 0, or -1
 * with a reason in *why (a static string).
 */
#ifndef TOUCH_ALLOC_H
#define TOUCH_ALLOC_H

#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static int touch_alloc_fill(unsigned char *p, size_t len, unsigned salt, int check)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);

    for (size_t off = 0; off < len; off += page) {
        unsigned char want = (unsigned char)((off >> 12) + salt);
        if (check && (p[off] != want))
            return -1;
        p[off] = want;
    }
    return 0;
}

static int touch_alloc(long mib, const char **why)
{
    long chunks = mib / 8;           /* 4 MiB mmapped + 4 x 1 MiB malloced each */
    unsigned char *mapped[256], *blocks[1024];

    if ((mib < 8) || (chunks > 256)) {
        *why = "between 8 and 2048 MiB";
        return -1;
    }
    for (long i = 0; i < chunks; i++) {
        void *p = mmap(NULL, 4 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            *why = "mmap failed";
            return -1;
        }
        mapped[i] = p;
        touch_alloc_fill(mapped[i], 4 << 20, (unsigned)i, 0);
        for (long j = 0; j < 4; j++) {
            blocks[(i * 4) + j] = malloc(1 << 20);
            if (blocks[(i * 4) + j] == NULL) {
                *why = "malloc failed";
                return -1;
            }
            touch_alloc_fill(blocks[(i * 4) + j], 1 << 20, (unsigned)((i * 4) + j + 7), 0);
        }
    }
    for (long i = 0; i < chunks; i++) {
        int bad = touch_alloc_fill(mapped[i], 4 << 20, (unsigned)i, 1);
        for (long j = 0; j < 4; j++)
            bad |= touch_alloc_fill(blocks[(i * 4) + j], 1 << 20, (unsigned)((i * 4) + j + 7), 1);
        if (bad) {
            *why = "memory did not read back as written";
            return -1;
        }
    }
    return 0;
}

#endif
