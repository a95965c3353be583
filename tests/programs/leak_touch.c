/* Keeps memory it never frees.
 *
 * usage: leak_touch [MIB] [wait]   (default 10 MiB)
 * mallocs MIB MiB in one block, writes every page of it, prints
 * "addr=0x..." and "bytes=N", and exits 0 without freeing.  With "wait" it
 * blocks after printing until EOF on stdin, so the memory can be looked at
 * while the program runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long mib = (argc > 1) ? atol(argv[1]) : 10;
    int wait = (argc > 2) && (strcmp(argv[2], "wait") == 0);
    size_t bytes = (size_t)mib << 20;
    long page = sysconf(_SC_PAGESIZE);
    unsigned char *block = malloc(bytes);

    if ((mib <= 0) || (block == NULL)) {
        fprintf(stderr, "leak_touch: cannot allocate %ld MiB\n", mib);
        return 2;
    }
    for (size_t i = 0; i < bytes; i += (size_t)page)
        block[i] = (unsigned char)(i >> 12);
    block[bytes - 1] = 1;
    printf("addr=%p\nbytes=%zu\n", (void *)block, bytes);
    fflush(stdout);
    if (wait) {
        char line[64];
        while (fgets(line, sizeof line, stdin) != NULL)
            ;
    }
    return 0;
}
