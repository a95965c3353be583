/* The smallest program: one line on stdout, exit 0. */
#include <stdio.h>

int main(void)
{
    puts("hello from sameprocess");
    return 0;
}
