/* Exhausts its heap: malloc(1 MiB) and touch it, until malloc returns NULL
 * (or a bound of MAX MiB is reached: a safety net, reported as such).
 *   fault_heap MAX
 * Then prints "exhausted after N MiB" (flushed), waits for EOF on stdin
 * while holding the memory, frees it all and exits 0; "bound reached" and
 * exit 3 when malloc never failed.  The test bounds it with RLIMIT_AS. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK (1 << 20)

int main(int argc, char **argv)
{
    long max = (argc > 1) ? atol(argv[1]) : 0;
    void **blocks;
    long n = 0;
    char buf[256];

    if (max <= 0) {
        fprintf(stderr, "usage: fault_heap MAX_MIB\n");
        return 2;
    }
    blocks = calloc((size_t)max, sizeof *blocks);
    if (blocks == NULL)
        return 4;
    while (n < max) {
        void *block = malloc(CHUNK);
        if (block == NULL)
            break;
        memset(block, 0x5a, CHUNK);
        blocks[n++] = block;
    }
    if (n == max) {
        puts("bound reached");
        return 3;
    }
    printf("exhausted after %ld MiB (%s)\n", n, strerror(errno));
    fflush(stdout);
    while (read(0, buf, sizeof buf) > 0) {
    }
    while (n > 0)
        free(blocks[--n]);
    free(blocks);
    puts("freed");
    return 0;
}
