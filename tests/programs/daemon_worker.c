/* A daemon driven through two FIFOs.
 *
 * usage: daemon_worker COMMANDS_FIFO REPLIES_FIFO
 * Opens both FIFOs read-write (so neither open blocks, and neither side
 * sees EOF while the other one restarts), writes "ready pid=PID" to the
 * replies, then answers each line of the commands:
 *   "alloc MIB"  allocates MIB MiB of fresh memory and checks it
 *                (touch_alloc.h): "allocated=MIB" or "failed: REASON";
 *   "fork MIB"   forks a child that does the same and exits 0 or 1:
 *                "child_exit=N" (or "child_signal=N");
 *   "exit"       "bye", then exits 0.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "touch_alloc.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: daemon_worker COMMANDS_FIFO REPLIES_FIFO\n");
        return 2;
    }
    int commands_fd = open(argv[1], O_RDWR | O_CLOEXEC);
    int replies_fd = open(argv[2], O_RDWR | O_CLOEXEC);
    if ((commands_fd < 0) || (replies_fd < 0))
        return 2;
    FILE *commands = fdopen(commands_fd, "r");
    FILE *replies = fdopen(replies_fd, "w");
    if ((commands == NULL) || (replies == NULL))
        return 2;
    setvbuf(replies, NULL, _IOLBF, 0);

    char line[128];
    fprintf(replies, "ready pid=%d\n", (int)getpid());
    while (fgets(line, sizeof line, commands) != NULL) {
        const char *why = NULL;
        long mib = 0;
        if (sscanf(line, "alloc %ld", &mib) == 1) {
            if (touch_alloc(mib, &why) == 0)
                fprintf(replies, "allocated=%ld\n", mib);
            else
                fprintf(replies, "failed: %s\n", why);
        } else if (sscanf(line, "fork %ld", &mib) == 1) {
            fflush(replies);
            pid_t child = fork();
            if (child == 0)
                _exit((touch_alloc(mib, &why) == 0) ? 0 : 1);
            int status = 0;
            if ((child < 0) || (waitpid(child, &status, 0) != child))
                fprintf(replies, "failed: fork or waitpid\n");
            else if (WIFEXITED(status))
                fprintf(replies, "child_exit=%d\n", WEXITSTATUS(status));
            else
                fprintf(replies, "child_signal=%d\n", WTERMSIG(status));
        } else if (strcmp(line, "exit\n") == 0) {
            fprintf(replies, "bye\n");
            return 0;
        } else {
            fprintf(replies, "unknown command\n");
        }
    }
    return 0;
}
