/* Dies by SIGABRT through abort(); prints a line first so a test can tell
 * the program ran before it died. */
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    puts("about to abort");
    fflush(stdout);
    abort();
}
