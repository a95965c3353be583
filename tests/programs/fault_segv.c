/* Dies by SIGSEGV: prints a line (flushed), then writes through a null
 * pointer. */
#include <stdio.h>

int main(void)
{
    volatile int *nowhere = NULL;

    puts("about to fault");
    fflush(stdout);
    *nowhere = 1;
    return 0;
}
