/* Prints "ready" (flushed), then blocks in read(0) until EOF and exits 0.
 * Keeps a program alive for as long as a test holds its stdin open. */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
    char buf[256];
    ssize_t n;

    puts("ready");
    fflush(stdout);
    do {
        n = read(0, buf, sizeof buf);
    } while (n > 0);
    puts((n == 0) ? "eof" : "read error");
    return (n == 0) ? 0 : 1;
}
