/* Starts a daemon and exits at once.
 *
 * usage: daemonize COMMAND [ARGS...]
 * Forks; the child starts a new session, puts /dev/null on its stdin,
 * stdout and stderr (so it holds none of its caller's pipes) and execs
 * COMMAND.  The parent prints "daemon=PID" and exits 0 without waiting.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: daemonize COMMAND [ARGS...]\n");
        return 2;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("daemonize: fork");
        return 1;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if ((setsid() < 0) || (null < 0) || (dup2(null, 0) < 0) || (dup2(null, 1) < 0) || (dup2(null, 2) < 0))
            _exit(126);
        if (null > 2)
            close(null);
        execvp(argv[1], &argv[1]);
        _exit(127);
    }
    printf("daemon=%d\n", (int)pid);
    return 0;
}
