/* Linked against lib/liborigin.so with
 *   -Wl,-rpath,'$ORIGIN/lib' -Wl,--enable-new-dtags   (DT_RUNPATH)
 * so it only starts if the loader resolves $ORIGIN against this executable's
 * own directory.  Prints "origin_value=4242". */
#include <stdio.h>

int origin_value(void);

int main(void)
{
    printf("origin_value=%d\n", origin_value());
    return 0;
}
