/* Allocates only when told: for a program that must still allocate after
 * its server is gone.
 *
 * usage: late_alloc [MIB]   (default 64)
 * Prints "waiting", reads one line from stdin, then allocates MIB MiB of
 * fresh memory (touch_alloc.h: mmaps and mallocs), writes and checks it,
 * prints "allocated=MIB" and exits 0.  A failure prints "failed: REASON",
 * exit 1.
 */
#include <stdio.h>
#include <stdlib.h>

#include "touch_alloc.h"

int main(int argc, char **argv)
{
    long mib = (argc > 1) ? atol(argv[1]) : 64;
    const char *why = NULL;
    char line[64];

    printf("waiting\n");
    fflush(stdout);
    if (fgets(line, sizeof line, stdin) == NULL) {
        printf("failed: no line on stdin\n");
        return 1;
    }
    if (touch_alloc(mib, &why) != 0) {
        printf("failed: %s\n", why);
        return 1;
    }
    printf("allocated=%ld\n", mib);
    return 0;
}
