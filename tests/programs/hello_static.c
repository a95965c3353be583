/* Built with -static-pie: no PT_INTERP, entered directly.  Prints whether
 * the kernel-style auxv says there is no interpreter (AT_BASE == 0). */
#include <stdio.h>
#include <sys/auxv.h>

int main(int argc, char **argv)
{
    printf("hello from static-pie\n");
    printf("argc=%d\n", argc);
    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    printf("at_base=0x%lx\n", getauxval(AT_BASE));
    return 0;
}
