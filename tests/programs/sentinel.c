/* A long-lived program that watches regions of its own.
 *
 * usage: sentinel [K]   (default 8 regions)
 * Maps K anonymous regions of different sizes, fills each with a pattern of
 * its own, prints one "sentinel=0xADDR LEN" line per region and then
 * "ready".  For each "check" line on stdin it checks every region (mapped,
 * per mincore, and every byte as written) and prints "ok", or one
 * "bad 0xADDR ..." line per damaged region.  Exits 0 at EOF.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_REGIONS 64

static const size_t region_pages[] = {1, 3, 16, 64, 2, 256, 5, 33};

struct region {
    unsigned char *addr;
    size_t len;
};

static unsigned char expected(size_t region, size_t offset)
{
    return (unsigned char)((region * 131) + (offset * 7) + (offset >> 12) + 1);
}

/* 0 when intact; else prints why. */
static int inspect(size_t index, const struct region *r)
{
    unsigned char vec[256];

    if (mincore(r->addr, r->len, vec) != 0) {
        printf("bad %p %s\n", (void *)r->addr, (errno == ENOMEM) ? "unmapped" : strerror(errno));
        return 1;
    }
    for (size_t off = 0; off < r->len; off++) {
        if (r->addr[off] != expected(index, off)) {
            printf("bad %p byte %#zx is %#x\n", (void *)r->addr, off, r->addr[off]);
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    long count = (argc > 1) ? atol(argv[1]) : 8;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    struct region regions[MAX_REGIONS];
    char line[64];

    if ((count < 1) || (count > MAX_REGIONS)) {
        fprintf(stderr, "sentinel: between 1 and %d regions\n", MAX_REGIONS);
        return 2;
    }
    for (long i = 0; i < count; i++) {
        size_t len = region_pages[i % (sizeof region_pages / sizeof region_pages[0])] * page;
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            perror("sentinel: mmap");
            return 2;
        }
        regions[i] = (struct region){p, len};
        for (size_t off = 0; off < len; off++)
            regions[i].addr[off] = expected((size_t)i, off);
        printf("sentinel=%p %zu\n", p, len);
    }
    printf("ready\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin) != NULL) {
        if (strcmp(line, "check\n") != 0) {
            printf("unknown command\n");
        } else {
            int bad = 0;
            for (long i = 0; i < count; i++)
                bad += inspect((size_t)i, &regions[i]);
            if (bad == 0)
                printf("ok\n");
        }
        fflush(stdout);
    }
    return 0;
}
