/* Overflows its stack, and so must die by SIGSEGV:
 *   fault_stack array MIB   a MIB MiB array on the stack, filled from its
 *                           lowest byte up (as memset does)
 *   fault_stack recurse     unbounded recursion, a 1 KiB frame each
 * Prints "ready stack=ADDRESS" (flushed; an address on its stack), waits
 * for a line (or EOF) on stdin, prints "overflowing" (flushed), overflows.
 * Built with the compiler's default flags: no stack-clash probing, so the
 * array's first write lands MIB MiB below the stack pointer, past a small
 * guard. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Unbounded on purpose. */
#pragma GCC diagnostic ignored "-Winfinite-recursion"
static int recurse(volatile char *previous)
{
    volatile char frame[1024];

    frame[0] = previous[0] + 1;
    return recurse(frame) + frame[0];    /* not a tail call */
}

static int fill_array(size_t size)
{
    volatile char big[size];

    memset((char *)big, 1, size);
    return big[size / 2];
}

int main(int argc, char **argv)
{
    static volatile char start[1];
    char line[64];

    printf("ready stack=%p\n", (void *)line);
    fflush(stdout);
    if (fgets(line, sizeof line, stdin) == NULL)
        line[0] = 0;
    if ((argc == 3) && (strcmp(argv[1], "array") == 0)) {
        puts("overflowing");
        fflush(stdout);
        return fill_array((size_t)atoi(argv[2]) << 20);
    }
    if ((argc == 2) && (strcmp(argv[1], "recurse") == 0)) {
        puts("overflowing");
        fflush(stdout);
        return recurse(start);
    }
    fprintf(stderr, "usage: fault_stack array MIB | recurse\n");
    return 2;
}
