/* The neighbour of the fault tests: prints "ready stack=ADDRESS" (an
 * address on its stack, so a test can see where it lies), then answers every line
 * read from stdin with "echo: LINE" (flushed) and prints "eof" at EOF, exit 0.
 * A test keeps it running while other programs of the space fail. */
#include <stdio.h>

int main(void)
{
    char line[4096];

    printf("ready stack=%p\n", (void *)line);
    fflush(stdout);
    while (fgets(line, sizeof line, stdin) != NULL) {
        printf("echo: %s", line);
        fflush(stdout);
    }
    puts("eof");
    return 0;
}
