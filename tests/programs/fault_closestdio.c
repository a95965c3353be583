/* Closes its stdin, stdout and stderr, then:
 *   fault_closestdio exit CODE   exits CODE at once
 *   fault_closestdio wait CODE   waits for SIGUSR1, then exits CODE
 * Prints "closing" (flushed) before closing.  Writes afterwards fail with
 * EBADF and must not hurt anyone. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    sigset_t usr1;

    if ((argc != 3) || ((strcmp(argv[1], "exit") != 0) && (strcmp(argv[1], "wait") != 0))) {
        fprintf(stderr, "usage: fault_closestdio exit|wait CODE\n");
        return 2;
    }
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, NULL);   /* held until sigwait */
    puts("closing");
    fflush(stdout);
    close(0);
    close(1);
    close(2);
    puts("into a closed stdout");
    fflush(stdout);
    if (strcmp(argv[1], "wait") == 0) {
        int sig;
        sigwait(&usr1, &sig);
    }
    return atoi(argv[2]);
}
