/* Built as a fixed-address executable:
 *   -no-pie -Wl,-Ttext-segment=0x10000000
 * so it needs exactly [0x10000000, ...) in the space.  Prints
 * "main=0x..." (flushed), then waits for one line on stdin (or EOF) and exits
 * 0, so a test can hold the range busy while it launches a second copy. */
#include <stdint.h>
#include <stdio.h>

int main(void)
{
    char line[256];

    printf("main=0x%lx\n", (unsigned long)(uintptr_t)&main);
    fflush(stdout);
    if (fgets(line, sizeof line, stdin) == NULL)
        line[0] = '\0';
    puts("bye");
    return 0;
}
