/* Writes to stdout until a write fails.  The test closes the pipe's read
 * end, so with default dispositions the program dies by SIGPIPE.  If it
 * survives (SIGPIPE ignored or blocked), it prints "EPIPE" (or the errno
 * name/number of whatever failed) to stderr and exits 2. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void)
{
    char buf[4096];

    memset(buf, 'x', sizeof buf);
    for (;;) {
        if (write(1, buf, sizeof buf) < 0) {
            int err = errno;
            if (err == EPIPE)
                fputs("EPIPE\n", stderr);
            else
                fprintf(stderr, "write failed: errno %d (%s)\n", err, strerror(err));
            return 2;
        }
    }
}
