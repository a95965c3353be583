/* Blocks every signal it can, prints "blocked" (flushed), then sleeps in
 * read(0) until EOF and exits 0.  Only SIGKILL (and SIGSTOP) reach it;
 * anything else stays pending. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

int main(void)
{
    sigset_t all;
    char buf[256];

    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    puts("blocked");
    fflush(stdout);
    while (read(0, buf, sizeof buf) > 0) {
    }
    puts("eof");
    return 0;
}
